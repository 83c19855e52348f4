"""The approver's pages at /a/<token>: a GET shows the decision and one confirm button and changes
nothing (mail scanners open every link); the confirm button POSTs, and that answers.

Acme's agent asks alice, bob and sometimes carol to sign off a refund. Their links come out of
the email the outbox sends; they open them with a plain browser client, no cookies.
"""

import hashlib
import json
import re
import time
from urllib.parse import urlencode, urlsplit

import pytest
from django.test import Client

from audit.models import AuditEvent
from decisions.models import ApprovalRequest, Decision
from decisions.services import MAX_NOTE_LENGTH, link_views
from notifications import dev_outbox
from notifications.models import Delivery
from notifications.services import delivery_attempt
from tests.conftest import ALICE, BOB, CAROL
from tests.factories import DecisionFactory
from tests.helpers import race

ACTION = "Refund order #1042 for €1,200"
CONTEXT = "The customer was charged twice.\nBoth charges are on the statement."
DETAILS = {"amount": 1200, "currency": "EUR", "customer": "Jane Doe"}
BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15"
SCANNERS = [
    "Mozilla/5.0 (compatible; Mimecast)",
    "Microsoft Office Safe Links",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) proofpoint",
]


# --- helpers ------------------------------------------------------------------------------


class Refund(DecisionFactory):
    action = ACTION
    context = CONTEXT
    details = DETAILS
    timeout_minutes = 30

    class Params:
        approvers = (ALICE, BOB)


def emailed(decision: Decision, address: str, mailoutbox):
    delivery = Delivery.objects.get(decision=decision, request__address=address)
    delivery_attempt(delivery_id=delivery.pk)
    return next(m for m in reversed(mailoutbox) if m.to == [address])


def all_link_paths(message) -> list[str]:
    """The path of every link in both parts of the message: the text part's lines and the
    HTML part's hrefs (a scanner follows both)."""
    html = next(body for body, mime in message.alternatives if mime == "text/html")
    urls = re.findall(r"https?://\S+", message.body) + re.findall(r'href="([^"]+)"', html)
    return [urlsplit(url).path for url in urls]


def emailed_links(decision: Decision, address: str, mailoutbox) -> dict[str, str]:
    """Send the approver's email through the outbox; the paths of its buttons' links, by label
    (not the inbox's link below them)."""
    message = emailed(decision, address, mailoutbox)
    pairs = re.findall(r"^(\S[^\n:]*): (https?://\S+)$", message.body, flags=re.MULTILINE)
    return {label: urlsplit(url).path for label, url in pairs if urlsplit(url).path != "/inbox"}


def browser(user_agent: str = BROWSER) -> Client:
    # A fresh client per visit: no cookies carried between requests, as from an email.
    return Client(HTTP_USER_AGENT=user_agent)


def post_form(path: str, fields: dict, *, user_agent: str = BROWSER):
    """A form POST, urlencoded as a browser sends it."""
    return browser(user_agent).post(path, urlencode(fields), content_type="application/x-www-form-urlencoded")


def confirm(path: str, **fields):
    """Press the confirm button on the page."""
    return post_form(path, {"confirm": "yes", **fields})


def page_text(response) -> str:
    html = response.content.decode()
    text = re.sub(r"<[^>]+>", " ", html)
    text = text.replace("&#x27;", "'").replace("&quot;", '"').replace("&amp;", "&")
    return " ".join(text.split())


def assert_html_page(response, status: int) -> None:
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith("text/html")


def reload(decision: Decision) -> Decision:
    return Decision.objects.get(pk=decision.pk)


def snapshot(decision: Decision) -> tuple:
    """Everything an answer could change, to compare before and after."""
    decision = reload(decision)
    requests = list(
        decision.requests.order_by("pk").values_list(
            "address", "state", "answered_at", "answered_via", "choice", "text", "note", "edited_details"
        )
    )
    return decision.status, decision.outcome, decision.resolved_at, decision.details, requests


def events(decision: Decision, event: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(decision=decision, event=event).order_by("pk"))


def payload(event: AuditEvent) -> dict:
    return json.loads(event.payload)


