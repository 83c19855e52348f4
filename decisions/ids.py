import os
import time

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


def new_decision_id() -> str:
    """dec_ + a ULID in lower-case Crockford base32: 48 bits of milliseconds then 80 random
    bits, so ids sort by creation time and new rows land at the end of the primary-key index."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        value, index = divmod(value, 32)
        chars.append(_CROCKFORD[index])
    return "dec_" + "".join(reversed(chars))
