"""The "Compliance" group: staff who read decisions and the audit trail, and export it.

View permissions on decisions, their approval requests and the audit trail, plus the audit
export; nothing else (no organizations, keys, policies, deliveries, and no change anywhere).
An operator gives someone this role by making them staff and adding them to the group.
"""

COMPLIANCE_GROUP = "Compliance"
COMPLIANCE_PERMISSIONS = [
    ("decisions", "decision", "view_decision"),
    ("decisions", "approvalrequest", "view_approvalrequest"),
    ("audit", "auditevent", "view_auditevent"),
    ("audit", "auditevent", "export_auditevent"),
]


def ensure_compliance_group(apps) -> bool:
    """Create the group with its permissions if it does not exist; return whether it did.
    An existing group is left as the operator made it. `apps`: a migration state or the
    app registry; the permissions must exist already (create_permissions)."""
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    if group_model.objects.filter(name=COMPLIANCE_GROUP).exists():
        return False
    permissions = [
        permission_model.objects.filter(
            content_type__app_label=app_label, content_type__model=model, codename=codename
        ).first()
        for app_label, model, codename in COMPLIANCE_PERMISSIONS
    ]
    if None in permissions:
        return False  # e.g. `migrate audit zero`: the models are gone, so is the group's purpose
    group = group_model.objects.create(name=COMPLIANCE_GROUP)
    group.permissions.set(permissions)
    return True
