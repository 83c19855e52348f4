"""'Which rule would match this decision?': the routing a create would apply, and why, with
nothing stored. The match and the routing come from the create path's own decision_route and
decision_route_recipients; this module only adds the explanation, condition by condition."""

from dataclasses import dataclass

from broker.errors import InvalidInput
from decisions.policies import condition_text, conditions_hold
from decisions.routing import Recipient
from decisions.selectors import create_settings
from decisions.services import Route, decision_route, decision_route_recipients
from organizations.models import Organization


@dataclass(frozen=True)
class RuleTrial:
    """One enabled rule as the create tries it: each condition and whether it holds."""

    name: str
    position: int
    action: str
    checks: list[tuple[str, bool]]  # each condition as a person reads it, and whether it holds
    matched: bool


@dataclass(frozen=True)
class Preview:
    trials: list[RuleTrial]  # the rules tried, in order, up to and including the one that matched
    untried: int  # enabled rules after the match, never looked at
    route: Route
    timeout_minutes: float | None = None
    recipients: list[Recipient] | None = None
    error: str = ""  # what the API would answer with a 400 instead of creating the decision


def policy_preview(
    *,
    organization: Organization,
    action: str,
    urgency: str,
    details: dict,
    approvers: list[str] | None = None,
    timeout_minutes: float | None = None,
) -> Preview:
    """What a create with these fields would do under the organization's enabled rules.
    `approvers` and `timeout_minutes` are what the agent sent (None: left out)."""
    stages = [{"approvers": approvers, "quorum": "any"}] if approvers else None
    explicit = frozenset(
        name for name, value in (("approvers", approvers), ("timeout_minutes", timeout_minutes)) if value
    )
    settings = create_settings(organization)
    route = decision_route(
        rules=settings.rules,
        action=action,
        details=details,
        stages=stages,
        quorum=None,
        urgency=urgency,
        timeout_minutes=timeout_minutes,
        escalation=[],
        explicit=explicit,
    )
    trials, untried = [], 0
    for rule in settings.rules:
        if trials and trials[-1].matched:
            untried += 1
            continue
        facts = {"action": action, "urgency": urgency, "details": details}
        checks = [(condition_text(c), conditions_hold([c], **facts)) for c in rule.conditions]
        matched = route.rule is not None and route.rule.pk == rule.pk
        trials.append(RuleTrial(rule.name, rule.position, rule.get_action_display(), checks, matched))
    if route.decides:
        return Preview(trials, untried, route)
    try:
        timeout, recipients = decision_route_recipients(
            organization=organization,
            route=route,
            explicit=explicit,
            dm_email_approvers=settings.dm_email_approvers,
        )
    except InvalidInput as exc:
        problems = "; ".join(f"{field}: {', '.join(map(str, why))}" for field, why in exc.fields.items())
        return Preview(
            trials, untried, route, error=f"{exc.message} ({problems})" if problems else exc.message
        )
    return Preview(trials, untried, route, timeout_minutes=timeout, recipients=recipients)
