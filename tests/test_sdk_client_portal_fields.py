"""The Python SDK's client against the live service: the approver portal's fields (issue 16) go
out as the agent gave them and come back typed: verification, requested_by and
distinct_stage_approvers on the decision, the outcome's verified, a request's on_behalf_of.

Acme's agent asks for carol; alice approves by her email link; bob stands in while alice is away.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from portal.models import Delegation
from tests.conftest import ALICE, BOB, CAROL
from tests.sdk_live import (  # noqa: F401 (the agent_client fixture)
    agent_client_fixture,
    alice_clicks,
    service_reachable_fixture,
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.postgres,
    pytest.mark.usefixtures("service_reachable_from_the_agent"),
]


def test_the_portal_fields_go_out_and_come_back_typed(agent_client):
    decision = agent_client.create(
        "Refund $120 to order #1042",
        stages=[{"approvers": [ALICE]}, {"approvers": [BOB]}],
        verification="session",
        requested_by=CAROL,
        distinct_stage_approvers=False,
    )

    read = agent_client.get(decision.id)
    assert (read.verification, read.requested_by, read.distinct_stage_approvers) == ("session", CAROL, False)
    assert (decision.verification, decision.requested_by) == ("session", CAROL)


def test_left_out_they_read_back_as_the_service_defaults(agent_client):
    decision = agent_client.create("Deploy v1.2 to prod", approver=ALICE)

    assert decision.verification == "link"
    assert decision.requested_by is None  # the service sends "" for none
    assert decision.distinct_stage_approvers is True
    assert [(r.address, r.on_behalf_of) for r in decision.requests] == [(ALICE, None)]


def test_alices_link_answer_is_verified_as_link_and_a_cancel_by_nobody(agent_client):
    approved = agent_client.create("Deploy v1.2 to prod", approver=ALICE, requested_by=CAROL)
    withdrawn = agent_client.create("Deploy v1.3 to prod", approver=ALICE)

    alice_clicks(approved.id, "approve")
    cancelled = agent_client.cancel(withdrawn.id)

    outcome = agent_client.get(approved.id).outcome
    assert outcome is not None
    assert (outcome.status, outcome.by, outcome.verified) == ("approved", ALICE, "link")
    assert cancelled.outcome is not None
    assert cancelled.outcome.verified is None  # nobody answered


def test_bob_asked_while_alice_is_away_reads_back_on_her_behalf(agent_client):
    # given: alice is away until tomorrow and delegates to bob
    Delegation.objects.create(
        address=ALICE, delegate=BOB, until=timezone.now() + timedelta(days=1), set_by=ALICE
    )

    decision = agent_client.create("Refund $120 to order #1042", approver=ALICE)

    [asked] = agent_client.get(decision.id).requests
    assert (asked.address, asked.on_behalf_of) == (BOB, ALICE)
