"""Microsoft Teams end to end, against a fake Teams over real HTTP (tests/fake_teams.py): a
decision with a teams: approver → the Adaptive Card posted to the fake connector → a button
pressed (an Action.Execute invoke signed by the fake Bot Framework issuer) → the decision
answered, the callback says `via: teams`, and the card replaced by the outcome; and every way
an inbound activity is refused.

Named actors: alice (teams:29:1alice…) is asked in her 1:1 chat with the bot; #approvals is a
Teams channel where dan answers for the team; mallory presses what is not hers; carol answers
by email.
"""

import json
import re
from pathlib import Path

import pytest
from django.test import Client

from audit.models import AuditEvent
from channels.teams.cards import ANSWER_VERB, NOTE_INPUT, OPTION_FIELD, REFRESH_VERB, TEXT_INPUT, TOKEN_FIELD
from decisions.links import request_token
from decisions.models import ApprovalRequest, Decision, ResponseType, Status
from decisions.services import DecisionSpec, decision_answer, decision_create, decision_expire
from notifications.models import Delivery
from notifications.services import delivery_attempt
from tests.conftest import CAROL
from tests.fake_teams import (  # noqa: F401
    APP_ID,
    OTHER_KEY_ID,
    STRANGER_KEY,
    TEAMS_KEY_ID,
    TENANT_ID,
    fake_teams_fixture,
    invoke,
    post_invoke,
)
from tests.helpers import reload, snapshot, wait_for
from tests.receiver import receiver_fixture  # noqa: F401

ALICE_ID = "29:1alice-GxQ3nKz8vW2pLmR7tYb5cJhD0sFqE4uIoA9"
ALICE = f"teams:{ALICE_ID}"
DAN_ID = "29:1dan-Hw8uYt6rEw3qAz5xSc7vBn9mKl0pOi2"
MALLORY_ID = "29:1mallory-Zx9cVb8nMm7aSd6fGh5jKl4"
APPROVALS_CHANNEL = "19:a1b2c3d4e5f60718293a4b5c6d7e8f90@thread.tacv2"
APPROVALS = f"teams:{APPROVALS_CHANNEL}"
ACTION = "Refund order #1042 for €1,200"
OPTIONS = ["approve", "deny", "escalate to legal"]


# --- helpers ------------------------------------------------------------------------------


def ask(acme_key, *approvers: str, **fields) -> Decision:
    fields.setdefault("action", ACTION)
    fields.setdefault("timeout_minutes", 60)
    fields.setdefault("options", OPTIONS)
    fields.setdefault("details", {"amount": 1200, "customer": "Ada"})
    decision, created = decision_create(
        api_key=acme_key[0],
        spec=DecisionSpec(stages=[{"approvers": list(approvers), "quorum": "any"}], **fields),
    )
    assert created
    return decision


def deliver(decision: Decision, purpose: str, kind: str = "teams") -> list[Delivery]:
    """Run every pending delivery of this kind and purpose through the outbox, as a worker would."""
    deliveries = list(
        Delivery.objects.filter(decision=decision, kind=kind, purpose=purpose, status="pending")
    )
    for delivery in deliveries:
        delivery_attempt(delivery_id=delivery.pk)
    return [Delivery.objects.get(pk=d.pk) for d in deliveries]


def posted(decision: Decision, address: str) -> ApprovalRequest:
    """Post the card for this approver through the outbox; their request, reloaded."""
    [delivery] = deliver(decision, Delivery.Purpose.ASK)
    assert delivery.status == Delivery.Status.SENT, delivery.last_error
    request = ApprovalRequest.objects.get(decision=decision, address=address)
    assert request.slack_ts, "the card was not posted"
    return request


def press(request: ApprovalRequest, option: int | None, *, user_id: str = ALICE_ID, note: str = "", **extra):
    """The invoke Teams sends when `user_id` presses the button for `option` on this request's card."""
    data = {TOKEN_FIELD: request_token(request), NOTE_INPUT: note}
    if option is not None:
        data[OPTION_FIELD] = option
    extra.setdefault("conversation", request.slack_channel)
    return invoke(user_id=user_id, data=data, **extra)


def send(fake_teams, activity, **sign):
    return post_invoke(Client(), activity, token=fake_teams.sign(**sign))


