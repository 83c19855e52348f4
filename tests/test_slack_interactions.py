"""POST /slack/interactions: buttons pressed and modals submitted in Slack, signed the way Slack
signs them, answered through the decision services; whatever cannot be done is told to the
clicker privately (an ephemeral reply to the response_url, which the fake Slack records).

Named actors: alice (slack:U0ALICE) is asked in her DM; #ops is a channel where dan (U0DAN)
answers for the team; mallory (U0MALLORY) clicks what is not hers; carol answers by email.
"""

import json
import time
from urllib.parse import urlencode

import factory
import pytest
from django.test import Client

from audit.models import AuditEvent
from channels.slack.messages import CHOICE_ACTION_PREFIX, MODAL_CALLBACK, NOTE_ACTION, is_slack_url
from channels.slack.models import SlackSettings
from decisions.links import link_token, request_token
from decisions.models import ApprovalRequest, Decision, ResponseType, Status
from decisions.services import decision_answer
from notifications.models import Delivery
from notifications.services import delivery_attempt
from tests.conftest import CAROL
from tests.factories import DecisionFactory
from tests.fake_slack import (  # noqa: F401
    INTERACTIONS_PATH,
    SIGNING_SECRET,
    fake_slack_fixture,
    form_body,
    post_signed,
    slack_signature,
)
from tests.helpers import reload, snapshot
from tests.receiver import receiver_fixture  # noqa: F401

ALICE_SLACK = "slack:U0ALICE"
ALICE = {"id": "U0ALICE", "username": "alice"}
DAN = {"id": "U0DAN", "username": "dan"}
MALLORY = {"id": "U0MALLORY", "username": "mallory"}
OPS = "slack:#ops"
ACTION = "Refund order #1042 for €1,200"
APPROVE, DENY, CUSTOM = (f"{CHOICE_ACTION_PREFIX}{index}" for index in range(3))


# --- helpers ------------------------------------------------------------------------------


class Refund(DecisionFactory):
    action = ACTION
    timeout_minutes = 60
    options = factory.List(["approve", "deny", "escalate to legal"])


def posted(decision: Decision, address: str) -> ApprovalRequest:
    """Post the Slack message for this approver through the outbox; their request, reloaded."""
    delivery = Delivery.objects.get(
        decision=decision, request__address=address, kind="slack", purpose=Delivery.Purpose.ASK
    )
    delivery_attempt(delivery_id=delivery.pk)
    request = ApprovalRequest.objects.get(pk=delivery.request_id)
    assert request.slack_ts, "the message was not posted"
    return request


def click(fake_slack, request: ApprovalRequest, action_id: str, clicker: dict, **overrides) -> dict:
    """A block_actions payload: `clicker` pressed the button `action_id` on `request`'s message."""
    payload = {
        "type": "block_actions",
        "user": clicker,
        "actions": [{"action_id": action_id, "value": request_token(request), "type": "button"}],
        "trigger_id": f"trigger-{clicker['id']}",
        "response_url": fake_slack.response_url(clicker["id"]),
        "container": {"channel_id": request.slack_channel, "message_ts": request.slack_ts},
    }
    payload.update(overrides)
    return payload


def submission(request: ApprovalRequest, user: dict, *, choice=None, text=None, note=None, **view) -> dict:
    """A view_submission payload: `user` sent the answer modal for `request`."""
    values: dict = {"cs_note": {"note": {"type": "plain_text_input", "value": note}}}
    if choice is not None:
        values["cs_choice"] = {"choice": {"type": "static_select", "selected_option": {"value": choice}}}
    if text is not None:
        values["cs_text"] = {"text": {"type": "plain_text_input", "value": text}}
    return {
        "type": "view_submission",
        "user": user,
        "view": {
            "callback_id": MODAL_CALLBACK,
            "private_metadata": request_token(request),
            "state": {"values": values},
            **view,
        },
    }


def send(payload, **kwargs):
    return post_signed(Client(), form_body(payload), **kwargs)


def answered_events(decision: Decision) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(decision=decision, event="decision.answered").order_by("pk"))


