"""Slack messages, from the outbox to a (fake) Slack Web API over real HTTP: the approval
message and its buttons, where it goes, reminders in its thread, the update that shows the
outcome once the decision is settled by any route, and what happens when Slack says no.

Named actors: Acme's agent asks alice (slack:U0ALICE) and bob (slack:U0BOB) in their DMs, or
the #ops channel where anyone may answer; carol answers by email. Deliveries are driven with
notifications.services.delivery_attempt, as the Celery task would run it.
"""

import json
import re
from datetime import UTC, timedelta

import pytest
from django.test import Client

from audit.models import AuditEvent
from channels.slack.channel import send_slack
from channels.slack.messages import CHOICE_ACTION_PREFIX, NOTE_ACTION, escape
from channels.slack.models import SlackSettings
from decisions.links import read_request_token
from decisions.models import ApprovalRequest, Decision, ResponseType, Status
from decisions.services import decision_answer, decision_cancel
from decisions.services.tick import decision_tick
from notifications.models import Delivery, DeliveryAttempt
from notifications.senders import RetryLater
from notifications.services import delivery_attempt
from tests.conftest import ALICE, BOB, CAROL
from tests.factories import DecisionFactory
from tests.fake_slack import fake_slack_fixture, form_body, post_signed  # noqa: F401

ALICE_SLACK = "slack:U0ALICE"
BOB_SLACK = "slack:U0BOB"
OPS = "slack:#ops"
ACTION = "Refund order #1042 for €1,200"
CONTEXT = 'Jane wrote: "charged twice <again> & still no refund" > please hurry'
DETAILS = {"amount": 1200, "customer": "Jane <Doe> & Co"}


# --- helpers ------------------------------------------------------------------------------


class Refund(DecisionFactory):
    action = ACTION
    timeout_minutes = 60


def slack_request(decision: Decision, address: str) -> ApprovalRequest:
    return ApprovalRequest.objects.get(decision=decision, address=address, channel="slack")


def deliveries(decision: Decision, purpose: str, address: str | None = None):
    rows = Delivery.objects.filter(decision=decision, kind=Delivery.Kind.SLACK, purpose=purpose)
    return rows.filter(request__address=address) if address else rows


