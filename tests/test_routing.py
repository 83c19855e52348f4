"""Routing: who is asked, in what order, and what policy rules decide before anyone is asked.

Named actors: Acme's agent asks; alice and bob approve, carol is the third approver or the
director of a second stage, dave the team lead. Acme's finance group is alice, bob and a
Slack user.

Quorum and stages go through decision_answer; policies and bad input go through the API
(POST /decisions), as an agent meets them; policy validation through Policy.full_clean(), as
an admin saving a rule meets it.
"""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db.models import F
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from audit.models import AuditEvent
from decisions.models import ApprovalRequest, ApproverGroup, Decision, Policy, Status
from decisions.services import decision_answer
from decisions.services.tick import fire_due
from notifications.models import Delivery
from tests.conftest import ALICE, BOB, CAROL
from tests.factories import DecisionFactory

DAVE = "dave@example.com"
SLACK_ERIN = "slack:U123ERIN"


# --- helpers ------------------------------------------------------------------------------


@pytest.fixture
def agent(acme_key):
    """Acme's API key, as decision_create expects it."""
    return acme_key[0]


@pytest.fixture
def finance(acme):
    return ApproverGroup.objects.create(organization=acme, name="finance", members=[ALICE, BOB, SLACK_ERIN])


def stage(*approvers: str, quorum="any") -> dict:
    return {"approvers": list(approvers), "quorum": quorum}


def answer(decision: Decision, address: str, choice: str = "approve") -> Decision:
    request = decision.requests.get(address=address, state=ApprovalRequest.State.PENDING)
    return decision_answer(request_id=request.pk, choice=choice, via="email")


def reload(decision: Decision) -> Decision:
    return Decision.objects.get(pk=decision.pk)


def states(decision: Decision) -> dict[str, str]:
    return dict(decision.requests.values_list("address", "state"))


def event_names(decision_id: str) -> list[str]:
    return list(
        AuditEvent.objects.filter(decision_id=decision_id).order_by("pk").values_list("event", flat=True)
    )


def assert_nothing_stored():
    assert Decision.objects.count() == 0
    assert ApprovalRequest.objects.count() == 0
    assert Delivery.objects.count() == 0
    assert AuditEvent.objects.count() == 0


def assert_invalid(response, field: str):
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert field in error["fields"], error


def minutes_between(start: str, end: str) -> float:
    return (parse_datetime(end) - parse_datetime(start)).total_seconds() / 60


# --- quorum ---------------------------------------------------------------------------------


def test_quorum_any_the_first_approval_decides(agent):
    decision = DecisionFactory(api_key=agent, stages=[stage(ALICE, BOB, CAROL)])

    answer(decision, BOB)

    decision = reload(decision)
    assert decision.status == Status.APPROVED
    assert decision.outcome["by"] == BOB
    assert states(decision) == {ALICE: "closed", BOB: "answered", CAROL: "closed"}


def test_quorum_all_waits_for_every_approver(agent):
    decision = DecisionFactory(api_key=agent, stages=[stage(ALICE, BOB, CAROL, quorum="all")])

    answer(decision, ALICE)
    answer(decision, BOB)
    assert reload(decision).status == Status.PENDING

    answer(decision, CAROL)
    decision = reload(decision)
    assert decision.status == Status.APPROVED
    assert decision.outcome["by"] == CAROL  # the approval that completed the quorum
    assert set(states(decision).values()) == {"answered"}


def test_quorum_two_of_three_resolves_at_the_second_approval(agent):
    decision = DecisionFactory(api_key=agent, stages=[stage(ALICE, BOB, CAROL, quorum=2)])

    answer(decision, CAROL)
    assert reload(decision).status == Status.PENDING

    answer(decision, ALICE)
    decision = reload(decision)
    assert decision.status == Status.APPROVED
    assert states(decision) == {ALICE: "answered", BOB: "closed", CAROL: "answered"}
    assert AuditEvent.objects.filter(decision_id=decision.pk, event="decision.resolved").count() == 1