def states(decision: Decision) -> dict[str, str]:
    return dict(reload(decision).requests.values_list("address", "state"))


def independent_action_hash(action: str, details: dict) -> str:
    canonical = json.dumps(
        {"action": action, "details": details}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


# --- scanners -------------------------------------------------------------------------------


@pytest.mark.parametrize("scanner", SCANNERS)
def test_a_scanner_opening_every_link_three_times_answers_nothing_and_is_recorded(
    acme_key, mailoutbox, scanner
):
    # given: alice's and bob's emails, each with an approve and a deny link in both parts
    decision = Refund(api_key=acme_key[0])
    paths = [
        path for address in (ALICE, BOB) for path in all_link_paths(emailed(decision, address, mailoutbox))
    ]
    assert len(paths) == 12  # 2 approvers x (2 options + the inbox) x 2 parts
    assert paths.count("/inbox") == 4
    before = snapshot(decision)

    # when: the mail gateway fetches each link three times, as scanners do
    responses = [browser(scanner).get(path) for path in paths for _ in range(3)]

    # then: every fetch got the confirm page, and nothing was answered
    assert {r.status_code for r in responses} == {200}
    assert all(not r.cookies for r in responses)
    assert snapshot(decision) == before
    assert reload(decision).status == "pending"
    assert set(states(decision).values()) == {ApprovalRequest.State.PENDING}
    assert events(decision, "decision.answered") == []
    assert events(decision, "decision.resolved") == []
    # and the trail shows the visits, one event per link and client a minute (the text and
    # HTML parts hold the same 4 links): who the link was for, which button, from where
    viewed = events(decision, "link.viewed")
    assert len(viewed) == 4
    assert {payload(e)["views"] for e in viewed} == {1}
    assert {payload(e)["user_agent"] for e in viewed} == {scanner}
    assert {payload(e)["ip"] for e in viewed} == {"127.0.0.1"}
    assert {(e.actor, payload(e)["choice"]) for e in viewed} == {
        (ALICE, "approve"),
        (ALICE, "deny"),
        (BOB, "approve"),
        (BOB, "deny"),
    }
    assert {e.channel for e in viewed} == {"email"}


def test_a_bot_opening_a_link_80_times_in_a_minute_leaves_one_event(acme_key, mailoutbox):
    # given
    decision = Refund(api_key=acme_key[0])
    approve = emailed_links(decision, ALICE, mailoutbox)["Approve"]
    bot = browser(SCANNERS[0])

    # when: 40 GETs and 40 HEADs within the minute
    responses = [bot.get(approve) for _ in range(40)] + [bot.head(approve) for _ in range(40)]

    # then: every one was served, and the trail has one event, for the first
    assert {r.status_code for r in responses} == {200}
    (viewed,) = events(decision, "link.viewed")
    assert payload(viewed) == {"choice": "approve", "ip": "127.0.0.1", "user_agent": SCANNERS[0], "views": 1}


def test_the_first_view_of_a_later_window_carries_the_views_counted_since(acme_key, mailoutbox, monkeypatch):
    # given: a one-second window, so the test need not wait a minute
    monkeypatch.setattr(link_views, "LINK_VIEW_WINDOW_SECONDS", 1)
    decision = Refund(api_key=acme_key[0])
    approve = emailed_links(decision, ALICE, mailoutbox)["Approve"]
    bot = browser(SCANNERS[1])
    for _ in range(5):
        bot.get(approve)  # 1 recorded, 4 counted
    assert [payload(e)["views"] for e in events(decision, "link.viewed")] == [1]

    # when: the window is over and the bot comes back (twice)
    time.sleep(1.2)
    bot.get(approve)
    bot.get(approve)

    # then: one more event, standing for itself and the 4 counted before; the last view is
    # counted, waiting for the next event. The trail never changes an event: it appends.
    assert [payload(e)["views"] for e in events(decision, "link.viewed")] == [1, 5]


def test_each_link_and_each_client_has_its_own_window(acme_key, mailoutbox):
    # given
    decision = Refund(api_key=acme_key[0])
    links = emailed_links(decision, ALICE, mailoutbox)

    # when: the same link from a browser, a scanner and another address; and the other link
    for _ in range(3):
        browser().get(links["Approve"])
        browser(SCANNERS[0]).get(links["Approve"])
        browser().get(links["Approve"], REMOTE_ADDR="203.0.113.9")
        browser().get(links["Deny"])

    # then: one event each
    viewed = events(decision, "link.viewed")
    assert sorted((payload(e)["choice"], payload(e)["ip"], payload(e)["user_agent"]) for e in viewed) == [
        ("approve", "127.0.0.1", BROWSER),
        ("approve", "127.0.0.1", SCANNERS[0]),
        ("approve", "203.0.113.9", BROWSER),
        ("deny", "127.0.0.1", BROWSER),
    ]
    assert {payload(e)["views"] for e in viewed} == {1}


def test_while_the_cache_is_down_every_view_is_served_and_recorded(acme_key, mailoutbox, settings):
    # given
    decision = Refund(api_key=acme_key[0])
    approve = emailed_links(decision, ALICE, mailoutbox)["Approve"]
    # Port 1 on loopback: connection refused at once, like a Redis that is down.
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"socket_connect_timeout": 0.5},
        }
    }

    # when
    responses = [browser(SCANNERS[0]).get(approve) for _ in range(3)]

    # then: the pages are served; without the cache the views cannot be bounded, so none is lost
    assert {r.status_code for r in responses} == {200}
    assert [payload(e)["views"] for e in events(decision, "link.viewed")] == [1, 1, 1]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_views_of_a_link_leave_one_event(acme_key, mailoutbox):
    # given
    decision = Refund(api_key=acme_key[0])
    approve = emailed_links(decision, ALICE, mailoutbox)["Approve"]

    # when: a scanner fetches the link from 12 threads at once
    results = race(*[lambda: browser(SCANNERS[2]).get(approve).status_code for _ in range(12)])

    # then
    assert results == [200] * 12
    (viewed,) = events(decision, "link.viewed")
    assert payload(viewed)["views"] == 1


