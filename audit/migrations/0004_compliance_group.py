from django.contrib.auth.management import create_permissions
from django.db import migrations


def create_group(apps, schema_editor):
    from audit.groups import ensure_compliance_group

    # Permissions are normally created after all migrations (post_migrate); on a fresh database
    # they do not exist yet at this point, so create them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    ensure_compliance_group(apps)


def remove_group(apps, schema_editor):
    from audit.groups import COMPLIANCE_GROUP

    apps.get_model("auth", "Group").objects.filter(name=COMPLIANCE_GROUP).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0003_auditevent_export_permission"),
        ("decisions", "0002_clock_and_policies"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_group, remove_group)]
