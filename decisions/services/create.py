"""Creating a decision: a policy rule may decide it at once or route it; else its first stage is asked."""

import copy
from dataclasses import dataclass
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.services import AuditEntry, audit_record_many
from broker import tracing
from broker.compiled_inserts import CompiledInsert
from broker.errors import InvalidInput
from decisions.models import ApprovalRequest, Decision, Policy, Status, Via
from decisions.outcomes import iso
from decisions.policies import conditions_hold
from decisions.routing import UnknownGroups, expand_addresses
from decisions.schedule import build_schedule, default_reminders
from decisions.selectors import create_settings
from decisions.services.asking import ask, asked_entries
from decisions.services.errors import IdempotencyConflict
from decisions.services.fingerprints import action_hash
from decisions.services.resolve import announce, build_outcome
from decisions.specs import DecisionSpec
from organizations.models import ApiKey

_decisions = CompiledInsert(Decision)  # one per create: its SQL compiled once


@tracing.traced("decision.create", attributes=lambda result: {"countersign.decision.id": result[0].pk})
def decision_create(
    *, api_key: ApiKey, spec: DecisionSpec, idempotency_key: str | None = None, fingerprint: str = ""
) -> tuple[Decision, bool]:
    """Create the decision `spec` describes, for the organization of `api_key` (its actor is
    the creator in the trail): the organization's first matching policy rule may approve or
    deny it at once, or route it; otherwise ask its first stage and enqueue their notifications.

    Returns (decision, created); a created decision carries the requests it made as
    `asked_at_creation`. An Idempotency-Key seen before returns the first decision with
    created=False when the fingerprint (of the request body) matches and raises
    IdempotencyConflict when it does not, also when two such requests race. Raises InvalidInput
    (nothing stored) when nobody is asked, for unknown groups, a quorum larger than the
    approvers, or escalation or reminders at or after the timeout.
    """
    organization = api_key.organization
    if idempotency_key and (existing := _idempotent_replay(organization.pk, idempotency_key, fingerprint)):
        return existing, False
    try:
        with transaction.atomic():
            decision = _create(
                api_key=api_key,
                spec=spec,
                # Kept as the agent asked, whatever a policy rule does.
                stored={
                    "context": spec.context,
                    "options": spec.options,
                    "response_type": spec.response_type,
                    "allow_edit": spec.allow_edit,
                    "on_timeout": spec.on_timeout,
                    "callback_url": spec.callback_url,
                    "metadata": spec.metadata,
                    "verification": spec.verification,
                    "requested_by": spec.requested_by.strip().lower(),
                    "distinct_stage_approvers": spec.distinct_stage_approvers,
                    "idempotency_key": idempotency_key,
                    "request_fingerprint": fingerprint,
                    "trace_context": tracing.current_carrier(),
                },
            )
    except IntegrityError:
        # A concurrent request with the same key committed first.
        if idempotency_key and (
            existing := _idempotent_replay(organization.pk, idempotency_key, fingerprint)
        ):
            return existing, False
        raise
    return decision, True


def _idempotent_replay(organization_id: int, key: str, fingerprint: str) -> Decision | None:
    existing = Decision.objects.filter(organization_id=organization_id, idempotency_key=key).first()
    if existing is not None and existing.request_fingerprint != fingerprint:
        raise IdempotencyConflict(
            "This Idempotency-Key was used with a different request body.",
            fields={"Idempotency-Key": ["already used with a different body"]},
        )
    return existing


def _expand(organization_id: int, addresses: list[str], field: str, dm_email_approvers: bool | None = None):
    try:
        return expand_addresses(
            organization_id=organization_id, addresses=addresses, dm_email_approvers=dm_email_approvers
        )
    except UnknownGroups as exc:
        raise InvalidInput(
            f"Unknown approver group: {', '.join(exc.names)}.",
            fields={field: [f"unknown group '{name}'" for name in exc.names]},
        ) from None


