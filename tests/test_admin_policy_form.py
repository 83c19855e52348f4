"""The policy and approver-group forms of the admin: rows and lines, not raw JSON.

What an admin types becomes exactly the JSON the policy engine reads; mistakes come back with
a message that names the row and the problem, never Django's "Enter a valid JSON"."""

from html.parser import HTMLParser

import pytest
from django.urls import reverse
from django.utils.datastructures import MultiValueDict

from decisions.models import ApproverGroup, Policy
from decisions.services import DecisionSpec, decision_create
from organizations.management.commands.dev_setup import DEMO_POLICIES
from tests.conftest import ALICE, BOB, CAROL

pytestmark = pytest.mark.django_db

DAVE = "dave@example.com"


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def finance(acme):
    return ApproverGroup.objects.create(organization=acme, name="finance", members=[ALICE, BOB])


def big_refunds(acme, **fields) -> dict:
    """The form as an admin fills it in: EUR refunds of 500 or more go to finance, all of them."""
    return {
        "organization": acme.pk,
        "name": "big-refunds",
        "position": 1,
        "enabled": "on",
        "conditions-field": ["details.amount", "details.currency", "action", ""],
        "conditions-op": ["gte", "in", "contains", ""],
        "conditions-value": ["500", "EUR, USD", "refund", ""],
        "action": "route",
        "approvers": "group:finance\n",
        "quorum": "all",
        "timeout_minutes": "120",
        "urgency": "high",
        "escalation-after_minutes": ["30", ""],
        "escalation-approvers": [f"{CAROL}\n{DAVE}", ""],
        **fields,
    }


BIG_REFUNDS_JSON = {
    "conditions": [
        {"field": "details.amount", "op": "gte", "value": 500},
        {"field": "details.currency", "op": "in", "value": ["EUR", "USD"]},
        {"field": "action", "op": "contains", "value": "refund"},
    ],
    "approvers": ["group:finance"],
    "quorum": "all",
    "stages": [],
    "timeout_minutes": 120.0,
    "urgency": "high",
    "escalation": [{"after_minutes": 30, "approvers": [CAROL, DAVE]}],
}


def test_the_rows_are_saved_as_the_json_the_engine_reads(admin_client, acme, finance):
    response = admin_client.post(reverse("admin:decisions_policy_add"), big_refunds(acme))

    assert response.status_code == 302, response.content.decode()[-3000:]
    policy = Policy.objects.get(name="big-refunds")
    saved = {field: getattr(policy, field) for field in BIG_REFUNDS_JSON}
    assert saved == BIG_REFUNDS_JSON


def test_a_policy_saved_through_the_form_routes_like_the_same_json_saved_directly(
    admin_client, acme_key, globex_key, finance
):
    # given the same rule for Acme through the admin form, and for Globex straight into the table
    globex = globex_key[0].organization
    ApproverGroup.objects.create(organization=globex, name="finance", members=[ALICE, BOB])
    Policy.objects.create(organization=globex, name="big-refunds", action="route", **BIG_REFUNDS_JSON)
    response = admin_client.post(reverse("admin:decisions_policy_add"), big_refunds(acme_key[0].organization))
    assert response.status_code == 302

    # when each organization's agent asks about the same refund
    ask = {"action": "Big refund", "details": {"amount": 900, "currency": "EUR"}}
    via_form, _ = decision_create(api_key=acme_key[0], spec=DecisionSpec(**ask))
    direct, _ = decision_create(api_key=globex_key[0], spec=DecisionSpec(**ask))

    # then both are routed alike, by their big-refunds rule
    def routing(decision):
        asked = sorted(decision.requests.values_list("address", "group"))
        return (
            decision.policy,
            decision.stages,
            decision.urgency,
            decision.escalation,
            decision.expires_at - decision.created_at,
            asked,
        )

    assert routing(via_form) == routing(direct)
    assert via_form.policy == {"name": "big-refunds", "action": "route"}
    assert via_form.stages == [{"approvers": ["group:finance"], "quorum": "all"}]


