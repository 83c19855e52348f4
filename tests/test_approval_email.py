"""The email that asks an approver, from the outbox to the inbox (and back, via tracking webhooks).

Acme's agent asks alice (sometimes bob too) to sign off a refund. The message goes out through
Django's mail layer when notifications.services.delivery_attempt runs for its Delivery, as the
Celery task would; in tests Django's locmem backend keeps it in `mailoutbox`.
"""

import base64
import json
import re
import socketserver
import threading
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from django.test import Client

from audit.models import AuditEvent
from decisions.display import deadline_phrase
from decisions.links import TEXT_ANSWER, read_link
from decisions.models import ApprovalRequest, Decision
from decisions.services import decision_answer
from notifications.models import Delivery
from notifications.services import delivery_attempt
from tests.conftest import ALICE, BOB
from tests.factories import DecisionFactory

ACTION = "Refund order #1042 for €1,200"
CONTEXT = "The customer was charged twice.\nBoth charges are on the statement."
DETAILS = {"amount": 1200, "currency": "EUR", "customer": "Jane Doe"}


# --- helpers ------------------------------------------------------------------------------


class Refund(DecisionFactory):
    action = ACTION
    context = CONTEXT
    details = DETAILS
    timeout_minutes = 30


def delivery_for(decision: Decision, address: str = ALICE) -> Delivery:
    return Delivery.objects.get(decision=decision, request__address=address)