def _check_routing(
    organization_id: int,
    stages: list[dict],
    escalation: list[dict],
    timeout_minutes: float,
    *,
    as_stages: bool,
    dm_email_approvers: bool | None = None,
    requested_by: str = "",
    distinct: bool = True,
):
    """Validate what needs the database or the organization's defaults; the serializer has
    checked the shapes. Errors name the fields as the agent sent them (`as_stages`: a list of
    stages rather than approvers). Returns the first stage's recipients."""
    backups = set()
    for index, level in enumerate(escalation):
        recipients = _expand(
            organization_id, level["approvers"], f"escalation[{index}].approvers", dm_email_approvers
        )
        backups |= {recipient.address for recipient in recipients}
        if level["after_minutes"] >= timeout_minutes:
            raise InvalidInput(
                "An escalation level comes at or after the timeout.",
                fields={
                    f"escalation[{index}].after_minutes": [
                        f"must be less than timeout_minutes ({timeout_minutes:g})"
                    ]
                },
            )
    first_recipients = None
    sole_approvers: set[str] = set()  # of earlier one-person stages
    for index, stage in enumerate(stages):
        field = f"stages[{index}]" if as_stages else "approvers"
        recipients = _expand(organization_id, stage["approvers"], field, dm_email_approvers)
        if not recipients:
            raise InvalidInput("The approver groups have no members.", fields={field: ["no approvers"]})
        _check_duties(
            recipients, field, requested_by=requested_by, sole_approvers=sole_approvers if distinct else None
        )
        # Escalation asks in whichever stage is current: its approvers can make up a quorum.
        could_approve = len({recipient.address for recipient in recipients} | backups)
        if isinstance(stage["quorum"], int) and stage["quorum"] > could_approve:
            quorum_field = f"stages[{index}].quorum" if as_stages else "quorum"
            raise InvalidInput(
                f"Quorum {stage['quorum']} is more than the {could_approve} people who could approve.",
                fields={quorum_field: [f"at most {could_approve}"]},
            )
        first_recipients = first_recipients or recipients
    return first_recipients


def _check_duties(recipients, field: str, *, requested_by: str, sole_approvers: set[str] | None) -> None:
    """Separation of duties at create: the requester is not the only approver of a stage, and
    (unless allowed) no one-person stage repeats the sole approver of an earlier one."""
    people = {recipient.address.lower() for recipient in recipients}
    if requested_by and people <= {requested_by}:
        raise InvalidInput(
            f"{requested_by} asked for this decision and cannot approve it: name someone else.",
            fields={field: ["only the requester"]},
        )
    if sole_approvers is None:
        return
    if len(people) == 1 and people <= sole_approvers:
        raise InvalidInput(
            f"{next(iter(people))} is the only approver of two stages, and nobody approves two stages.",
            fields={field: ["the same sole approver as an earlier stage"]},
        )
    if len(people) == 1:
        sole_approvers |= people


def _matching_rule(rules, *, action: str, urgency: str, details: dict) -> Policy | None:
    rule = next(
        (
            rule
            for rule in rules
            if conditions_hold(rule.conditions, action=action, urgency=urgency, details=details)
        ),
        None,
    )
    # The rules are shared by the process: the decision gets lists of its own.
    return copy.deepcopy(rule)


def _routed_by(rule: Policy, explicit: frozenset[str], **routing) -> dict:
    """The routing after a matching rule: it fills in what the agent left out, or, when it
    overrides, replaces what the agent sent."""

    def takes(*fields: str) -> bool:
        return rule.override or not explicit.intersection(fields)

    if (rule.stages or rule.approvers) and takes("approver", "approvers", "stages"):
        if rule.stages:
            routing["stages"] = [
                {"approvers": s["approvers"], "quorum": s.get("quorum", "any")} for s in rule.stages
            ]
        else:
            quorum = rule.quorum if rule.quorum is not None and takes("quorum") else routing["quorum"]
            routing["stages"] = [{"approvers": rule.approvers, "quorum": quorum or "any"}]
    elif rule.quorum is not None and takes("quorum", "stages") and len(routing["stages"] or []) == 1:
        routing["stages"] = [{**routing["stages"][0], "quorum": rule.quorum}]
    if rule.timeout_minutes and takes("timeout_minutes"):
        routing["timeout_minutes"] = rule.timeout_minutes
    if rule.urgency and takes("urgency"):
        routing["urgency"] = rule.urgency
    if rule.escalation and takes("escalation"):
        routing["escalation"] = rule.escalation
    return routing


