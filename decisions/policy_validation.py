"""Validation of a policy rule as an admin saves it: conditions are well-formed data, and the
routing it sets passes the same checks as an agent's request."""

from decisions.models import ApproverGroup, Policy
from decisions.policies import check_condition
from decisions.routing import UnknownGroups, expand_addresses
from decisions.serializers import PolicyRoutingInput

ROUTING_FIELDS = ("approvers", "quorum", "stages", "timeout_minutes", "escalation")


def _first_message(detail) -> str:
    while isinstance(detail, dict | list) and detail:
        detail = next(iter(detail.values())) if isinstance(detail, dict) else detail[0]
    return str(detail)


def _group_names(policy: Policy) -> set[str]:
    addresses = list(policy.approvers or [])
    addresses += [
        a for stage in policy.stages or [] if isinstance(stage, dict) for a in stage.get("approvers", [])
    ]
    addresses += [
        a for level in policy.escalation or [] if isinstance(level, dict) for a in level.get("approvers", [])
    ]
    return {a.removeprefix("group:") for a in addresses if isinstance(a, str) and a.startswith("group:")}


def _limit_errors(policy: Policy, data: dict) -> dict[str, str]:
    """What would make every decision the rule routes a 400: escalation at or after its own
    timeout, a quorum larger than the people it asks."""
    errors: dict[str, str] = {}
    timeout = data.get("timeout_minutes")
    late = [
        level["after_minutes"]
        for level in data.get("escalation", [])
        if timeout and level["after_minutes"] >= timeout
    ]
    if late:
        errors["escalation"] = f"A level at {late[0]:g} minutes is not before timeout_minutes ({timeout:g})."
    if data.get("approvers"):
        stages, field = [{"approvers": data["approvers"], "quorum": data.get("quorum")}], "quorum"
    else:
        stages, field = data.get("stages", []), "stages"
    for stage in stages:
        if not isinstance(stage["quorum"], int):
            continue
        try:
            asked = len(
                expand_addresses(organization_id=policy.organization_id, addresses=stage["approvers"])
            )
        except UnknownGroups:
            continue  # reported as an unknown group below
        if stage["quorum"] > asked:
            errors[field] = f"Quorum {stage['quorum']} is more than the {asked} approvers asked."
            break
    return errors


def policy_errors(policy: Policy) -> dict[str, str]:
    errors: dict[str, str] = {}
    if not isinstance(policy.conditions, list):
        errors["conditions"] = "A list of conditions."
    else:
        for condition in policy.conditions:
            try:
                check_condition(condition)
            except ValueError as exc:
                errors["conditions"] = str(exc)
                break

    routing = {
        field: getattr(policy, field)
        for field in ROUTING_FIELDS
        if getattr(policy, field) not in (None, [], "")
    }
    if policy.action != Policy.Action.ROUTE and (routing or policy.urgency):
        errors["action"] = "An automatic approve or deny rule routes nobody: leave the routing fields empty."
    serializer = PolicyRoutingInput(data=routing)
    if not serializer.is_valid():
        errors.update({field: _first_message(detail) for field, detail in serializer.errors.items()})
    else:
        errors.update(_limit_errors(policy, serializer.validated_data))

    if policy.organization_id and (names := _group_names(policy)):
        known = set(
            ApproverGroup.objects.filter(organization_id=policy.organization_id, name__in=names).values_list(
                "name", flat=True
            )
        )
        if missing := sorted(names - known):
            errors["approvers"] = f"Unknown approver group: {', '.join(missing)}."
    return errors
