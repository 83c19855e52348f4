"""Passkeys (WebAuthn), with the `webauthn` library: registered in the portal, asked for when
a decision's verification is `passkey`. The relying party is PUBLIC_BASE_URL's host; every
ceremony requires user verification (PIN, fingerprint, face), not only presence.

A ceremony's challenge is kept by the caller (the session) and used once.
"""

import json
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from broker.errors import InvalidInput, NotFound
from portal.models import Approver, Passkey

MAX_PASSKEYS = 20
MAX_NAME_LENGTH = 100


class PasskeyFailed(InvalidInput):
    code = "passkey_failed"


def _rp_id() -> str:
    return urlsplit(settings.PUBLIC_BASE_URL).hostname or "localhost"


def _origin() -> str:
    parts = urlsplit(settings.PUBLIC_BASE_URL)
    return f"{parts.scheme}://{parts.netloc}"


def _credential_json(credential: str) -> str:
    """The browser's credential as JSON text; anything else is a clear 400, never a 500."""
    try:
        parsed = json.loads(credential)
    except (TypeError, ValueError):
        raise PasskeyFailed(
            "The passkey's answer is not valid JSON.", fields={"credential": ["JSON"]}
        ) from None
    if not isinstance(parsed, dict):
        raise PasskeyFailed("The passkey's answer must be an object.", fields={"credential": ["object"]})
    return credential


def registration_options(*, approver: Approver) -> tuple[str, bytes]:
    """(options as JSON for the browser, the challenge to keep)."""
    options = generate_registration_options(
        rp_id=_rp_id(),
        rp_name="Countersign",
        user_id=f"approver-{approver.pk}".encode(),
        user_name=approver.address,
        user_display_name=approver.address,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=[
            PublicKeyCredentialDescriptor(id=_id_bytes(p.credential_id)) for p in approver.passkeys.all()
        ],
    )
    return options_to_json(options), options.challenge


def _id_bytes(credential_id: str) -> bytes:
    return base64url_to_bytes(credential_id)


def passkey_register(*, approver: Approver, name: str, credential: str, challenge: bytes) -> Passkey:
    """Verify the browser's new credential against the challenge and keep it. Raises
    PasskeyFailed (InvalidInput) for a bad name, a bad or unverified credential."""
    name = name.strip()
    if not name or len(name) > MAX_NAME_LENGTH or "\x00" in name:
        raise InvalidInput(
            "Name the passkey (up to 100 characters), e.g. 'Work laptop'.",
            fields={"name": ["1 to 100 characters"]},
        )
    if approver.passkeys.count() >= MAX_PASSKEYS:
        raise InvalidInput(
            f"At most {MAX_PASSKEYS} passkeys; remove one first.", fields={"name": ["too many"]}
        )
    try:
        verified = verify_registration_response(
            credential=_credential_json(credential),
            expected_challenge=challenge,
            expected_rp_id=_rp_id(),
            expected_origin=_origin(),
            require_user_verification=True,
        )
    # Any malformed part (JSON shape, CBOR, key, signature) is the library's WebAuthnException.
    except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
        raise PasskeyFailed(
            f"The passkey could not be registered: {exc}", fields={"credential": ["invalid"]}
        ) from None
    credential_id = bytes_to_base64url(verified.credential_id)
    if Passkey.objects.filter(credential_id=credential_id).exists():
        raise PasskeyFailed(
            "This passkey is already registered.", fields={"credential": ["already registered"]}
        )
    return Passkey.objects.create(
        approver=approver,
        name=name,
        credential_id=credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
    )


def authentication_options(*, approver: Approver) -> tuple[str, bytes]:
    """(options as JSON for the browser, the challenge to keep). Raises PasskeyFailed when
    the approver has no passkey yet."""
    passkeys = list(approver.passkeys.all())
    if not passkeys:
        raise PasskeyFailed(
            "Register a passkey first (Passkeys, at the top of the page).",
            fields={"passkey": ["none registered"]},
        )
    options = generate_authentication_options(
        rp_id=_rp_id(),
        allow_credentials=[PublicKeyCredentialDescriptor(id=_id_bytes(p.credential_id)) for p in passkeys],
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    return options_to_json(options), options.challenge


@transaction.atomic
def passkey_verify(*, approver: Approver, credential: str, challenge: bytes) -> Passkey:
    """Check an assertion made with one of this approver's passkeys, the user verified, over
    the challenge. The signature counter only moves forward (a compare-and-set): a cloned
    authenticator replaying an old count is refused. Raises PasskeyFailed."""
    text = _credential_json(credential)
    raw_id = json.loads(text).get("id")
    passkey = approver.passkeys.filter(credential_id=raw_id).first() if isinstance(raw_id, str) else None
    if passkey is None:
        raise PasskeyFailed("That is not one of your passkeys.", fields={"passkey": ["unknown"]})
    try:
        verified = verify_authentication_response(
            credential=text,
            expected_challenge=challenge,
            expected_rp_id=_rp_id(),
            expected_origin=_origin(),
            credential_public_key=bytes(passkey.public_key),
            credential_current_sign_count=passkey.sign_count,
            require_user_verification=True,
        )
    except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
        raise PasskeyFailed(f"The passkey did not verify: {exc}", fields={"passkey": ["invalid"]}) from None
    counter_ok = Passkey.objects.filter(pk=passkey.pk, sign_count=passkey.sign_count).update(
        sign_count=verified.new_sign_count, last_used_at=timezone.now()
    )
    if not counter_ok:
        raise PasskeyFailed(
            "The passkey was used at the same moment elsewhere; try again.", fields={"passkey": ["race"]}
        )
    return passkey


def passkey_delete(*, approver: Approver, passkey_id: int) -> None:
    deleted, _ = approver.passkeys.filter(pk=passkey_id).delete()
    if not deleted:
        raise NotFound("No such passkey of yours.")