@dataclass(frozen=True)
class Route:
    """What the organization's rules make of a request: the first enabled rule whose conditions
    all hold (or None), and the routing after it. A rule that approves or denies at once leaves
    the routing as the agent sent it."""

    rule: Policy | None
    stages: list[dict] | None
    urgency: str
    timeout_minutes: float | None
    escalation: list[dict]

    @property
    def decides(self) -> bool:
        return self.rule is not None and self.rule.action != Policy.Action.ROUTE


def decision_route(
    *,
    rules,
    action: str,
    details: dict,
    stages: list[dict] | None,
    quorum,
    urgency: str,
    timeout_minutes: float | None,
    escalation: list[dict],
    explicit: frozenset[str],
) -> Route:
    """The routing a create applies, from the rules in the order they are tried. Reads and
    stores nothing: the create path and the admin's preview both call it."""
    rule = _matching_rule(rules, action=action, urgency=urgency, details=details)
    if rule is None or rule.action != Policy.Action.ROUTE:
        return Route(rule, stages, urgency, timeout_minutes, escalation)
    routed = _routed_by(
        rule,
        explicit,
        stages=stages,
        quorum=quorum,
        urgency=urgency,
        timeout_minutes=timeout_minutes,
        escalation=escalation,
    )
    return Route(rule, routed["stages"], routed["urgency"], routed["timeout_minutes"], routed["escalation"])


def decision_route_recipients(
    *,
    organization,
    route: Route,
    explicit: frozenset[str],
    dm_email_approvers: bool | None = None,
    requested_by: str = "",
    distinct: bool = True,
) -> tuple[float, list]:
    """(timeout_minutes, who is asked first) for a routed request: the organization's default
    timeout when none is set. Raises InvalidInput as the create does: nobody to ask, unknown
    groups, a quorum larger than the approvers, escalation at or after the timeout, the
    requester as a stage's only approver, one person the sole approver of two stages."""
    if not route.stages:
        raise InvalidInput(
            "Nobody to ask: name approvers, or add a policy rule that routes this decision.",
            fields={"approvers": ["Name at least one approver (approver, approvers or stages)."]},
        )
    timeout_minutes = route.timeout_minutes or organization.default_timeout_minutes
    recipients = _check_routing(
        organization.pk,
        route.stages,
        route.escalation,
        timeout_minutes,
        as_stages="stages" in explicit or len(route.stages) > 1,
        dm_email_approvers=dm_email_approvers,
        requested_by=requested_by,
        distinct=distinct,
    )
    return timeout_minutes, recipients