def card_text(card: dict) -> str:
    """Every TextRun of a card, joined: what a person reads on it."""
    return " ".join(
        run["text"]
        for block in card.get("body", [])
        for run in block.get("inlines", [])
        if run["type"] == "TextRun"
    )


@pytest.fixture
def alice_asked(acme_key, fake_teams) -> ApprovalRequest:
    return posted(ask(acme_key, ALICE), ALICE)


# --- the flow end to end ------------------------------------------------------------------


@pytest.mark.postgres
def test_alice_approves_in_teams_and_the_agent_hears_via_teams(acme_key, fake_teams, receiver, settings):
    settings.CALLBACK_ALLOW_PRIVATE = True
    decision = ask(acme_key, ALICE, callback_url=receiver.url("/hook"))

    # The card goes to alice's 1:1 chat with the bot, opened through the connector.
    request = posted(decision, ALICE)
    [login] = fake_teams.logins
    assert login["client_id"] == APP_ID
    assert login["grant_type"] == "client_credentials"
    [opened] = [c for c in fake_teams.calls if c.path == "/v3/conversations"]
    assert opened.body["members"] == [{"id": ALICE_ID}]
    assert opened.body["channelData"] == {"tenant": {"id": TENANT_ID}}
    [card_post] = fake_teams.activities()
    assert card_post.conversation == fake_teams.conversations[ALICE_ID] == request.slack_channel
    assert request.slack_user == ALICE_ID
    card = card_post.card
    assert card["type"] == "AdaptiveCard"
    assert card["version"] == "1.4"
    assert [(a["type"], a["title"], a["verb"], a["data"][OPTION_FIELD]) for a in card["actions"]] == [
        ("Action.Execute", "Approve", ANSWER_VERB, 0),
        ("Action.Execute", "Deny", ANSWER_VERB, 1),
        ("Action.Execute", "Escalate to legal", ANSWER_VERB, 2),
    ]
    assert [a.get("style") for a in card["actions"]] == ["positive", "destructive", None]
    assert {k: v for k, v in card["body"][-1].items() if k in ("type", "id")} == {
        "type": "Input.Text",
        "id": NOTE_INPUT,
    }
    assert card["refresh"]["action"]["verb"] == REFRESH_VERB
    assert card["refresh"]["userIds"] == [ALICE_ID]
    assert ACTION in card_text(card)
    assert "customer: Ada" in card_text(card).replace(":  ", ": ")

    # alice presses Approve with a note; Teams shows her the answer at once.
    response = send(fake_teams, press(request, 0, note="Customer is a regular"))
    assert response.status_code == 200
    reply = response.json()
    assert reply["statusCode"] == 200
    assert reply["type"] == "application/vnd.microsoft.card.adaptive"
    assert "actions" not in reply["value"]
    assert f"Approved by {ALICE} via teams" in card_text(reply["value"])

    decision = reload(decision)
    assert decision.status == Status.APPROVED
    assert decision.outcome["via"] == "teams"
    assert decision.outcome["by"] == ALICE
    assert decision.outcome["note"] == "Customer is a regular"
    answered = AuditEvent.objects.get(decision=decision, event="decision.answered")
    assert answered.channel == "teams"
    assert answered.actor == ALICE
    payload = json.loads(answered.payload)
    assert payload["user_agent"] == "Microsoft Teams"
    assert payload["name"] == "Alice"
    assert payload["note"] == "Customer is a regular"

    # The card in the chat is replaced by the outcome, in place.
    [update] = deliver(decision, Delivery.Purpose.UPDATE)
    assert update.status == Delivery.Status.SENT, update.last_error
    [put] = fake_teams.updates()
    assert put.path == f"/v3/conversations/{request.slack_channel}/activities/{request.slack_ts}"
    assert "actions" not in put.card
    assert f"Approved by {ALICE} via teams" in card_text(put.card)

    # And the agent learns it, via teams.
    [callback] = deliver(decision, Delivery.Purpose.OUTCOME, kind="callback")
    assert callback.status == Delivery.Status.SENT, callback.last_error
    [hook] = receiver.requests
    body = json.loads(hook.body)
    assert body["data"]["status"] == "approved"
    assert body["data"]["outcome"]["via"] == "teams"


