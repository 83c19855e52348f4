from django.apps import AppConfig


class SlackConfig(AppConfig):
    """The Slack channel's own model (its per-organization settings): channels.registry lists
    it among INSTALLED_APPS because this folder has an apps.py."""

    name = "channels.slack"
    label = "slack"
    verbose_name = "Slack"