def send(decision: Decision, address: str, purpose: str = Delivery.Purpose.ASK) -> Delivery:
    """Run the outbox attempt for one Slack delivery, as the Celery task does."""
    delivery = deliveries(decision, purpose, address).get()
    delivery_attempt(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    return delivery


def send_all(decision: Decision, purpose: str) -> list[Delivery]:
    sent = []
    for delivery in deliveries(decision, purpose).order_by("pk"):
        delivery_attempt(delivery_id=delivery.pk)
        delivery.refresh_from_db()
        sent.append(delivery)
    return sent


def blocks_of(call, block_type: str) -> list[dict]:
    return [block for block in call.blocks if block["type"] == block_type]


def buttons_of(call) -> list[dict]:
    (actions,) = blocks_of(call, "actions")
    return actions["elements"]


def texts_of(call) -> str:
    """Every piece of text in the message's blocks, one per line, for `in` checks."""
    lines = []
    for block in call.blocks:
        if isinstance(block.get("text"), dict):
            lines.append(block["text"]["text"])
        lines.extend(field["text"] for field in block.get("fields", []))
        lines.extend(
            element.get("text", "") for element in block.get("elements", []) if block["type"] == "context"
        )
    return "\n".join(lines)


def audit_payloads(decision: Decision, event: str) -> list[dict]:
    rows = AuditEvent.objects.filter(decision=decision, event=event).order_by("pk")
    return [json.loads(row.payload) for row in rows]


def outcome_line(call) -> str:
    """The section that states the outcome: what, by whom, via which route, when."""
    sections = [b["text"]["text"] for b in blocks_of(call, "section") if "text" in b]
    lines = [text for text in sections if " via " in text]
    assert len(lines) == 1, lines
    return lines[0]


# --- the approval message -----------------------------------------------------------------


def test_the_message_shows_action_context_details_urgency_deadline_and_who_asks(acme_key, fake_slack):
    # given
    decision = Refund(
        api_key=acme_key[0], approvers=[ALICE_SLACK], context=CONTEXT, details=DETAILS, urgency="high"
    )

    # when
    delivery = send(decision, ALICE_SLACK)

    # then
    assert delivery.status == Delivery.Status.SENT
    (call,) = fake_slack.calls_to("chat.postMessage")
    assert call.args["channel"] == "U0ALICE"
    # The fallback text is what notifications and screen readers show.
    assert call.args["text"] == f"Approval needed: {ACTION}"
    assert call.block_types() == ["header", "section", "section", "context", "actions"]
    (header,) = blocks_of(call, "header")
    assert header["text"] == {"type": "plain_text", "text": ACTION}
    # Context is the agent's free text: Slack would read <again> as a link or a mention.
    context_section = blocks_of(call, "section")[0]
    assert context_section["text"] == {
        "type": "mrkdwn",
        "text": 'Jane wrote: "charged twice &lt;again&gt; &amp; still no refund" &gt; please hurry',
    }
    fields = blocks_of(call, "section")[1]["fields"]
    assert [field["text"] for field in fields] == ["*amount*\n1,200", "*customer*\nJane &lt;Doe&gt; &amp; Co"]
    (context,) = blocks_of(call, "context")
    context_text = context["elements"][0]["text"]
    assert "Acme Corp asks for your sign-off" in context_text
    assert "urgency *high*" in context_text
    deadline = decision.expires_at.astimezone(UTC)
    assert "expires in" in context_text
    assert f"{deadline:%H:%M} UTC" in context_text


def test_the_buttons_are_one_per_option_plus_a_note_each_carrying_the_request(acme_key, fake_slack):
    # given: a custom option beside approve and deny
    decision = Refund(
        api_key=acme_key[0], approvers=[ALICE_SLACK], options=["approve", "deny", "escalate to legal"]
    )

    # when
    send(decision, ALICE_SLACK)

    # then
    (call,) = fake_slack.calls_to("chat.postMessage")
    buttons = buttons_of(call)
    assert [(b["action_id"], b["text"]["text"], b.get("style")) for b in buttons] == [
        (f"{CHOICE_ACTION_PREFIX}0", "Approve", "primary"),
        (f"{CHOICE_ACTION_PREFIX}1", "Deny", "danger"),
        (f"{CHOICE_ACTION_PREFIX}2", "Escalate to legal", None),
        (NOTE_ACTION, "Answer with a note…", None),
    ]
    # Every button names alice's request, signed: the click is checked against it.
    request = slack_request(decision, ALICE_SLACK)
    assert {read_request_token(b["value"]) for b in buttons} == {(request.pk, decision.id)}


def test_a_text_response_has_a_single_answer_button(acme_key, fake_slack):
    decision = Refund(
        api_key=acme_key[0],
        approvers=[ALICE_SLACK],
        action="Which warehouse should ship it?",
        response_type=ResponseType.TEXT,
    )

    send(decision, ALICE_SLACK)

    (call,) = fake_slack.calls_to("chat.postMessage")
    assert [(b["action_id"], b["text"]["text"]) for b in buttons_of(call)] == [(NOTE_ACTION, "Answer…")]


def test_the_bot_token_is_sent_and_where_the_message_went_is_stored(acme_key, fake_slack):
    decision = Refund(api_key=acme_key[0], approvers=[ALICE_SLACK])

    send(decision, ALICE_SLACK)

    (call,) = fake_slack.calls_to("chat.postMessage")
    assert call.authorization == "Bearer xoxb-test"
    request = slack_request(decision, ALICE_SLACK)
    # The DM channel Slack answered with, not the user id we posted to: chat.update needs it.
    assert (request.slack_channel, request.slack_user) == ("DU0ALICE", "U0ALICE")
    assert request.slack_ts
    assert request.notified_at is not None
    (sent,) = audit_payloads(decision, "notification.sent")
    assert (sent["kind"], sent["purpose"], sent["address"]) == ("slack", "ask", ALICE_SLACK)


@pytest.mark.parametrize(("address", "posted_to"), [(OPS, "#ops"), ("slack:C0OPS", "C0OPS")])
def test_a_channel_address_posts_to_the_channel_with_no_single_owner(
    acme_key, fake_slack, address, posted_to
):
    decision = Refund(api_key=acme_key[0], approvers=[address])

    send(decision, address)

    (call,) = fake_slack.calls_to("chat.postMessage")
    assert call.args["channel"] == posted_to
    request = slack_request(decision, address)
    # Anyone in the channel may answer: no slack_user to hold them to.
    assert (request.slack_channel, request.slack_user) == ("C0OPS", "")
    assert request.slack_ts


# --- approvers named by email, also DMed --------------------------------------------------


@pytest.fixture
def dm_email_approvers(acme, fake_slack):
    SlackSettings.objects.create(organization=acme, dm_email_approvers=True)
    fake_slack.users_by_email.update({ALICE: "U0ALICE", BOB: "U0BOB", CAROL: "U0CAROL"})


def test_an_email_approver_is_looked_up_by_email_and_dmed(acme_key, fake_slack, dm_email_approvers):
    # when
    decision = Refund(api_key=acme_key[0], approvers=[ALICE])
    send(decision, ALICE)

    # then: asked both ways
    asked = sorted(decision.requests.values_list("address", "channel"))
    assert asked == [(ALICE, "email"), (ALICE, "slack")]
    (lookup,) = fake_slack.calls_to("users.lookupByEmail")
    assert lookup.args["email"] == ALICE
    (call,) = fake_slack.calls_to("chat.postMessage")
    assert call.args["channel"] == "U0ALICE"
    request = slack_request(decision, ALICE)
    assert (request.slack_channel, request.slack_user) == ("DU0ALICE", "U0ALICE")


def test_an_email_approver_unknown_to_slack_fails_the_slack_delivery_only(
    acme_key, fake_slack, dm_email_approvers
):
    # given: dave is asked by email, but the workspace has no one with his address
    decision = Refund(api_key=acme_key[0], approvers=["dave@example.com"])

    # when
    delivery = send(decision, "dave@example.com")

    # then
    assert delivery.status == Delivery.Status.FAILED
    assert delivery.last_error == "Slack: users_not_found"
    assert fake_slack.calls_to("chat.postMessage") == []
    assert Decision.objects.get(pk=decision.pk).status == Status.PENDING


def test_an_email_approver_asked_both_ways_counts_once_and_one_answer_closes_both(
    acme_key, fake_slack, dm_email_approvers
):
    # given: everyone must approve; each person is asked by email and in Slack
    decision = Refund(api_key=acme_key[0], approvers=[ALICE, BOB, CAROL], quorum="all")
    assert decision.requests.count() == 6

    # when: alice answers in Slack
    decision_answer(request_id=slack_request(decision, ALICE).pk, choice="approve", via="slack")

    # then: her email request is settled too, and she is one approval of three, not two of six
    alice_email = ApprovalRequest.objects.get(decision=decision, address=ALICE, channel="email")
    assert alice_email.state == ApprovalRequest.State.CLOSED
    assert Decision.objects.get(pk=decision.pk).status == Status.PENDING

    # when: bob answers by email
    bob_email = ApprovalRequest.objects.get(decision=decision, address=BOB, channel="email")
    decision_answer(request_id=bob_email.pk, choice="approve", via="email")

    # then: his Slack request is settled; still waiting for carol
    assert slack_request(decision, BOB).state == ApprovalRequest.State.CLOSED
    assert Decision.objects.get(pk=decision.pk).status == Status.PENDING

    # when: carol answers in Slack
    decision_answer(request_id=slack_request(decision, CAROL).pk, choice="approve", via="slack")

    # then
    assert Decision.objects.get(pk=decision.pk).status == Status.APPROVED


# --- Slack says no ------------------------------------------------------------------------


@pytest.mark.parametrize("error", ["channel_not_found", "invalid_auth"])
def test_a_permanent_slack_error_fails_the_notification_with_the_reason_on_record(
    acme_key, fake_slack, error
):
    # given
    decision = Refund(api_key=acme_key[0], approvers=[ALICE_SLACK])
    fake_slack.fail("chat.postMessage", error)

    # when
    delivery = send(decision, ALICE_SLACK)

    # then: no retry can cure it, so it is failed at once, visibly
    assert delivery.status == Delivery.Status.FAILED
    assert delivery.attempts == 1
    assert delivery.last_error == f"Slack: {error}"
    (attempt,) = DeliveryAttempt.objects.filter(delivery=delivery)
    assert not attempt.ok
    assert attempt.error == f"Slack: {error}"
    assert error in attempt.response_snippet
    (failed,) = audit_payloads(decision, "notification.failed")
    assert failed["reason"] == f"Slack: {error}"
    assert (failed["kind"], failed["address"]) == ("slack", ALICE_SLACK)
    assert slack_request(decision, ALICE_SLACK).slack_ts == ""


def test_a_channel_slack_does_not_know_fails_the_notification(acme_key, fake_slack):
    decision = Refund(api_key=acme_key[0], approvers=["slack:#nowhere"])

    delivery = send(decision, "slack:#nowhere")

    assert delivery.status == Delivery.Status.FAILED
    assert delivery.last_error == "Slack: channel_not_found"


def test_a_rate_limit_is_waited_out_by_slack_sdk_within_one_attempt(acme_key, fake_slack):
    # given: Slack answers 429 Retry-After: 1 once, then accepts
    decision = Refund(api_key=acme_key[0], approvers=[ALICE_SLACK])
    fake_slack.rate_limit("chat.postMessage", times=1)

    # when
    delivery = send(decision, ALICE_SLACK)

    # then: slack-sdk's RateLimitErrorRetryHandler retried; the outbox saw one good attempt
    assert len(fake_slack.calls_to("chat.postMessage")) == 2
    assert delivery.status == Delivery.Status.SENT
    assert delivery.attempts == 1
    assert [attempt.ok for attempt in DeliveryAttempt.objects.filter(delivery=delivery)] == [True]
    assert slack_request(decision, ALICE_SLACK).slack_ts


def test_a_lasting_rate_limit_goes_back_to_the_outbox_with_slacks_retry_after(acme_key, fake_slack):
    # given: 429 for the first call and for slack-sdk's one retry
    decision = Refund(api_key=acme_key[0], approvers=[ALICE_SLACK])
    fake_slack.rate_limit("chat.postMessage", times=2)
    delivery = deliveries(decision, Delivery.Purpose.ASK, ALICE_SLACK).get()

    # when
    with pytest.raises(RetryLater) as raised:
        send_slack(delivery)

    # then: the outbox is told to come back when Slack said, not on its own backoff
    assert raised.value.retry_after == 1.0
    assert str(raised.value) == "Slack: ratelimited"
    assert raised.value.report.status_code == 429
    assert len(fake_slack.calls_to("chat.postMessage")) == 2
    assert slack_request(decision, ALICE_SLACK).slack_ts == ""


def test_a_lasting_rate_limit_leaves_the_delivery_pending_for_another_attempt(acme_key, fake_slack):
    decision = Refund(api_key=acme_key[0], approvers=[ALICE_SLACK])
    fake_slack.rate_limit("chat.postMessage", times=2)

    delivery = send(decision, ALICE_SLACK)

    assert delivery.status == Delivery.Status.PENDING
    assert delivery.last_error == "Slack: ratelimited"
    assert [a.status_code for a in DeliveryAttempt.objects.filter(delivery=delivery)] == [429]

    # when: the next attempt finds Slack willing
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=delivery.created_at)
    delivery = send(decision, ALICE_SLACK)

    # then
    assert delivery.status == Delivery.Status.SENT
    assert len(fake_slack.calls_to("chat.postMessage")) == 3


