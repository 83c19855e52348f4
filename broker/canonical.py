import json


def canonical_json(value) -> str:
    """Sorted keys, no whitespace, UTF-8 kept as is: the same data always gives the same text,
    so hashes over it (action_hash, the audit chain) can be recomputed by anyone."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