def send(decision: Decision, address: str = ALICE) -> Delivery:
    """Run the outbox attempt for one approver's email, as the Celery task does."""
    delivery = delivery_for(decision, address)
    delivery_attempt(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    return delivery


def html_part(message) -> str:
    htmls = [body for body, mime in message.alternatives if mime == "text/html"]
    assert len(htmls) == 1
    return htmls[0]


class _Anchors(HTMLParser):
    """Every <a href> in an HTML document, with its visible text."""

    def __init__(self) -> None:
        super().__init__()
        self.anchors: list[tuple[str, str]] = []
        self._href: str | None = None
        self._text = ""

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self._href, self._text = dict(attrs).get("href"), ""

    def handle_data(self, data):
        if self._href is not None:
            self._text += data

    def handle_endtag(self, tag):
        if tag == "a" and self._href is not None:
            self.anchors.append((self._text.strip(), self._href))
            self._href = None


def is_inbox_link(url: str) -> bool:
    """The link to the approver portal's inbox that every email carries below its buttons."""
    return urlsplit(url).path == "/inbox"


def html_buttons(message) -> list[tuple[str, str]]:
    """(label, url) of every button in the HTML part, in order: its links but the inbox's."""
    parser = _Anchors()
    parser.feed(html_part(message))
    return [(label, url) for label, url in parser.anchors if not is_inbox_link(url)]


def text_links(message) -> list[tuple[str, str]]:
    """(label, url) of every 'Label: http…' line in the plain-text part, in order, but the inbox's."""
    lines = re.findall(r"^(\S[^\n:]*): (https?://\S+)$", message.body, flags=re.MULTILINE)
    return [(label, url) for label, url in lines if not is_inbox_link(url)]


def claim_of(url: str):
    path = urlsplit(url).path
    assert path.startswith("/a/")
    return read_link(path.removeprefix("/a/"))


def events(decision: Decision, event: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(decision=decision, event=event).order_by("pk"))


def payload(event: AuditEvent) -> dict:
    return json.loads(event.payload)


# --- what the message says ------------------------------------------------------------------


def test_alices_email_has_a_text_and_an_html_part_naming_the_action_and_showing_what_she_is_asked(
    acme_key, mailoutbox
):
    # given
    decision = Refund(api_key=acme_key[0], urgency="high")

    # when
    send(decision)

    # then
    assert len(mailoutbox) == 1
    message = mailoutbox[0]
    assert message.to == [ALICE]
    assert message.subject == f"Approval needed: {ACTION}"
    assert message.extra_headers["X-Countersign-Decision"] == decision.id
    html = html_part(message)
    for part in (message.body, html):
        assert "Acme Corp asks for your sign-off" in part  # who asked
        assert ACTION in part
        assert "high urgency" in part
        assert decision.id in part
    # The context and details read as they were sent.
    assert CONTEXT in message.body
    assert "The customer was charged twice." in html
    assert "  amount: 1,200\n" in message.body
    assert "  customer: Jane Doe\n" in message.body
    # Details are a table in the HTML part: one row per key, label then value.
    rows = re.findall(r"<tr>\s*<td[^>]*>([^<]*)</td>\s*<td[^>]*>([^<]*)</td>\s*</tr>", html)
    assert rows == [("amount", "1,200"), ("currency", "EUR"), ("customer", "Jane Doe")]


def test_the_html_part_is_styled_inline_and_carries_no_script(acme_key, mailoutbox):
    # WHY: mail clients strip <style> blocks and never run scripts; what is not inline is lost.
    send(Refund(api_key=acme_key[0]))

    html = html_part(mailoutbox[0])
    assert "<script" not in html.lower()
    assert "<style" not in html.lower()
    assert "javascript:" not in html.lower()
    assert html.count('style="') > 10


def test_the_deadline_reads_relative_and_exact_in_utc(acme_key, mailoutbox):
    # given: 30 minutes to answer
    decision = Refund(api_key=acme_key[0], timeout_minutes=30)

    # when
    send(decision)

    # then: "expires in 30 minutes, at HH:MM UTC" (plus the day when it falls on another one)
    at = decision.expires_at.astimezone(UTC)
    for part in (mailoutbox[0].body, html_part(mailoutbox[0])):
        assert f"This request expires in 30 minutes, at {at:%H:%M} UTC" in part


@pytest.mark.parametrize(
    ("expires_in", "phrase"),
    [
        (timedelta(minutes=30), "expires in 30 minutes, at 14:05 UTC"),
        (timedelta(minutes=1), "expires in 1 minute, at 13:36 UTC"),
        (timedelta(hours=2, minutes=15), "expires in 2 hours 15 min, at 15:50 UTC"),
        (timedelta(hours=12), "expires in 12 hours, at 01:35 UTC on Wed 04 Jun"),
        (timedelta(days=3), "expires in 3 days, at 13:35 UTC on Fri 06 Jun"),
        (timedelta(minutes=-5), "expired at 13:30 UTC"),
    ],
)
def test_deadline_wording(expires_in, phrase):
    now = datetime(2025, 6, 3, 13, 35, tzinfo=UTC)
    assert deadline_phrase(now + expires_in, now=now) == phrase


def test_a_critical_request_says_so_first_in_the_subject(acme_key, mailoutbox):
    send(Refund(api_key=acme_key[0], urgency="critical"))

    message = mailoutbox[0]
    assert message.subject == f"[Critical] Approval needed: {ACTION}"
    assert "critical urgency" in message.body


def test_the_subject_is_one_line_even_when_the_action_holds_newlines(acme_key, mailoutbox):
    # WHY: a newline in a header would let the agent's text add headers (Bcc: …) to the message.
    send(Refund(api_key=acme_key[0], action="Refund order #1042\r\nBcc: mallory@example.com\nX-Evil: 1"))

    message = mailoutbox[0]
    assert message.subject == "Approval needed: Refund order #1042 Bcc: mallory@example.com X-Evil: 1"
    raw = message.message().as_string()
    headers = raw.split("\n\n", 1)[0]
    assert not re.search(r"^(Bcc|X-Evil):", headers, flags=re.MULTILINE | re.IGNORECASE)
    assert message.recipients() == [ALICE]


# --- the links ------------------------------------------------------------------------------


def test_both_parts_carry_one_link_per_option_bound_to_alices_request_and_that_choice(acme_key, mailoutbox):
    # given
    decision = Refund(api_key=acme_key[0], approvers=(ALICE, BOB))

    # when
    send(decision, ALICE)

    # then: Approve and Deny, the same two links in each part
    message = mailoutbox[0]
    buttons = html_buttons(message)
    assert [label for label, _ in buttons] == ["Approve", "Deny"]
    assert text_links(message) == buttons
    alice = decision.requests.get(address=ALICE)
    for (_, url), option in zip(buttons, ["approve", "deny"], strict=True):
        assert url.startswith("http://127.0.0.1:8000/a/")
        claim = claim_of(url)
        assert (claim.request_id, claim.decision_id, claim.choice) == (alice.pk, decision.id, option)
    # These and the inbox are all the links in the message: nothing else a scanner could follow.
    urls = [url for _, url in buttons] + ["http://127.0.0.1:8000/inbox"]
    assert re.findall(r'href="([^"]+)"', html_part(message)) == urls
    assert re.findall(r"https?://\S+", message.body) == urls
    assert "Everything waiting for you, in one place: http://127.0.0.1:8000/inbox" in message.body


def test_the_links_use_the_public_base_url(acme_key, mailoutbox, settings):
    settings.PUBLIC_BASE_URL = "https://approve.acme.example"

    send(Refund(api_key=acme_key[0]))

    urls = [url for _, url in text_links(mailoutbox[0])]
    assert urls
    assert all(url.startswith("https://approve.acme.example/a/") for url in urls)


def test_custom_options_get_one_button_each_in_their_order(acme_key, mailoutbox):
    # given
    options = ["approve", "escalate to legal", "deny"]
    decision = Refund(api_key=acme_key[0], options=options)

    # when
    send(decision)

    # then
    message = mailoutbox[0]
    buttons = html_buttons(message)
    assert [label for label, _ in buttons] == ["Approve", "Escalate to legal", "Deny"]
    assert text_links(message) == buttons
    assert [claim_of(url).choice for _, url in buttons] == options
    # Approve and deny keep their colours (green, red); any other option is neutral grey.
    colours = re.findall(r'<a href="[^"]+" style="[^"]*background:(#[0-9a-f]{6})', html_part(message))
    assert colours == ["#15803d", "#374151", "#b91c1c"]


def test_a_text_response_gets_one_answer_link(acme_key, mailoutbox):
    # given: a clarifying question, answered in words
    decision = Refund(
        api_key=acme_key[0], action="Which warehouse should ship order #1042?", response_type="text"
    )

    # when
    send(decision)

    # then
    message = mailoutbox[0]
    buttons = html_buttons(message)
    assert [label for label, _ in buttons] == ["Answer"]
    assert text_links(message) == buttons
    claim = claim_of(buttons[0][1])
    assert claim.choice == TEXT_ANSWER
    assert claim.request_id == decision.requests.get().pk


def test_each_approver_gets_links_of_their_own(acme_key, mailoutbox):
    # given
    decision = Refund(api_key=acme_key[0], approvers=(ALICE, BOB))

    # when
    send(decision, ALICE)
    send(decision, BOB)

    # then: alice's links name alice's request, bob's name bob's; none is shared
    by_recipient = {message.to[0]: [url for _, url in text_links(message)] for message in mailoutbox}
    assert set(by_recipient) == {ALICE, BOB}
    assert not set(by_recipient[ALICE]) & set(by_recipient[BOB])
    for address, urls in by_recipient.items():
        request = decision.requests.get(address=address)
        assert {claim_of(url).request_id for url in urls} == {request.pk}


# --- escaping -------------------------------------------------------------------------------


def test_html_and_script_from_the_agent_are_escaped_in_the_html_part(acme_key, mailoutbox):
    # given: an agent (or whoever wrote what it summarises) puts markup in every field
    send(
        Refund(
            api_key=acme_key[0],
            action="<script>alert('action')</script> refund",
            context='<img src=x onerror="alert(1)"> see <a href="https://evil.example">here</a>',
            details={"<b>customer</b>": "<script>alert('detail')</script>", "note": "a & b"},
        )
    )

    # then: shown as text, never as markup
    html = html_part(mailoutbox[0])
    assert "<script" not in html
    assert "<img" not in html
    assert "<b>" not in html
    assert "https://evil.example" not in [href for _, href in html_buttons(mailoutbox[0])]
    assert "&lt;script&gt;alert(&#x27;action&#x27;)&lt;/script&gt; refund" in html
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html
    assert "&lt;b&gt;customer&lt;/b&gt;" in html
    assert "&lt;script&gt;alert(&#x27;detail&#x27;)&lt;/script&gt;" in html
    assert "a &amp; b" in html
    # The plain-text part is not HTML: it shows the text as it was sent, unmangled.
    assert "<script>alert('action')</script> refund" in mailoutbox[0].body
    assert "a & b" in mailoutbox[0].body


# --- sent through the outbox ----------------------------------------------------------------


def test_a_delivery_attempt_sends_the_email_and_audits_notification_sent(acme_key, mailoutbox):
    # given
    decision = Refund(api_key=acme_key[0])

    # when
    delivery = send(decision)

    # then
    assert len(mailoutbox) == 1
    assert delivery.status == Delivery.Status.SENT
    assert delivery.sent_at is not None
    assert delivery.attempts == 1
    assert decision.requests.get(address=ALICE).notified_at == delivery.sent_at
    [sent] = events(decision, "notification.sent")
    assert sent.actor == "system"
    assert sent.channel == "email"
    assert payload(sent) == {
        "address": ALICE,
        "attempts": 1,
        "delivery_id": delivery.pk,
        "kind": "email",
        "purpose": "ask",
    }


def test_a_second_attempt_for_the_same_delivery_sends_nothing_more(acme_key, mailoutbox):
    # WHY: a redelivered task (or the sweep) may run the attempt twice; alice gets one email.
    decision = Refund(api_key=acme_key[0])
    send(decision)

    send(decision)

    assert len(mailoutbox) == 1
    assert len(events(decision, "notification.sent")) == 1


def test_no_email_goes_out_for_a_decision_resolved_before_its_turn(acme_key, mailoutbox):
    # given: bob answered before alice's email left the outbox
    decision = Refund(api_key=acme_key[0], approvers=(ALICE, BOB))
    decision_answer(request_id=decision.requests.get(address=BOB).pk, choice="approve", via="api")

    # when
    delivery = send(decision, ALICE)

    # then
    assert mailoutbox == []
    assert delivery.status == Delivery.Status.SKIPPED
    assert events(decision, "notification.sent") == []


class _RefusingSMTPHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP to refuse every recipient, as a server does for an unknown mailbox."""

    def reply(self, line: str) -> None:
        self.wfile.write(f"{line}\r\n".encode())

    def handle(self) -> None:
        self.reply("220 mx.example.test ESMTP")
        for raw in self.rfile:
            line = raw.decode(errors="replace").strip()
            self.server.commands.append(line)
            verb = line[:4].upper()
            if verb in ("EHLO", "HELO"):
                self.reply("250 mx.example.test")
            elif verb in ("MAIL", "RSET", "NOOP"):
                self.reply("250 2.0.0 OK")
            elif verb == "RCPT":
                self.reply("550 5.1.1 No such user here")
            elif verb == "QUIT":
                self.reply("221 2.0.0 Bye")
                return
            else:
                self.reply("502 5.5.2 Command not recognised")


@pytest.fixture
def refusing_smtp_server(settings):
    """A local SMTP server that answers 550 to RCPT TO, with Django's SMTP backend pointed at it."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _RefusingSMTPHandler)
    server.daemon_threads = True
    server.commands = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = server.server_address
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 5
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_a_recipient_the_smtp_server_refuses_fails_the_delivery_at_once_with_the_reason(
    acme_key, refusing_smtp_server
):
    # given
    decision = Refund(api_key=acme_key[0])

    # when
    delivery = send(decision)

    # then: a refused mailbox will not start working on retry, so it fails now, with the reason
    assert any(cmd.upper().startswith("RCPT TO:<ALICE@EXAMPLE.COM>") for cmd in refusing_smtp_server.commands)
    assert not any(cmd.upper() == "DATA" for cmd in refusing_smtp_server.commands)
    assert delivery.status == Delivery.Status.FAILED
    assert delivery.attempts == 1
    assert delivery.last_error == f"recipient refused: {ALICE}"
    assert decision.requests.get(address=ALICE).notified_at is None
    assert events(decision, "notification.sent") == []
    [failed] = events(decision, "notification.failed")
    assert failed.actor == "system"
    assert payload(failed)["reason"] == f"recipient refused: {ALICE}"
    assert payload(failed)["address"] == ALICE
    # The decision itself is untouched: others may still answer, or the deadline will.
    decision.refresh_from_db()
    assert decision.status == "pending"
    assert decision.requests.get(address=ALICE).state == ApprovalRequest.State.PENDING


# --- tracking webhooks (django-anymail) -----------------------------------------------------

WEBHOOK = "/anymail/postmark/tracking/"
WEBHOOK_SECRET = "tracker:s3cret-webhook-pass"


@pytest.fixture
def anymail_provider(settings, mailoutbox):
    """Send through anymail's test provider, with tracking webhooks behind basic auth.

    Returns a function that sends alice's email for a decision and gives the provider's
    message id, as stored on her Delivery."""
    settings.EMAIL_BACKEND = "anymail.backends.test.EmailBackend"
    settings.ANYMAIL = {"WEBHOOK_SECRET": WEBHOOK_SECRET}

    def send_tracked(decision: Decision) -> str:
        # WHY the placeholder: anymail's test provider uses the outbox index as the message id,
        # and index 0 would read as "no id"; real providers send strings.
        if not mailoutbox:
            mailoutbox.append(None)
        delivery = send(decision)
        assert delivery.status == Delivery.Status.SENT
        assert delivery.provider_message_id
        return delivery.provider_message_id

    return send_tracked


def post_webhook(body: dict, *, auth: str = WEBHOOK_SECRET):
    credentials = base64.b64encode(auth.encode()).decode()
    return Client().post(
        WEBHOOK,
        data=json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Basic {credentials}",
    )


def postmark_delivery(message_id: str) -> dict:
    return {
        "RecordType": "Delivery",
        "ServerID": 23,
        "MessageStream": "outbound",
        "MessageID": message_id,
        "Recipient": ALICE,
        "Tag": "",
        "DeliveredAt": "2025-06-03T13:36:02Z",
        "Details": "Test delivery webhook details",
        "Metadata": {},
    }


def postmark_bounce(message_id: str, *, bounce_id: int = 4323372036854775807) -> dict:
    return {
        "RecordType": "Bounce",
        "ID": bounce_id,
        "Type": "HardBounce",
        "TypeCode": 1,
        "Name": "Hard bounce",
        "MessageStream": "outbound",
        "MessageID": message_id,
        "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": ALICE,
        "From": "countersign@acme.example",
        "BouncedAt": "2025-06-03T13:36:05Z",
        "Inactive": True,
        "CanActivate": True,
        "Subject": ACTION,
        "Metadata": {},
    }


def postmark_complaint(message_id: str) -> dict:
    return {
        **postmark_bounce(message_id, bounce_id=4323372036854775808),
        "RecordType": "SpamComplaint",
        "Type": "SpamComplaint",
        "TypeCode": 512,
        "Description": "The subscriber explicitly marked this message as spam.",
    }


@pytest.mark.urls("tests.anymail_urls")
def test_the_providers_message_id_is_kept_and_a_delivered_event_is_audited(acme_key, anymail_provider):
    # given
    decision = Refund(api_key=acme_key[0])
    message_id = anymail_provider(decision)

    # when
    response = post_webhook(postmark_delivery(message_id))

    # then
    assert response.status_code == 200
    [delivered] = events(decision, "notification.delivered")
    assert delivered.actor == "provider:Postmark"
    assert delivered.channel == "email"
    assert payload(delivered)["address"] == ALICE
    assert payload(delivered)["delivery_id"] == delivery_for(decision).pk


@pytest.mark.urls("tests.anymail_urls")
def test_a_bounce_and_a_complaint_are_audited_with_the_providers_description(acme_key, anymail_provider):
    decision = Refund(api_key=acme_key[0])
    message_id = anymail_provider(decision)

    assert post_webhook(postmark_bounce(message_id)).status_code == 200
    assert post_webhook(postmark_complaint(message_id)).status_code == 200

    [bounced] = events(decision, "notification.bounced")
    assert payload(bounced)["event_id"] == "4323372036854775807"
    assert payload(bounced)["description"].startswith("The server was unable to deliver")
    [complained] = events(decision, "notification.complained")
    assert payload(complained)["description"] == "The subscriber explicitly marked this message as spam."
    # A bounce is reported, not acted on: the decision still waits (its deadline will settle it).
    decision.refresh_from_db()
    assert decision.status == "pending"


@pytest.mark.urls("tests.anymail_urls")
def test_the_same_bounce_posted_twice_is_recorded_once(acme_key, anymail_provider):
    # WHY: providers retry webhooks they think failed; the trail must not show two bounces.
    decision = Refund(api_key=acme_key[0])
    message_id = anymail_provider(decision)

    first = post_webhook(postmark_bounce(message_id))
    again = post_webhook(postmark_bounce(message_id))

    assert (first.status_code, again.status_code) == (200, 200)
    assert len(events(decision, "notification.bounced")) == 1


@pytest.mark.urls("tests.anymail_urls")
def test_the_same_delivered_event_posted_twice_is_recorded_once(acme_key, anymail_provider):
    # Postmark's Delivery events carry no event ID of their own, unlike its bounces.
    decision = Refund(api_key=acme_key[0])
    message_id = anymail_provider(decision)

    first = post_webhook(postmark_delivery(message_id))
    again = post_webhook(postmark_delivery(message_id))

    assert (first.status_code, again.status_code) == (200, 200)
    assert len(events(decision, "notification.delivered")) == 1


@pytest.mark.urls("tests.anymail_urls")
def test_an_event_for_a_message_we_did_not_send_records_nothing(acme_key, anymail_provider):
    decision = Refund(api_key=acme_key[0])
    anymail_provider(decision)
    before = AuditEvent.objects.count()

    response = post_webhook(postmark_bounce("b7bc2f4a-e38e-4336-af7d-e6c392c2f817"))

    # Answered 200 all the same: a provider that gets errors retries, for nothing.
    assert response.status_code == 200
    assert AuditEvent.objects.count() == before


@pytest.mark.urls("tests.anymail_urls")
@pytest.mark.parametrize("auth", ["tracker:wrong-password", "someone:s3cret-webhook-pass", ""])
def test_a_webhook_with_the_wrong_basic_auth_is_rejected_and_records_nothing(
    acme_key, anymail_provider, auth
):
    # given: whoever knows the URL but not the secret tries to forge a bounce into the trail
    decision = Refund(api_key=acme_key[0])
    message_id = anymail_provider(decision)
    before = AuditEvent.objects.count()

    # when
    response = post_webhook(postmark_bounce(message_id), auth=auth)

    # then
    assert 400 <= response.status_code < 500
    assert AuditEvent.objects.count() == before
    assert events(decision, "notification.bounced") == []


@pytest.mark.urls("tests.anymail_urls")
def test_a_webhook_without_any_credentials_is_rejected(acme_key, anymail_provider):
    decision = Refund(api_key=acme_key[0])
    message_id = anymail_provider(decision)

    response = Client().post(
        WEBHOOK, data=json.dumps(postmark_bounce(message_id)), content_type="application/json"
    )

    assert 400 <= response.status_code < 500
    assert events(decision, "notification.bounced") == []
