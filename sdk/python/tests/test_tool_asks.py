"""Per-tool decision fields (HITLBridge and ApprovalRunner's `tools=`): how a tool call's
action line is written, and which fields a tool may not set."""

import pytest
from countersign._tool_asks import check_tools, with_tool_fields

ASK = {"action": "Run issue_refund", "context": "Refund requested", "details": {"order": 1042, "amount": 120}}
ARGS = {"order": 1042, "amount": 120}


def test_the_action_is_the_tools_format_string_of_its_arguments():
    tools = {"issue_refund": {"action": "Refund ${amount} to order #{order}", "urgency": "high"}}

    asked = with_tool_fields(ASK, "issue_refund", ARGS, tools)

    assert asked["action"] == "Refund $120 to order #1042"
    assert asked["urgency"] == "high"
    assert asked["details"] == ARGS  # still the arguments: what the approver reviews


def test_an_action_function_gets_the_arguments():
    tools = {"issue_refund": {"action": lambda args: f"Refund order {args['order']}"}}

    assert with_tool_fields(ASK, "issue_refund", ARGS, tools)["action"] == "Refund order 1042"


def test_an_argument_the_model_left_out_falls_back_to_the_default_action():
    tools = {"issue_refund": {"action": "Refund ${amount} to {customer}"}}

    assert with_tool_fields(ASK, "issue_refund", ARGS, tools)["action"] == "Run issue_refund"


def test_a_too_long_action_is_cut_and_kept_whole_in_the_context():
    tools = {"issue_refund": {"action": "Refund " + "x" * 600}}

    asked = with_tool_fields(ASK, "issue_refund", ARGS, tools)

    assert len(asked["action"]) == 500
    assert asked["context"].startswith("Refund " + "x" * 600)
    assert asked["context"].endswith("Refund requested")


def test_other_tools_are_asked_as_they_are():
    assert with_tool_fields(ASK, "close_account", {}, {"issue_refund": {"urgency": "high"}}) == ASK


@pytest.mark.parametrize("field", ["details", "options", "response", "allow_edit", "callback_url", "colour"])
def test_fields_that_would_break_the_answers_mapping_are_refused(field):
    with pytest.raises(TypeError, match=f"{field} cannot be set per tool"):
        check_tools("HITLBridge", {"issue_refund": {field: "x"}})