@pytest.fixture
def alice_asked(acme_key, fake_slack) -> ApprovalRequest:
    """alice's DM message, posted: approve, deny, escalate to legal, answer with a note."""
    return posted(Refund(api_key=acme_key[0], approvers=[ALICE_SLACK]), ALICE_SLACK)


@pytest.fixture
def ops_asked(acme_key, fake_slack) -> ApprovalRequest:
    return posted(Refund(api_key=acme_key[0], approvers=[OPS]), OPS)


# --- signed clicks answer ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action_id", "status", "choice"),
    [
        (APPROVE, Status.APPROVED, "approve"),
        (DENY, Status.DENIED, "deny"),
        (CUSTOM, Status.RESPONDED, "escalate to legal"),
    ],
)
def test_alice_clicks_a_button_in_her_dm_and_the_decision_is_answered(
    fake_slack, alice_asked, action_id, status, choice
):
    # when
    response = send(click(fake_slack, alice_asked, action_id, ALICE))

    # then: acknowledged at once, with the answer recorded as alice's via Slack
    assert response.status_code == 200
    decision = reload(alice_asked.decision)
    assert decision.status == status
    assert (decision.outcome["by"], decision.outcome["via"], decision.outcome["choice"]) == (
        ALICE_SLACK,
        "slack",
        choice,
    )
    request = ApprovalRequest.objects.get(pk=alice_asked.pk)
    assert (request.state, request.choice, request.answered_via) == ("answered", choice, "slack")
    (answered,) = answered_events(decision)
    assert answered.actor == ALICE_SLACK
    assert json.loads(answered.payload)["user_agent"] == "Slack"
    # Nothing to tell her privately: the message itself will show the outcome.
    assert fake_slack.replies == []
    (update,) = Delivery.objects.filter(decision=decision, purpose=Delivery.Purpose.UPDATE)
    assert update.request_id == alice_asked.pk


def test_in_a_channel_whoever_clicks_is_recorded_with_their_name(fake_slack, ops_asked):
    # when: dan, a member of #ops, approves
    response = send(click(fake_slack, ops_asked, APPROVE, DAN))

    # then: the outcome names dan, not the channel
    assert response.status_code == 200
    decision = reload(ops_asked.decision)
    assert decision.status == Status.APPROVED
    assert (decision.outcome["by"], decision.outcome["via"]) == ("slack:U0DAN", "slack")
    assert ApprovalRequest.objects.get(pk=ops_asked.pk).answered_by == "slack:U0DAN"
    (answered,) = answered_events(decision)
    assert answered.actor == "slack:U0DAN"
    payload = json.loads(answered.payload)
    assert (payload["address"], payload["name"]) == (OPS, "dan")


def test_an_approver_named_by_email_answers_in_her_dm_as_herself(acme, acme_key, fake_slack):
    # given: Acme also DMs approvers named by email; carol is found in Slack by her address
    SlackSettings.objects.create(organization=acme, dm_email_approvers=True)
    fake_slack.users_by_email[CAROL] = "U0CAROL"
    decision = Refund(api_key=acme_key[0], approvers=[CAROL])
    carol = posted(decision, CAROL)

    # when
    response = send(click(fake_slack, carol, APPROVE, {"id": "U0CAROL", "username": "carol"}))

    # then: the outcome names her address, and her email request is settled by the same answer
    assert response.status_code == 200
    decision = reload(decision)
    assert (decision.status, decision.outcome["by"], decision.outcome["via"]) == (
        Status.APPROVED,
        CAROL,
        "slack",
    )
    assert decision.requests.get(channel="email").state == ApprovalRequest.State.CLOSED


def test_someone_else_cannot_answer_for_an_approver_named_by_email(acme, acme_key, fake_slack):
    SlackSettings.objects.create(organization=acme, dm_email_approvers=True)
    fake_slack.users_by_email[CAROL] = "U0CAROL"
    decision = Refund(api_key=acme_key[0], approvers=[CAROL])
    carol = posted(decision, CAROL)
    before = snapshot(decision)

    response = send(click(fake_slack, carol, APPROVE, MALLORY))

    assert response.status_code == 200
    assert snapshot(decision) == before
    (reply,) = fake_slack.replies_to("U0MALLORY")
    assert "only they can answer" in reply.text