@pytest.mark.postgres
def test_in_a_teams_channel_anyone_answers_and_the_outcome_names_who(acme_key, fake_teams):
    decision = ask(acme_key, APPROVALS)
    request = posted(decision, APPROVALS)
    # Posted straight into the channel: no 1:1 chat to open, nobody's card in particular.
    assert not [c for c in fake_teams.calls if c.path == "/v3/conversations"]
    assert fake_teams.activities()[0].conversation == APPROVALS_CHANNEL
    assert request.slack_user == ""
    assert "userIds" not in fake_teams.activities()[0].card["refresh"]

    # dan answers from the channel's thread: its conversation id carries the thread.
    activity = press(
        request, 2, user_id=DAN_ID, name="Dan", conversation=f"{APPROVALS_CHANNEL};messageid=17000"
    )
    response = send(fake_teams, activity)
    assert response.status_code == 200
    decision = reload(decision)
    assert decision.status == Status.RESPONDED
    assert decision.outcome["choice"] == "escalate to legal"
    assert decision.outcome["by"] == f"teams:{DAN_ID}"
    assert decision.outcome["via"] == "teams"


@pytest.mark.postgres
def test_a_text_question_is_answered_in_the_card(acme_key, fake_teams):
    decision = ask(acme_key, ALICE, response_type=ResponseType.TEXT, action="Which warehouse?")
    request = posted(decision, ALICE)
    card = fake_teams.activities()[0].card
    assert [a["title"] for a in card["actions"]] == ["Send"]
    assert any(block.get("id") == TEXT_INPUT and block.get("isRequired") for block in card["body"])
    activity = press(request, None)
    activity["value"]["action"]["data"][TEXT_INPUT] = "Rotterdam"
    assert send(fake_teams, activity).status_code == 200
    decision = reload(decision)
    assert decision.status == Status.RESPONDED
    assert decision.outcome["text"] == "Rotterdam"


@pytest.mark.postgres
def test_answered_elsewhere_the_card_shows_the_outcome_on_refresh_and_in_place(acme_key, fake_teams):
    decision = ask(acme_key, ALICE, CAROL)
    request = posted(decision, ALICE)
    carol = ApprovalRequest.objects.get(decision=decision, address=CAROL)
    decision_answer(request_id=carol.pk, choice="deny", note="Not this month", via="email")

    # Opening the card makes Teams ask for the current one: it shows carol's deny.
    refreshed = send(fake_teams, press(request, None, verb=REFRESH_VERB)).json()
    assert f"Denied by {CAROL} via email" in card_text(refreshed["value"])
    assert "actions" not in refreshed["value"]
    # And the posted card is replaced by the outcome.
    deliver(decision, Delivery.Purpose.UPDATE)
    [put] = fake_teams.updates()
    assert f"Denied by {CAROL} via email" in card_text(put.card)
    # alice's late click changes nothing, and shows her the same.
    late = send(fake_teams, press(request, 0)).json()
    assert f"Denied by {CAROL} via email" in card_text(late["value"])
    assert reload(decision).outcome["by"] == CAROL


@pytest.mark.postgres
def test_a_card_for_an_expired_decision_shows_the_deadline(acme_key, fake_teams):
    decision = ask(acme_key, ALICE)
    request = posted(decision, ALICE)
    Decision.objects.filter(pk=decision.pk).update(expires_at=decision.created_at)
    decision_expire(decision_id=decision.id)
    deliver(decision, Delivery.Purpose.UPDATE)
    [put] = fake_teams.updates()
    assert "Expired by the deadline via timeout" in card_text(put.card)
    reply = send(fake_teams, press(request, 0)).json()
    assert "Expired by the deadline" in card_text(reply["value"])
    assert reload(decision).status == Status.EXPIRED


@pytest.mark.postgres
def test_a_reminder_replies_to_the_card(acme_key, fake_teams):
    decision = ask(acme_key, ALICE)
    request = posted(decision, ALICE)
    from notifications.services import deliveries_enqueue

    deliveries_enqueue(decision=decision, kind="teams", purpose=Delivery.Purpose.REMIND, requests=[request])
    [reminder] = deliver(decision, Delivery.Purpose.REMIND)
    assert reminder.status == Delivery.Status.SENT, reminder.last_error
    reply = fake_teams.activities()[-1]
    assert reply.path.endswith(f"/activities/{request.slack_ts}")
    assert reply.body["text"].startswith("Reminder: this still waits for your answer")