def test_a_head_request_answers_nothing(acme_key, mailoutbox):
    decision = Refund(api_key=acme_key[0])
    approve = emailed_links(decision, ALICE, mailoutbox)["Approve"]
    before = snapshot(decision)

    response = browser(SCANNERS[0]).head(approve)

    assert response.status_code == 200
    assert response.content == b""
    assert snapshot(decision) == before


def test_the_confirm_page_links_nowhere_a_scanner_could_follow_to_answer(acme_key, mailoutbox):
    # WHY: a scanner follows links, not forms; the only way to answer is the POST form.
    decision = Refund(api_key=acme_key[0])
    html = browser().get(emailed_links(decision, ALICE, mailoutbox)["Approve"]).content.decode()

    assert "<a " not in html
    assert re.findall(r"<form[^>]*>", html) == ['<form method="post">']
    assert "<script" not in html


# --- the confirm page -----------------------------------------------------------------------


def test_the_confirm_page_shows_the_decision_and_one_confirm_button_for_the_choice(acme_key, mailoutbox):
    # given
    decision = Refund(api_key=acme_key[0], urgency="high")
    alice_links = emailed_links(decision, ALICE, mailoutbox)

    # when
    response = browser().get(alice_links["Approve"])

    # then
    assert_html_page(response, 200)
    html = response.content.decode()
    text = page_text(response)
    assert "Acme Corp asks for your sign-off" in text
    assert "high" in text
    assert f"<h1>{ACTION}</h1>" in html
    assert CONTEXT in html  # shown with its line break (the page keeps white space)
    assert re.findall(r"<tr><th>([^<]*)</th><td>([^<]*)</td></tr>", html) == [
        ("amount", "1,200"),
        ("currency", "EUR"),
        ("customer", "Jane Doe"),
    ]
    assert re.search(r"This request expires in (29|30) minutes, at \d\d:\d\d UTC", text)
    assert '<input type="hidden" name="confirm" value="yes">' in html
    assert '<textarea id="note" name="note"' in html
    assert re.findall(r"<button[^>]*>([^<]*)</button>", html) == ["Confirm: Approve"]
    assert 'name="text"' not in html  # no answer field for a choice
    assert decision.id in text


