"""Writes for decisions.

Every status change is a compare-and-set: UPDATE … WHERE status = 'pending'. Whoever updates
the row wins (a click, the timeout, a cancel); everyone else gets AlreadyResolved. Audit records
are written last in each transaction, in one batch (see audit_record_many for why).
"""

import contextlib
import copy
import dataclasses
import hashlib
import logging
from datetime import datetime, timedelta

import redis
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.services import AuditEntry, audit_record, audit_record_many
from broker.canonical import canonical_json
from broker.errors import Conflict, DomainError, InvalidInput
from decisions.models import (
    ApprovalRequest,
    Decision,
    OnTimeout,
    Policy,
    ResponseType,
    Status,
    Verification,
    Via,
)
from decisions.policies import conditions_hold
from decisions.routing import UnknownGroups, approvals_required, expand_addresses
from decisions.schedule import build_schedule, default_reminders
from decisions.selectors import create_settings
from decisions.waiting import publish_resolution
from notifications.models import Delivery
from notifications.services import deliveries_enqueue
from organizations.models import ApiKey, Organization
from portal.delegation import delegated

logger = logging.getLogger(__name__)

MAX_NOTE_LENGTH = 5_000
MAX_TEXT_LENGTH = 20_000


class AlreadyResolved(Conflict):
    code = "already_resolved"

    def __init__(self, decision: Decision) -> None:
        super().__init__(f"Decision {decision.id} is already {decision.status}.")
        self.decision = decision


class AlreadyAnswered(Conflict):
    code = "already_answered"


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"


class VerificationRequired(DomainError):
    """The decision asks for more proof of who answers than this channel gives (its
    `verification`): it is answered in the portal."""

    status = 403
    code = "verification_required"

    def __init__(self, decision: Decision) -> None:
        how = (
            "signed in with a passkey"
            if decision.verification == Verification.PASSKEY
            else "freshly signed in"
        )
        super().__init__(f"Decision {decision.id} must be answered in the portal, {how}.")
        self.decision = decision


class SeparationOfDuties(DomainError):
    """An approval the decision's separation of duties forbids: the requester's own, or a
    second stage approved by the same person."""

    status = 403
    code = "separation_of_duties"


class DeadlinePassed(Conflict):
    """Answered after expires_at, before the clock has expired it: too late all the same."""

    code = "expired"


def action_hash(action: str, details: dict) -> str:
    """SHA-256 of the canonical JSON of action and details: what exactly was put to the approver."""
    return hashlib.sha256(canonical_json({"action": action, "details": details}).encode()).hexdigest()


def request_fingerprint(body) -> str:
    """What makes two requests 'the same body' for Idempotency-Key: equal parsed JSON."""
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


# --- create -------------------------------------------------------------------------------