def test_stages_are_rows_of_approvers_and_a_quorum(admin_client, acme, finance):
    form = big_refunds(
        acme,
        approvers="",
        quorum="",
        **{
            "stages-approvers": ["group:finance", f"{CAROL}\n{DAVE}", ""],
            "stages-quorum": ["", "2", ""],
        },
    )

    response = admin_client.post(reverse("admin:decisions_policy_add"), form)

    assert response.status_code == 302, response.content.decode()[-3000:]
    assert Policy.objects.get(name="big-refunds").stages == [
        {"approvers": ["group:finance"], "quorum": "any"},
        {"approvers": [CAROL, DAVE], "quorum": 2},
    ]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"quorum": "most"}, "Quorum &#x27;most&#x27;: use any, all or a whole number"),
        (
            {"approvers": "group:finance\nnot-an-address"},
            "&#x27;not-an-address&#x27; is not an email address",
        ),
        (
            {"conditions-field": ["details.amount"], "conditions-op": [""], "conditions-value": ["5"]},
            "Condition 1: choose an operator.",
        ),
        (
            {"conditions-field": ["amount"], "conditions-op": ["lt"], "conditions-value": ["5"]},
            "Condition 1: Unknown field &#x27;amount&#x27;: use action, urgency or details.&lt;key&gt;.",
        ),
        (
            {"conditions-field": ["urgency"], "conditions-op": ["gte"], "conditions-value": ["urgent"]},
            "Condition 1: Compare urgency with one of low, normal, high, critical.",
        ),
        (
            {"escalation-after_minutes": ["soon"], "escalation-approvers": [CAROL]},
            "Escalation level 1: &#x27;soon&#x27; is not a number of minutes.",
        ),
        (
            {"escalation-after_minutes": ["150"], "escalation-approvers": [CAROL]},
            "A level at 150 minutes is not before timeout_minutes (120).",
        ),
        ({"conditions": "[{"}, "Not valid JSON. Fill in the rows instead"),
    ],
    ids=[
        "quorum",
        "address",
        "no-operator",
        "field",
        "urgency-rank",
        "minutes",
        "escalation-after-timeout",
        "raw-json",
    ],
)
def test_a_mistake_is_named_not_enter_a_valid_json(admin_client, acme, finance, fields, message):
    form = big_refunds(acme, **fields)
    if "conditions" in fields:
        for key in ("conditions-field", "conditions-op", "conditions-value"):
            form.pop(key)

    response = admin_client.post(reverse("admin:decisions_policy_add"), form)

    page = response.content.decode()
    assert response.status_code == 200
    assert message in page
    assert "Enter a valid JSON" not in page
    assert not Policy.objects.filter(name="big-refunds").exists()


def test_a_refused_form_keeps_what_was_typed(admin_client, acme, finance):
    response = admin_client.post(reverse("admin:decisions_policy_add"), big_refunds(acme, quorum="most"))

    page = response.content.decode()
    assert 'name="conditions-value" value="EUR, USD"' in page
    assert f"{CAROL}\n{DAVE}</textarea>" in page


def test_the_change_page_shows_stored_values_so_that_saving_again_changes_nothing(
    admin_client, acme, finance
):
    # a value of text that reads like a number is shown quoted: saved again, it stays text
    policy = Policy.objects.create(
        organization=acme,
        name="odd-values",
        action="route",
        conditions=[
            {"field": "details.code", "op": "eq", "value": "500"},
            {"field": "details.flag", "op": "exists", "value": False},
            {"field": "details.tags", "op": "in", "value": ["a,b", "c"]},
        ],
        approvers=["group:finance"],
    )
    url = reverse("admin:decisions_policy_change", args=[policy.pk])
    page = admin_client.get(url).content.decode()
    assert 'name="conditions-value" value="&quot;500&quot;"' in page
    assert 'name="conditions-value" value="false"' in page
    assert 'name="conditions-value" value="[&quot;a,b&quot;, &quot;c&quot;]"' in page

    response = admin_client.post(
        url,
        {
            "organization": acme.pk,
            "name": "odd-values",
            "position": 0,
            "enabled": "on",
            "conditions-field": ["details.code", "details.flag", "details.tags", ""],
            "conditions-op": ["eq", "exists", "in", ""],
            "conditions-value": ['"500"', "false", '["a,b", "c"]', ""],
            "action": "route",
            "approvers": "group:finance",
        },
    )

    assert response.status_code == 302
    before = policy.conditions
    policy.refresh_from_db()
    assert policy.conditions == before


def test_approver_group_members_one_per_line(admin_client, acme):
    url = reverse("admin:decisions_approvergroup_add")

    refused = admin_client.post(
        url, {"organization": acme.pk, "name": "ops", "members": "ops@\nslack:U123ABC"}
    )
    accepted = admin_client.post(
        url, {"organization": acme.pk, "name": "ops", "members": "ops@example.com\n\nslack:U123ABC\n"}
    )

    assert refused.status_code == 200
    assert "&#x27;ops@&#x27; is not an email address" in refused.content.decode()
    assert accepted.status_code == 302
    assert ApproverGroup.objects.get(name="ops").members == ["ops@example.com", "slack:U123ABC"]
    change = admin_client.get(
        reverse("admin:decisions_approvergroup_change", args=[ApproverGroup.objects.get(name="ops").pk])
    )
    assert "ops@example.com\nslack:U123ABC</textarea>" in change.content.decode()


