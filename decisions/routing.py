"""Who is asked: approver addresses expanded into recipients, and quorum arithmetic."""

from dataclasses import dataclass

from channels import registry as channel_registry
from decisions.addresses import parse_address
from decisions.models import ApproverGroup


@dataclass(frozen=True)
class Recipient:
    address: str
    channel: str  # a Channel value: "email" or "slack"
    group: str = ""
    on_behalf_of: str = ""  # the away approver this delegate is asked for (portal/delegation.py)


class UnknownGroups(Exception):
    def __init__(self, names: list[str]) -> None:
        super().__init__(", ".join(names))
        self.names = names


def expand_addresses(
    *, organization_id: int, addresses: list[str], dm_email_approvers: bool | None = None
) -> list[Recipient]:
    """Recipients for these addresses, groups expanded to their members, duplicates dropped
    (first mention wins). Raises UnknownGroups naming every group the organization lacks.
    `dm_email_approvers`: the organization's Slack setting when the caller has it at hand."""
    parsed = [parse_address(raw) for raw in addresses]
    group_names = [value for kind, value in parsed if kind == "group"]
    groups = (
        dict(
            ApproverGroup.objects.filter(organization_id=organization_id, name__in=group_names).values_list(
                "name", "members"
            )
        )
        if group_names
        else {}  # plain addresses, the usual case: not even a query to build
    )
    if missing := [name for name in group_names if name not in groups]:
        raise UnknownGroups(missing)

    recipients: dict[tuple[str, str], Recipient] = {}
    for kind, value in parsed:
        if kind == "group":
            for member in groups[value]:
                member_kind, member_value = parse_address(member)
                if member_kind != "group":  # groups do not nest
                    recipients.setdefault(
                        (member_value, member_kind), Recipient(member_value, member_kind, group=value)
                    )
        else:
            recipients.setdefault((value, kind), Recipient(value, kind))
    if dm_email_approvers is None:
        dm_email_approvers = dm_email_approvers_get(organization_id)
    if dm_email_approvers:
        # The same person, asked on Slack too: one answer from either settles their part.
        for recipient in [r for r in recipients.values() if r.channel == "email"]:
            recipients.setdefault(
                (recipient.address, "slack"), Recipient(recipient.address, "slack", recipient.group)
            )
    return list(recipients.values())


def dm_email_approvers_get(organization_id: int) -> bool:
    """The organization's Slack setting (channels/slack/models.py), asked of the Slack channel:
    decisions reaches a channel's models only through the registry."""
    return channel_registry.channel("slack").asks_email_approvers(organization_id)


def approvals_required(quorum: str | int, asked: int) -> int:
    """How many approvals resolve a stage: 1 for "any", everyone asked for "all", else n.
    `asked` counts people, not requests: one person may be asked by email and on Slack."""
    if quorum == "any":
        return 1
    if quorum == "all":
        return asked
    return int(quorum)
