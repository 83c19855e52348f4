"""The channel shape: every channel is a channels.base.Channel found through the registry; a
send returns facts and writes nothing, and decisions stores those facts in the transaction that
marks the delivery sent, or not at all.

Acme's agent asks alice to sign off a refund; the email channel is stood in for by a channel
that posts nowhere and reports where "its message" lives.
"""

import pytest
from django.contrib.sessions.middleware import SessionMiddleware
from django.test import RequestFactory
from django.urls import resolve, reverse

from channels import answers, registry
from channels.base import AnswerRefused, Channel, InboundAnswer, MessageRef, PermanentFailure, SentFacts
from decisions.links import link_token
from decisions.models import ApprovalRequest, Decision, Status, Verification, Via
from notifications import senders
from notifications.models import Delivery
from notifications.services import delivery_attempt
from portal import services as portal_services
from portal import views as portal_views
from portal.channel import WebChannel
from portal.models import Approver
from portal.sessions import session_begin
from tests.conftest import ALICE, BOB
from tests.factories import DecisionFactory
from tests.portal_helpers import sign_in_token, tasks_run_here  # noqa: F401 (fixture)

POSTED = MessageRef(conversation="C0FAKE", message="1700000000.000100", recipient="U0ALICE")


class Boom(Exception):
    """Raised on purpose to roll a transaction back."""


class FactsChannel(Channel):
    """Stands in for email: renders the address, sends nowhere, reports a message reference."""

    name = "email"
    via = Via.EMAIL
    sent: list[str] = []

    def render_ask(self, request: ApprovalRequest, *, key: str) -> str:
        return f"ask {request.address} ({key})"

    def render_reminder(self, request: ApprovalRequest, *, key: str) -> str:
        return f"remind {request.address}"

    def send(self, request: ApprovalRequest, message: str) -> SentFacts:
        self.sent.append(message)
        return SentFacts(message_ref=POSTED, provider_message_id="pm-0001", status_code=200)


@pytest.fixture
def facts_channel(monkeypatch):
    FactsChannel.sent = []
    monkeypatch.setitem(registry.CHANNELS, "email", f"{__name__}.FactsChannel")
    registry.channel.cache_clear()
    yield FactsChannel
    registry.channel.cache_clear()


@pytest.fixture
def no_publish(monkeypatch):
    monkeypatch.setattr("notifications.services._publish", lambda delivery_ids: None)


def ask_alice(acme_key) -> Decision:
    return DecisionFactory(api_key=acme_key[0], approvers=[ALICE])


def test_every_registered_channel_has_the_shape_and_is_named_by_its_key():
    for name in registry.names():
        channel = registry.channel(name)
        assert isinstance(channel, Channel)
        assert channel.name == name
        assert senders.sender_for(name) is not None, f"the outbox has no sender for {name}"


def test_the_channels_inbound_urls_are_included_at_the_paths_the_contract_names():
    assert reverse("approval-link", kwargs={"token": "abc"}) == "/a/abc"
    assert reverse("slack-interactions") == "/slack/interactions"
    assert resolve("/a/abc").func.__module__ == "channels.email.pages"
    assert resolve("/slack/interactions").func.__module__ == "channels.slack.interactions"


def test_a_sent_ask_stores_the_channels_facts_with_the_status_change(acme_key, no_publish, facts_channel):
    # given
    decision = ask_alice(acme_key)
    delivery = Delivery.objects.get(decision=decision, purpose=Delivery.Purpose.ASK)

    # when
    delivery_attempt(delivery_id=delivery.pk)

    # then: the channel sent once and wrote nothing; decisions and the outbox kept its facts
    assert facts_channel.sent == [f"ask {ALICE} ({delivery.pk})"]
    delivery.refresh_from_db()
    request = ApprovalRequest.objects.get(pk=delivery.request_id)
    assert delivery.status == Delivery.Status.SENT
    assert delivery.provider_message_id == "pm-0001"
    assert (request.slack_channel, request.slack_ts, request.slack_user) == (
        POSTED.conversation,
        POSTED.message,
        POSTED.recipient,
    )
    assert request.notified_at == delivery.sent_at


def test_facts_are_not_kept_when_marking_the_delivery_sent_fails(
    acme_key, no_publish, facts_channel, monkeypatch
):
    # given: something after decisions' hook fails in the transaction that marks it sent
    decision = ask_alice(acme_key)
    delivery = Delivery.objects.get(decision=decision, purpose=Delivery.Purpose.ASK)

    def fail(delivery, report):
        raise Boom

    monkeypatch.setattr(senders, "_ON_SENT", [*senders._ON_SENT, fail])

    # when
    with pytest.raises(Boom):
        delivery_attempt(delivery_id=delivery.pk)

    # then: neither the status change nor the facts were stored; the lease will free it again
    delivery.refresh_from_db()
    request = ApprovalRequest.objects.get(pk=delivery.request_id)
    assert delivery.status == Delivery.Status.PENDING
    assert delivery.provider_message_id == ""
    assert (request.slack_channel, request.slack_ts, request.notified_at) == ("", "", None)


