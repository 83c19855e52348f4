from django.contrib import admin

from channels.slack.models import SlackSettings


@admin.register(SlackSettings)
class SlackSettingsAdmin(admin.ModelAdmin):
    list_display = ["organization", "bot_token_env", "signing_secret_env", "dm_email_approvers"]