# --- signatures -----------------------------------------------------------------------------


def _raw_post(body: str | bytes, headers: dict):
    # Client(raise_request_exception=False): a crash shows up as the 500 it would be in production.
    return Client(raise_request_exception=False).post(
        INTERACTIONS_PATH, data=body, content_type="application/x-www-form-urlencoded", headers=headers
    )


def _signed(*, age: int = 0, stamp: str | None = None, secret: str = SIGNING_SECRET, tamper: str = ""):
    """Headers for a body signed `age` seconds ago (or at `stamp`), with `tamper` appended to
    what was signed. Takes the clock reading from the test, so a signature and its header
    never straddle a second: each case fails for the one reason it names."""

    def headers(body: str, now: int) -> dict:
        at = str(now - age) if stamp is None else stamp
        return {
            "X-Slack-Request-Timestamp": at,
            "X-Slack-Signature": slack_signature(body + tamper, at, secret),
        }

    return headers


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(_signed(secret="guess"), id="wrong-secret"),
        pytest.param(_signed(tamper="&extra=1"), id="body-tampered"),
        pytest.param(lambda body, now: {}, id="no-headers"),
        pytest.param(lambda body, now: {"X-Slack-Request-Timestamp": str(now)}, id="no-signature"),
        pytest.param(
            lambda body, now: {"X-Slack-Signature": slack_signature(body, str(now))}, id="no-timestamp"
        ),
        # Correctly signed, but six minutes old: a captured request replayed later.
        pytest.param(_signed(age=360), id="replayed-old-timestamp"),
        pytest.param(_signed(age=-360), id="timestamp-from-the-future"),
        pytest.param(_signed(stamp="yesterday"), id="timestamp-not-a-number"),
    ],
)
def test_an_unsigned_forged_or_stale_click_is_refused_and_changes_nothing(fake_slack, alice_asked, forge):
    # given
    before = snapshot(alice_asked.decision)
    body = form_body(click(fake_slack, alice_asked, APPROVE, ALICE))

    # when
    response = _raw_post(body, forge(body, int(time.time())))

    # then
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_signature"
    assert snapshot(alice_asked.decision) == before
    assert fake_slack.replies == []


def test_the_same_click_signed_now_is_accepted(fake_slack, alice_asked):
    # The control for the cases above: only the forgery differs.
    body = form_body(click(fake_slack, alice_asked, APPROVE, ALICE))
    response = _raw_post(body, _signed()(body, int(time.time())))

    assert response.status_code == 200
    assert reload(alice_asked.decision).status == Status.APPROVED


def test_a_body_that_is_not_utf8_is_refused_as_unsigned(fake_slack, alice_asked):
    # given: garbage bytes with a fresh timestamp and some signature
    before = snapshot(alice_asked.decision)

    response = _raw_post(
        b"payload=\xff\xfe",
        {"X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0=00"},
    )

    assert response.status_code == 401
    assert snapshot(alice_asked.decision) == before


