"""Shared by the portal's tests: asking approvers, signing in by the emailed magic link."""

import re

import pytest
from django.test import Client

from broker.celery import app as celery_app
from decisions.models import Decision
from decisions.services import DecisionSpec, decision_create
from tests.conftest import ALICE

SIGN_IN_LINK = re.compile(r"https?://[^\s\"<>]+/inbox/sign-in/([A-Za-z0-9_\-]+)")


def ask(api_key, *, approvers, action: str, quorum="any", **fields) -> Decision:
    fields.setdefault("timeout_minutes", 30)
    # As a request would: the key's organization as committed now (its settings_version tells
    # create_settings whether the rules and delegations it holds are current).
    api_key[0].organization.refresh_from_db()
    spec = DecisionSpec(action=action, stages=[{"approvers": list(approvers), "quorum": quorum}], **fields)
    decision, created = decision_create(api_key=api_key[0], spec=spec)
    assert created
    return decision


def sign_in_token(mailoutbox, address: str) -> str:
    """The token of the newest sign-in link emailed to the address."""
    message = next(m for m in reversed(mailoutbox) if m.to == [address])
    assert message.subject == "Your Countersign sign-in link"
    match = SIGN_IN_LINK.search(message.body)
    assert match, message.body
    return match.group(1)


@pytest.fixture
def tasks_run_here():
    """The sign-in email's Celery task runs in this process as the view queues it: the real
    task, without a broker in between."""
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


def signed_in(client: Client, mailoutbox, address: str) -> Client:
    """The client, signed in as `address` by the link the portal emails (its POST)."""
    assert client.post("/inbox/sign-in", {"address": address}).status_code == 200
    assert client.post(f"/inbox/sign-in/{sign_in_token(mailoutbox, address)}").status_code == 302
    return client


@pytest.fixture(name="alice")
def signed_in_alice_fixture(client, mailoutbox, acme_key) -> Client:
    """alice, signed in to the portal (she has been asked once, so she may sign in)."""
    ask(acme_key, approvers=[ALICE], action="Warm-up")
    return signed_in(client, mailoutbox, ALICE)
