"""Factories for what tests build (factory-boy).

DecisionFactory creates a decision the way an agent does, through decision_create with a
DecisionSpec; DecisionSpecFactory builds the spec alone. Defaults: "Refund order #1042" put to
alice, any one approval. `approvers` and `quorum` make the one stage; pass `stages` instead
for several. A test file whose decisions share more subclasses DecisionFactory:

    class Refund(DecisionFactory):
        action = "Refund order #1042 for €1,200"
        details = factory.Dict({"amount": 1200, "currency": "EUR"})

    decision = Refund(api_key=acme_key[0], approvers=[ALICE, BOB], quorum="all")
"""

import factory

from decisions.models import Decision
from decisions.services import DecisionSpec, decision_create
from organizations.models import ApiKey
from tests.conftest import ALICE


class DecisionSpecFactory(factory.Factory):
    class Meta:
        model = DecisionSpec

    class Params:
        approvers = (ALICE,)
        quorum = "any"  # the stage's; DecisionSpec.quorum (for a routing policy) is not set

    action = "Refund order #1042"
    stages = factory.LazyAttribute(lambda spec: [{"approvers": list(spec.approvers), "quorum": spec.quorum}])


class DecisionFactory(DecisionSpecFactory):
    """A decision created by decision_create for `api_key` (required): its organization's, with
    the requests, deliveries and audit events a create makes."""

    api_key = None

    @classmethod
    def _create(cls, model_class, *, api_key: ApiKey | None, **spec) -> Decision:
        if api_key is None:
            raise TypeError("DecisionFactory needs api_key=: the agent's key that creates it")
        decision, created = decision_create(api_key=api_key, spec=model_class(**spec))
        assert created
        return decision

    @classmethod
    def _build(cls, model_class, *args, **kwargs):
        raise TypeError("A decision exists only through decision_create: call DecisionFactory(...)")
