from django.urls import path

from channels.email import pages

urlpatterns = [
    path("a/<str:token>", pages.approval_link, name="approval-link"),
]
