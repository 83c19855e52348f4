from django.apps import AppConfig


class TeamsConfig(AppConfig):
    """The Teams channel's own models (its per-organization settings): channels.registry lists
    it among INSTALLED_APPS because this folder has an apps.py."""

    name = "channels.teams"
    label = "teams"
    verbose_name = "Microsoft Teams"

    def ready(self) -> None:
        # Read TEAMS_* now: a bad value stops start-up, naming the variable.
        from channels.teams import conf  # noqa: F401