def test_the_empty_form_offers_a_blank_row_and_suggestions(admin_client, acme):
    page = admin_client.get(reverse("admin:decisions_policy_add")).content.decode()

    # one blank row per editor, so the form works without JavaScript
    assert page.count('name="conditions-field"') == 1
    assert page.count('name="stages-approvers"') == 1
    assert page.count('name="escalation-after_minutes"') == 1
    # the operators by name, and suggestions for fields and quorums, each list once
    assert '<option value="gte">is at least (gte)</option>' in page
    assert page.count('<datalist id="conditions-field-choices">') == 1
    assert 'list="conditions-value-choices"' not in page  # values are the admin's own
    assert '<option value="details.amount">' in page
    assert (
        page.count('<datalist id="quorum-choices"><option value="any"><option value="all"></datalist>') == 1
    )
    assert page.count('<datalist id="stages-quorum-choices">') == 1
    assert "decisions/admin_rows.js" in page


class FormFields(HTMLParser):
    """What a browser would post for the page's main form, as it was rendered: inputs,
    checked checkboxes, textareas and the selected option of each select."""

    def __init__(self):
        super().__init__()
        self.data = MultiValueDict()
        self._textarea = self._select = None
        self._selected = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        name = attrs.get("name")
        if tag == "input" and name and attrs.get("type") not in ("submit", "button"):
            if attrs.get("type") != "checkbox" or "checked" in attrs:
                self.data.appendlist(
                    name, attrs.get("value", "on" if attrs.get("type") == "checkbox" else "")
                )
        elif tag == "textarea" and name:
            self._textarea, self._text = name, ""
        elif tag == "select" and name:
            self._select, self._selected = name, None
        elif tag == "option" and self._select and ("selected" in attrs or self._selected is None):
            self._selected = attrs.get("value", "")

    def handle_data(self, data):
        if self._textarea:
            self._text += data

    def handle_endtag(self, tag):
        if tag == "textarea" and self._textarea:
            # a browser drops the one newline that follows <textarea>
            self.data.appendlist(self._textarea, self._text.removeprefix("\n"))
            self._textarea = None
        elif tag == "select" and self._select:
            self.data.appendlist(self._select, self._selected or "")
            self._select = None


MULTI_STAGE = {
    "name": "two-stages",
    "conditions": [
        {"field": "urgency", "op": "gte", "value": "high"},
        {"field": "details.env", "op": "in", "value": ["prod", "staging"]},
        {"field": "details.code", "op": "eq", "value": "007"},
        {"field": "details.zip", "op": "ne", "value": "500"},
        {"field": "details.ratio", "op": "lt", "value": 0.5},
        {"field": "details.flag", "op": "exists", "value": True},
    ],
    "action": Policy.Action.ROUTE,
    "stages": [
        {"approvers": ["group:finance"], "quorum": "all"},
        {"approvers": [CAROL, DAVE], "quorum": 2},
    ],
    "timeout_minutes": 90.5,
    "escalation": [{"after_minutes": 7.5, "approvers": ["slack:#ops"]}],
    "override": True,
}


@pytest.mark.parametrize("rule", [*DEMO_POLICIES, MULTI_STAGE], ids=lambda rule: rule["name"])
def test_saving_a_rule_as_its_page_shows_it_changes_nothing(admin_client, acme, finance, rule):
    # given a rule written straight into the table (as dev_setup and older admins did)
    policy = Policy.objects.create(organization=acme, position=3, **rule)
    url = reverse("admin:decisions_policy_change", args=[policy.pk])
    before = {field.name: getattr(policy, field.name) for field in Policy._meta.fields}

    # when the admin opens its page and saves it untouched
    parser = FormFields()
    parser.feed(admin_client.get(url).content.decode())
    response = admin_client.post(url, {name: parser.data.getlist(name) for name in parser.data})

    # then it is stored exactly as it was
    assert response.status_code == 302, response.content.decode()[-2000:]
    policy.refresh_from_db()
    assert {field.name: getattr(policy, field.name) for field in Policy._meta.fields} == before