def test_the_deny_link_confirms_deny(acme_key, mailoutbox):
    decision = Refund(api_key=acme_key[0])
    response = browser().get(emailed_links(decision, ALICE, mailoutbox)["Deny"])

    assert re.findall(r"<button[^>]*>([^<]*)</button>", response.content.decode()) == ["Confirm: Deny"]


def test_pages_are_never_cached_indexed_or_leaked_in_a_referer(acme_key, mailoutbox):
    # WHY: the URL is the credential.
    decision = Refund(api_key=acme_key[0], quorum="all")
    approve = emailed_links(decision, ALICE, mailoutbox)["Approve"]

    pages = {
        "confirm": browser().get(approve),
        "incomplete": post_form(approve, {}),
        "done": confirm(approve),
        "closed": browser().get(approve),
        "refused": confirm(approve),
        "not valid": browser().get(approve[:-3]),
    }

    assert {name: r.status_code for name, r in pages.items()} == {
        "confirm": 200,
        "incomplete": 400,
        "done": 200,
        "closed": 200,
        "refused": 409,
        "not valid": 404,
    }
    for name, response in pages.items():
        assert response["Referrer-Policy"] == "no-referrer", name
        assert "no-store" in response["Cache-Control"], name
        assert "noindex" in response["X-Robots-Tag"], name


# --- confirm flows --------------------------------------------------------------------------


def test_alice_approves_with_a_note(acme_key, mailoutbox):
    # given
    decision = Refund(api_key=acme_key[0])
    approve = emailed_links(decision, ALICE, mailoutbox)["Approve"]

    # when
    response = confirm(approve, note="Checked the statement: charged twice.")

    # then
    assert_html_page(response, 200)
    assert "Thank you — your answer is recorded: Approve." in page_text(response)
    decision = reload(decision)
    assert decision.status == "approved"
    outcome = decision.outcome
    assert (outcome["status"], outcome["choice"], outcome["by"], outcome["via"]) == (
        "approved",
        "approve",
        ALICE,
        "email",
    )
    assert outcome["note"] == "Checked the statement: charged twice."
    assert outcome["details"] == DETAILS
    assert outcome["action_hash"] == decision.action_hash
    alice = decision.requests.get(address=ALICE)
    assert (alice.state, alice.answered_via, alice.choice) == ("answered", "email", "approve")
    assert states(decision)[BOB] == ApprovalRequest.State.CLOSED
    [answered] = events(decision, "decision.answered")
    assert answered.actor == ALICE
    assert payload(answered)["ip"] == "127.0.0.1"
    assert payload(answered)["user_agent"] == BROWSER
    assert payload(answered)["note"] == "Checked the statement: charged twice."
    [resolved] = events(decision, "decision.resolved")
    assert payload(resolved)["status"] == "approved"


def test_alice_denies(acme_key, mailoutbox):
    decision = Refund(api_key=acme_key[0])
    deny = emailed_links(decision, ALICE, mailoutbox)["Deny"]

    response = confirm(deny, note="Not without the bank statement.")

    assert_html_page(response, 200)
    assert "your answer is recorded: Deny" in page_text(response)
    decision = reload(decision)
    assert decision.status == "denied"
    assert (decision.outcome["choice"], decision.outcome["by"]) == ("deny", ALICE)
    assert decision.outcome["note"] == "Not without the bank statement."


def test_alice_picks_a_custom_option(acme_key, mailoutbox):
    # given
    decision = Refund(api_key=acme_key[0], options=["approve", "escalate to legal", "deny"])
    escalate = emailed_links(decision, ALICE, mailoutbox)["Escalate to legal"]

    # when
    page = browser().get(escalate)
    response = confirm(escalate)

    # then
    assert "Confirm: Escalate to legal" in page_text(page)
    assert_html_page(response, 200)
    assert "Responded — escalate to legal" in page_text(response)
    decision = reload(decision)
    assert decision.status == "responded"
    assert (decision.outcome["choice"], decision.outcome["by"]) == ("escalate to legal", ALICE)