@pytest.mark.postgres
def test_with_everyone_needed_alices_card_says_it_waits_for_the_others(acme_key, fake_teams):
    decision, _ = decision_create(
        api_key=acme_key[0],
        spec=DecisionSpec(action=ACTION, stages=[{"approvers": [ALICE, CAROL], "quorum": "all"}]),
    )
    request = posted(decision, ALICE)
    reply = send(fake_teams, press(request, 0)).json()
    assert "You answered: Approve" in card_text(reply["value"])
    assert "Waiting for the other approvers" in card_text(reply["value"])
    assert "actions" not in reply["value"]  # her part is done: no second answer
    assert reload(decision).status == Status.PENDING

    carol = ApprovalRequest.objects.get(decision=decision, address=CAROL)
    decision_answer(request_id=carol.pk, choice="approve", via="email")
    deliver(decision, Delivery.Purpose.UPDATE)
    [put] = fake_teams.updates()
    assert f"Approved by {CAROL} via email" in card_text(put.card)


@pytest.mark.redis
@pytest.mark.postgres
def test_the_worker_posts_the_card_and_replaces_it_after_the_click(
    api, fake_teams, celery_worker, receiver, settings
):
    # The whole path with a real worker: the agent asks over the API, the worker posts the
    # card; alice clicks; the worker replaces the card and calls the agent back.
    settings.CALLBACK_ALLOW_PRIVATE = True
    response = api.post(
        "/decisions",
        {"action": ACTION, "approver": ALICE, "callback_url": receiver.url("/hook")},
        format="json",
    )
    assert response.status_code == 201
    decision_id = response.json()["id"]
    wait_for(lambda: ApprovalRequest.objects.filter(decision_id=decision_id).exclude(slack_ts="").exists())
    request = ApprovalRequest.objects.get(decision_id=decision_id)

    assert send(fake_teams, press(request, 1, note="Over budget")).status_code == 200

    [put] = wait_for(lambda: fake_teams.updates())
    assert f"Denied by {ALICE} via teams" in card_text(put.card)
    [hook] = wait_for(lambda: receiver.requests)
    outcome = json.loads(hook.body)["data"]["outcome"]
    assert (outcome["status"], outcome["via"], outcome["note"]) == ("denied", "teams", "Over budget")


# --- single use ---------------------------------------------------------------------------


@pytest.mark.postgres
def test_the_same_invoke_twice_answers_once(alice_asked, fake_teams):
    activity = press(alice_asked, 0)
    first = send(fake_teams, activity)
    before = snapshot(alice_asked.decision)
    second = send(fake_teams, activity)  # the Bot Framework retrying, or a replay
    assert first.status_code == second.status_code == 200
    assert second.json()["value"] == first.json()["value"]
    assert snapshot(alice_asked.decision) == before
    assert AuditEvent.objects.filter(decision=alice_asked.decision, event="decision.answered").count() == 1


@pytest.mark.postgres
def test_a_second_button_after_answering_changes_nothing(alice_asked, fake_teams):
    send(fake_teams, press(alice_asked, 0))
    before = snapshot(alice_asked.decision)
    reply = send(fake_teams, press(alice_asked, 1)).json()
    assert "Approved by" in card_text(reply["value"])
    assert snapshot(alice_asked.decision) == before


# --- refusals -----------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.parametrize(
    "sign",
    [
        pytest.param({"key": STRANGER_KEY}, id="bad-signature"),
        pytest.param({"audience": "someone-elses-bot"}, id="wrong-audience"),
        pytest.param({"expires_in": -3600}, id="expired"),
        pytest.param({"issuer": "https://sts.windows.net/evil/"}, id="wrong-issuer"),
        pytest.param({"key_id": OTHER_KEY_ID}, id="key-not-endorsed-for-msteams"),
    ],
)
def test_an_activity_without_a_valid_bot_framework_token_is_refused(alice_asked, fake_teams, sign):
    before = snapshot(alice_asked.decision)
    response = send(fake_teams, press(alice_asked, 0), **sign)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_token"
    assert snapshot(alice_asked.decision) == before


