"""What an interrupt value asks, and the resume value each outcome maps back to (the table in
the SDK README). Asked through the fake service, so each decision is what the API returns."""

import pytest
from countersign.langgraph import shape_of
from fake_service import ALICE

SEND_EMAIL_ARGS = {"to": "bob@example.com", "subject": "Invoice", "body": "Attached."}


def human_interrupt(**config) -> dict:
    allowed = {"allow_accept": False, "allow_edit": False, "allow_respond": False, "allow_ignore": False}
    return {
        "action_request": {"action": "send_email", "args": SEND_EMAIL_ARGS},
        "config": allowed | config,
        "description": "The agent wants to send this email.",
    }


def hitl_request(*allowed_decisions: str) -> dict:
    return {
        "action_requests": [
            {"name": "send_email", "args": SEND_EMAIL_ARGS, "description": "Review the email"}
        ],
        "review_configs": [{"action_name": "send_email", "allowed_decisions": list(allowed_decisions)}],
    }


@pytest.fixture
def answered(client, service):
    """answered(value, status, **how) → the resume value for `value` after alice's answer."""

    def answer(value, status, response_schema=None, **how):
        shape = shape_of(value, response_schema)
        decisions = []
        for ask in shape.asks():
            decision = client.create(ask.pop("action"), approver=ALICE, **ask)
            service.answer(decision.id, status, **how)
            decisions.append(client.get(decision.id))
        return shape.resume_value(decisions)

    return answer


# --- what is asked -------------------------------------------------------------------------


def test_a_string_is_a_question_answered_in_words():
    (ask,) = shape_of("Which warehouse ships order #1042: Leeds or Lyon?").asks()

    assert ask == {
        "action": "Which warehouse ships order #1042: Leeds or Lyon?",
        "context": "",
        "response": "text",
    }


def test_a_long_question_is_cut_for_the_subject_and_kept_whole_in_the_context():
    question = "Why? " * 200

    (ask,) = shape_of(question).asks()

    assert len(ask["action"]) == 500
    assert ask["context"] == question.strip()


def test_a_countersign_request_is_asked_as_it_is():
    request = {
        "action": "Refund $120",
        "details": {"amount": 120},
        "options": ["approve", "deny", "escalate"],
    }

    assert shape_of(request).asks() == [request]


def test_human_interrupt_buttons_follow_its_config():
    (ask,) = shape_of(
        human_interrupt(allow_accept=True, allow_edit=True, allow_respond=True, allow_ignore=True)
    ).asks()

    assert ask["options"] == ["approve", "respond", "ignore"]
    assert ask["allow_edit"] is True
    assert ask["details"] == SEND_EMAIL_ARGS
    assert ask["action"] == "send_email"
    assert ask["context"].startswith("The agent wants to send this email.")


def test_a_human_interrupt_that_only_allows_a_response_is_a_question():
    (ask,) = shape_of(human_interrupt(allow_respond=True)).asks()

    assert ask["response"] == "text"
    assert "options" not in ask


def test_hitl_request_asks_one_decision_per_action_with_its_allowed_decisions():
    request = hitl_request("approve", "reject")
    request["action_requests"].append({"name": "delete_file", "args": {"path": "reports/old.csv"}})

    first, second = shape_of(request).asks()

    assert first["action"] == "Run send_email"
    assert first["options"] == ["approve", "deny"]
    assert "allow_edit" not in first
    assert second["details"] == {"path": "reports/old.csv"}
    assert second["options"] == ["approve", "deny"]  # no review config: approve, edit, reject
    assert second["allow_edit"] is True


def test_any_other_value_is_shown_as_details():
    (ask,) = shape_of({"refund": 120, "order": 1042}).asks()

    assert ask == {"action": "Review the agent's request", "details": {"refund": 120, "order": 1042}}


# --- what the graph gets back ---------------------------------------------------------------


def test_the_answer_to_a_question_is_the_text(answered):
    assert answered("Leeds or Lyon?", "responded", text="Lyon, it is closer") == "Lyon, it is closer"


def test_an_unanswered_question_resumes_with_none(answered):
    assert answered("Leeds or Lyon?", "expired", by="system", via="timeout") is None


