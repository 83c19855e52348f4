from django.urls import path

from notifications.slack_interactions import slack_interactions

urlpatterns = [
    path("slack/interactions", slack_interactions, name="slack-interactions"),
]