# --- per-organization Slack apps ----------------------------------------------------------


def test_an_organizations_own_slack_app_token_replaces_the_global_one(
    acme, acme_key, fake_slack, monkeypatch
):
    # given: Acme's settings name an environment variable; the token itself is never stored
    monkeypatch.setenv("ACME_SLACK_BOT_TOKEN", "xoxb-acme-own")
    SlackSettings.objects.create(organization=acme, bot_token_env="ACME_SLACK_BOT_TOKEN")
    decision = Refund(api_key=acme_key[0], approvers=[ALICE_SLACK])

    # when
    delivery = send(decision, ALICE_SLACK)

    # then
    assert delivery.status == Delivery.Status.SENT
    (call,) = fake_slack.calls_to("chat.postMessage")
    assert call.authorization == "Bearer xoxb-acme-own"


def test_an_organization_whose_token_variable_is_unset_fails_without_calling_slack(
    acme, acme_key, fake_slack, monkeypatch
):
    # given: the variable it names is missing; the global token must not be used instead
    monkeypatch.delenv("ACME_SLACK_BOT_TOKEN", raising=False)
    SlackSettings.objects.create(organization=acme, bot_token_env="ACME_SLACK_BOT_TOKEN")
    decision = Refund(api_key=acme_key[0], approvers=[ALICE_SLACK])

    delivery = send(decision, ALICE_SLACK)

    assert delivery.status == Delivery.Status.FAILED
    assert "no bot token" in delivery.last_error
    assert fake_slack.calls == []


