"""Django admin: every model has pages that render, the actions that change state go through
the services (and so into the audit trail), and the audit trail is read-only for everybody,
superusers included."""

import csv
import io
import re
from types import SimpleNamespace

import factory
import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.db import connection
from django.urls import reverse

from audit.export import BOM
from audit.guard import guard_lifted
from audit.models import AuditCheckpoint, AuditEvent
from audit.selectors import sealed_events
from decisions.models import ApprovalRequest, ApproverGroup, Policy, Status
from decisions.services import DecisionSpec, decision_answer, decision_create
from notifications.models import Delivery
from organizations.models import ApiKey, WebhookSecret
from organizations.services import webhook_secret_current
from tests.conftest import ALICE, BOB, client_for
from tests.factories import DecisionFactory
from tests.helpers import seal

# The audit pages export and verify the sealed trail, and sealing links only committed events.
pytestmark = pytest.mark.django_db(transaction=True)

CALLBACK_URL = "https://agent.example.com/hooks/countersign"


class Refund(DecisionFactory):
    details = factory.Dict({"amount": 120})

    class Params:
        approvers = (ALICE, BOB)


def approve(decision, address: str = ALICE, note: str = "fine"):
    request = decision.requests.get(address=address)
    return decision_answer(request_id=request.pk, choice="approve", note=note, via="email")


def messages_of(response) -> list[tuple[str, str]]:
    return [(m.level_tag, m.message) for m in get_messages(response.wsgi_request)]


def changelist_action(client, model_url: str, action: str, objects, **extra):
    return client.post(
        reverse(f"admin:{model_url}_changelist"),
        {"action": action, "_selected_action": [str(o.pk) for o in objects], **extra},
        follow=True,
    )


@pytest.fixture
def world(acme_key):
    """Acme with a key, a group, a policy, a webhook secret, a pending decision and one that
    alice approved (so it has an answer, a callback delivery and a trail)."""
    acme = acme_key[0].organization
    group = ApproverGroup.objects.create(organization=acme, name="finance", members=[ALICE, BOB])
    policy = Policy.objects.create(
        organization=acme,
        name="small-refunds",
        action=Policy.Action.APPROVE,
        conditions=[{"field": "details.amount", "op": "lt", "value": 50}],
    )
    approved = approve(Refund(api_key=acme_key[0], action="Refund order #1042", callback_url=CALLBACK_URL))
    pending = Refund(api_key=acme_key[0], action="Deploy release 4.2")
    seal()
    return SimpleNamespace(
        acme=acme,
        key=acme_key[0],
        group=group,
        policy=policy,
        approved=approved,
        pending=pending,
        secret=webhook_secret_current(organization=acme),
        event=sealed_events().filter(decision=approved).order_by("seq").first(),
    )


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    # admin_client's superuser gets a password hashed with the production hasher otherwise.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# --- every page renders -------------------------------------------------------------------


PAGES = [
    ("organizations_organization_changelist", None, "acme"),
    ("organizations_organization_add", None, "Default timeout minutes"),
    ("organizations_organization_change", "acme", "Acme Corp"),
    ("organizations_organization_report", "acme", "Decisions per day"),
    ("organizations_apikey_changelist", None, "acme agent"),
    ("organizations_apikey_change", "key", "acme agent"),
    ("organizations_webhooksecret_changelist", None, "whsec_"),
    ("organizations_webhooksecret_change", "secret", "whsec_"),
    ("decisions_approvergroup_changelist", None, "finance"),
    ("decisions_approvergroup_add", None, "Members"),
    ("decisions_approvergroup_change", "group", "finance"),
    ("decisions_policy_changelist", None, "small-refunds"),
    ("decisions_policy_add", None, "Conditions"),
    ("decisions_policy_change", "policy", "small-refunds"),
    ("decisions_decision_changelist", None, "Deploy release 4.2"),
    ("decisions_decision_change", "approved", "Refund order #1042"),
    ("decisions_approvalrequest_changelist", None, ALICE),
    ("decisions_approvalrequest_change", "request", ALICE),
    ("notifications_delivery_changelist", None, "callback"),
    ("notifications_delivery_change", "delivery", "callback"),
    ("audit_auditevent_changelist", None, "decision.created"),
    ("audit_auditevent_change", "event", "decision.created"),
    ("audit_auditevent_verify", None, "Intact"),
    ("audit_auditcheckpoint_changelist", None, "acme"),
    ("audit_auditcheckpoint_change", "checkpoint", "countersign/audit/v1"),
    ("auth_group_changelist", None, "Compliance"),
]


