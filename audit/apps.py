from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _ensure_compliance_group(sender, apps=None, **kwargs) -> None:
    from django.apps import apps as global_apps

    from audit.groups import ensure_compliance_group

    # migrate passes its migration state; flush sends no `apps` at all.
    apps = apps or global_apps
    try:
        declared = apps.get_model("audit", "AuditEvent")._meta.permissions
    except LookupError:
        return
    if declared:  # not after `migrate audit 0002`, which removed the group on purpose
        ensure_compliance_group(apps)


class AuditConfig(AppConfig):
    name = "audit"

    def ready(self) -> None:
        # Migration 0004 creates the group; this puts it back after a `flush` (which empties
        # every table and then sends post_migrate, as test teardown does).
        post_migrate.connect(_ensure_compliance_group, sender=self, dispatch_uid="audit-compliance-group")
        # The runtime role's privileges on every table, once per migrate: post_migrate is
        # sent after every migration has run, so all tables exist by then.
        from broker.db_roles import grant_after_migrate

        post_migrate.connect(grant_after_migrate, sender=self, dispatch_uid="runtime-role-grants")