# --- reminders ----------------------------------------------------------------------------


def test_reminders_are_posted_in_the_thread_of_each_message(acme_key, fake_slack):
    # given: alice (DM) and #ops were asked, reminded after 10 minutes
    decision = Refund(api_key=acme_key[0], approvers=[ALICE_SLACK, OPS], reminders=[10])
    send(decision, ALICE_SLACK)
    send(decision, OPS)
    alice, ops = slack_request(decision, ALICE_SLACK), slack_request(decision, OPS)

    # when: the clock passes the reminder
    assert decision_tick(decision_id=decision.id, now=decision.created_at + timedelta(minutes=11))
    reminded = send_all(decision, Delivery.Purpose.REMIND)

    # then: one reply in each thread, not a new message in the channel
    assert [d.status for d in reminded] == [Delivery.Status.SENT] * 2
    posts = fake_slack.calls_to("chat.postMessage")[2:]
    assert sorted((p.args["channel"], p.args["thread_ts"]) for p in posts) == sorted(
        [(alice.slack_channel, alice.slack_ts), (ops.slack_channel, ops.slack_ts)]
    )
    assert all(p.args["text"].startswith("Reminder: this still waits for your answer.") for p in posts)
    assert all("blocks" not in p.args for p in posts)


def test_a_reminder_waits_for_its_message_to_be_posted(acme_key, fake_slack):
    # given: the ask has not gone out yet (say Slack was rate limiting)
    decision = Refund(api_key=acme_key[0], approvers=[ALICE_SLACK], reminders=[10])
    decision_tick(decision_id=decision.id, now=decision.created_at + timedelta(minutes=11))

    # when
    reminder = send(decision, ALICE_SLACK, Delivery.Purpose.REMIND)

    # then: kept for later rather than posted outside any thread
    assert reminder.status == Delivery.Status.PENDING
    assert fake_slack.calls_to("chat.postMessage") == []


