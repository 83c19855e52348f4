"""The web channel: the approver portal at /inbox.

It sends nothing (the ask waits in the approver's inbox, which an email's link opens), so its
render_* return None and the registry lists it as silent: the outbox never gets a delivery of
its kind. Its inbound half is the portal's answer forms: parse_answer verifies a signed-in
approver's POST (their session, the decision being one put to them, and how sure we are it is
them: a passkey over this decision's challenge, else the session) into an InboundAnswer, and the
portal's views record it through channels.answers.answer_record, as every channel's do.
"""

from django.http import HttpRequest
from webauthn.helpers import base64url_to_bytes

from broker.errors import Conflict, NotFound
from channels.base import AnswerRefused, Channel, InboundAnswer, PermanentFailure, SentFacts, client_facts
from decisions.models import ApprovalRequest, Verification, Via
from portal import pages, passkeys, services
from portal.models import Approver
from portal.sessions import session_verified, signed_in_address

# Where the session keeps the passkey challenge for answering one decision (views set it).
ANSWER_CHALLENGE = "portal_passkey_answer"


class WebChannel(Channel):
    name = "web"
    via = Via.WEB
    urls = "portal.urls"
    sends = False

    def render_ask(self, request: ApprovalRequest, *, key: str) -> None:
        return None  # the inbox shows the ask

    def render_reminder(self, request: ApprovalRequest, *, key: str) -> None:
        return None  # the inbox shows what still waits, most urgent first

    def send(self, request: ApprovalRequest, message: object) -> SentFacts:
        raise PermanentFailure("the web channel sends nothing: the approver's inbox shows the ask")

    def parse_answer(self, http_request: HttpRequest, **url_kwargs: str) -> InboundAnswer:
        """The answer form POSTed to /inbox/<decision_id>/answer. Raises AnswerRefused (a 403
        page) when nobody is signed in; NotFound when the decision was never put to this
        approver (another's, another organization's, none); a Conflict (AlreadyResolved,
        AlreadyAnswered, NoLongerAsked) when it waits for them no more; PasskeyFailed for a bad
        or stale passkey assertion. The views phrase each for the approver."""
        address = _signed_in(http_request)
        decision_id = url_kwargs["decision_id"]
        form = http_request.POST
        verified = _verified_for_answer(http_request, address, decision_id)
        return _answer(
            http_request,
            request=services.my_pending_request(address=address, decision_id=decision_id),
            choice=form.get("choice", ""),
            text=form.get("text", ""),
            note=form.get("note", ""),
            verified=verified,
        )

    def parse_bulk_answer(self, http_request: HttpRequest) -> list[InboundAnswer | services.BulkResult]:
        """The inbox's bulk form: one answer per selected decision, the same choice and note for
        each, verified by the session alone (a passkey signs one decision). A selected decision
        that waits for this approver no more is a failed BulkResult in its place. Raises
        AnswerRefused when nobody is signed in, and InvalidInput (nothing is answered) for an
        empty or oversized selection, another choice than approve or deny, or a note too long."""
        address = _signed_in(http_request)
        form = http_request.POST
        choice, note = form.get("choice", ""), form.get("note", "")
        decision_ids = services.bulk_selection(
            decision_ids=form.getlist("decision"), choice=choice, note=note
        )
        verified = session_verified(http_request)
        answers: list[InboundAnswer | services.BulkResult] = []
        for decision_id in decision_ids:
            try:
                request = services.my_pending_request(address=address, decision_id=decision_id)
            except (NotFound, Conflict) as exc:  # not theirs, or waits for them no more
                answers.append(services.BulkResult(decision_id, False, exc.message))
            else:
                answers.append(
                    _answer(http_request, request=request, choice=choice, note=note, verified=verified)
                )
        return answers


def _signed_in(http_request: HttpRequest) -> str:
    address = signed_in_address(http_request)
    if address is None:
        raise AnswerRefused(
            pages.problem(http_request, 403, "Please sign in", "Your session has ended. Sign in again.")
        )
    return address


def _answer(
    http_request: HttpRequest,
    *,
    request: ApprovalRequest,
    choice: str,
    note: str,
    verified: str,
    text: str = "",
) -> InboundAnswer:
    return InboundAnswer(
        request=request,
        via=Via.WEB,
        choice=choice,
        text=text,
        note=note,
        verified=verified,
        **client_facts(http_request),
    )


def _verified_for_answer(http_request: HttpRequest, address: str, decision_id: str) -> str:
    """What this answer proves: a passkey assertion over this decision's challenge, if one
    came with the form, else the session. Raises PasskeyFailed for a bad or stale assertion."""
    credential = http_request.POST.get("passkey", "")
    if not credential:
        return session_verified(http_request)
    held = http_request.session.pop(ANSWER_CHALLENGE, None)
    if not isinstance(held, dict) or held.get("decision") != decision_id:
        raise passkeys.PasskeyFailed(
            "Start again: press the answer button once more.", fields={"passkey": ["stale"]}
        )
    passkeys.passkey_verify(
        approver=Approver.objects.get(address=address),
        credential=credential,
        challenge=base64url_to_bytes(held["challenge"]),
    )
    return Verification.PASSKEY
