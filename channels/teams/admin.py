from django.contrib import admin

from channels.teams.models import TeamsSettings


@admin.register(TeamsSettings)
class TeamsSettingsAdmin(admin.ModelAdmin):
    list_display = ["organization", "app_id", "app_password_env", "tenant_id", "service_url"]
