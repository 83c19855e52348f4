"""SlackSettings now lives in channels/slack (its migration 0001 takes it over): notifications
forgets the model, and keeps its table notifications_slacksettings, which the Slack app uses."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0006_slack_settings"),
        ("slack", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="SlackSettings")],
            database_operations=[],
        ),
    ]