# --- malformed payloads -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("token=abc&type=block_actions", id="no-payload-field"),
        pytest.param("payload=%7Bnot+json", id="payload-not-json"),
        pytest.param(form_body([{"type": "block_actions"}]), id="payload-a-json-list"),
        pytest.param("not a form at all", id="not-a-form"),
        # 5 000 levels: json.loads itself gives up with a RecursionError
        pytest.param(
            urlencode({"payload": '{"type": "block_actions", "actions": ' + "[" * 5000 + "]" * 5000 + "}"}),
            id="nested-5000-deep",
        ),
        # parses, but deeper than any JSON we accept anywhere (broker.http.MAX_JSON_DEPTH)
        pytest.param(
            urlencode({"payload": '{"type": "block_actions", "actions": ' + "[" * 40 + "]" * 40 + "}"}),
            id="nested-40-deep",
        ),
    ],
)
def test_a_signed_but_malformed_payload_is_a_400_and_changes_nothing(fake_slack, alice_asked, body):
    before = snapshot(alice_asked.decision)

    response = post_signed(Client(raise_request_exception=False), body)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_payload"
    assert snapshot(alice_asked.decision) == before


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(
            lambda fs, r: click(fs, r, APPROVE, {"id": "U0ALICE", "username": "ali\x00ce"}), id="nul"
        ),
        pytest.param(
            lambda fs, r: submission(r, ALICE, choice="approve", note="\ud800"), id="lone-surrogate"
        ),
    ],
)
def test_a_signed_payload_postgresql_could_not_store_is_a_400_and_changes_nothing(
    fake_slack, alice_asked, build
):
    # given: JSON that parses, holding a NUL or a lone surrogate (\ud800): PostgreSQL refuses both
    before = snapshot(alice_asked.decision)
    body = urlencode({"payload": json.dumps(build(fake_slack, alice_asked))})

    # when
    response = post_signed(Client(raise_request_exception=False), body)

    # then: refused as the API refuses such JSON, before anything is answered
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_payload"
    assert snapshot(alice_asked.decision) == before


def _with(payload: dict, path: tuple[str, ...], value) -> dict:
    target = payload
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return payload


@pytest.mark.parametrize(
    "mangle",
    [
        # Signed, so it came from Slack's side; but the shapes inside are not Slack's.
        pytest.param(lambda fs, r: click(fs, r, APPROVE, ALICE, user="U0ALICE"), id="click-user-a-string"),
        pytest.param(
            lambda fs, r: click(fs, r, APPROVE, ALICE, actions="approve"), id="click-actions-a-string"
        ),
        pytest.param(
            lambda fs, r: click(fs, r, APPROVE, ALICE, actions=["approve"]), id="click-action-a-string"
        ),
        pytest.param(
            lambda fs, r: _with(submission(r, ALICE, choice="approve"), ("user",), 7),
            id="modal-user-a-number",
        ),
        pytest.param(
            lambda fs, r: _with(submission(r, ALICE, choice="approve"), ("view", "state"), ["approve"]),
            id="modal-state-a-list",
        ),
        pytest.param(
            lambda fs, r: _with(
                submission(r, ALICE, choice="approve"), ("view", "state", "values"), ["approve"]
            ),
            id="modal-values-a-list",
        ),
        pytest.param(
            lambda fs, r: _with(
                submission(r, ALICE, choice="approve"), ("view", "state", "values", "cs_choice"), "approve"
            ),
            id="modal-field-a-string",
        ),
    ],
)
def test_a_signed_payload_with_wrong_shapes_inside_is_refused_and_changes_nothing(
    fake_slack, alice_asked, mangle
):
    # given
    before = snapshot(alice_asked.decision)
    payload = mangle(fake_slack, alice_asked)

    # when
    response = post_signed(Client(raise_request_exception=False), form_body(payload))

    # then: a 400 or a polite refusal, never a 500; and never an answer
    assert response.status_code in (200, 400)
    assert snapshot(alice_asked.decision) == before


def test_a_channel_click_that_names_no_user_is_refused(fake_slack, ops_asked):
    # given: in a channel anyone may answer, so the clicker's id is the only record of who did
    before = snapshot(ops_asked.decision)
    payload = click(fake_slack, ops_asked, APPROVE, DAN)
    del payload["user"]

    # when
    response = post_signed(Client(raise_request_exception=False), form_body(payload))

    # then: an answer by nobody in particular is not an answer
    assert response.status_code == 400
    assert snapshot(ops_asked.decision) == before


@pytest.mark.parametrize(
    "action_id", [f"{CHOICE_ACTION_PREFIX}3", f"{CHOICE_ACTION_PREFIX}x", "delete_all", ""]
)
def test_an_unknown_action_id_is_a_400_and_changes_nothing(fake_slack, alice_asked, action_id):
    before = snapshot(alice_asked.decision)

    response = send(click(fake_slack, alice_asked, action_id, ALICE))

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unknown_action"
    assert snapshot(alice_asked.decision) == before