def page_object(world, name: str | None):
    return {
        None: None,
        "acme": world.acme,
        "key": world.key,
        "secret": world.secret,
        "group": world.group,
        "policy": world.policy,
        "approved": world.approved,
        "request": lambda: ApprovalRequest.objects.get(decision=world.approved, address=ALICE),
        "delivery": lambda: Delivery.objects.get(decision=world.approved, kind=Delivery.Kind.CALLBACK),
        "event": world.event,
        "checkpoint": lambda: (
            AuditCheckpoint.objects.filter(organization=world.acme).order_by("-size").first()
        ),
    }[name]


@pytest.mark.parametrize(("url_name", "obj", "shows"), PAGES, ids=[p[0] for p in PAGES])
def test_admin_page_renders(admin_client, world, url_name, obj, shows):
    target = page_object(world, obj)
    target = target() if callable(target) else target
    url = reverse(f"admin:{url_name}", args=[target.pk] if target is not None else [])

    response = admin_client.get(url)

    assert response.status_code == 200, response.content[:500]
    assert shows in response.content.decode()


@pytest.mark.parametrize(
    "url_name",
    [
        "organizations_apikey_add",
        "organizations_webhooksecret_add",
        "decisions_decision_add",
        "decisions_approvalrequest_add",
        "audit_auditevent_add",
        "audit_auditcheckpoint_add",
    ],
)
def test_records_made_by_the_service_cannot_be_added_by_hand(admin_client, world, url_name):
    assert admin_client.get(reverse(f"admin:{url_name}")).status_code == 403


def test_the_decision_page_shows_requests_answers_deliveries_and_trail(admin_client, world):
    page = admin_client.get(
        reverse("admin:decisions_decision_change", args=[world.approved.pk])
    ).content.decode()

    assert "Requests (who was asked)" in page
    assert "Answers" in page
    assert "fine" in page  # alice's note
    assert "Deliveries" in page
    assert CALLBACK_URL in page
    assert "Audit trail" in page
    assert "decision.answered" in page


def test_decisions_filter_by_status_and_search_by_approver(admin_client, world, globex_key):
    carols = decision_create(
        api_key=globex_key[0],
        spec=DecisionSpec(
            action="Globex payroll", stages=[{"approvers": ["carol@example.com"], "quorum": "any"}]
        ),
    )[0]
    changelist = reverse("admin:decisions_decision_changelist")

    pending = admin_client.get(changelist, {"status__exact": "pending"}).content.decode()
    by_carol = admin_client.get(changelist, {"q": "carol@example.com"}).content.decode()
    by_action = admin_client.get(changelist, {"q": "Deploy"}).content.decode()

    assert world.pending.pk in pending
    assert world.approved.pk not in pending
    assert carols.pk in by_carol
    assert world.pending.pk not in by_carol
    assert world.pending.pk in by_action
    assert world.approved.pk not in by_action


# --- organizations and keys ---------------------------------------------------------------


def test_create_api_key_asks_for_name_and_scopes_then_shows_the_key_once(admin_client, world):
    # when the admin picks the action, a form asks for the key's name and scopes
    form = changelist_action(admin_client, "organizations_organization", "create_api_key", [world.acme])
    assert form.status_code == 200
    assert 'name="scopes"' in form.content.decode()
    assert ApiKey.objects.filter(name="compliance export").count() == 0

    # and on submit the key is made and shown once, in that response only
    response = changelist_action(
        admin_client,
        "organizations_organization",
        "create_api_key",
        [world.acme],
        apply="yes",
        name="compliance export",
        scopes=["audit"],
    )

    key = ApiKey.objects.get(name="compliance export")
    assert key.organization == world.acme
    assert key.scopes == ["audit"]
    page = response.content.decode()
    assert "cannot be shown again" in page
    # not through messages: those would keep the key in a cookie or the session
    assert messages_of(response) == []
    assert "no-store" in response["Cache-Control"]
    raw_key = re.search(r"cs_[A-Za-z0-9_-]{43}", page).group()
    assert raw_key.startswith(key.prefix)
    assert raw_key not in key.key_hash
    # the key works, with exactly its scopes
    assert client_for(raw_key).get("/audit/events").status_code == 200
    assert client_for(raw_key).get("/decisions").status_code == 403
    # and it is never shown again
    later = admin_client.get(reverse("admin:organizations_apikey_change", args=[key.pk])).content.decode()
    assert raw_key not in later


def test_create_api_key_needs_a_scope(admin_client, world):
    before = ApiKey.objects.count()

    response = changelist_action(
        admin_client, "organizations_organization", "create_api_key", [world.acme], apply="yes", name="x"
    )

    assert response.status_code == 200
    assert "This field is required" in response.content.decode()
    assert ApiKey.objects.count() == before


def test_revoking_a_key_stops_it_at_once(admin_client, world, acme_key):
    assert client_for(acme_key[1]).get("/decisions").status_code == 200

    response = changelist_action(admin_client, "organizations_apikey", "revoke", [world.key])

    assert ("success", "1 key(s) revoked; they stop working at once.") in messages_of(response)
    world.key.refresh_from_db()
    assert world.key.revoked_at is not None
    assert client_for(acme_key[1]).get("/decisions").status_code == 401