def test_one_deny_resolves_a_two_of_three_as_denied(agent):
    decision = DecisionFactory(api_key=agent, stages=[stage(ALICE, BOB, CAROL, quorum=2)])
    answer(decision, ALICE)

    answer(decision, BOB, "deny")

    decision = reload(decision)
    assert decision.status == Status.DENIED
    assert decision.outcome["by"] == BOB
    assert states(decision)[CAROL] == "closed"


# --- stages ---------------------------------------------------------------------------------


def test_the_second_stage_is_asked_only_after_the_first_approves(agent):
    # given managers alice and bob (both), then director carol
    decision = DecisionFactory(api_key=agent, stages=[stage(ALICE, BOB, quorum="all"), stage(CAROL)])
    assert sorted(decision.requests.values_list("address", "stage")) == [(ALICE, 0), (BOB, 0)]

    # alice's approval alone does not complete the first stage
    answer(decision, ALICE)
    assert not decision.requests.filter(stage=1).exists()
    assert reload(decision).current_stage == 0

    # bob's does: carol is asked now, by email, and it is on the record
    answer(decision, BOB)
    decision = reload(decision)
    assert decision.status == Status.PENDING
    assert decision.current_stage == 1
    assert list(decision.requests.filter(stage=1).values_list("address", "level")) == [(CAROL, 0)]
    assert decision.deliveries.filter(purpose="ask", request__address=CAROL).count() == 1
    assert event_names(decision.pk)[-1] == "approver.asked"

    # the director's approval resolves it
    answer(decision, CAROL)
    decision = reload(decision)
    assert decision.status == Status.APPROVED
    assert decision.outcome["by"] == CAROL


def test_a_deny_in_the_first_stage_denies_and_the_second_is_never_asked(agent):
    decision = DecisionFactory(api_key=agent, stages=[stage(ALICE, BOB, quorum="all"), stage(CAROL)])
    answer(decision, ALICE)

    answer(decision, BOB, "deny")

    decision = reload(decision)
    assert decision.status == Status.DENIED
    assert decision.outcome["by"] == BOB
    assert not decision.requests.filter(address=CAROL).exists()
    assert not decision.deliveries.filter(request__address=CAROL).exists()


def test_a_deny_in_the_second_stage_denies(agent):
    decision = DecisionFactory(api_key=agent, stages=[stage(ALICE), stage(CAROL, DAVE, quorum="all")])
    answer(decision, ALICE)
    answer(decision, DAVE)

    answer(decision, CAROL, "deny")

    assert reload(decision).status == Status.DENIED


# --- groups ---------------------------------------------------------------------------------


def test_a_group_asks_each_member_with_the_group_named(api, finance):
    # bob is named twice (through the group and on his own): he is asked once, through the group
    response = api.post(
        "/decisions",
        {"action": "Pay invoice INV-7", "approvers": ["group:finance", BOB, CAROL]},
        format="json",
    )

    assert response.status_code == 201, response.content
    requests = response.json()["requests"]
    assert sorted((r["address"], r["channel"], r["group"]) for r in requests) == [
        (ALICE, "email", "finance"),
        (BOB, "email", "finance"),
        (CAROL, "email", None),
        (SLACK_ERIN, "slack", "finance"),
    ]
    decision = Decision.objects.get()
    assert sorted(decision.deliveries.values_list("kind", flat=True)) == ["email"] * 3 + ["slack"]
    assert AuditEvent.objects.filter(event="approver.asked").count() == 4


def test_quorum_all_over_a_group_needs_every_member(agent, finance):
    decision = DecisionFactory(api_key=agent, stages=[stage("group:finance", quorum="all")])

    answer(decision, ALICE)
    answer(decision, BOB)
    assert reload(decision).status == Status.PENDING  # erin, on Slack, has not approved yet

    answer(decision, SLACK_ERIN)
    assert reload(decision).status == Status.APPROVED


