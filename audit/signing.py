"""The key that signs checkpoints: Ed25519, from AUDIT_SIGNING_KEY (never the database).

A checkpoint signed with it can be checked by anyone holding the public key, which the service
publishes at /.well-known/countersign/audit-keys; an auditor should keep their own copy of it
(docs/RETENTION.md), since whoever controls the server controls what that URL says.
"""

import base64
import binascii
import functools
import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

ALGORITHM = "Ed25519"


def _b64decode(text: str) -> bytes:
    text = text.strip()
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def new_private_key_text() -> str:
    """A fresh key in the form AUDIT_SIGNING_KEY takes: the 32-byte seed, base64url."""
    return _b64encode(Ed25519PrivateKey.generate().private_bytes_raw())


@functools.cache
def _private_key(text: str) -> Ed25519PrivateKey:
    try:
        seed = _b64decode(text)
    except (binascii.Error, ValueError):
        seed = b""
    if len(seed) != 32:
        raise ImproperlyConfigured("AUDIT_SIGNING_KEY must be a 32-byte Ed25519 seed, base64url encoded.")
    return Ed25519PrivateKey.from_private_bytes(seed)


def signing_key() -> Ed25519PrivateKey:
    return _private_key(settings.AUDIT_SIGNING_KEY)


def public_key_text(key: Ed25519PublicKey | None = None) -> str:
    key = key or signing_key().public_key()
    return _b64encode(key.public_bytes(Encoding.Raw, PublicFormat.Raw))


def key_id(public_key: str | None = None) -> str:
    """A short name for a public key: the first 16 hex digits of its SHA-256."""
    raw = _b64decode(public_key or public_key_text())
    return hashlib.sha256(raw).hexdigest()[:16]


def sign(body: str) -> str:
    return _b64encode(signing_key().sign(body.encode()))


def signature_valid(*, body: str, signature: str, public_key: str) -> bool:
    try:
        key = Ed25519PublicKey.from_public_bytes(_b64decode(public_key))
        key.verify(_b64decode(signature), body.encode())
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True