def test_the_email_channel_reads_a_confirm_post_into_a_typed_answer(acme_key, no_publish):
    # given: alice's link to approve, posted from the confirm page with a note
    decision = ask_alice(acme_key)
    request = decision.requests.get()
    token = link_token(request, "approve")
    post = RequestFactory().post(
        f"/a/{token}", {"confirm": "yes", "note": "ok by me"}, REMOTE_ADDR="10.1.2.3"
    )

    # when
    answer = registry.channel("email").parse_answer(post, token=token)

    # then
    assert (answer.request.pk, answer.choice, answer.note, answer.via, answer.ip) == (
        request.pk,
        "approve",
        "ok by me",
        Via.EMAIL,
        "10.1.2.3",
    )


def test_the_email_channel_refuses_a_forged_link_with_the_page_to_show(acme_key, no_publish):
    post = RequestFactory().post("/a/forged", {"confirm": "yes"})

    with pytest.raises(AnswerRefused) as refused:
        registry.channel("email").parse_answer(post, token="forged")

    assert refused.value.response.status_code == 404


# --- the web channel: the approver portal ---------------------------------------------------


def signed_in_post(path: str, data: dict, address: str = ALICE):
    """A POST from a browser whose portal session alice's magic link opened just now."""
    post = RequestFactory().post(path, data, REMOTE_ADDR="10.9.8.7", HTTP_USER_AGENT="Firefox")
    SessionMiddleware(lambda request: None).process_request(post)
    approver, _ = Approver.objects.get_or_create(address=address)
    session_begin(post, approver)
    return post


@pytest.fixture
def recorded(monkeypatch):
    """Every InboundAnswer the portal hands to answer_record (which still records it)."""
    seen: list[InboundAnswer] = []

    def record(answer: InboundAnswer) -> Decision:
        seen.append(answer)
        return answers.answer_record(answer)

    monkeypatch.setattr(portal_views, "answer_record", record)
    monkeypatch.setattr(portal_services, "answer_record", record)
    return seen


def test_the_registry_has_the_web_channel_which_sends_nothing(acme_key, no_publish):
    # given
    web = registry.channel("web")
    request = ask_alice(acme_key).requests.get()

    # then: a channel like the others, whose inbound half is the portal at /inbox
    assert isinstance(web, WebChannel)
    assert isinstance(web, Channel)
    assert (web.name, web.via, web.sends, web.edits_outcome) == ("web", Via.WEB, False, False)
    assert resolve("/inbox").func.__module__ == "portal.views"
    # It renders nothing to send, refuses to send, and the outbox is never given its deliveries.
    assert web.render_ask(request, key="k") is None
    assert web.render_reminder(request, key="k") is None
    assert registry.silent_names() == ["web"]
    with pytest.raises(PermanentFailure):
        web.deliver(request, purpose="ask", key="k")


def test_the_web_channel_reads_a_signed_in_answer_into_a_typed_answer(acme_key, no_publish):
    # given: alice, signed in a moment ago, approves from the decision's page
    decision = ask_alice(acme_key)
    post = signed_in_post(f"/inbox/{decision.id}/answer", {"choice": "approve", "note": "fine"})

    # when
    answer = registry.channel("web").parse_answer(post, decision_id=decision.id)

    # then: her request, via web, verified by her fresh session
    assert (answer.request.pk, answer.choice, answer.note, answer.via, answer.verified, answer.ip) == (
        decision.requests.get().pk,
        "approve",
        "fine",
        Via.WEB,
        Verification.SESSION,
        "10.9.8.7",
    )
    # and answer_record passes the verification on to decision_answer
    answers.answer_record(answer)
    decision.refresh_from_db()
    assert (decision.status, decision.outcome["via"], decision.outcome["verified"]) == (
        Status.APPROVED,
        "web",
        "session",
    )


def test_the_web_channel_refuses_an_answer_without_a_session(acme_key, no_publish):
    decision = ask_alice(acme_key)
    post = RequestFactory().post(f"/inbox/{decision.id}/answer", {"choice": "approve"})
    SessionMiddleware(lambda request: None).process_request(post)

    with pytest.raises(AnswerRefused) as refused:
        registry.channel("web").parse_answer(post, decision_id=decision.id)

    assert refused.value.response.status_code == 403


@pytest.mark.postgres
@pytest.mark.usefixtures("tasks_run_here")
def test_portal_answers_are_recorded_through_answer_record(
    client, mailoutbox, acme_key, no_publish, recorded
):
    # given: alice is asked three times (bob once) and signs in by her emailed link
    first, second, third = (ask_alice(acme_key) for _ in range(3))
    bobs = DecisionFactory(api_key=acme_key[0], approvers=[BOB])
    client.post("/inbox/sign-in", {"address": ALICE})
    assert client.post(f"/inbox/sign-in/{sign_in_token(mailoutbox, ALICE)}").status_code == 302

    # when: she answers one from its page, then two (and bob's) from the inbox at once
    assert client.post(f"/inbox/{first.id}/answer", {"choice": "deny"}).status_code == 302
    bulk = {"decision": [second.id, third.id, bobs.id], "choice": "approve", "note": "batch"}
    assert client.post("/inbox/bulk", bulk).status_code == 302

    # then: one InboundAnswer per decision of hers, via web, verified by the fresh session
    assert [(a.request.decision_id, a.choice, a.via, a.verified) for a in recorded] == [
        (first.id, "deny", Via.WEB, Verification.SESSION),
        (second.id, "approve", Via.WEB, Verification.SESSION),
        (third.id, "approve", Via.WEB, Verification.SESSION),
    ]
    bobs.refresh_from_db()
    assert bobs.status == Status.PENDING  # not hers: never parsed into an answer