def decision_create(
    *,
    api_key: ApiKey,
    action: str,
    stages: list[dict] | None = None,
    quorum: str | int | None = None,
    context: str = "",
    details: dict | None = None,
    options: list[str] | None = None,
    response_type: str = ResponseType.CHOICE,
    allow_edit: bool = False,
    urgency: str = "normal",
    timeout_minutes: float | None = None,
    on_timeout: str = OnTimeout.EXPIRE,
    verification: str = Verification.LINK,
    requested_by: str = "",
    distinct_stage_approvers: bool = True,
    escalation: list[dict] | None = None,
    escalation_repeat: int = 0,
    reminders: list[float] | None = None,
    callback_url: str = "",
    metadata: dict | None = None,
    explicit: frozenset[str] = frozenset(),
    idempotency_key: str | None = None,
    fingerprint: str = "",
) -> tuple[Decision, bool]:
    """Create a decision: the organization's first matching policy rule may approve or deny it
    at once, or route it; otherwise ask its first stage and enqueue their notifications.

    `explicit` names the request fields the agent sent: a routing rule fills in only the others
    unless it overrides. Returns (decision, created); a created decision carries the requests
    it made as `asked_at_creation`. An Idempotency-Key seen before returns the
    first decision with created=False when the fingerprint matches and raises
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
                action=action,
                stages=stages,
                quorum=quorum,
                context=context,
                details=details or {},
                options=options or ["approve", "deny"],
                response_type=response_type,
                allow_edit=allow_edit,
                urgency=urgency,
                timeout_minutes=timeout_minutes,
                on_timeout=on_timeout,
                verification=verification,
                requested_by=requested_by.strip().lower(),
                distinct_stage_approvers=distinct_stage_approvers,
                escalation=escalation or [],
                escalation_repeat=escalation_repeat,
                reminders=reminders,
                callback_url=callback_url,
                metadata=metadata or {},
                explicit=explicit,
                idempotency_key=idempotency_key,
                fingerprint=fingerprint,
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


def _create(
    *,
    api_key: ApiKey,
    action,
    details,
    stages,
    quorum,
    urgency,
    timeout_minutes,
    escalation,
    explicit,
    **fields,
) -> Decision:
    organization = api_key.organization
    settings = create_settings(organization)
    rule = _matching_rule(settings.rules, action=action, urgency=urgency, details=details)
    if rule is not None and rule.action != Policy.Action.ROUTE:
        return _create_decided_by_rule(
            rule,
            api_key=api_key,
            action=action,
            details=details,
            urgency=urgency,
            timeout_minutes=timeout_minutes or organization.default_timeout_minutes,
            **fields,
        )
    if rule is not None:
        routed = _routed_by(
            rule,
            explicit,
            stages=stages,
            quorum=quorum,
            urgency=urgency,
            timeout_minutes=timeout_minutes,
            escalation=escalation,
        )
        stages, urgency = routed["stages"], routed["urgency"]
        timeout_minutes, escalation = routed["timeout_minutes"], routed["escalation"]
        if rule.verification and (rule.override or "verification" not in explicit):
            fields["verification"] = rule.verification
    if not stages:
        raise InvalidInput(
            "Nobody to ask: name approvers, or add a policy rule that routes this decision.",
            fields={"approvers": ["Name at least one approver (approver, approvers or stages)."]},
        )
    timeout_minutes = timeout_minutes or organization.default_timeout_minutes
    recipients = _check_routing(
        organization.pk,
        stages,
        escalation,
        timeout_minutes,
        as_stages="stages" in explicit or len(stages) > 1,
        dm_email_approvers=settings.dm_email_approvers,
        requested_by=fields["requested_by"],
        distinct=fields["distinct_stage_approvers"],
    )
    reminders = fields.pop("reminders")
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
        repeat=fields["escalation_repeat"],
    )
    now = timezone.now()
    expires_at = now + timedelta(minutes=timeout_minutes)
    decision = Decision.objects.create(
        organization_id=organization.pk,
        action=action,
        details=details,
        stages=stages,
        urgency=urgency,
        escalation=escalation,
        reminders=reminders,
        schedule=schedule,
        next_due_at=min(expires_at, now + timedelta(minutes=schedule[0]["at"])) if schedule else expires_at,
        policy={"name": rule.name, "action": rule.action} if rule else None,
        action_hash=action_hash(action, details),
        created_at=now,
        expires_at=expires_at,
        request_fingerprint=fields.pop("fingerprint"),
        **fields,
    )
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
    rule: Policy, *, api_key: ApiKey, action, details, urgency, timeout_minutes, **fields
):
    """A decision an automatic rule approves or denies as it is created: nobody is asked."""
    status, choice = (
        (Status.APPROVED, "approve") if rule.action == Policy.Action.APPROVE else (Status.DENIED, "deny")
    )
    now = timezone.now()
    for unused in ("reminders", "escalation_repeat"):
        fields.pop(unused)
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
        request_fingerprint=fields.pop("fingerprint"),
        **fields,
    )
    decision.outcome = _outcome(
        decision, status=status, by=f"policy:{rule.name}", via=Via.POLICY, at=now, choice=choice
    )
    decision.save(force_insert=True)
    _announce(decision, also=_created_entries(decision, api_key, rule))
    _hold_requests(decision, [])  # nobody was asked
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
                "expires_at": _iso(decision.expires_at),
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


def ask(decision: Decision, recipients, *, stage: int, level: int, settings=None) -> list[ApprovalRequest]:
    """Create the requests and, in the same transaction, the deliveries that notify them. An
    approver away is replaced by their delegate (portal/delegation.py), unless the organization
    forbids it; `settings`: the organization's create settings when the caller holds them."""
    if settings is None:
        settings = create_settings(Organization.objects.get(pk=decision.organization_id))
    if decision.requested_by:  # the requester is never asked to approve their own decision
        recipients = [r for r in recipients if r.address.lower() != decision.requested_by]
    recipients = _delegated(decision, recipients, settings.delegations, stage)
    requests = ApprovalRequest.objects.bulk_create(
        ApprovalRequest(
            decision=decision,
            address=r.address,
            channel=r.channel,
            group=r.group,
            on_behalf_of=r.on_behalf_of,
            stage=stage,
            level=level,
            created_at=decision.created_at if stage == level == 0 else timezone.now(),
        )
        for r in recipients
    )
    for kind in {r.channel for r in requests}:
        deliveries_enqueue(
            decision=decision,
            kind=kind,
            purpose=Delivery.Purpose.ASK,
            requests=[r for r in requests if r.channel == kind],
        )
    return requests


