"""The Slack channel's own model: each organization's Slack app (channels.registry lists this
folder among INSTALLED_APPS because it has an apps.py)."""

import re

from django.core.exceptions import ValidationError
from django.db import models


class SlackSettings(models.Model):
    """An organization's Slack app. The token and signing secret are not stored here: these
    fields name the environment variables that hold them (empty: SLACK_BOT_TOKEN and
    SLACK_SIGNING_SECRET), so a database dump never carries a credential."""

    organization = models.OneToOneField(
        "organizations.Organization", on_delete=models.CASCADE, related_name="slack_settings"
    )
    bot_token_env = models.CharField(
        max_length=100,
        blank=True,
        help_text="name of the environment variable holding the bot token (xoxb-…)",
    )
    signing_secret_env = models.CharField(
        max_length=100, blank=True, help_text="name of the environment variable holding the signing secret"
    )
    dm_email_approvers = models.BooleanField(
        default=False, help_text="also DM approvers named by email, found with users.lookupByEmail"
    )

    class Meta:
        # The table it has had since it lived in notifications: kept, with the triggers that
        # raise Organization.settings_version on every write to it (organizations 0004).
        db_table = "notifications_slacksettings"
        verbose_name = "Slack settings"
        verbose_name_plural = "Slack settings"

    def __str__(self) -> str:
        return f"Slack for {self.organization}"

    def clean(self) -> None:
        for field in ("bot_token_env", "signing_secret_env"):
            value = getattr(self, field)
            if value and not re.fullmatch(r"[A-Z_][A-Z0-9_]{0,99}", value):
                raise ValidationError({field: "An environment variable name, e.g. ACME_SLACK_BOT_TOKEN."})