# --- every message shows the outcome ------------------------------------------------------


def _asked_on_slack_and_by_email(acme_key, fake_slack, **fields) -> Decision:
    """carol by email, bob in his DM and #ops in the channel; both Slack messages posted."""
    decision = Refund(api_key=acme_key[0], approvers=[CAROL, BOB_SLACK, OPS], **fields)
    send(decision, BOB_SLACK)
    send(decision, OPS)
    assert len(fake_slack.calls_to("chat.postMessage")) == 2
    return decision


def _posted(decision: Decision) -> set[tuple[str, str]]:
    return {
        (r.slack_channel, r.slack_ts) for r in decision.requests.filter(channel="slack").exclude(slack_ts="")
    }


def _assert_every_message_updated(decision: Decision, fake_slack) -> list:
    updated = send_all(decision, Delivery.Purpose.UPDATE)
    assert [d.status for d in updated] == [Delivery.Status.SENT] * len(updated)
    updates = fake_slack.calls_to("chat.update")
    assert {(u.args["channel"], u.args["ts"]) for u in updates} == _posted(decision)
    assert len(updates) == len(_posted(decision))
    for update in updates:
        # No buttons left to press on a settled decision.
        assert "actions" not in update.block_types()
        assert update.blocks[0] == {"type": "header", "text": {"type": "plain_text", "text": ACTION}}
    return updates


def test_every_message_is_updated_when_carol_approves_by_email(acme_key, fake_slack):
    # given
    decision = _asked_on_slack_and_by_email(acme_key, fake_slack)
    carol = ApprovalRequest.objects.get(decision=decision, address=CAROL)

    # when
    decision_answer(request_id=carol.pk, choice="approve", note="Checked the statement", via="email")

    # then
    updates = _assert_every_message_updated(decision, fake_slack)
    resolved_at = Decision.objects.get(pk=decision.pk).resolved_at.astimezone(UTC)
    for update in updates:
        assert update.args["text"] == f"Approved: {ACTION}"
        assert outcome_line(update) == f"*Approved* by {CAROL} via email, {resolved_at:%Y-%m-%d %H:%M} UTC"
        assert "_Note:_ Checked the statement" in texts_of(update)