def _delegated(decision: Decision, recipients, delegations: dict, stage: int) -> list:
    if not delegations:
        return recipients
    recipients = [
        # Never delegated to the requester: the away approver is asked after all.
        dataclasses.replace(r, address=r.on_behalf_of, on_behalf_of="")
        if r.on_behalf_of and r.address == decision.requested_by
        else r
        for r in delegated(recipients, delegations, timezone.now())
    ]
    if not any(r.on_behalf_of for r in recipients):
        return recipients
    # A delegate may already be asked in this stage (in their own right, or for someone else).
    already = set(
        ApprovalRequest.objects.filter(decision_id=decision.pk, stage=stage).values_list("address", "channel")
    )
    return [r for r in recipients if (r.address, r.channel) not in already]


def asked_entries(decision: Decision, requests: list[ApprovalRequest]) -> list[AuditEntry]:
    return [
        AuditEntry(
            event="approver.asked",
            actor="system",
            decision_id=decision.id,
            channel=request.channel,
            payload={
                "address": request.address,
                "group": request.group,
                "stage": request.stage,
                "level": request.level,
                **({"on_behalf_of": request.on_behalf_of} if request.on_behalf_of else {}),
            },
        )
        for request in requests
    ]


LINK_VIEW_WINDOW_SECONDS = 60
# Long enough to outlive any decision's links; views counted but never recorded expire with it.
LINK_VIEWS_UNRECORDED_SECONDS = 30 * 24 * 3600


def _views_not_yet_recorded(key: str) -> int:
    return int(cache.get(key) or 0)


def _count_unrecorded_view(key: str) -> None:
    if cache.add(key, 1, timeout=LINK_VIEWS_UNRECORDED_SECONDS):
        return
    try:
        cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=LINK_VIEWS_UNRECORDED_SECONDS)


def approval_link_viewed(*, request: ApprovalRequest, choice: str, ip: str, user_agent: str) -> None:
    """Record that an approval link was opened. It changes nothing else: mail scanners open
    every link, and the trail should show their visits, not act on them.

    Scanners and bots open a link over and over, so the trail gets at most one link.viewed per
    link (request and choice), IP and user agent per LINK_VIEW_WINDOW_SECONDS: the first view
    of a window is recorded at once, with `views` = 1 plus the views from that same client that
    were only counted (in the cache) since its previous event. Views after the last event are
    therefore in the trail only once that client comes back. Without the cache (Redis down)
    every view is recorded, with `views` = 1, as if each began a window."""
    client = hashlib.sha256(f"{request.pk}\n{choice}\n{ip}\n{user_agent}".encode()).hexdigest()
    window_key, unrecorded_key = f"link-viewed:window:{client}", f"link-viewed:unrecorded:{client}"
    earlier = 0
    try:
        if not cache.add(window_key, 1, timeout=LINK_VIEW_WINDOW_SECONDS):
            _count_unrecorded_view(unrecorded_key)
            return
        earlier = _views_not_yet_recorded(unrecorded_key)
    except (redis.RedisError, OSError):
        logger.warning("link views not bounded: the cache is unreachable", exc_info=True)
    with transaction.atomic():
        audit_record(
            organization_id=request.decision.organization_id,
            decision_id=request.decision_id,
            event="link.viewed",
            actor=request.address,
            channel=request.channel,
            payload={"choice": choice, "ip": ip, "user_agent": user_agent, "views": 1 + earlier},
        )
    if earlier:
        # Subtract what was recorded rather than delete: views counted meanwhile are kept.
        with contextlib.suppress(redis.RedisError, OSError, ValueError):
            cache.decr(unrecorded_key, earlier)