def _value_from_another_decision(acme_key, alice_asked) -> str:
    # Signed by us, but naming alice's request together with another decision's id.
    other = Refund(api_key=acme_key[0], approvers=[ALICE_SLACK], action="Delete the staging database")
    return request_token(ApprovalRequest(pk=alice_asked.pk, decision_id=other.id))


def _value_of_an_email_request(acme_key, alice_asked) -> str:
    # Carol's request is an email one: no Slack button can answer it.
    decision = Refund(api_key=acme_key[0], approvers=[CAROL])
    return request_token(decision.requests.get())


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(lambda acme_key, asked: "garbage", id="garbage"),
        pytest.param(lambda acme_key, asked: request_token(asked)[:-3] + "abc", id="tampered"),
        # The email link's token is signed for another purpose (another salt).
        pytest.param(lambda acme_key, asked: link_token(asked, "approve"), id="email-link-token"),
        pytest.param(_value_from_another_decision, id="mismatched-decision"),
        pytest.param(_value_of_an_email_request, id="email-request"),
    ],
)
def test_a_button_value_that_is_not_one_of_ours_is_a_400_and_changes_nothing(
    acme_key, fake_slack, alice_asked, value
):
    # given
    forged = value(acme_key, alice_asked)
    before = snapshot(alice_asked.decision)
    payload = click(fake_slack, alice_asked, APPROVE, ALICE)
    payload["actions"][0]["value"] = forged

    # when
    response = send(payload)

    # then
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unknown_action"
    assert snapshot(alice_asked.decision) == before
    assert not Decision.objects.exclude(status=Status.PENDING).exists()


# --- polite refusals --------------------------------------------------------------------------


def test_mallory_cannot_answer_alices_dm_and_is_told_so_privately(fake_slack, alice_asked):
    # given: mallory got hold of the message (forwarded, say) and presses Approve
    before = snapshot(alice_asked.decision)

    # when
    response = send(click(fake_slack, alice_asked, APPROVE, MALLORY))

    # then: Slack gets its 200 (no error dialog); mallory gets the reason; nothing changes
    assert response.status_code == 200
    assert snapshot(alice_asked.decision) == before
    (reply,) = fake_slack.replies_to("U0MALLORY")
    assert reply.text == "This request is for <@U0ALICE>: only they can answer it."
    assert reply.body["response_type"] == "ephemeral"
    assert reply.body["replace_original"] is False


@pytest.mark.parametrize(
    "response_url",
    ["http://127.0.0.1:{port}/steal", "http://localhost:{port}/latest/meta-data"],
    ids=["internal-address", "internal-name"],
)
def test_a_response_url_off_slacks_hosts_is_never_fetched(fake_slack, alice_asked, receiver, response_url):
    # given: a validly signed click whose response_url points into our own network (the
    # receiver stands in for an internal service)
    payload = click(
        fake_slack, alice_asked, APPROVE, MALLORY, response_url=response_url.format(port=receiver.port)
    )
    before = snapshot(alice_asked.decision)

    # when: mallory is refused, which is normally told to the response_url
    response = send(payload)

    # then: Slack still gets its 200, and nothing was sent anywhere
    assert response.status_code == 200
    assert snapshot(alice_asked.decision) == before
    assert receiver.requests == []
    assert fake_slack.replies == []


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://hooks.slack.com/actions/T0/1/abc", True),
        ("https://HOOKS.slack.com:443/actions/T0/1/abc", True),
        ("http://hooks.slack.com/actions/T0/1/abc", False),
        ("https://hooks.slack.com:8443/actions", False),
        ("https://hooks.slack.com.evil.example/actions", False),
        ("https://evil.example/?next=https://hooks.slack.com/", False),
        ("https://user@hooks.slack.com/actions", False),
        ("https://hooks.slack.com/actions\r\nX: 1", False),
        ("https://hooks.slack.com:99999/", False),
        ("ftp://hooks.slack.com/", False),
        ("", False),
    ],
)
def test_only_slacks_own_hosts_are_slack_urls(fake_slack, url, allowed):
    assert is_slack_url(url) is allowed