def test_every_message_is_updated_when_the_decision_expires(acme_key, fake_slack):
    # given
    decision = _asked_on_slack_and_by_email(acme_key, fake_slack)

    # when: the clock passes the deadline
    assert decision_tick(decision_id=decision.id, now=decision.expires_at + timedelta(seconds=1))

    # then
    assert Decision.objects.get(pk=decision.pk).status == Status.EXPIRED
    for update in _assert_every_message_updated(decision, fake_slack):
        assert outcome_line(update).startswith("*Expired* by the deadline via timeout, ")


def test_every_message_is_updated_when_the_agent_cancels(acme_key, fake_slack):
    decision = _asked_on_slack_and_by_email(acme_key, fake_slack)

    decision_cancel(decision=decision, actor=acme_key[0].actor)

    for update in _assert_every_message_updated(decision, fake_slack):
        assert outcome_line(update).startswith("*Cancelled* by ")
        assert " via api, " in outcome_line(update)


def test_every_message_is_updated_when_someone_in_ops_clicks_a_custom_option(acme_key, fake_slack):
    # given
    decision = _asked_on_slack_and_by_email(
        acme_key, fake_slack, options=["approve", "deny", "escalate to legal"]
    )
    ops = slack_request(decision, OPS)
    (ops_message,) = [c for c in fake_slack.calls_to("chat.postMessage") if c.args["channel"] == "#ops"]
    custom = buttons_of(ops_message)[2]

    # when: dan, in #ops, presses "Escalate to legal" in Slack
    response = post_signed(
        Client(),
        form_body(
            {
                "type": "block_actions",
                "user": {"id": "U0DAN", "username": "dan"},
                "actions": [{"action_id": custom["action_id"], "value": custom["value"]}],
                "trigger_id": "trigger-1",
                "response_url": fake_slack.response_url("dan"),
            }
        ),
    )

    # then: both bob's DM and the #ops message show dan's answer
    assert response.status_code == 200
    assert ApprovalRequest.objects.get(pk=ops.pk).state == ApprovalRequest.State.ANSWERED
    for update in _assert_every_message_updated(decision, fake_slack):
        assert outcome_line(update).startswith("*Responded* — escalate to legal by <@U0DAN> via slack, ")


def test_a_message_that_was_never_posted_is_not_updated(acme_key, fake_slack):
    # given: cancelled before the ask went out, so the ask is skipped
    decision = Refund(api_key=acme_key[0], approvers=[ALICE_SLACK])
    decision_cancel(decision=decision, actor=acme_key[0].actor)
    assert send(decision, ALICE_SLACK).status == Delivery.Status.SKIPPED

    # when
    update = send(decision, ALICE_SLACK, Delivery.Purpose.UPDATE)

    # then: settled, with nothing sent to Slack at all
    assert update.status == Delivery.Status.SENT
    assert fake_slack.calls == []


def test_a_message_that_failed_to_post_is_not_updated(acme_key, fake_slack):
    # given: Slack refused the ask
    decision = Refund(api_key=acme_key[0], approvers=[ALICE_SLACK])
    fake_slack.fail("chat.postMessage", "channel_not_found")
    assert send(decision, ALICE_SLACK).status == Delivery.Status.FAILED

    # when
    decision_cancel(decision=decision, actor=acme_key[0].actor)
    update = send(decision, ALICE_SLACK, Delivery.Purpose.UPDATE)

    # then
    assert update.status == Delivery.Status.SENT
    assert fake_slack.calls_to("chat.update") == []


def test_an_update_waits_while_the_ask_is_still_being_posted(acme_key, fake_slack):
    # given: the ask is pending (its first attempt met a lasting rate limit, say)
    decision = Refund(api_key=acme_key[0], approvers=[ALICE_SLACK])
    decision_cancel(decision=decision, actor=acme_key[0].actor)

    # when: the update's attempt comes first
    update = send(decision, ALICE_SLACK, Delivery.Purpose.UPDATE)

    # then: it does not declare "nothing to update" while a message may still appear
    assert update.status == Delivery.Status.PENDING
    assert fake_slack.calls_to("chat.update") == []


