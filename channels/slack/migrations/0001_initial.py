"""SlackSettings moves here from notifications (the outbox knows deliveries, not Slack apps).

State only: the table stays notifications_slacksettings, made by notifications 0006, with the
settings_version triggers of organizations 0004 on it, so nothing in the database changes.
notifications 0007 removes the model from notifications' state after this adds it here. The
admin's content type (and so its permissions) is renamed to follow the model.
"""

import django.db.models.deletion
from django.db import migrations, models


def content_type_follows(apps, schema_editor) -> None:
    ContentType = apps.get_model("contenttypes", "ContentType")
    if not ContentType.objects.filter(app_label="slack", model="slacksettings").exists():
        ContentType.objects.filter(app_label="notifications", model="slacksettings").update(app_label="slack")


def content_type_returns(apps, schema_editor) -> None:
    ContentType = apps.get_model("contenttypes", "ContentType")
    if not ContentType.objects.filter(app_label="notifications", model="slacksettings").exists():
        ContentType.objects.filter(app_label="slack", model="slacksettings").update(app_label="notifications")


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("notifications", "0006_slack_settings"),  # the table
        ("organizations", "0004_settings_version"),  # its triggers
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="SlackSettings",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        (
                            "bot_token_env",
                            models.CharField(
                                blank=True,
                                help_text="name of the environment variable holding the bot token (xoxb-…)",
                                max_length=100,
                            ),
                        ),
                        (
                            "signing_secret_env",
                            models.CharField(
                                blank=True,
                                help_text="name of the environment variable holding the signing secret",
                                max_length=100,
                            ),
                        ),
                        (
                            "dm_email_approvers",
                            models.BooleanField(
                                default=False,
                                help_text="also DM approvers named by email, found with users.lookupByEmail",
                            ),
                        ),
                        (
                            "organization",
                            models.OneToOneField(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="slack_settings",
                                to="organizations.organization",
                            ),
                        ),
                    ],
                    options={
                        "verbose_name": "Slack settings",
                        "verbose_name_plural": "Slack settings",
                        "db_table": "notifications_slacksettings",
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(content_type_follows, content_type_returns),
    ]