def test_the_configured_slack_api_origin_is_a_slack_url_and_nothing_else_on_that_host(fake_slack):
    # SLACK_API_URL points at the fake Slack (127.0.0.1:<its port>): its response_urls are
    # fetched, another port on the same host is not.
    assert is_slack_url(fake_slack.response_url("U0ALICE"))
    assert not is_slack_url(f"http://127.0.0.1:{fake_slack.port + 1}/actions/x")
    assert not is_slack_url(f"http://localhost:{fake_slack.port}/actions/x")


def test_a_click_after_carol_approved_by_email_is_told_who_decided(acme_key, fake_slack):
    # given: carol (email) and alice (Slack) were asked; carol approved by email
    decision = Refund(api_key=acme_key[0], approvers=[CAROL, ALICE_SLACK])
    alice = posted(decision, ALICE_SLACK)
    carol = decision.requests.get(address=CAROL)
    decision_answer(request_id=carol.pk, choice="approve", via="email")
    before = snapshot(decision)

    # when: alice, not having refreshed Slack yet, presses Deny
    response = send(click(fake_slack, alice, DENY, ALICE))

    # then
    assert response.status_code == 200
    assert snapshot(decision) == before
    assert reload(decision).status == Status.APPROVED
    (reply,) = fake_slack.replies_to("U0ALICE")
    assert reply.text == f"Already approved by {CAROL} via email. Nothing was changed."
    assert reply.body["response_type"] == "ephemeral"


def test_a_second_click_on_a_decided_decision_changes_nothing(fake_slack, alice_asked):
    # given: alice approved
    assert send(click(fake_slack, alice_asked, APPROVE, ALICE)).status_code == 200
    before = snapshot(alice_asked.decision)

    # when: she presses Deny on the same (not yet updated) message
    response = send(click(fake_slack, alice_asked, DENY, ALICE))

    # then: the first answer stands
    assert response.status_code == 200
    assert snapshot(alice_asked.decision) == before
    (reply,) = fake_slack.replies_to("U0ALICE")
    assert reply.text == f"Already approved by {ALICE_SLACK} via slack. Nothing was changed."


def test_a_click_after_the_deadline_before_the_clock_expired_it_says_it_is_too_late(fake_slack, alice_asked):
    # given: the deadline has passed; the clock's sweep has not run yet
    Decision.objects.filter(pk=alice_asked.decision_id).update(expires_at=alice_asked.decision.created_at)
    before = snapshot(alice_asked.decision)

    # when
    response = send(click(fake_slack, alice_asked, APPROVE, ALICE))

    # then: nothing changes, and she is told the truth (she has not answered before)
    assert response.status_code == 200
    assert snapshot(alice_asked.decision) == before
    (reply,) = fake_slack.replies_to("U0ALICE")
    assert "expired" in reply.text.lower()
    assert "already answered" not in reply.text


# --- the answer modal -------------------------------------------------------------------------


def test_the_note_button_opens_the_answer_modal(fake_slack, alice_asked):
    # when
    response = send(click(fake_slack, alice_asked, NOTE_ACTION, ALICE))

    # then: a modal, bound to alice's request; nothing answered yet
    assert response.status_code == 200
    (opened,) = fake_slack.calls_to("views.open")
    assert opened.authorization == "Bearer xoxb-test"
    assert opened.args["trigger_id"] == "trigger-U0ALICE"
    view = opened.args["view"]
    assert view["callback_id"] == MODAL_CALLBACK
    assert view["private_metadata"] == request_token(alice_asked)
    (choice,) = [block for block in view["blocks"] if block.get("block_id") == "cs_choice"]
    assert [o["value"] for o in choice["element"]["options"]] == ["approve", "deny", "escalate to legal"]
    assert any(block.get("block_id") == "cs_note" for block in view["blocks"])
    assert reload(alice_asked.decision).status == Status.PENDING