# --- resolve ------------------------------------------------------------------------------


def _outcome(
    decision: Decision,
    *,
    status: str,
    by: str,
    via: str,
    at: datetime,
    choice=None,
    text=None,
    note=None,
    details=None,
    verified=None,
) -> dict:
    final_details = decision.details if details is None else details
    return {
        "status": status,
        "choice": choice,
        "text": text,
        "note": note,
        "by": by,
        "via": via,
        "at": _iso(at),
        "details": final_details,
        "action_hash": action_hash(decision.action, final_details),
        # How the answering person was verified (link, session, passkey); None when nobody answered.
        "verified": verified,
    }


def _transition(decision: Decision, *, status: str, outcome: dict, at: datetime, **conditions) -> bool:
    """The one place a decision leaves pending: compare-and-set, then close the requests
    nobody answered. Returns False if someone else already resolved it."""
    won = Decision.objects.filter(pk=decision.pk, status=Status.PENDING, **conditions).update(
        status=status, resolved_at=at, outcome=outcome
    )
    if not won:
        return False
    ApprovalRequest.objects.filter(decision_id=decision.pk, state=ApprovalRequest.State.PENDING).update(
        state=ApprovalRequest.State.CLOSED
    )
    decision.status, decision.resolved_at, decision.outcome = status, at, outcome
    return True


def _announce(decision: Decision, *, also: list[AuditEntry] = ()) -> None:
    """After a transition: the audit records (`also`, then decision.resolved), then what goes
    out — callback, Slack message updates, the long-poll wake-up — all through the outbox or
    on commit."""
    outcome = decision.outcome
    resolved = AuditEntry(
        event="decision.resolved",
        actor=outcome["by"],
        decision_id=decision.id,
        channel=outcome["via"],
        # The whole outcome: verify_audit holds the decisions table to what was sealed here.
        payload={
            "status": decision.status,
            "choice": outcome["choice"],
            "note": outcome["note"],
            "action_hash": outcome["action_hash"],
            "outcome": outcome,
        },
    )
    audit_record_many(organization_id=decision.organization_id, entries=[*also, resolved])
    if decision.callback_url:
        deliveries_enqueue(decision=decision, kind=Delivery.Kind.CALLBACK, purpose=Delivery.Purpose.OUTCOME)
    # Every Slack message for it shows the outcome, without buttons, whoever settled it.
    if slack_requests := list(decision.requests.filter(channel=Delivery.Kind.SLACK)):
        deliveries_enqueue(
            decision=decision,
            kind=Delivery.Kind.SLACK,
            purpose=Delivery.Purpose.UPDATE,
            requests=slack_requests,
        )
    # Wake long-polling agents once it is committed (robust: Redis down costs latency only).
    decision_id = decision.id  # (a lambda: see notifications.services._publish_on_commit)
    transaction.on_commit(lambda: publish_resolution(decision_id), robust=True)


def _reload(decision_id: str) -> Decision:
    return Decision.objects.get(pk=decision_id)


@transaction.atomic
def decision_cancel(*, decision: Decision, actor: str, via: str = Via.API) -> Decision:
    """pending → cancelled, by `actor` over `via` (the API; an admin on the web). Raises
    AlreadyResolved if it is not pending."""
    now = timezone.now()
    outcome = _outcome(decision, status=Status.CANCELLED, by=actor, via=via, at=now)
    if not _transition(decision, status=Status.CANCELLED, outcome=outcome, at=now):
        raise AlreadyResolved(_reload(decision.pk))
    _announce(decision)
    return decision


_TIMEOUT_OUTCOMES = {
    OnTimeout.EXPIRE: (Status.EXPIRED, None),
    OnTimeout.DENY: (Status.DENIED, "deny"),
    OnTimeout.APPROVE: (Status.APPROVED, "approve"),
}