def test_a_failed_update_is_recorded_like_any_notification(acme_key, fake_slack):
    # given: the message was posted, then deleted in Slack
    decision = Refund(api_key=acme_key[0], approvers=[ALICE_SLACK])
    send(decision, ALICE_SLACK)
    decision_cancel(decision=decision, actor=acme_key[0].actor)
    fake_slack.fail("chat.update", "message_not_found")

    # when
    update = send(decision, ALICE_SLACK, Delivery.Purpose.UPDATE)

    # then
    assert update.status == Delivery.Status.FAILED
    assert update.last_error == "Slack: message_not_found"
    (failed,) = audit_payloads(decision, "notification.failed")
    assert (failed["purpose"], failed["reason"]) == ("update", "Slack: message_not_found")


# --- what the agent wrote never becomes Slack markup ---------------------------------------

# An agent (or whoever steers it) controls the action, context, details and options: in Slack
# `<!channel>` / `<!here>` notify everyone and `<url|label>` is a link that says what it likes.
HOSTILE = "<!channel> <!here> wire $9,000 <https://evil.example/approve|Click to approve> & done"
HOSTILE_ESCAPED = (
    "&lt;!channel&gt; &lt;!here&gt; wire $9,000 "
    "&lt;https://evil.example/approve|Click to approve&gt; &amp; done"
)
HOSTILE_OPTION = "<!here> <https://evil.example|ok>"


def every_text(call) -> list[str]:
    """The fallback text and every text object's text, wherever it sits in the blocks."""
    found = [call.args.get("text", "")]

    def walk(node) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("text"), str):
                found.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(call.blocks)
    return found


def assert_no_live_markup(texts: list[str]) -> None:
    for text in texts:
        # The only markup left is ours: a mention of a Slack user id.
        assert not re.search(r"<(?!@[UW][A-Z0-9]+>)", text), text
        assert ">" not in re.sub(r"<@[UW][A-Z0-9]+>", "", text), text
        assert not re.search(r"&(?!amp;|lt;|gt;)", text), text


def test_agent_markup_is_escaped_in_every_field_of_the_approval_message(acme_key, fake_slack):
    # given
    decision = Refund(
        api_key=acme_key[0],
        approvers=[ALICE_SLACK],
        action=HOSTILE,
        context=HOSTILE,
        details={HOSTILE[:40]: HOSTILE},
        options=["approve", "deny", HOSTILE_OPTION],
    )

    # when: posted through slack-sdk to the fake Slack
    assert send(decision, ALICE_SLACK).status == Delivery.Status.SENT

    # then: the fallback text (what notifications show) and every block show it as typed
    (call,) = fake_slack.calls_to("chat.postMessage")
    assert call.args["text"] == f"Approval needed: {HOSTILE_ESCAPED}"
    (header,) = blocks_of(call, "header")
    assert header["text"] == {"type": "plain_text", "text": HOSTILE_ESCAPED}  # plain_text too
    assert HOSTILE_ESCAPED in texts_of(call)
    assert buttons_of(call)[2]["text"]["text"] == "&lt;!here&gt; &lt;https://evil.example|ok&gt;"
    assert_no_live_markup(every_text(call))


def test_agent_markup_is_escaped_in_the_outcome_update(acme_key, fake_slack):
    # given: alice answered with the agent's odd option and a note of her own in kind
    decision = Refund(
        api_key=acme_key[0], approvers=[ALICE_SLACK], action=HOSTILE, options=["approve", HOSTILE_OPTION]
    )
    send(decision, ALICE_SLACK)
    request = slack_request(decision, ALICE_SLACK)
    decision_answer(request_id=request.pk, choice=HOSTILE_OPTION, note="<!channel> fine by me", via="slack")

    # when
    assert send(decision, ALICE_SLACK, Delivery.Purpose.UPDATE).status == Delivery.Status.SENT

    # then
    (call,) = fake_slack.calls_to("chat.update")
    assert call.args["text"] == f"Responded: {HOSTILE_ESCAPED}"
    assert outcome_line(call).startswith(
        "*Responded* — &lt;!here&gt; &lt;https://evil.example|ok&gt; by <@U0ALICE> via slack, "
    )
    assert "_Note:_ &lt;!channel&gt; fine by me" in texts_of(call)
    assert_no_live_markup(every_text(call))


def test_an_escaped_text_cut_to_a_limit_never_ends_in_half_an_entity():
    assert escape("a < b", 5) == "a "  # not "a &lt" (Slack would show "&lt")
    assert escape("a < b", 6) == "a &lt;"
    assert escape("&&&", 9) == "&amp;"
    assert escape("plain text", 5) == "plain"
    assert escape("<x>") == "&lt;x&gt;"