def test_a_countersign_request_resumes_with_the_outcome(answered):
    value = answered({"action": "Refund $120", "details": {"amount": 120}}, "approved", note="ok")

    assert value["approved"] is True
    assert value["status"] == "approved"
    assert value["by"] == ALICE
    assert value["note"] == "ok"
    assert value["details"] == {"amount": 120}
    assert value["edited"] is False


@pytest.mark.parametrize(
    ("config", "status", "how", "expected"),
    [
        ({"allow_accept": True}, "approved", {}, {"type": "accept", "args": None}),
        (
            {"allow_accept": True, "allow_edit": True},
            "approved",
            {"details": SEND_EMAIL_ARGS | {"subject": "Invoice #7"}},
            {
                "type": "edit",
                "args": {"action": "send_email", "args": SEND_EMAIL_ARGS | {"subject": "Invoice #7"}},
            },
        ),
        (
            {"allow_accept": True, "allow_respond": True},
            "responded",
            {"choice": "respond", "note": "Say it is overdue"},
            {"type": "response", "args": "Say it is overdue"},
        ),
        (
            {"allow_respond": True},
            "responded",
            {"text": "Send it Monday"},
            {"type": "response", "args": "Send it Monday"},
        ),
        (
            {"allow_accept": True, "allow_ignore": True},
            "responded",
            {"choice": "ignore"},
            {"type": "ignore", "args": None},
        ),
        (
            {"allow_accept": True, "allow_ignore": True},
            "expired",
            {"by": "system"},
            {"type": "ignore", "args": None},
        ),
        (
            {"allow_accept": True, "allow_respond": True},
            "denied",
            {"note": "Not to this customer"},
            {"type": "response", "args": "Not to this customer"},
        ),
    ],
    ids=["accept", "edit", "respond-button", "respond-in-words", "ignore", "expired", "denied-by-rule"],
)
def test_a_human_interrupt_resumes_with_a_human_response(answered, config, status, how, expected):
    assert answered(human_interrupt(**config), status, **how) == expected


def test_a_list_of_human_interrupts_resumes_with_a_list(answered):
    value = answered([human_interrupt(allow_accept=True), human_interrupt(allow_accept=True)], "approved")

    assert value == [{"type": "accept", "args": None}, {"type": "accept", "args": None}]


@pytest.mark.parametrize(
    ("allowed", "status", "how", "expected"),
    [
        (("approve", "reject"), "approved", {}, {"type": "approve"}),
        (
            ("approve", "edit", "reject"),
            "approved",
            {"details": SEND_EMAIL_ARGS | {"to": "carol@example.com"}},
            {
                "type": "edit",
                "edited_action": {
                    "name": "send_email",
                    "args": SEND_EMAIL_ARGS | {"to": "carol@example.com"},
                },
            },
        ),
        (
            ("approve", "reject"),
            "denied",
            {"note": "wrong customer"},
            {"type": "reject", "message": "wrong customer"},
        ),
        (("approve", "reject"), "denied", {}, {"type": "reject"}),
        (
            ("approve", "reject"),
            "expired",
            {"by": "system"},
            {"type": "reject", "message": "Nobody answered before the deadline."},
        ),
        (
            ("approve", "respond"),
            "responded",
            {"choice": "respond", "note": "Ask for a PO number"},
            {"type": "respond", "message": "Ask for a PO number"},
        ),
    ],
    ids=["approve", "edit", "reject-with-note", "reject", "expired", "respond"],
)
def test_a_hitl_request_resumes_with_hitl_decisions(answered, allowed, status, how, expected):
    assert answered(hitl_request(*allowed), status, **how) == {"decisions": [expected]}


def test_a_per_call_tool_approval_reads_the_allowed_decisions_from_its_schema(answered):
    request = {
        "type": "tool_approval",
        "tool_call_id": "call_1",
        "name": "send_email",
        "args": SEND_EMAIL_ARGS,
        "description": "Review",
    }
    schema = {
        "oneOf": [
            {"properties": {"type": {"const": "approve"}}},
            {"properties": {"type": {"const": "reject"}, "message": {"type": "string"}}},
        ]
    }

    (ask,) = shape_of(request, schema).asks()
    value = answered(request, "denied", response_schema=schema, note="no")

    assert ask["options"] == ["approve", "deny"]
    assert "allow_edit" not in ask
    assert value == {"type": "reject", "message": "no"}