def test_rotating_the_webhook_secret_keeps_the_old_one_for_a_while(admin_client, world):
    changelist_action(admin_client, "organizations_organization", "rotate_webhook_secret", [world.acme])

    secrets = WebhookSecret.objects.filter(organization=world.acme)
    assert secrets.count() == 2
    assert secrets.get(pk=world.secret.pk).retired_at is not None


# --- policies and groups are validated ----------------------------------------------------


def policy_form(world, **fields) -> dict:
    return {
        "organization": world.acme.pk,
        "name": "big-refunds",
        "position": 1,
        "enabled": "on",
        "conditions": '[{"field": "details.amount", "op": "gte", "value": 500}]',
        "action": "route",
        "approvers": '["group:finance"]',
        "stages": "[]",
        "escalation": "[]",
        "quorum": "",
        "timeout_minutes": "",
        "urgency": "",
        **fields,
    }


def test_a_valid_policy_is_saved(admin_client, world):
    response = admin_client.post(reverse("admin:decisions_policy_add"), policy_form(world))

    assert response.status_code == 302
    policy = Policy.objects.get(name="big-refunds")
    assert policy.conditions == [{"field": "details.amount", "op": "gte", "value": 500}]
    assert policy.approvers == ["group:finance"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"conditions": '[{"field": "details.amount", "op": "between", "value": 5}]'}, "Unknown operator"),
        ({"conditions": '[{"field": "__import__", "op": "eq", "value": 1}]'}, "Unknown field"),
        ({"conditions": '{"field": "action"}'}, "A list of conditions"),
        ({"approvers": '["group:nobody"]'}, "Unknown approver group: nobody"),
        ({"action": "approve"}, "routes nobody"),
    ],
    ids=["operator", "field", "not-a-list", "unknown-group", "auto-approve-with-routing"],
)
def test_an_invalid_policy_is_refused_with_the_reason(admin_client, world, fields, message):
    response = admin_client.post(reverse("admin:decisions_policy_add"), policy_form(world, **fields))

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Policy.objects.filter(name="big-refunds").exists()


def test_an_approver_group_needs_valid_members(admin_client, world):
    url = reverse("admin:decisions_approvergroup_add")
    form = {"organization": world.acme.pk, "name": "ops"}

    refused = admin_client.post(url, {**form, "members": '["group:finance"]'})
    accepted = admin_client.post(url, {**form, "members": '["ops@example.com", "slack:U123ABC"]'})

    assert refused.status_code == 200
    assert "groups do not nest" in refused.content.decode()
    assert accepted.status_code == 302
    assert ApproverGroup.objects.get(name="ops").members == ["ops@example.com", "slack:U123ABC"]


# --- decision actions go through the services ---------------------------------------------


def test_cancel_cancels_pending_decisions_as_the_admin_and_leaves_resolved_ones(admin_client, world):
    response = changelist_action(
        admin_client, "decisions_decision", "cancel", [world.pending, world.approved]
    )

    world.pending.refresh_from_db()
    world.approved.refresh_from_db()
    assert world.pending.status == Status.CANCELLED
    assert world.pending.outcome["by"] == "admin:admin"
    assert world.approved.status == Status.APPROVED
    resolved = AuditEvent.objects.get(decision=world.pending, event="decision.resolved")
    assert resolved.actor == "admin:admin"
    assert ("success", "1 decision(s) cancelled.") in messages_of(response)
    assert ("warning", "1 decision(s) were no longer pending and were left as they are.") in messages_of(
        response
    )


def test_redeliver_callback_queues_the_callback_again_and_audits_it(admin_client, world):
    delivery = Delivery.objects.get(decision=world.approved, kind=Delivery.Kind.CALLBACK)
    Delivery.objects.filter(pk=delivery.pk).update(status=Delivery.Status.FAILED, attempts=11)

    response = changelist_action(
        admin_client, "decisions_decision", "redeliver_callback", [world.approved, world.pending]
    )

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (Delivery.Status.PENDING, 0)
    event = AuditEvent.objects.get(decision=world.approved, event="callback.redelivery_requested")
    assert event.actor == "admin:admin"
    assert ("success", "1 callback(s) queued again.") in messages_of(response)
    assert any("no callback to redeliver" in text for _, text in messages_of(response))


def test_decisions_cannot_be_edited_or_deleted_even_by_a_superuser(admin_client, world):
    change = reverse("admin:decisions_decision_change", args=[world.pending.pk])
    delete = reverse("admin:decisions_decision_delete", args=[world.pending.pk])

    assert admin_client.post(change, {"status": "approved"}).status_code == 403
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    world.pending.refresh_from_db()
    assert world.pending.status == Status.PENDING