@pytest.mark.postgres
@pytest.mark.parametrize("authorization", [None, "", "not-a-jwt", "eyJhbGciOiJub25lIn0.e30."])
def test_a_missing_or_malformed_token_is_refused(alice_asked, fake_teams, authorization):
    before = snapshot(alice_asked.decision)
    client = Client()
    if authorization is None:
        response = post_invoke(client, press(alice_asked, 0), token=None)
    else:
        response = post_invoke(client, press(alice_asked, 0), token=authorization)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_token"
    assert snapshot(alice_asked.decision) == before


@pytest.mark.postgres
def test_an_activity_from_another_channel_is_refused(alice_asked, fake_teams):
    response = send(fake_teams, press(alice_asked, 0, channelId="webchat"))
    assert response.status_code == 401
    assert reload(alice_asked.decision).status == Status.PENDING


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{not json", "bad_activity"),
        (b"[1, 2]", "bad_activity"),
        (
            b'{"type": "invoke", "name": "adaptiveCard/action", "channelId": "msteams", "x": "\\u0000"}',
            "bad_activity",
        ),
        (b"\xff\xfe", "bad_activity"),
    ],
)
def test_a_bad_body_is_a_400(alice_asked, fake_teams, raw, code):
    before = snapshot(alice_asked.decision)
    response = post_invoke(Client(), None, token=fake_teams.sign(), raw=raw)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert snapshot(alice_asked.decision) == before


@pytest.mark.postgres
@pytest.mark.parametrize(
    "change",
    [
        pytest.param(
            lambda a: a["value"]["action"]["data"].update({TOKEN_FIELD: "forged"}), id="unknown-request"
        ),
        pytest.param(lambda a: a["value"]["action"]["data"].update({OPTION_FIELD: 7}), id="no-such-option"),
        pytest.param(
            lambda a: a["value"]["action"]["data"].update({OPTION_FIELD: "0"}), id="option-not-a-number"
        ),
        pytest.param(lambda a: a["value"]["action"].update({"verb": "cs.delete"}), id="unknown-verb"),
        pytest.param(lambda a: a["value"].update({"action": "approve"}), id="action-not-an-object"),
        pytest.param(lambda a: a.update({"from": {}}), id="no-user"),
    ],
)
def test_an_invoke_that_is_not_one_of_our_cards_is_a_400(alice_asked, fake_teams, change):
    activity = press(alice_asked, 0)
    change(activity)
    before = snapshot(alice_asked.decision)
    response = send(fake_teams, activity)
    assert response.status_code == 400
    assert response.json()["error"]["code"] in ("unknown_action", "bad_activity")
    assert snapshot(alice_asked.decision) == before


@pytest.mark.postgres
def test_another_organizations_bot_cannot_answer_our_card(alice_asked, fake_teams, globex):
    from channels.teams.models import TeamsSettings

    TeamsSettings.objects.create(organization=globex, app_id="globex-bot")
    before = snapshot(alice_asked.decision)
    response = send(fake_teams, press(alice_asked, 0), audience="globex-bot")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unknown_action"
    assert snapshot(alice_asked.decision) == before


@pytest.mark.postgres
def test_mallory_cannot_answer_alices_card(alice_asked, fake_teams):
    before = snapshot(alice_asked.decision)
    reply = send(fake_teams, press(alice_asked, 0, user_id=MALLORY_ID, name="Mallory")).json()
    assert reply["type"] == "application/vnd.microsoft.activity.message"
    assert "only they can answer" in reply["value"]
    assert snapshot(alice_asked.decision) == before


@pytest.mark.postgres
def test_a_forwarded_card_answers_nothing(alice_asked, fake_teams):
    before = snapshot(alice_asked.decision)
    reply = send(fake_teams, press(alice_asked, 0, conversation="a:1some-other-chat")).json()
    assert "forwarded" in reply["value"]
    assert snapshot(alice_asked.decision) == before


@pytest.mark.postgres
def test_a_note_too_long_is_said_to_the_clicker_and_nothing_changes(alice_asked, fake_teams):
    before = snapshot(alice_asked.decision)
    reply = send(fake_teams, press(alice_asked, 0, note="x" * 5001)).json()
    assert reply["statusCode"] == 400
    assert reply["type"] == "application/vnd.microsoft.error"
    assert snapshot(alice_asked.decision) == before


