"""Delegation at ask time: who is asked instead of an approver who is away.

Read by decisions.services.ask through the organization's cached create settings (one read
when the organization's settings_version moves, which every delegation change raises), so an
ordinary create costs no extra statement.
"""

from dataclasses import replace
from datetime import datetime

from decisions.routing import Recipient
from portal.models import Delegation, OrganizationPortalSettings

MAX_HOPS = 5  # alice → bob → carol …; a cycle cannot be stored, this only bounds the walk


def delegations_load() -> dict[str, tuple[str, datetime]]:
    """address → (delegate, until), for every delegation that has not ended."""
    from django.utils import timezone

    return {
        address: (delegate, until)
        for address, delegate, until in Delegation.objects.filter(until__gt=timezone.now()).values_list(
            "address", "delegate", "until"
        )
    }


def delegation_allowed_load(organization_id: int) -> bool:
    return not OrganizationPortalSettings.objects.filter(
        organization_id=organization_id, allow_delegation=False
    ).exists()


def delegate_for(address: str, delegations: dict[str, tuple[str, datetime]], now: datetime) -> str:
    """Who answers for `address` now: the end of its chain of current delegations."""
    seen = {address}
    for _ in range(MAX_HOPS):
        held = delegations.get(address)
        if held is None or held[1] <= now or held[0] in seen:
            break
        address = held[0]
        seen.add(address)
    return address


def delegated(
    recipients: list[Recipient], delegations: dict[str, tuple[str, datetime]], now: datetime
) -> list[Recipient]:
    """The recipients with each away approver (an email address) replaced by their delegate,
    who is asked on their behalf; duplicates dropped, the first mention winning."""
    if not delegations:
        return recipients
    replaced = []
    for recipient in recipients:
        delegate = delegate_for(recipient.address.lower(), delegations, now)
        if delegate != recipient.address.lower():
            recipient = replace(recipient, address=delegate, on_behalf_of=recipient.address)
        replaced.append(recipient)
    # Someone asked in their own right is asked so, not again on another's behalf.
    own = {(r.address, r.channel) for r in replaced if not r.on_behalf_of}
    result: dict[tuple[str, str], Recipient] = {}
    for recipient in replaced:
        if recipient.on_behalf_of and (recipient.address, recipient.channel) in own:
            continue
        result.setdefault((recipient.address, recipient.channel), recipient)
    return list(result.values())
