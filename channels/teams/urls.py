from django.urls import path

from channels.teams.views import teams_messages

urlpatterns = [
    path("teams/messages", teams_messages, name="teams-messages"),
]
