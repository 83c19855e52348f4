"""Writes for the approver portal: sign-in links, sessions, and answers given on the web.

Answers are the web channel's (portal/channel.py parses and verifies them) and are recorded
through channels.answers.answer_record, so decision_answer with via=web does the compare-and-set,
the quorum, the audit event and the callback, exactly as for an email click.
"""

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from audit.services import audit_record
from broker.errors import Conflict, DomainError, InvalidInput, NotFound
from channels.answers import answer_record
from channels.base import InboundAnswer
from decisions import services as decision_services
from decisions.models import ApprovalRequest
from organizations.models import Organization
from portal.delegation import delegate_for, delegations_load
from portal.models import Approver, Delegation, SignInLink

MAX_BULK = 100
BULK_CHOICES = ("approve", "deny")


class BadSignInLink(DomainError):
    status = 404
    code = "bad_sign_in_link"


class NoLongerAsked(Conflict):
    """Put to this approver once, but their stage or escalation level has passed."""

    code = "no_longer_asked"


def normalize_address(address: str) -> str:
    return address.strip().lower()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def address_is_asked(address: str) -> bool:
    """Whether anyone has ever asked this address for sign-off: only they can sign in."""
    return ApprovalRequest.objects.filter(address__iexact=address).exists()


NEXT_PATH = re.compile(r"^/inbox(?:/[A-Za-z0-9_-]{1,64}){0,2}$")


def safe_next_path(raw: str) -> str:
    """A portal page to return to after signing in, or "" (never another site)."""
    return raw if NEXT_PATH.match(raw or "") else ""


@transaction.atomic
def sign_in_link_issue(*, address: str, next_path: str = "") -> str | None:
    """A new single-use sign-in token for the address, or None if nobody ever asked it (no
    link is made, and the caller must not tell the difference to the person asking)."""
    address = normalize_address(address)
    if not address_is_asked(address):
        return None
    token = secrets.token_urlsafe(32)
    now = timezone.now()
    SignInLink.objects.create(
        address=address,
        token_hash=token_hash(token),
        created_at=now,
        expires_at=now + timedelta(minutes=settings.PORTAL_SIGN_IN_LINK_MINUTES),
        next_path=safe_next_path(next_path),
    )
    return token


def sign_in_link_find(*, token: str) -> SignInLink:
    """The unused, unexpired link a token names. Raises BadSignInLink otherwise."""
    link = SignInLink.objects.filter(token_hash=token_hash(token)).first()
    if link is None or link.used_at is not None or link.expires_at <= timezone.now():
        raise BadSignInLink("This sign-in link is not valid any more.")
    return link


@transaction.atomic
def sign_in_link_redeem(*, token: str) -> tuple[Approver, str]:
    """Use a sign-in link, once: a compare-and-set on used_at, so two clicks (or a link and
    its copy) sign in at most once. Returns the approver and the page to open after it.
    Raises BadSignInLink for an unknown, used or expired link."""
    now = timezone.now()
    link = sign_in_link_find(token=token)
    won = SignInLink.objects.filter(pk=link.pk, used_at__isnull=True, expires_at__gt=now).update(used_at=now)
    if not won:
        raise BadSignInLink("This sign-in link is not valid any more.")
    approver, _ = Approver.objects.get_or_create(address=link.address)
    Approver.objects.filter(pk=approver.pk).update(last_signed_in_at=now)
    return approver, link.next_path


def approver_sign_out_everywhere(*, address: str) -> None:
    """Every session of this approver ends at its next request (their epoch moves on)."""
    Approver.objects.filter(address=address).update(session_epoch=F("session_epoch") + 1)


def my_pending_request(*, address: str, decision_id: str) -> ApprovalRequest:
    """The approver's open request for a decision; email before Slack when asked on both.
    Raises AlreadyResolved or AlreadyAnswered when it was put to them but waits no more, and
    NotFound for another approver's decision, or another organization's, like a missing one."""
    mine = ApprovalRequest.objects.filter(decision_id=decision_id, address__iexact=address)
    request = mine.filter(state=ApprovalRequest.State.PENDING).order_by("channel", "stage").first()
    if request is not None:
        return request
    asked = mine.select_related("decision").order_by("state").first()  # "answered" sorts first
    if asked is None:
        raise NotFound(f"No decision {decision_id} waits for your answer.")
    if not asked.decision.is_pending:
        raise decision_services.AlreadyResolved(asked.decision)
    if asked.state == ApprovalRequest.State.ANSWERED:
        raise decision_services.AlreadyAnswered(f"You have already answered decision {decision_id}.")
    raise NoLongerAsked(f"Decision {decision_id} no longer waits for your answer.")


@dataclass(frozen=True)
class BulkResult:
    decision_id: str
    ok: bool
    message: str