# --- the audit trail: read-only for everybody ---------------------------------------------


def test_the_audit_trail_is_read_only_even_for_a_superuser(admin_client, world):
    event = world.event
    change = reverse("admin:audit_auditevent_change", args=[event.pk])
    before = AuditEvent.objects.count()

    add = admin_client.post(reverse("admin:audit_auditevent_add"), {"event": "forged"})
    edit = admin_client.post(change, {"actor": "mallory@example.com"})
    delete = admin_client.post(reverse("admin:audit_auditevent_delete", args=[event.pk]), {"post": "yes"})
    bulk_delete = changelist_action(admin_client, "audit_auditevent", "delete_selected", [event], post="yes")
    page = admin_client.get(change).content.decode()
    changelist = admin_client.get(reverse("admin:audit_auditevent_changelist")).content.decode()

    assert (add.status_code, edit.status_code, delete.status_code) == (403, 403, 403)
    assert AuditEvent.objects.count() == before
    event.refresh_from_db()
    assert event.actor == "api_key:" + world.key.prefix
    assert 'name="_save"' not in page
    assert "deletelink" not in page
    assert 'value="delete_selected"' not in changelist
    assert reverse("admin:audit_auditevent_add") not in changelist
    assert bulk_delete.status_code == 200
    assert "View audit event" in page  # the superuser gets the view page, not the change form


def test_export_csv_exports_the_filtered_selection(admin_client, world, globex_key):
    decision_create(
        api_key=globex_key[0],
        spec=DecisionSpec(action="Globex payroll", stages=[{"approvers": [ALICE], "quorum": "any"}]),
    )
    url = reverse("admin:audit_auditevent_export")
    seal()

    everything = admin_rows(admin_client.get(url))
    created = admin_rows(admin_client.get(url, {"event__exact": "decision.created"}))
    acme_answers = admin_rows(
        admin_client.get(url, {"event__exact": "decision.answered", "organization__id__exact": world.acme.pk})
    )
    searched = admin_rows(admin_client.get(url, {"q": world.pending.pk, "p": "3"}))

    assert len(everything) == AuditEvent.objects.count()
    assert {r["organization"] for r in everything} == {"acme", "globex"}
    assert [r["action"] for r in created] == ["Refund order #1042", "Deploy release 4.2", "Globex payroll"]
    assert [(r["actor"], r["note"]) for r in acme_answers] == [(ALICE, "fine")]
    assert {r["decision_id"] for r in searched} == {world.pending.pk}


def test_export_action_exports_the_selected_events(admin_client, world):
    chosen = list(sealed_events().filter(decision=world.pending).order_by("seq")[:2])

    response = changelist_action(admin_client, "audit_auditevent", "export_selected", chosen)

    assert [r["hash"] for r in admin_rows(response)] == [e.hash for e in chosen]


def admin_rows(response) -> list[dict]:
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body.removeprefix(BOM), newline="")))


def test_export_needs_the_export_permission(client, world):
    viewer = User.objects.create_user("vera", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_auditevent"))
    client.force_login(viewer)

    changelist = client.get(reverse("admin:audit_auditevent_changelist")).content.decode()
    export = client.get(reverse("admin:audit_auditevent_export"))

    assert export.status_code == 403
    assert reverse("admin:audit_auditevent_export") not in changelist
    assert 'value="export_selected"' not in changelist


def test_verify_chain_says_intact_then_names_the_tampered_event(admin_client, world):
    url = reverse("admin:audit_auditevent_verify")
    intact = admin_client.get(url).content.decode()
    head = AuditCheckpoint.objects.filter(organization=world.acme).order_by("-size").first()

    # a database owner edits a note behind the application's back
    with guard_lifted(connection), connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditevent SET actor = 'mallory' WHERE id = %s", [world.event.pk])
    tampered = admin_client.get(url).content.decode()
    only_acme = admin_client.get(url, {"organization": world.acme.pk}).content.decode()

    assert f"Intact: {AuditEvent.objects.count()} events" in intact
    assert head.head_hash in intact
    assert "NOT intact: 1 problem found" in tampered
    assert (
        f"organization {world.acme.pk}, event #{world.event.seq}: content does not match its content hash"
        in tampered
    )
    assert "NOT intact" in only_acme


def test_decision_links_to_the_report_per_organization(admin_client, world):
    page = admin_client.get(reverse("admin:decisions_decision_changelist")).content.decode()

    assert reverse("admin:organizations_organization_report", args=[world.acme.pk]) in page


def test_the_admin_is_countersigns_not_djangos(admin_client, world):
    page = admin_client.get(reverse("admin:index")).content.decode()

    assert "<title>Control panel | Countersign admin</title>" in page
    assert "Django administration" not in page