def test_an_escalation_level_can_be_a_group(agent, acme):
    ApproverGroup.objects.create(organization=acme, name="leads", members=[CAROL, DAVE])
    decision = DecisionFactory(
        api_key=agent,
        stages=[stage(ALICE)],
        escalation=[{"after_minutes": 10, "approvers": ["group:leads"]}],
        timeout_minutes=60,
        reminders=[],
    )

    # ten minutes pass with no answer (the decision's timeline moves back; nothing sleeps)
    delta = timedelta(minutes=10)
    Decision.objects.filter(pk=decision.pk).update(
        created_at=F("created_at") - delta,
        expires_at=F("expires_at") - delta,
        next_due_at=F("next_due_at") - delta,
    )
    assert fire_due() == 1

    assert sorted(decision.requests.values_list("address", "level", "group")) == [
        (ALICE, 0, ""),
        (CAROL, 1, "leads"),
        (DAVE, 1, "leads"),
    ]


# --- policies, through the API ----------------------------------------------------------------


@pytest.fixture
def policy(acme, finance):
    """Acme's policy, as in the contract's example, plus a guard against critical deletes."""
    rules = [
        Policy(
            organization=acme,
            name="no-critical-deletes",
            position=0,
            action=Policy.Action.DENY,
            conditions=[
                {"field": "urgency", "op": "eq", "value": "critical"},
                {"field": "action", "op": "contains", "value": "delete"},
            ],
        ),
        Policy(
            organization=acme,
            name="small-amounts",
            position=10,
            action=Policy.Action.APPROVE,
            conditions=[{"field": "details.amount", "op": "lt", "value": 50}],
        ),
        Policy(
            organization=acme,
            name="finance-review",
            position=20,
            action=Policy.Action.ROUTE,
            conditions=[
                {"field": "details.amount", "op": "gte", "value": 50},
                {"field": "details.amount", "op": "lte", "value": 500},
            ],
            approvers=["group:finance"],
            timeout_minutes=30,
        ),
        Policy(
            organization=acme,
            name="large-amounts",
            position=30,
            action=Policy.Action.ROUTE,
            conditions=[{"field": "details.amount", "op": "gt", "value": 500}],
            urgency="high",
            escalation=[{"after_minutes": 15, "approvers": [DAVE]}],
        ),
    ]
    for rule in rules:
        rule.full_clean()  # the rules an admin could save
        rule.save()
    return {rule.name: rule for rule in rules}


