"""The channel shape: every channel is a channels.base.Channel found through the registry; a
send returns facts and writes nothing, and decisions stores those facts in the transaction that
marks the delivery sent, or not at all.

Acme's agent asks alice to sign off a refund; the email channel is stood in for by a channel
that posts nowhere and reports where "its message" lives.
"""

import pytest
from django.test import RequestFactory
from django.urls import resolve, reverse

from channels import registry
from channels.base import AnswerRefused, Channel, MessageRef, SentFacts
from decisions.links import link_token
from decisions.models import ApprovalRequest, Decision, Via
from notifications import senders
from notifications.models import Delivery
from notifications.services import delivery_attempt
from tests.conftest import ALICE
from tests.factories import DecisionFactory

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
