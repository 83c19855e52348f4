import re

from django.core.exceptions import ValidationError
from django.db import models


class TeamsSettings(models.Model):
    """An organization's Teams bot. Its client secret is not stored here: `app_password_env`
    names the environment variable that holds it, so a database dump never carries a
    credential. Empty fields fall back to the TEAMS_* environment variables."""

    organization = models.OneToOneField(
        "organizations.Organization", on_delete=models.CASCADE, related_name="teams_settings"
    )
    app_id = models.CharField(
        max_length=64, blank=True, help_text="the bot's Microsoft App ID (empty: TEAMS_APP_ID)"
    )
    app_password_env = models.CharField(
        max_length=100,
        blank=True,
        help_text="name of the environment variable holding the bot's secret (empty: TEAMS_APP_PASSWORD)",
    )
    tenant_id = models.CharField(
        max_length=64,
        blank=True,
        help_text="the Microsoft Entra tenant (directory) ID (empty: TEAMS_TENANT_ID)",
    )
    service_url = models.URLField(
        max_length=300,
        blank=True,
        help_text="the Bot Framework connector, e.g. https://smba.trafficmanager.net/emea/ "
        "(empty: TEAMS_SERVICE_URL)",
    )

    class Meta:
        verbose_name = "Teams settings"
        verbose_name_plural = "Teams settings"

    def __str__(self) -> str:
        return f"Teams for {self.organization}"

    def clean(self) -> None:
        if self.app_password_env and not re.fullmatch(r"[A-Z_][A-Z0-9_]{0,99}", self.app_password_env):
            raise ValidationError(
                {"app_password_env": "An environment variable name, e.g. ACME_TEAMS_APP_PASSWORD."}
            )