def test_the_answer_modal_shows_the_agents_markup_as_typed_and_keeps_option_values(acme_key, fake_slack):
    # given: an agent's action and option that would be a channel ping and a disguised link
    option = "<!here> <https://evil.example|ok>"
    decision = Refund(
        api_key=acme_key[0],
        approvers=[ALICE_SLACK],
        action="<!channel> <https://evil.example|Approve>",
        options=[option],
    )
    request = posted(decision, ALICE_SLACK)

    # when: alice presses "Answer with a note…" (a real, signed request)
    assert send(click(fake_slack, request, NOTE_ACTION, ALICE)).status_code == 200

    # then: shown escaped; the option's value (what comes back on submit) is left as it was
    (opened,) = fake_slack.calls_to("views.open")
    blocks = opened.args["view"]["blocks"]
    assert blocks[0]["text"]["text"] == "*&lt;!channel&gt; &lt;https://evil.example|Approve&gt;*"
    (choice,) = [block for block in blocks if block.get("block_id") == "cs_choice"]
    assert choice["element"]["options"] == [
        {
            "text": {"type": "plain_text", "text": "&lt;!here&gt; &lt;https://evil.example|ok&gt;"},
            "value": option,
        }
    ]


def test_a_modal_answer_the_services_refuse_is_shown_escaped(fake_slack, alice_asked):
    # The refusal quotes what was chosen, which the submitter controls.
    response = send(submission(alice_asked, ALICE, choice="<!channel>"))

    assert response.status_code == 200
    assert response.json()["errors"]["cs_note"] == "'&lt;!channel&gt;' is not one of the options."


def test_when_slack_will_not_open_the_modal_the_clicker_is_told(fake_slack, alice_asked):
    # given: Slack refuses (trigger ids live three seconds)
    fake_slack.fail("views.open", "expired_trigger_id")

    # when
    response = send(click(fake_slack, alice_asked, NOTE_ACTION, ALICE))

    # then: Slack still gets its acknowledgement; alice gets a way forward
    assert response.status_code == 200
    (reply,) = fake_slack.replies_to("U0ALICE")
    assert reply.text == "Sorry, the answer form could not be opened. Try again."
    assert reload(alice_asked.decision).status == Status.PENDING


def test_the_note_button_on_a_decided_decision_says_so_instead_of_opening_a_form(fake_slack, alice_asked):
    send(click(fake_slack, alice_asked, DENY, ALICE))

    response = send(click(fake_slack, alice_asked, NOTE_ACTION, ALICE))

    assert response.status_code == 200
    assert fake_slack.calls_to("views.open") == []
    (reply,) = fake_slack.replies_to("U0ALICE")
    assert reply.text.startswith("Already denied by ")


def test_alice_answers_with_a_choice_and_a_note_through_the_modal(fake_slack, alice_asked):
    # when
    response = send(submission(alice_asked, ALICE, choice="deny", note="The customer was refunded already"))

    # then: an empty 200 closes the modal
    assert response.status_code == 200
    assert response.content == b""
    decision = reload(alice_asked.decision)
    assert decision.status == Status.DENIED
    assert (decision.outcome["choice"], decision.outcome["note"], decision.outcome["via"]) == (
        "deny",
        "The customer was refunded already",
        "slack",
    )
    (answered,) = answered_events(decision)
    assert json.loads(answered.payload)["note"] == "The customer was refunded already"


def test_a_text_response_is_answered_through_the_modal(acme_key, fake_slack):
    # given: a question for alice, not a yes/no
    decision = Refund(
        api_key=acme_key[0],
        approvers=[ALICE_SLACK],
        action="Which warehouse should ship order #1042?",
        response_type=ResponseType.TEXT,
    )
    alice = posted(decision, ALICE_SLACK)

    # when: the answer button opens a form with a text field, and she fills it in
    send(click(fake_slack, alice, NOTE_ACTION, ALICE))
    (opened,) = fake_slack.calls_to("views.open")
    assert [b.get("block_id") for b in opened.args["view"]["blocks"]][1:] == ["cs_text", "cs_note"]
    response = send(submission(alice, ALICE, text="Rotterdam, it has stock"))

    # then
    assert response.status_code == 200
    decision = reload(decision)
    assert decision.status == Status.RESPONDED
    assert (decision.outcome["text"], decision.outcome["by"]) == ("Rotterdam, it has stock", ALICE_SLACK)


