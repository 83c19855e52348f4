"""Compliance staff: a Django group that may read decisions and the audit trail and export
it, and do nothing else. Vera from compliance is staff and in the group; that is all she is."""

import pytest
from django.apps import apps as django_apps
from django.contrib.auth.models import Group, Permission, User
from django.core.management import call_command
from django.db import connection
from django.urls import reverse

from audit.groups import COMPLIANCE_GROUP, ensure_compliance_group
from audit.guard import guard_lifted
from audit.models import AuditEvent
from decisions.models import Decision, Status
from decisions.services import DecisionSpec, decision_create
from tests.conftest import ALICE
from tests.helpers import seal


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def decision(acme_key):
    return decision_create(
        api_key=acme_key[0],
        spec=DecisionSpec(action="Refund order #1042", stages=[{"approvers": [ALICE], "quorum": "any"}]),
    )[0]


@pytest.fixture
def vera(client, db):
    """Logged in to the admin as a member of the Compliance group."""
    user = User.objects.create_user("vera", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name=COMPLIANCE_GROUP))
    client.force_login(user)
    return client


def test_the_group_has_exactly_the_view_and_export_permissions(db):
    group = Group.objects.get(name=COMPLIANCE_GROUP)

    assert sorted(group.permissions.values_list("content_type__app_label", "codename")) == [
        ("audit", "export_auditevent"),
        ("audit", "view_auditevent"),
        ("decisions", "view_approvalrequest"),
        ("decisions", "view_decision"),
    ]


@pytest.mark.parametrize(
    "url_name",
    [
        "decisions_decision_changelist",
        "decisions_approvalrequest_changelist",
        "audit_auditevent_changelist",
        "audit_auditevent_verify",
    ],
)
def test_vera_can_read_decisions_and_the_trail(vera, decision, url_name):
    assert vera.get(reverse(f"admin:{url_name}")).status_code == 200


def test_vera_sees_a_decision_read_only_with_its_trail(vera, decision):
    page = vera.get(reverse("admin:decisions_decision_change", args=[decision.pk])).content.decode()

    assert "Refund order #1042" in page
    assert "decision.created" in page  # the audit inline
    assert 'name="_save"' not in page
    assert "Deliveries" not in page  # she has no permission on deliveries


@pytest.mark.django_db(transaction=True)
def test_vera_can_export_the_trail(vera, decision):
    seal()
    response = vera.get(reverse("admin:audit_auditevent_export"))
    changelist = vera.get(reverse("admin:audit_auditevent_changelist")).content.decode()

    assert response.status_code == 200
    assert AuditEvent.objects.count() > 0
    assert len(b"".join(response.streaming_content).splitlines()) == 1 + AuditEvent.objects.count()
    assert reverse("admin:audit_auditevent_export") in changelist


def test_vera_can_open_the_report(vera, decision):
    url = reverse("admin:organizations_organization_report", args=[decision.organization_id])

    assert vera.get(url).status_code == 200


@pytest.mark.parametrize(
    "url_name",
    [
        "organizations_organization_changelist",
        "organizations_apikey_changelist",
        "organizations_webhooksecret_changelist",
        "decisions_approvergroup_changelist",
        "decisions_policy_changelist",
        "notifications_delivery_changelist",
        "audit_auditcheckpoint_add",
        "auth_user_changelist",
        "auth_group_changelist",
        "decisions_policy_add",
        "decisions_approvergroup_add",
        "organizations_organization_add",
    ],
)
def test_vera_sees_nothing_else(vera, url_name):
    assert vera.get(reverse(f"admin:{url_name}")).status_code == 403


def test_vera_cannot_cancel_or_change_a_decision(vera, decision):
    changelist = vera.get(reverse("admin:decisions_decision_changelist")).content.decode()
    cancel = vera.post(
        reverse("admin:decisions_decision_changelist"),
        {"action": "cancel", "_selected_action": [decision.pk]},
    )
    change = vera.post(
        reverse("admin:decisions_decision_change", args=[decision.pk]), {"status": "cancelled"}
    )

    assert 'value="cancel"' not in changelist
    assert 'value="redeliver_callback"' not in changelist
    assert cancel.status_code in (200, 302)  # "no action selected": the action is not hers
    assert change.status_code == 403
    decision.refresh_from_db()
    assert decision.status == Status.PENDING
    assert Decision.objects.filter(status=Status.CANCELLED).count() == 0


def test_the_admin_index_shows_vera_only_her_models(vera, decision):
    page = vera.get(reverse("admin:index")).content.decode()

    assert "Decisions" in page
    assert "Audit events" in page
    assert "Approval requests" in page
    for hidden in ("Policies", "API keys", "Deliveries", "Organizations", "Approver groups", "Users"):
        assert hidden not in page, hidden


def test_the_group_comes_back_after_a_flush(transactional_db):
    """`manage.py flush` (and the teardown of transactional tests) empties every table, groups
    included: post_migrate puts the group back as migration 0004 made it."""
    with guard_lifted(connection):
        call_command("flush", interactive=False, verbosity=0)

    group = Group.objects.get(name=COMPLIANCE_GROUP)
    assert group.permissions.count() == 4


def test_an_operators_changes_to_the_group_are_kept(db):
    group = Group.objects.get(name=COMPLIANCE_GROUP)
    group.permissions.remove(group.permissions.get(codename="export_auditevent"))

    assert ensure_compliance_group(django_apps) is False
    assert not group.permissions.filter(codename="export_auditevent").exists()


def test_vera_exports_the_decisions_she_filtered_one_row_each(vera, decision, acme_key):
    from decisions.services import DecisionSpec, decision_create

    decision_create(
        api_key=acme_key[0],
        spec=DecisionSpec(action="Deploy release 4.2", stages=[{"approvers": [ALICE], "quorum": "any"}]),
    )
    changelist = vera.get(reverse("admin:decisions_decision_changelist")).content.decode()

    response = vera.get(reverse("admin:decisions_decision_export"), {"q": "Refund"})

    assert reverse("admin:decisions_decision_export") in changelist
    assert response.status_code == 200
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert lines[0].lstrip("\ufeff").startswith("decision_id,created_at,action,requested_by")
    assert len(lines) == 2
    assert lines[1].startswith(f"{decision.pk},")


def test_a_viewer_without_the_export_permission_cannot_export_decisions(client, decision):
    viewer = User.objects.create_user("victor", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_decision"))
    client.force_login(viewer)

    changelist = client.get(reverse("admin:decisions_decision_changelist")).content.decode()

    assert client.get(reverse("admin:decisions_decision_export")).status_code == 403
    assert reverse("admin:decisions_decision_export") not in changelist