def _create(*, api_key: ApiKey, spec: DecisionSpec, stored: dict) -> Decision:
    action, details = spec.action, spec.details
    organization = api_key.organization
    settings = create_settings(organization)
    route = decision_route(
        rules=settings.rules,
        action=action,
        details=details,
        stages=spec.stages,
        quorum=spec.quorum,
        urgency=spec.urgency,
        timeout_minutes=spec.timeout_minutes,
        escalation=spec.escalation,
        explicit=spec.explicit,
    )
    rule = route.rule
    if route.decides:
        return _create_decided_by_rule(
            rule,
            api_key=api_key,
            action=action,
            details=details,
            urgency=spec.urgency,
            timeout_minutes=spec.timeout_minutes or organization.default_timeout_minutes,
            **stored,
        )
    stages, urgency, escalation = route.stages, route.urgency, route.escalation
    if rule is not None and rule.verification and (rule.override or "verification" not in spec.explicit):
        stored = {**stored, "verification": rule.verification}
    timeout_minutes, recipients = decision_route_recipients(
        organization=organization,
        route=route,
        explicit=spec.explicit,
        dm_email_approvers=settings.dm_email_approvers,
        requested_by=stored["requested_by"],
        distinct=stored["distinct_stage_approvers"],
    )
    reminders = spec.reminders
    if reminders is None:
        reminders = default_reminders(timeout_minutes=timeout_minutes, fractions=organization.reminder_points)
    elif late := [minutes for minutes in reminders if minutes >= timeout_minutes]:
        raise InvalidInput(
            "A reminder comes at or after the timeout.",
            fields={"reminders": [f"{late[0]:g} is not before timeout_minutes ({timeout_minutes:g})"]},
        )
    schedule = build_schedule(
        timeout_minutes=timeout_minutes,
        reminders=reminders,
        escalation=escalation,
        repeat=spec.escalation_repeat,
    )
    now = timezone.now()
    expires_at = now + timedelta(minutes=timeout_minutes)
    decision = Decision(
        organization_id=organization.pk,
        action=action,
        details=details,
        stages=stages,
        urgency=urgency,
        escalation=escalation,
        escalation_repeat=spec.escalation_repeat,
        reminders=reminders,
        schedule=schedule,
        next_due_at=min(expires_at, now + timedelta(minutes=schedule[0]["at"])) if schedule else expires_at,
        policy={"name": rule.name, "action": rule.action} if rule else None,
        action_hash=action_hash(action, details),
        created_at=now,
        expires_at=expires_at,
        **stored,
    )
    _decisions.create([decision])
    requests = ask(decision, recipients, stage=0, level=0, settings=settings)
    audit_record_many(
        organization_id=organization.pk,
        entries=_created_entries(decision, api_key, rule) + asked_entries(decision, requests),
    )
    _hold_requests(decision, requests)
    return decision


def _hold_requests(decision: Decision, requests: list[ApprovalRequest]) -> None:
    """Keep the requests a create made on the decision (`asked_at_creation`), so the caller
    can render it without reading it back. A snapshot: `decision.requests` stays the live set."""
    decision.asked_at_creation = list(requests)


def _create_decided_by_rule(
    rule: Policy,
    *,
    api_key: ApiKey,
    action: str,
    details: dict,
    urgency: str,
    timeout_minutes: float,
    **stored,
) -> Decision:
    """A decision an automatic rule approves or denies as it is created: nobody is asked."""
    status, choice = (
        (Status.APPROVED, "approve") if rule.action == Policy.Action.APPROVE else (Status.DENIED, "deny")
    )
    now = timezone.now()
    decision = Decision(
        organization_id=api_key.organization_id,
        action=action,
        details=details,
        urgency=urgency,
        status=status,
        policy={"name": rule.name, "action": rule.action},
        action_hash=action_hash(action, details),
        created_at=now,
        expires_at=now + timedelta(minutes=timeout_minutes),
        resolved_at=now,
        **stored,
    )
    decision.outcome = build_outcome(
        decision, status=status, by=f"policy:{rule.name}", via=Via.POLICY, at=now, choice=choice
    ).to_json()
    _decisions.create([decision])
    announce(decision, also=_created_entries(decision, api_key, rule), asked=[])  # nobody was asked
    _hold_requests(decision, [])
    return decision


def _created_entries(decision: Decision, api_key: ApiKey, rule: Policy | None) -> list[AuditEntry]:
    entries = [
        AuditEntry(
            event="decision.created",
            actor=api_key.actor,
            decision_id=decision.id,
            channel=Via.API,
            payload={
                "action": decision.action,
                "action_hash": decision.action_hash,
                "urgency": decision.urgency,
                "expires_at": iso(decision.expires_at),
                "on_timeout": decision.on_timeout,
                "stages": decision.stages,
                "escalation": decision.escalation,
                "policy": decision.policy,
            },
        )
    ]
    if rule is not None:
        entries.append(
            AuditEntry(
                event="policy.matched",
                actor=f"policy:{rule.name}",
                decision_id=decision.id,
                channel=Via.POLICY,
                payload={
                    "rule": rule.name,
                    "action": rule.action,
                    "conditions": rule.conditions,
                    "override": rule.override,
                },
            )
        )
    return entries