def test_a_modal_sent_after_the_decision_was_settled_shows_an_error_in_the_form(acme_key, fake_slack):
    # given: alice opened the form; meanwhile carol approved by email
    decision = Refund(api_key=acme_key[0], approvers=[CAROL, ALICE_SLACK])
    alice = posted(decision, ALICE_SLACK)
    decision_answer(request_id=decision.requests.get(address=CAROL).pk, choice="approve", via="email")
    before = snapshot(decision)

    # when
    response = send(submission(alice, ALICE, choice="deny", note="too late?"))

    # then: Slack keeps the modal open and shows the reason under the note field
    assert response.status_code == 200
    body = response.json()
    assert body["response_action"] == "errors"
    assert body["errors"]["cs_note"].startswith(f"Already approved by {CAROL} via email")
    assert snapshot(decision) == before


def test_mallory_cannot_answer_alices_dm_through_a_modal(fake_slack, alice_asked):
    before = snapshot(alice_asked.decision)

    response = send(submission(alice_asked, MALLORY, choice="approve"))

    assert response.status_code == 200
    assert response.json()["response_action"] == "errors"
    assert "only they can answer" in response.json()["errors"]["cs_note"]
    assert snapshot(alice_asked.decision) == before


def test_a_modal_with_an_option_that_is_not_offered_shows_an_error(fake_slack, alice_asked):
    before = snapshot(alice_asked.decision)

    response = send(submission(alice_asked, ALICE, choice="approve everything"))

    assert response.status_code == 200
    assert response.json()["response_action"] == "errors"
    assert snapshot(alice_asked.decision) == before


# --- another organization's Slack app -------------------------------------------------------


def test_globexs_slack_app_cannot_answer_acmes_request(globex, fake_slack, alice_asked, monkeypatch):
    # given: Globex has its own Slack app, with its own signing secret
    monkeypatch.setenv("GLOBEX_SLACK_SIGNING_SECRET", "globex-signing-secret")
    SlackSettings.objects.create(organization=globex, signing_secret_env="GLOBEX_SLACK_SIGNING_SECRET")
    before = snapshot(alice_asked.decision)

    # when: a click on Acme's button arrives signed by Globex's app
    response = send(click(fake_slack, alice_asked, APPROVE, ALICE), secret="globex-signing-secret")

    # then: the signature is genuine (not a 401), but the button is not Globex's to press
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unknown_action"
    assert snapshot(alice_asked.decision) == before


def test_acmes_own_signing_secret_answers_acmes_request(acme, fake_slack, alice_asked, monkeypatch):
    # given: Acme moved to its own app; the global secret no longer speaks for Acme
    monkeypatch.setenv("ACME_SLACK_SIGNING_SECRET", "acme-signing-secret")
    SlackSettings.objects.create(organization=acme, signing_secret_env="ACME_SLACK_SIGNING_SECRET")
    before = snapshot(alice_asked.decision)

    # when / then: signed with the global secret, refused
    assert send(click(fake_slack, alice_asked, APPROVE, ALICE)).status_code == 400
    assert snapshot(alice_asked.decision) == before

    # when / then: signed with Acme's, answered
    response = send(click(fake_slack, alice_asked, APPROVE, ALICE), secret="acme-signing-secret")
    assert response.status_code == 200
    assert reload(alice_asked.decision).status == Status.APPROVED


def test_other_interaction_types_are_acknowledged_and_change_nothing(fake_slack, alice_asked):
    before = snapshot(alice_asked.decision)

    response = send({"type": "view_closed", "user": ALICE, "view": {"callback_id": MODAL_CALLBACK}})

    assert response.status_code == 200
    assert snapshot(alice_asked.decision) == before