def test_alice_answers_a_question_in_words(acme_key, mailoutbox):
    # given
    decision = Refund(
        api_key=acme_key[0], action="Which warehouse should ship order #1042?", response_type="text"
    )
    [answer] = emailed_links(decision, ALICE, mailoutbox).values()

    # when
    page = browser().get(answer)
    response = confirm(answer, text="Rotterdam: Hamburg is out of stock.", note="")

    # then: the page asked for words, and the words are the outcome
    assert '<textarea id="text" name="text"' in page.content.decode()
    assert "Confirm: Send answer" in page_text(page)
    assert_html_page(response, 200)
    decision = reload(decision)
    assert decision.status == "responded"
    assert decision.outcome["text"] == "Rotterdam: Hamburg is out of stock."
    assert decision.outcome["choice"] is None
    assert decision.outcome["by"] == ALICE
    assert "Rotterdam: Hamburg is out of stock." in page_text(response)


@pytest.mark.parametrize("empty", ["", "   \n  "])
def test_an_empty_answer_shows_the_form_again_and_stores_nothing(acme_key, mailoutbox, empty):
    decision = Refund(
        api_key=acme_key[0], action="Which warehouse should ship order #1042?", response_type="text"
    )
    [answer] = emailed_links(decision, ALICE, mailoutbox).values()
    before = snapshot(decision)

    response = confirm(answer, text=empty, note="keep me")

    assert_html_page(response, 400)
    html = response.content.decode()
    assert "This decision asks for an answer in words." in page_text(response)
    assert '<textarea id="text" name="text"' in html
    assert ">keep me</textarea>" in html  # what she typed is not lost
    assert snapshot(decision) == before
    assert events(decision, "decision.answered") == []


def test_the_approve_page_of_an_editable_decision_offers_the_details_as_fields(acme_key, mailoutbox):
    decision = Refund(api_key=acme_key[0], allow_edit=True)
    alice_links = emailed_links(decision, ALICE, mailoutbox)

    approve_page = browser().get(alice_links["Approve"]).content.decode()
    deny_page = browser().get(alice_links["Deny"]).content.decode()

    assert '<input type="text" id="detail__amount" name="detail__amount" value="1200">' in approve_page
    assert 'name="detail__currency" value="EUR"' in approve_page
    # Nobody edits what they deny.
    assert "detail__" not in deny_page


def test_alice_approves_an_edited_amount(acme_key, mailoutbox):
    # given: alice may lower the refund before approving it
    decision = Refund(api_key=acme_key[0], allow_edit=True)
    approve = emailed_links(decision, ALICE, mailoutbox)["Approve"]

    # when: she submits the form with the amount changed, the rest as shown
    response = confirm(
        approve, detail__amount="100", detail__currency="EUR", detail__customer="Jane Doe", note="Partial"
    )

    # then: the outcome carries what she approved, typed like the original
    assert_html_page(response, 200)
    decision = reload(decision)
    assert decision.status == "approved"
    edited = {"amount": 100, "currency": "EUR", "customer": "Jane Doe"}
    assert decision.outcome["details"] == edited
    assert type(decision.outcome["details"]["amount"]) is int
    assert decision.outcome["action_hash"] == independent_action_hash(ACTION, edited)
    assert decision.outcome["action_hash"] != decision.action_hash
    # The request as it was put stays on record, unedited.
    assert decision.details == DETAILS
    assert decision.action_hash == independent_action_hash(ACTION, DETAILS)
    assert decision.requests.get(address=ALICE).edited_details == edited
    [answered] = events(decision, "decision.answered")
    assert payload(answered)["edited_details"] == edited


def test_approving_an_editable_decision_unchanged_approves_the_original(acme_key, mailoutbox):
    decision = Refund(api_key=acme_key[0], allow_edit=True)
    approve = emailed_links(decision, ALICE, mailoutbox)["Approve"]

    response = confirm(approve, detail__amount="1200", detail__currency="EUR", detail__customer="Jane Doe")

    assert_html_page(response, 200)
    decision = reload(decision)
    assert decision.outcome["details"] == DETAILS
    assert decision.outcome["action_hash"] == decision.action_hash


