"""What a create reads of its organization's settings (policy rules, Slack's dm_email_approvers)
is kept in memory per process, and every way of changing them is seen by the next request:
the admin's save, the ORM's create, update and delete, even an organization saved from an
older copy. Acme's agent asks over the API, as an agent does."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from channels.slack.models import SlackSettings
from decisions.models import Policy
from organizations.models import Organization
from tests.conftest import ALICE

REFUND = {"action": "Refund order #1042", "details": {"amount": 20}, "approver": ALICE}


def ask(api) -> dict:
    response = api.post("/decisions", REFUND, format="json")
    assert response.status_code == 201, response.content
    return response.json()


@pytest.fixture
def small_refunds(acme) -> Policy:
    return Policy.objects.create(
        organization=acme,
        name="small-refunds",
        conditions=[{"field": "details.amount", "op": "lt", "value": 50}],
        action=Policy.Action.APPROVE,
    )


def test_a_create_does_not_read_the_settings_again_while_they_are_unchanged(api, small_refunds):
    ask(api)  # the first create of the process reads them

    with CaptureQueriesContext(connection) as captured:
        assert ask(api)["status"] == "approved"

    read = [q["sql"] for q in captured.captured_queries if q["sql"].startswith("SELECT")]
    assert not [sql for sql in read if '"decisions_policy"' in sql or '"notifications_slacksettings"' in sql]


def test_a_rule_added_after_a_create_applies_to_the_next(api, acme):
    assert ask(api)["status"] == "pending"

    Policy.objects.create(
        organization=acme,
        name="small-refunds",
        conditions=[{"field": "details.amount", "op": "lt", "value": 50}],
        action=Policy.Action.APPROVE,
    )

    assert ask(api)["status"] == "approved"


def test_a_rule_changed_by_queryset_update_or_save_or_deleted_is_seen_at_once(api, small_refunds):
    assert ask(api)["status"] == "approved"

    Policy.objects.filter(pk=small_refunds.pk).update(action=Policy.Action.DENY)
    assert ask(api)["status"] == "denied"

    small_refunds.refresh_from_db()
    small_refunds.enabled = False
    small_refunds.save()
    assert ask(api)["status"] == "pending"

    Policy.objects.filter(pk=small_refunds.pk).update(enabled=True)
    assert ask(api)["status"] == "denied"

    Policy.objects.filter(pk=small_refunds.pk).delete()
    assert ask(api)["status"] == "pending"


def test_slack_settings_added_or_changed_after_a_create_are_seen_at_once(api, acme):
    def channels(decision: dict) -> list[str]:
        return sorted(request["channel"] for request in decision["requests"])

    assert channels(ask(api)) == ["email"]

    settings = SlackSettings.objects.create(organization=acme, dm_email_approvers=True)
    assert channels(ask(api)) == ["email", "slack"]

    settings.dm_email_approvers = False
    settings.save()
    assert channels(ask(api)) == ["email"]


def test_an_organization_saved_from_an_older_copy_does_not_bring_old_rules_back(api, acme, small_refunds):
    older_copy = Organization.objects.get(pk=acme.pk)
    Policy.objects.filter(pk=small_refunds.pk).update(action=Policy.Action.DENY)
    assert ask(api)["status"] == "denied"  # kept in memory with the version after the update

    older_copy.name = "Acme Corporation"
    older_copy.save()  # writes back the version it was loaded with, which the database refuses
    Policy.objects.filter(pk=small_refunds.pk).delete()

    assert ask(api)["status"] == "pending"
