"""'Which rule would match this decision?': the admin tries the rules as a create would, says
which one matches and why, and creates nothing."""

import json

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from audit.models import AuditEvent
from decisions.models import ApproverGroup, Decision, Policy
from decisions.services import DecisionSpec, decision_create
from notifications.models import Delivery
from tests.conftest import ALICE, BOB, CAROL

pytestmark = pytest.mark.django_db

URL = "admin:decisions_policy_preview"


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def rules(acme):
    """Acme's rules: small refunds approve themselves, big ones go to finance (all of them)."""
    ApproverGroup.objects.create(organization=acme, name="finance", members=[ALICE, BOB])
    Policy.objects.create(
        organization=acme,
        name="small-refunds",
        position=1,
        action="approve",
        conditions=[{"field": "details.amount", "op": "lt", "value": 50}],
    )
    Policy.objects.create(
        organization=acme,
        name="big-refunds",
        position=2,
        action="route",
        conditions=[
            {"field": "details.amount", "op": "gte", "value": 500},
            {"field": "action", "op": "contains", "value": "refund"},
        ],
        approvers=["group:finance"],
        quorum="all",
        timeout_minutes=120,
        escalation=[{"after_minutes": 30, "approvers": [CAROL]}],
    )
    Policy.objects.create(organization=acme, name="everything-else", position=3, action="deny")
    return acme


def preview(client, organization, **fields):
    return client.get(reverse(URL), {"organization": organization.pk, "urgency": "normal", **fields})


def test_the_preview_names_the_matching_rule_and_why(admin_client, rules):
    response = preview(admin_client, rules, action="Refund order #1042", details='{"amount": 900}')

    page = response.content.decode()
    assert response.status_code == 200
    assert "Rule “big-refunds” matches" in page
    # small-refunds was tried first, and why it did not match
    assert "✗ details.amount is less than 50" in page
    assert "✓ details.amount is at least 500" in page
    assert "✓ action contains (any case) &quot;refund&quot;" in page
    # the routing the create would apply
    assert "group:finance (quorum: all)" in page
    assert f"{ALICE} by email (group:finance), {BOB} by email (group:finance)" in page
    assert "120 minutes" in page
    assert f"after 30 min: {CAROL}" in page
    assert "1 later rule not tried" in page


def test_the_preview_creates_nothing(admin_client, rules):
    counts = (Decision.objects.count(), AuditEvent.objects.count(), Delivery.objects.count())

    preview(admin_client, rules, action="Refund order #1042", details='{"amount": 900}')

    assert (Decision.objects.count(), AuditEvent.objects.count(), Delivery.objects.count()) == counts


def test_the_preview_agrees_with_the_create(admin_client, rules, acme_key):
    for details, action in [('{"amount": 10}', "Refund"), ('{"amount": 900}', "Refund"), ("{}", "Deploy")]:
        page = preview(admin_client, rules, action=action, details=details).content.decode()
        decision, _ = decision_create(
            api_key=acme_key[0], spec=DecisionSpec(action=action, details=json.loads(details))
        )
        assert f"Rule “{decision.policy['name']}” matches" in page


def test_a_rule_that_decides_at_once_says_so(admin_client, rules):
    page = preview(admin_client, rules, action="Refund", details='{"amount": 10}').content.decode()

    assert "Rule “small-refunds” matches" in page
    assert "would be approved at once, by policy:small-refunds; nobody is asked" in page
    assert "2 later rules not tried" in page


def test_no_rule_and_no_approvers_is_what_the_api_would_refuse(admin_client, acme):
    page = preview(admin_client, acme, action="Deploy").content.decode()

    assert "No rule matches" in page
    assert "This organization has no enabled rules." in page
    assert "The API would refuse it (400): Nobody to ask" in page


def test_the_agents_own_approvers_are_kept_and_the_rule_fills_in_the_rest(admin_client, rules):
    page = preview(
        admin_client, rules, action="Refund", details='{"amount": 900}', approvers=CAROL
    ).content.decode()

    assert "Rule “big-refunds” matches" in page
    # carol, as the agent asked; the rule fills in only the quorum the agent left out
    assert f"{CAROL} (quorum: all)" in page
    assert f"{CAROL} by email</td>" in page


@pytest.mark.parametrize(
    ("details", "message"),
    [("{amount: 1}", "Details are not valid JSON"), ("[1]", "Details are a JSON object")],
)
def test_bad_details_are_named(admin_client, rules, details, message):
    response = preview(admin_client, rules, action="Refund", details=details)

    assert response.status_code == 200
    assert message in response.content.decode()
    assert "preview-result" not in response.content.decode()


def test_the_policy_list_links_to_the_preview(admin_client, rules):
    page = admin_client.get(reverse("admin:decisions_policy_changelist")).content.decode()

    assert reverse(URL) in page


def test_the_preview_needs_permission_to_view_policies(client, rules):
    client.force_login(User.objects.create_user("vera", password="x", is_staff=True))

    assert client.get(reverse(URL)).status_code == 403