@transaction.atomic
def decision_expire(*, decision_id: str) -> Decision | None:
    """Resolve a decision whose time is up, as its on_timeout asks. None (and nothing done)
    if it is not pending or not yet due: safe to call twice or early."""
    decision = Decision.objects.filter(pk=decision_id).first()
    if decision is None or not decision.is_pending:
        return None
    return decision if expire(decision, now=timezone.now()) else None


def expire(decision: Decision, *, now: datetime) -> bool:
    """The timeout's compare-and-set, inside the caller's transaction: False if the decision
    was no longer pending or not yet due (a click got there first)."""
    status, choice = _TIMEOUT_OUTCOMES[decision.on_timeout]
    outcome = _outcome(decision, status=status, by="system", via=Via.TIMEOUT, at=now, choice=choice)
    if not _transition(decision, status=status, outcome=outcome, at=now, expires_at__lte=now):
        return False
    _announce(decision)
    return True


@transaction.atomic
def decision_answer(
    *,
    request_id: int,
    choice: str = "",
    text: str = "",
    note: str = "",
    details: dict | None = None,
    via: str,
    answered_by: str = "",
    answered_by_name: str = "",
    ip: str = "",
    user_agent: str = "",
    verified: str = Verification.LINK,
) -> Decision:
    """Record one approver's answer, and resolve the decision when it settles it: a deny at
    once, an approval when the stage's quorum is met (then the next stage is asked, if any),
    any other option or a text answer as `responded`. `verified` is how the caller proved who
    answers (link, session, passkey); it is recorded in the outcome and must meet the decision's
    `verification`.

    Raises AlreadyResolved if the decision is not pending, DeadlinePassed after its
    expires_at, VerificationRequired if `verified` falls short, AlreadyAnswered if this approver
    answered before, InvalidInput for a choice
    not among the options, a missing text answer, or edited details the decision does not allow.
    """
    request = ApprovalRequest.objects.get(pk=request_id)
    # The row lock serialises answers to one decision, so quorum counts are exact. NO KEY: a
    # plain FOR UPDATE also blocks the KEY SHARE lock every insert referencing this decision
    # takes (an audit event, a delivery), and a worker marking an email sent holds its
    # request row while it inserts one: the two would deadlock.
    decision = Decision.objects.select_for_update(no_key=True).get(pk=request.decision_id)
    if not decision.is_pending:
        raise AlreadyResolved(decision)
    now = timezone.now()
    if decision.expires_at <= now:
        raise DeadlinePassed(f"Decision {decision.id} expired at {_iso(decision.expires_at)}.")
    if not Verification.satisfies(verified, decision.verification):
        raise VerificationRequired(decision)
    _check_answer(decision, choice=choice, text=text, note=note, details=details)
    if choice == "approve":
        _check_approver(decision, request, answered_by or request.address)
    if decision.response_type == ResponseType.TEXT:
        choice = ""
    won = ApprovalRequest.objects.filter(pk=request.pk, state=ApprovalRequest.State.PENDING).update(
        state=ApprovalRequest.State.ANSWERED,
        answered_at=now,
        answered_via=via,
        answered_by=answered_by,
        choice=choice,
        text=text,
        note=note,
        edited_details=details,
    )
    if not won:
        raise AlreadyAnswered(f"{request.address} has already answered decision {decision.id}.")
    # Their other requests (the same person on another channel) are settled by this answer.
    ApprovalRequest.objects.filter(
        decision_id=decision.pk, address=request.address, state=ApprovalRequest.State.PENDING
    ).update(state=ApprovalRequest.State.CLOSED)

    by = answered_by or request.address
    resolved_as = _settle(decision, request, choice)
    next_requests = []
    if resolved_as is not None:
        outcome = _outcome(
            decision,
            status=resolved_as,
            by=by,
            via=via,
            at=now,
            choice=choice or None,
            text=text or None,
            note=note or None,
            details=details,
            verified=verified,
        )
        _transition(decision, status=resolved_as, outcome=outcome, at=now)
    elif choice == "approve" and _stage_complete(decision, request.stage):
        next_requests = _advance_stage(decision)

    answered = AuditEntry(
        event="decision.answered",
        actor=by,
        decision_id=decision.id,
        channel=via,
        payload={
            "address": request.address,
            "choice": choice,
            "text": text,
            "note": note,
            "edited_details": details,
            "ip": ip,
            "user_agent": user_agent,
            "verified": verified,
            **({"name": answered_by_name} if answered_by_name else {}),
        },
    )
    entries = [answered, *asked_entries(decision, next_requests)]
    if resolved_as is not None:
        _announce(decision, also=entries)
    else:
        audit_record_many(organization_id=decision.organization_id, entries=entries)
    return decision


