"""Hashes that identify what was asked and what was sent."""

import hashlib

from broker.canonical import canonical_json


def action_hash(action: str, details: dict) -> str:
    """SHA-256 of the canonical JSON of action and details: what exactly was put to the approver."""
    return hashlib.sha256(canonical_json({"action": action, "details": details}).encode()).hexdigest()


def request_fingerprint(body) -> str:
    """What makes two requests 'the same body' for Idempotency-Key: equal parsed JSON."""
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()