def bulk_selection(*, decision_ids: list[str], choice: str, note: str) -> list[str]:
    """The decisions a bulk answer selected, each once. Raises InvalidInput (nothing is to be
    answered) for an empty or oversized selection, another choice, or a note too long."""
    ids = list(dict.fromkeys(decision_ids))  # a double-submitted id is answered once
    if choice not in BULK_CHOICES:
        raise InvalidInput("Choose approve or deny.", fields={"choice": ["approve or deny"]})
    if not ids:
        raise InvalidInput("Select at least one decision.", fields={"decision": ["select at least one"]})
    if len(ids) > MAX_BULK:
        raise InvalidInput(
            f"Select at most {MAX_BULK} decisions at once.", fields={"decision": [f"at most {MAX_BULK}"]}
        )
    if len(note) > decision_services.MAX_NOTE_LENGTH:
        raise InvalidInput(
            "The note is too long.",
            fields={"note": [f"at most {decision_services.MAX_NOTE_LENGTH} characters"]},
        )
    return ids


def answers_record_each(answers: list[InboundAnswer | BulkResult]) -> list[BulkResult]:
    """Record the web channel's answers to several decisions. Each is its own answer, in its own
    transaction (answer_record's), audited on its own: one settled meanwhile fails alone. A
    BulkResult in the list (a decision found unanswerable while parsing) is passed on as it is."""
    results = []
    for answer in answers:
        if isinstance(answer, BulkResult):
            results.append(answer)
            continue
        decision_id = answer.request.decision_id
        try:
            decision = answer_record(answer)
        except decision_services.VerificationRequired:
            results.append(
                BulkResult(decision_id, False, "Open it to answer: it asks for a stronger sign-in.")
            )
        except (Conflict, NotFound, InvalidInput, decision_services.SeparationOfDuties) as exc:
            results.append(BulkResult(decision_id, False, exc.message))
        else:
            results.append(BulkResult(decision_id, True, decision.action))
    return results


# --- delegation ----------------------------------------------------------------------------

MAX_AWAY_DAYS = 366


def _organizations_asking(addresses: list[str]) -> list[int]:
    return list(
        ApprovalRequest.objects.filter(address__in=addresses)
        .values_list("decision__organization_id", flat=True)
        .distinct()
    )


def _delegations_changed(*, event: str, actor: str, payload: dict) -> None:
    """Audit the change in every organization that has asked the approver (it changes who
    those organizations' asks reach), and make every organization's next create re-read the
    delegations (decisions.selectors.create_settings)."""
    for organization_id in _organizations_asking([payload["address"]]):
        audit_record(organization_id=organization_id, event=event, actor=actor, payload=payload)
    Organization.objects.update(settings_version=F("settings_version") + 1)


def delegation_check(*, address: str, delegate: str, until: datetime) -> None:
    """Raises InvalidInput for a bad delegate (not an email address, themselves), an end not
    within the next year, or a cycle (the delegate, through their delegations, hands back)."""
    address, delegate = normalize_address(address), normalize_address(delegate)
    try:
        validate_email(delegate)
    except ValidationError:
        raise InvalidInput(
            "Delegate to an email address.", fields={"delegate": ["an email address"]}
        ) from None
    if delegate == address:
        raise InvalidInput("Delegate to someone else.", fields={"delegate": ["not yourself"]})
    now = timezone.now()
    if not now < until <= now + timedelta(days=MAX_AWAY_DAYS):
        raise InvalidInput(
            "'Away until' must be in the future, within a year.", fields={"until": ["future, within a year"]}
        )
    current = delegations_load()
    current.pop(address, None)
    if delegate_for(delegate, current, now) == address:
        raise InvalidInput(
            f"{delegate} already delegates to you: delegation cannot go round in a circle.",
            fields={"delegate": ["cycle"]},
        )


@transaction.atomic
def delegation_set(*, address: str, delegate: str, until: datetime, set_by: str) -> Delegation:
    """`address` is away until `until`: new asks go to `delegate`. Replaces any delegation of
    theirs. Raises InvalidInput for a bad delegate (not an email address, themselves), an end
    not in the next year, or a cycle (the delegate, through their own delegations, hands back
    to `address`). Asks already made stay where they are."""
    address, delegate = normalize_address(address), normalize_address(delegate)
    # Serialise delegation changes: two people delegating to each other at once must not both
    # pass the cycle check. (SQLite serialises every write already.)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext('countersign.delegation'))")
    delegation_check(address=address, delegate=delegate, until=until)
    now = timezone.now()
    delegation, _ = Delegation.objects.update_or_create(
        address=address, defaults={"delegate": delegate, "until": until, "set_by": set_by, "created_at": now}
    )
    _delegations_changed(
        event="delegation.set",
        actor=set_by,
        payload={"address": address, "delegate": delegate, "until": until.isoformat()},
    )
    return delegation


@transaction.atomic
def delegation_clear(*, address: str, set_by: str) -> bool:
    """`address` is back: new asks reach them again. False if they had no delegation."""
    address = normalize_address(address)
    deleted, _ = Delegation.objects.filter(address=address).delete()
    if deleted:
        _delegations_changed(event="delegation.cleared", actor=set_by, payload={"address": address})
    return bool(deleted)