def _check_answer(decision: Decision, *, choice: str, text: str, note: str, details: dict | None) -> None:
    if decision.response_type == ResponseType.TEXT:
        if not text.strip():
            raise InvalidInput("This decision asks for an answer in words.", fields={"text": ["required"]})
    elif choice not in decision.options:
        raise InvalidInput(
            f"'{choice[:64]}' is not one of the options.", fields={"choice": [f"one of {decision.options}"]}
        )
    if _has_nul([note, text, details]):
        # PostgreSQL cannot store NUL in text or jsonb; the API's parser refuses it, forms must too.
        raise InvalidInput("Answers must not contain NUL characters.", fields={"note": ["no NUL characters"]})
    if len(note) > MAX_NOTE_LENGTH:
        raise InvalidInput(
            "The note is too long.", fields={"note": [f"at most {MAX_NOTE_LENGTH} characters"]}
        )
    if len(text) > MAX_TEXT_LENGTH:
        raise InvalidInput(
            "The answer is too long.", fields={"text": [f"at most {MAX_TEXT_LENGTH} characters"]}
        )
    if details is not None and (not decision.allow_edit or choice != "approve"):
        raise InvalidInput(
            "Details can be edited only when approving a decision that allows it.",
            fields={"details": ["not editable"]},
        )


def _check_approver(decision: Decision, request: ApprovalRequest, approver: str) -> None:
    """Separation of duties at an approval. Raises SeparationOfDuties."""
    if decision.requested_by and approver.lower() == decision.requested_by:
        raise SeparationOfDuties(
            f"{approver} asked for decision {decision.id}: someone else must approve it."
        )
    if (
        decision.distinct_stage_approvers
        and request.stage > 0
        and ApprovalRequest.objects.filter(
            decision_id=decision.pk, stage__lt=request.stage, address=request.address, choice="approve"
        ).exists()
    ):
        raise SeparationOfDuties(
            f"{request.address} approved an earlier stage of decision {decision.id}: "
            "someone else must approve this one."
        )


def _has_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(key) or _has_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


def _settle(decision: Decision, request: ApprovalRequest, choice: str) -> str | None:
    """The status this answer resolves the decision to, or None while it stays pending."""
    if decision.response_type == ResponseType.TEXT:
        return Status.RESPONDED
    if choice == "deny":
        return Status.DENIED
    if choice != "approve":
        return Status.RESPONDED
    is_last_stage = request.stage >= len(decision.stages) - 1
    if is_last_stage and _stage_complete(decision, request.stage):
        return Status.APPROVED
    return None


def _stage_complete(decision: Decision, stage: int) -> bool:
    """Enough approvals in the stage. People, not requests: alice asked by email and on Slack
    approves once. "all" means as many approvals as people first asked (level 0), and an
    escalation approver's approval counts towards it: escalating stands in for someone away,
    it never makes approval harder."""
    stage_requests = ApprovalRequest.objects.filter(decision_id=decision.pk, stage=stage)
    approvers = stage_requests.filter(choice="approve").values("address").distinct().count()
    first_asked = stage_requests.filter(level=0).values("address").distinct().count()
    return approvers >= approvals_required(decision.stages[stage]["quorum"], first_asked)


def _advance_stage(decision: Decision) -> list[ApprovalRequest]:
    """Ask the next stage; the previous stage's unanswered requests are closed."""
    stage = decision.current_stage + 1
    Decision.objects.filter(pk=decision.pk).update(current_stage=stage)
    ApprovalRequest.objects.filter(
        decision_id=decision.pk, stage__lt=stage, state=ApprovalRequest.State.PENDING
    ).update(state=ApprovalRequest.State.CLOSED)
    decision.current_stage = stage
    recipients = expand_addresses(
        organization_id=decision.organization_id, addresses=decision.stages[stage]["approvers"]
    )
    return ask(decision, recipients, stage=stage, level=0)