@pytest.mark.parametrize("amount", ["a hundred", "", "12abc", "1e999", "-inf", "nan"])
def test_an_edited_amount_that_is_not_a_number_shows_the_form_again_and_stores_nothing(
    acme_key, mailoutbox, amount
):
    decision = Refund(api_key=acme_key[0], allow_edit=True)
    approve = emailed_links(decision, ALICE, mailoutbox)["Approve"]
    before = snapshot(decision)

    response = confirm(approve, detail__amount=amount, note="my note")

    assert_html_page(response, 400)
    assert "amount must be a number." in page_text(response)
    assert 'name="detail__amount"' in response.content.decode()
    assert snapshot(decision) == before
    assert events(decision, "decision.answered") == []


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [{}, {"note": "Looks fine"}, {"confirm": "no"}, {"confirm": "YES "}, {"choice": "approve"}],
    ids=["empty", "note only", "confirm=no", "confirm mangled", "choice only"],
)
def test_a_post_without_the_pages_form_fields_changes_nothing(acme_key, mailoutbox, fields):
    # WHY: a scanner or prefetcher that POSTs blindly must not answer.
    decision = Refund(api_key=acme_key[0])
    approve = emailed_links(decision, ALICE, mailoutbox)["Approve"]
    before = snapshot(decision)

    response = post_form(approve, fields)

    assert_html_page(response, 400)
    assert "Use the confirm button on the page to answer." in page_text(response)
    assert snapshot(decision) == before
    assert events(decision, "decision.answered") == []


def test_a_one_megabyte_note_is_refused_without_echoing_it_back(acme_key, mailoutbox):
    # given
    decision = Refund(api_key=acme_key[0])
    approve = emailed_links(decision, ALICE, mailoutbox)["Approve"]
    before = snapshot(decision)
    note = "x" * 1_000_000  # the whole form stays just under the 1 MiB body limit

    # when
    response = confirm(approve, note=note)

    # then: a clear page, nothing stored, and not a megabyte sent back to her phone
    assert_html_page(response, 400)
    assert "The note is too long." in page_text(response)
    assert len(response.content) < 50_000
    assert snapshot(decision) == before
    assert events(decision, "decision.answered") == []


def test_a_form_larger_than_one_mebibyte_is_a_413_page(acme_key, mailoutbox):
    decision = Refund(api_key=acme_key[0])
    approve = emailed_links(decision, ALICE, mailoutbox)["Approve"]
    before = snapshot(decision)

    response = confirm(approve, note="x" * (1024 * 1024))

    assert_html_page(response, 413)
    assert "Too large" in page_text(response)
    assert snapshot(decision) == before


def test_a_note_at_the_limit_is_kept_whole(acme_key, mailoutbox):
    decision = Refund(api_key=acme_key[0])
    approve = emailed_links(decision, ALICE, mailoutbox)["Approve"]

    response = confirm(approve, note="n" * MAX_NOTE_LENGTH)

    assert_html_page(response, 200)
    assert reload(decision).outcome["note"] == "n" * MAX_NOTE_LENGTH


def test_a_form_with_thousands_of_fields_is_a_400_page(acme_key, mailoutbox):
    decision = Refund(api_key=acme_key[0])
    approve = emailed_links(decision, ALICE, mailoutbox)["Approve"]
    before = snapshot(decision)

    response = post_form(approve, {"confirm": "yes", **{f"f{i}": "x" for i in range(3000)}})

    assert_html_page(response, 400)
    assert snapshot(decision) == before


@pytest.mark.parametrize("field", ["note", "text"])
def test_a_nul_character_in_what_alice_types_is_refused_not_a_500(acme_key, mailoutbox, field):
    # WHY: PostgreSQL text cannot hold NUL; a stray byte from a paste must be a clear 400.
    fields = {"response_type": "text"} if field == "text" else {}
    decision = Refund(api_key=acme_key[0], **fields)
    [link, *_] = emailed_links(decision, ALICE, mailoutbox).values()
    before = snapshot(decision)

    response = confirm(link, **{field: "Ship from\x00 Rotterdam"})

    assert_html_page(response, 400)
    assert snapshot(decision) == before