def test_an_approve_rule_approves_at_once_and_asks_nobody(api, policy):
    response = api.post(
        "/decisions",
        {
            "action": "Refund order #1042",
            "details": {"amount": 20},
            "callback_url": "https://93.184.215.14/hook",
        },
        format="json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "approved"
    assert body["policy"] == {"name": "small-amounts", "action": "approve"}
    assert body["outcome"]["by"] == "policy:small-amounts"
    assert body["outcome"]["via"] == "policy"
    assert body["outcome"]["choice"] == "approve"
    assert body["resolved_at"] is not None
    assert body["requests"] == []
    assert event_names(body["id"]) == ["decision.created", "policy.matched", "decision.resolved"]
    # the agent still gets its callback; nobody gets an email
    assert list(Delivery.objects.values_list("kind", flat=True)) == ["callback"]


def test_a_deny_rule_denies_at_once_even_with_an_approver_named(api, policy):
    response = api.post(
        "/decisions",
        {
            "action": "Delete the customer table",
            "urgency": "critical",
            "approver": ALICE,
            "details": {"amount": 20},
        },
        format="json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "denied"
    assert body["policy"] == {"name": "no-critical-deletes", "action": "deny"}
    assert (body["outcome"]["by"], body["outcome"]["via"]) == ("policy:no-critical-deletes", "policy")
    assert body["requests"] == []
    assert not Delivery.objects.exists()
    matched = AuditEvent.objects.get(event="policy.matched")
    assert (matched.actor, matched.channel) == ("policy:no-critical-deletes", "policy")
    assert '"rule":"no-critical-deletes"' in matched.payload


def test_a_route_rule_asks_the_finance_group_for_thirty_minutes(api, policy):
    response = api.post(
        "/decisions", {"action": "Refund order #1042", "details": {"amount": 120}}, format="json"
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "pending"
    assert body["policy"] == {"name": "finance-review", "action": "route"}
    assert body["stages"] == [{"approvers": ["group:finance"], "quorum": "any"}]
    assert sorted((r["address"], r["group"]) for r in body["requests"]) == [
        (ALICE, "finance"),
        (BOB, "finance"),
        (SLACK_ERIN, "finance"),
    ]
    assert minutes_between(body["created_at"], body["expires_at"]) == pytest.approx(30)
    assert event_names(body["id"])[:2] == ["decision.created", "policy.matched"]


def test_a_route_rule_raises_urgency_and_escalates_to_the_team_lead(api, policy):
    response = api.post(
        "/decisions",
        {"action": "Wire to Globex", "approver": ALICE, "details": {"amount": 2000}},
        format="json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["policy"] == {"name": "large-amounts", "action": "route"}
    assert body["urgency"] == "high"
    assert body["escalation"] == [{"after_minutes": 15.0, "approvers": [DAVE]}]
    assert [r["address"] for r in body["requests"]] == [ALICE]
    # the organization's default wait, since neither the agent nor the rule set one
    assert minutes_between(body["created_at"], body["expires_at"]) == pytest.approx(60)
    decision = Decision.objects.get()
    assert {"at": 15, "kind": "escalate", "level": 1} in decision.schedule


def test_the_first_matching_rule_by_position_wins(api, acme, policy):
    # a rule created last, matching every amount, at position 15: between the automatic
    # approval (10) and the finance review (20)
    Policy.objects.create(
        organization=acme,
        name="treasury-first",
        position=15,
        action=Policy.Action.ROUTE,
        conditions=[{"field": "details.amount", "op": "gte", "value": 0}],
        approvers=[CAROL],
    )

    routed = api.post("/decisions", {"action": "Refund", "details": {"amount": 120}}, format="json").json()
    small = api.post("/decisions", {"action": "Refund", "details": {"amount": 20}}, format="json").json()

    assert routed["policy"]["name"] == "treasury-first"
    assert [r["address"] for r in routed["requests"]] == [CAROL]
    # position 10 comes before 15: a small amount is still approved automatically
    assert small["status"] == "approved"
    assert small["policy"]["name"] == "small-amounts"


def test_a_disabled_rule_is_skipped(api, policy):
    Policy.objects.filter(name="no-critical-deletes").update(enabled=False)

    response = api.post(
        "/decisions",
        {"action": "Delete the customer table", "urgency": "critical", "details": {"amount": 20}},
        format="json",
    )

    assert response.json()["status"] == "approved"
    assert response.json()["policy"]["name"] == "small-amounts"


def test_what_the_agent_sent_is_kept_when_the_rule_does_not_override(api, policy):
    response = api.post(
        "/decisions",
        {"action": "Refund", "approver": CAROL, "timeout_minutes": 45, "details": {"amount": 120}},
        format="json",
    )

    body = response.json()
    assert response.status_code == 201, body
    # the rule matched (and says so) but carol and the 45 minutes stay
    assert body["policy"] == {"name": "finance-review", "action": "route"}
    assert [r["address"] for r in body["requests"]] == [CAROL]
    assert minutes_between(body["created_at"], body["expires_at"]) == pytest.approx(45)


def test_a_rule_fills_in_only_what_the_agent_left_out(api, policy):
    # the agent chose low urgency and its own escalation; the rule may not change them
    response = api.post(
        "/decisions",
        {
            "action": "Wire to Globex",
            "approver": ALICE,
            "urgency": "low",
            "escalation": [{"after_minutes": 5, "approvers": [BOB]}],
            "details": {"amount": 2000},
        },
        format="json",
    )

    body = response.json()
    assert body["urgency"] == "low"
    assert body["escalation"] == [{"after_minutes": 5.0, "approvers": [BOB]}]


def test_a_rules_quorum_does_not_replace_the_quorum_of_the_agents_own_stage(api, acme):
    # given a rule that asks for everyone's approval above 500, without overriding
    Policy.objects.create(
        organization=acme,
        name="large-needs-all",
        action=Policy.Action.ROUTE,
        conditions=[{"field": "details.amount", "op": "gt", "value": 500}],
        quorum="all",
    )

    # when the agent sends its own stage, with its own quorum in it
    response = api.post(
        "/decisions",
        {
            "action": "Wire to Globex",
            "stages": [{"approvers": [ALICE, BOB], "quorum": "any"}],
            "details": {"amount": 2000},
        },
        format="json",
    )

    # then that quorum was sent explicitly, and stays
    assert response.status_code == 201, response.content
    assert response.json()["stages"] == [{"approvers": [ALICE, BOB], "quorum": "any"}]


def test_an_overriding_rule_replaces_what_the_agent_sent(api, policy):
    Policy.objects.filter(name="finance-review").update(override=True)

    response = api.post(
        "/decisions",
        {"action": "Refund", "approver": CAROL, "timeout_minutes": 45, "details": {"amount": 120}},
        format="json",
    )

    body = response.json()
    assert response.status_code == 201, body
    assert sorted(r["address"] for r in body["requests"]) == [ALICE, BOB, SLACK_ERIN]
    assert minutes_between(body["created_at"], body["expires_at"]) == pytest.approx(30)
    assert '"override":true' in AuditEvent.objects.get(event="policy.matched").payload


def test_no_approvers_and_no_routing_rule_is_refused_naming_approvers(api, policy):
    # above 500 the rule sets urgency and escalation, but names nobody to ask first
    for details in ({"amount": 2000}, {}):
        response = api.post("/decisions", {"action": "Wire to Globex", "details": details}, format="json")
        assert_invalid(response, "approvers")
    assert_nothing_stored()


def test_without_any_policy_a_decision_without_approvers_is_refused(api):
    response = api.post("/decisions", {"action": "Wire to Globex"}, format="json")

    assert_invalid(response, "approvers")
    assert_nothing_stored()


def test_a_decision_no_rule_matches_has_no_policy(api, policy):
    response = api.post(
        "/decisions", {"action": "Refund", "approver": ALICE, "details": {"amount": "120"}}, format="json"
    )

    # "120" is a string: it is not compared with numbers, so no amount rule matches it
    body = response.json()
    assert body["policy"] is None
    assert body["status"] == "pending"
    assert "policy.matched" not in event_names(body["id"])


# --- policy validation (admin) ------------------------------------------------------------------


def rule(acme, **fields) -> Policy:
    fields.setdefault("action", Policy.Action.ROUTE)
    fields.setdefault("conditions", [{"field": "details.amount", "op": "gt", "value": 500}])
    if fields["action"] == Policy.Action.ROUTE and "stages" not in fields:
        fields.setdefault("approvers", [ALICE])
    return Policy(organization=acme, name="rule", **fields)


LEVELS_OUT_OF_ORDER = [
    {"after_minutes": 20, "approvers": [BOB]},
    {"after_minutes": 10, "approvers": [CAROL]},
]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        pytest.param(
            {"conditions": [{"field": "details.amount", "op": "between", "value": [1, 2]}]},
            "conditions",
            id="unknown-operator",
        ),
        pytest.param(
            {"conditions": [{"field": "amount", "op": "lt", "value": 50}]}, "conditions", id="unknown-field"
        ),
        pytest.param(
            {"conditions": [{"field": "details.currency", "op": "in", "value": "EUR"}]},
            "conditions",
            id="in-without-a-list",
        ),
        pytest.param(
            {"conditions": [{"field": "urgency", "op": "gt", "value": "extreme"}]},
            "conditions",
            id="urgency-extreme",
        ),
        pytest.param(
            {"conditions": [{"field": "action", "op": "eq", "value": "x", "code": "os.system()"}]},
            "conditions",
            id="extra-condition-key",
        ),
        pytest.param({"conditions": {"field": "action"}}, "conditions", id="conditions-not-a-list"),
        pytest.param(
            {"action": Policy.Action.APPROVE, "approvers": [ALICE]}, "action", id="approve-with-approvers"
        ),
        pytest.param({"action": Policy.Action.DENY, "urgency": "high"}, "action", id="deny-with-urgency"),
        pytest.param({"escalation": LEVELS_OUT_OF_ORDER}, "escalation", id="escalation-out-of-order"),
        pytest.param({"timeout_minutes": 0}, "timeout_minutes", id="timeout-0"),
        pytest.param({"timeout_minutes": -5}, "timeout_minutes", id="timeout-negative"),
        pytest.param({"approvers": ["group:nobody"]}, "approvers", id="unknown-group"),
        pytest.param(
            {"escalation": [{"after_minutes": 10, "approvers": ["group:nobody"]}]},
            "approvers",
            id="unknown-group-in-escalation",
        ),
        pytest.param(
            {"approvers": [ALICE], "stages": [{"approvers": [BOB], "quorum": "any"}]},
            "stages",
            id="approvers-and-stages",
        ),
        pytest.param(
            {"stages": [{"approvers": [], "quorum": "any"}]}, "stages", id="stage-with-no-approvers"
        ),
        pytest.param({"approvers": ["not an address"]}, "approvers", id="bad-address"),
        pytest.param({"quorum": 0}, "quorum", id="quorum-0"),
        # the checks an agent's request gets must hold for a rule too: a broken rule would
        # otherwise turn every matching request into a 400 the agent cannot fix
        pytest.param({"approvers": [ALICE, BOB], "quorum": 3}, "quorum", id="quorum-larger-than-approvers"),
        pytest.param({"approvers": ["group:finance"], "quorum": 4}, "quorum", id="quorum-larger-than-group"),
        pytest.param(
            {"stages": [{"approvers": [ALICE], "quorum": 2}]},
            "stages",
            id="stage-quorum-larger-than-approvers",
        ),
        pytest.param(
            {"timeout_minutes": 30, "escalation": [{"after_minutes": 30, "approvers": [BOB]}]},
            "escalation",
            id="escalation-at-the-timeout",
        ),
        pytest.param(
            {"timeout_minutes": 30, "escalation": [{"after_minutes": 45, "approvers": [BOB]}]},
            "escalation",
            id="escalation-beyond-the-timeout",
        ),
    ],
)
def test_an_invalid_rule_is_refused_naming_the_field(acme, finance, fields, field):
    with pytest.raises(ValidationError) as raised:
        rule(acme, **fields).full_clean()

    assert field in raised.value.message_dict, raised.value.message_dict
    assert not Policy.objects.exists()


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param(
            {"approvers": ["group:finance"], "timeout_minutes": 30, "quorum": 2}, id="route-to-group"
        ),
        pytest.param(
            {"urgency": "high", "escalation": [{"after_minutes": 15, "approvers": [DAVE]}], "approvers": []},
            id="urgency-and-escalation",
        ),
        pytest.param(
            {
                "stages": [
                    {"approvers": [ALICE, BOB], "quorum": "all"},
                    {"approvers": ["group:finance"], "quorum": 2},
                ]
            },
            id="two-stages",
        ),
        pytest.param({"action": Policy.Action.APPROVE, "approvers": []}, id="approve"),
        pytest.param(
            {
                "action": Policy.Action.DENY,
                "approvers": [],
                "conditions": [
                    {"field": "urgency", "op": "gte", "value": "high"},
                    {"field": "details.customer.country", "op": "in", "value": ["KP", "IR"]},
                    {"field": "details.po_number", "op": "exists", "value": False},
                ],
            },
            id="deny-on-nested-details",
        ),
        pytest.param({"conditions": [], "approvers": [CAROL]}, id="always"),
    ],
)
def test_a_valid_rule_passes(acme, finance, fields):
    rule(acme, **fields).full_clean()


