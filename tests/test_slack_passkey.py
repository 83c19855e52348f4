"""Slack and a decision whose verification is passkey: its message carries one button, a link
that opens the portal, and no button answers it. Through the fake Slack and signed clicks, as
tests/test_slack_interactions.py does.
"""

import pytest
from django.test import Client

from channels.slack.messages import CHOICE_ACTION_PREFIX, PORTAL_ACTION
from decisions.links import request_token
from decisions.models import Status
from tests.fake_slack import fake_slack_fixture, form_body, post_signed  # noqa: F401 (fixture)
from tests.helpers import reload, snapshot
from tests.portal_helpers import ask
from tests.test_slack_interactions import ALICE, ALICE_SLACK, posted

pytestmark = pytest.mark.postgres


@pytest.fixture
def wire_asked(acme_key, fake_slack):
    decision = ask(acme_key, approvers=[ALICE_SLACK], action="Wire $9,000", verification="passkey")
    return posted(decision, ALICE_SLACK)


def click(fake_slack, request, action: dict) -> dict:
    return {
        "type": "block_actions",
        "user": ALICE,
        "actions": [action],
        "trigger_id": "trigger-1",
        "response_url": fake_slack.response_url(ALICE["id"]),
        "container": {"channel_id": request.slack_channel, "message_ts": request.slack_ts},
    }


def test_the_message_opens_the_portal(fake_slack, wire_asked):
    (message,) = fake_slack.calls_to("chat.postMessage")
    actions = next(block for block in message.blocks if block["type"] == "actions")
    assert [(b["action_id"], b.get("url")) for b in actions["elements"]] == [
        (PORTAL_ACTION, f"http://127.0.0.1:8000/inbox/{wire_asked.decision_id}")
    ]


def test_pressing_the_link_button_is_acknowledged_and_changes_nothing(fake_slack, wire_asked):
    before = snapshot(wire_asked.decision)
    action = {"action_id": PORTAL_ACTION, "type": "button", "url": "http://127.0.0.1:8000/inbox/x"}
    response = post_signed(Client(), form_body(click(fake_slack, wire_asked, action)))
    assert response.status_code == 200
    assert snapshot(wire_asked.decision) == before
    assert fake_slack.replies_to(ALICE["id"]) == []


def test_an_approve_click_cannot_answer_it_and_says_where_to(fake_slack, wire_asked):
    # As if from a message posted before the decision asked for a passkey: a choice button.
    action = {"action_id": f"{CHOICE_ACTION_PREFIX}0", "value": request_token(wire_asked), "type": "button"}
    response = post_signed(Client(), form_body(click(fake_slack, wire_asked, action)))
    assert response.status_code == 200
    assert reload(wire_asked.decision).status == Status.PENDING
    (reply,) = fake_slack.replies_to(ALICE["id"])
    assert reply.text == (
        f"Decision {wire_asked.decision_id} must be answered in the portal, signed in with a passkey. "
        f"Open it in Countersign: http://127.0.0.1:8000/inbox/{wire_asked.decision_id}"
    )