def test_a_nul_character_in_an_edited_detail_is_refused_not_a_500(acme_key, mailoutbox):
    decision = Refund(api_key=acme_key[0], allow_edit=True)
    approve = emailed_links(decision, ALICE, mailoutbox)["Approve"]
    before = snapshot(decision)

    response = confirm(approve, detail__customer="Jane\x00 Doe")

    assert_html_page(response, 400)
    assert snapshot(decision) == before


def test_markup_from_the_agent_is_escaped_on_every_page(acme_key, mailoutbox):
    # given: markup in the action, the context, the details' keys and values
    decision = Refund(
        api_key=acme_key[0],
        quorum="all",
        allow_edit=True,
        action="<script>alert('action')</script> refund",
        context='<img src=x onerror="alert(1)">',
        details={
            "<b>customer</b>": "<script>alert('detail')</script>",
            "memo": '"><script>alert(2)</script>',
        },
    )
    alice_links = emailed_links(decision, ALICE, mailoutbox)

    # when: alice sees the confirm page, approves (with markup in her note), sees it again
    pages = [
        browser().get(alice_links["Approve"]),
        browser().get(alice_links["Deny"]),
        confirm(alice_links["Approve"], note="<script>alert('note')</script>"),
        browser().get(alice_links["Approve"]),
    ]
    bob_deny = emailed_links(decision, BOB, mailoutbox)["Deny"]
    pages.append(confirm(bob_deny, note="<b>no</b>"))  # resolves it: the outcome page shows notes
    pages.append(browser().get(alice_links["Approve"]))

    # then: nothing the agent or an approver wrote became markup
    for response in pages:
        assert response.status_code == 200
        html = response.content.decode()
        assert "<script" not in html
        assert "<img" not in html
        assert "<b>" not in html
        assert "&lt;script&gt;alert(&#x27;action&#x27;)&lt;/script&gt; refund" in html
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in pages[0].content.decode()
    assert "&lt;b&gt;customer&lt;/b&gt;" in pages[1].content.decode()
    # In an input's value, a quote must not close the attribute.
    assert 'value="&quot;&gt;&lt;script&gt;alert(2)&lt;/script&gt;"' in pages[0].content.decode()
    assert "&lt;b&gt;no&lt;/b&gt;" in pages[-1].content.decode()
    assert reload(decision).status == "denied"


# --- quorum ---------------------------------------------------------------------------------


def test_quorum_all_waits_for_everyone_then_approves(acme_key, mailoutbox):
    # given
    decision = Refund(api_key=acme_key[0], quorum="all")
    alice_approve = emailed_links(decision, ALICE, mailoutbox)["Approve"]
    bob_approve = emailed_links(decision, BOB, mailoutbox)["Approve"]

    # when: alice approves
    first = confirm(alice_approve)

    # then: recorded, still waiting for bob
    assert_html_page(first, 200)
    assert "The decision waits for the other approvers." in page_text(first)
    assert reload(decision).status == "pending"
    assert states(decision) == {ALICE: "answered", BOB: "pending"}

    # when: bob approves
    second = confirm(bob_approve, note="Agreed")

    # then
    assert_html_page(second, 200)
    decision = reload(decision)
    assert decision.status == "approved"
    assert decision.outcome["by"] == BOB
    assert "Approved" in page_text(second)
    assert len(events(decision, "decision.answered")) == 2
    assert len(events(decision, "decision.resolved")) == 1


def test_under_quorum_all_one_deny_resolves_at_once(acme_key, mailoutbox):
    decision = Refund(api_key=acme_key[0], approvers=(ALICE, BOB, CAROL), quorum="all")
    assert confirm(emailed_links(decision, ALICE, mailoutbox)["Approve"]).status_code == 200

    response = confirm(emailed_links(decision, BOB, mailoutbox)["Deny"], note="No.")

    assert_html_page(response, 200)
    decision = reload(decision)
    assert decision.status == "denied"
    assert decision.outcome["by"] == BOB
    assert states(decision) == {ALICE: "answered", BOB: "answered", CAROL: "closed"}