# --- bad input through the API ----------------------------------------------------------------


@pytest.fixture
def two_person_finance(acme):
    return ApproverGroup.objects.create(organization=acme, name="finance", members=[ALICE, BOB])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param(
            {"approver": ALICE, "escalation": LEVELS_OUT_OF_ORDER}, "escalation", id="escalation-out-of-order"
        ),
        pytest.param(
            {
                "approver": ALICE,
                "timeout_minutes": 30,
                "escalation": [{"after_minutes": 30, "approvers": [BOB]}],
            },
            "escalation[0].after_minutes",
            id="escalation-at-the-timeout",
        ),
        pytest.param(
            {
                "approver": ALICE,
                "timeout_minutes": 30,
                "escalation": [
                    {"after_minutes": 10, "approvers": [BOB]},
                    {"after_minutes": 40, "approvers": [CAROL]},
                ],
            },
            "escalation[1].after_minutes",
            id="second-escalation-level-beyond-the-timeout",
        ),
        pytest.param(
            {"stages": [{"approvers": [], "quorum": "any"}]}, "stages", id="stage-with-zero-approvers"
        ),
        pytest.param(
            {"stages": [{"approvers": [ALICE], "quorum": "any"}, {"approvers": []}]},
            "stages",
            id="second-stage-with-zero-approvers",
        ),
        pytest.param({"approvers": [ALICE, BOB], "quorum": 3}, "quorum", id="quorum-3-of-2"),
        pytest.param({"approvers": ["group:finance"], "quorum": 3}, "quorum", id="quorum-3-of-a-group-of-2"),
        pytest.param(
            {"stages": [{"approvers": [ALICE]}, {"approvers": ["group:finance"], "quorum": 3}]},
            "stages[1].quorum",
            id="stage-quorum-3-of-a-group-of-2",
        ),
        pytest.param({"approvers": [ALICE, "group:nobody"]}, "approvers", id="unknown-group"),
        pytest.param(
            {"approver": ALICE, "escalation": [{"after_minutes": 5, "approvers": ["group:nobody"]}]},
            "escalation[0].approvers",
            id="unknown-group-in-escalation",
        ),
        pytest.param(
            {"approver": ALICE, "timeout_minutes": 30, "reminders": [30]},
            "reminders",
            id="reminder-at-timeout",
        ),
        pytest.param(
            {"approver": ALICE, "timeout_minutes": 30, "reminders": [10, 45]},
            "reminders",
            id="reminder-after-timeout",
        ),
        pytest.param(
            {"approver": ALICE, "reminders": [90]}, "reminders", id="reminder-after-default-timeout"
        ),
        pytest.param({"approver": ALICE, "reminders": [0]}, "reminders", id="reminder-at-0"),
        pytest.param({"approver": ALICE, "reminders": [-5, 10]}, "reminders", id="reminder-negative"),
        pytest.param({"approver": ALICE, "reminders": ["10"]}, "reminders", id="reminder-string"),
        pytest.param({"approver": ALICE, "reminders": 10}, "reminders", id="reminders-not-a-list"),
        pytest.param({"approver": ALICE, "escalation_repeat": 11}, "escalation_repeat", id="repeat-11"),
        pytest.param({"approver": ALICE, "escalation_repeat": -1}, "escalation_repeat", id="repeat-negative"),
        pytest.param(
            {"approver": ALICE, "escalation_repeat": 1.5}, "escalation_repeat", id="repeat-fraction"
        ),
        pytest.param({"approver": ALICE, "on_timeout": "escalate"}, "on_timeout", id="on-timeout-unknown"),
    ],
)
def test_bad_routing_is_refused_naming_the_field_and_stores_nothing(api, two_person_finance, body, field):
    response = api.post("/decisions", {"action": "Refund order #1042", **body}, format="json")

    assert_invalid(response, field)
    assert_nothing_stored()


def test_routing_at_the_limits_is_accepted(api, two_person_finance):
    # the boundaries next to the refused cases: just before the timeout, the whole group, 10 repeats
    response = api.post(
        "/decisions",
        {
            "action": "Refund order #1042",
            "approvers": ["group:finance"],
            "quorum": 2,
            "timeout_minutes": 30,
            "escalation": [{"after_minutes": 29.5, "approvers": [CAROL]}],
            "reminders": [29.9],
            "escalation_repeat": 10,
        },
        format="json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["reminders"] == [29.9]
    assert body["escalation_repeat"] == 10
    decision = Decision.objects.get()
    # every step lies strictly inside the wait
    assert all(0 < step["at"] < 30 for step in decision.schedule)
    assert decision.next_due_at <= decision.expires_at
    assert decision.expires_at > timezone.now()