@pytest.mark.postgres
def test_other_activities_are_acknowledged_and_ignored(fake_teams):
    activity = {"type": "message", "text": "hi bot", "channelId": "msteams", "from": {"id": ALICE_ID}}
    assert send(fake_teams, activity).status_code == 200
    assert fake_teams.activities() == []


def test_a_get_is_not_allowed(db):
    assert Client().get("/teams/messages").status_code == 405


# --- the connector's failures ---------------------------------------------------------------


@pytest.mark.postgres
def test_a_bot_not_installed_for_the_person_fails_for_good(acme_key, fake_teams):
    decision = ask(acme_key, ALICE)
    fake_teams.fail("POST /conversations", 403)
    [delivery] = deliver(decision, Delivery.Purpose.ASK)
    assert delivery.status == Delivery.Status.FAILED
    assert "HTTP 403" in delivery.last_error


@pytest.mark.postgres
@pytest.mark.parametrize("status", [429, 502])
def test_a_busy_connector_is_tried_again(acme_key, fake_teams, status):
    decision = ask(acme_key, ALICE)
    fake_teams.fail("POST /activities", status)
    [delivery] = deliver(decision, Delivery.Purpose.ASK)
    assert delivery.status == Delivery.Status.PENDING
    assert f"HTTP {status}" in delivery.last_error


@pytest.mark.postgres
def test_refused_bot_credentials_fail_for_good(acme_key, fake_teams, settings):
    settings.TEAMS_APP_PASSWORD = "wrong"
    decision = ask(acme_key, ALICE)
    [delivery] = deliver(decision, Delivery.Purpose.ASK)
    assert delivery.status == Delivery.Status.FAILED
    assert "refused" in delivery.last_error


# --- addresses --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [ALICE, APPROVALS, "teams:0c5cfdbb-596f-4d39-b557-5d9516c94107", "teams:19:meeting_Zm9v@thread.v2"],
)
def test_teams_addresses_are_accepted_by_the_api(api, fake_teams, address):
    response = api.post("/decisions", {"action": "Deploy", "approver": address}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["requests"][0]["channel"] == "teams"


@pytest.mark.parametrize("address", ["teams:", "teams:alice", "teams:29:", "teams:19:has space"])
def test_a_malformed_teams_address_is_a_400_naming_the_forms(api, address):
    response = api.post("/decisions", {"action": "Deploy", "approver": address}, format="json")
    assert response.status_code == 400
    assert "teams:29:" in json.dumps(response.json())


# --- one folder and one registry line -------------------------------------------------------

REPO = Path(__file__).resolve().parent.parent
APP_PACKAGES = ["broker", "organizations", "decisions", "notifications", "audit", "channels"]


def test_teams_is_one_folder_plus_one_registry_line():
    # Nothing in the service names the Teams package but the registry's one line: settings,
    # URLs, the outbox, addresses and the OpenAPI schema all reach it through the registry.
    naming_it = sorted(
        str(path.relative_to(REPO))
        for package in APP_PACKAGES
        for path in (REPO / package).rglob("*.py")
        if "channels/teams/" not in path.as_posix() and "channels.teams" in path.read_text()
    )
    assert naming_it == ["channels/registry.py"]
    assert [line for line in (REPO / "channels/registry.py").read_text().splitlines() if "teams" in line] == [
        '    "teams": "channels.teams.channel.TeamsChannel",'
    ]


def test_the_registry_wires_teams_in(settings):
    from django.urls import resolve

    from channels.registry import channel, outcome_editing_names
    from channels.teams.channel import TeamsChannel
    from channels.teams.views import teams_messages
    from decisions.addresses import address_pattern, parse_address
    from notifications.senders import sender_for

    assert isinstance(channel("teams"), TeamsChannel)
    assert "channels.teams" in settings.INSTALLED_APPS  # its models (TeamsSettings) and migrations
    assert resolve("/teams/messages").func is teams_messages
    assert sender_for("teams") is not None
    assert parse_address(f"  {ALICE} ") == ("teams", ALICE)
    assert re.fullmatch(address_pattern(), APPROVALS)
    assert "teams" in outcome_editing_names()  # its card is replaced when a decision settles