def test_two_of_three_approve_and_carols_request_is_closed(acme_key, mailoutbox):
    # given
    decision = Refund(api_key=acme_key[0], approvers=(ALICE, BOB, CAROL), quorum=2)
    links = {address: emailed_links(decision, address, mailoutbox) for address in (ALICE, BOB, CAROL)}

    # when: alice approves (one of two), then bob (two of two)
    assert "waits for the other approvers" in page_text(confirm(links[ALICE]["Approve"]))
    assert reload(decision).status == "pending"
    assert_html_page(confirm(links[BOB]["Approve"]), 200)

    # then
    decision = reload(decision)
    assert decision.status == "approved"
    assert decision.outcome["by"] == BOB
    assert states(decision) == {ALICE: "answered", BOB: "answered", CAROL: "closed"}
    # carol's links now show the outcome and cannot change it
    carol_view = browser().get(links[CAROL]["Deny"])
    assert_html_page(carol_view, 200)
    assert f"by {BOB} via email" in page_text(carol_view)
    assert_html_page(confirm(links[CAROL]["Deny"]), 409)
    assert reload(decision).status == "approved"
    assert states(decision)[CAROL] == "closed"


# --- dev outbox -----------------------------------------------------------------------------


@pytest.fixture
def outbox_dir(tmp_path, monkeypatch):
    folder = tmp_path / "dev-outbox"
    monkeypatch.setattr(dev_outbox, "OUTBOX_DIR", folder)
    return folder


@pytest.fixture
def dev_outbox_on(settings, outbox_dir):
    settings.DEBUG = True
    settings.EMAIL_BACKEND = "notifications.dev_outbox.DevOutboxBackend"
    settings.DEV_OUTBOX_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    return outbox_dir


def test_the_dev_outbox_is_not_there_without_debug(settings, outbox_dir, db):
    # given: a kept message (say, from an earlier DEBUG run)
    settings.DEBUG = False
    outbox_dir.mkdir()
    (outbox_dir / "20250603T133500000000-abcdef12.json").write_text(
        json.dumps({"subject": "s", "to": [ALICE], "from": "f", "at": "t", "text": "secret", "html": ""})
    )

    listing = Client().get("/dev/outbox/")
    message = Client().get("/dev/outbox/20250603T133500000000-abcdef12")

    assert listing.status_code == 404
    assert message.status_code == 404
    assert b"secret" not in message.content


def test_with_debug_every_email_is_in_the_dev_outbox_with_working_links(acme_key, mailoutbox, dev_outbox_on):
    # given
    decision = Refund(api_key=acme_key[0])

    # when: alice's email goes out
    emailed(decision, ALICE, mailoutbox)

    # then: it is sent as configured, and kept
    assert len(mailoutbox) == 1
    [kept] = list(dev_outbox_on.glob("*.json"))
    listing = Client().get("/dev/outbox/")
    assert listing.status_code == 200
    assert f"Approval needed: {ACTION}" in page_text(listing)
    assert f"to {ALICE}" in page_text(listing)
    assert f'href="/dev/outbox/{kept.stem}"' in listing.content.decode()

    # and its page is the email, whose approve link works
    message = Client().get(f"/dev/outbox/{kept.stem}")
    assert message.status_code == 200
    hrefs = re.findall(r'href="([^"]+)"', message.content.decode())
    *paths, inbox = [urlsplit(href).path for href in hrefs]
    assert inbox == "/inbox"
    assert len(paths) == 2
    assert all(path.startswith("/a/") for path in paths)
    approve = paths[0]
    assert "Confirm: Approve" in page_text(browser().get(approve))
    assert_html_page(confirm(approve), 200)
    assert reload(decision).status == "approved"


@pytest.mark.parametrize("name", ["..", "..%2F..%2Fsecret_key", "%2E%2E", "nope"])
def test_the_dev_outbox_serves_only_its_own_messages(acme_key, mailoutbox, dev_outbox_on, name):
    emailed(Refund(api_key=acme_key[0]), ALICE, mailoutbox)

    response = Client().get(f"/dev/outbox/{name}")

    assert response.status_code == 404
