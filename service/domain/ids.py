"""Ids in paths: plain, or `b64(<base64url>)` when they hold reserved URL characters.

The encoding is base64url of the UTF-8 text (RFC 4648 section 5), as Visma.net uses it.
"""

from __future__ import annotations

import base64
import binascii
import re

from service.domain.errors import InvalidInput

_BASE64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}")

BAD_B64_ID = (
    "id {value!r} is not valid b64(...): the part in brackets must be base64url of UTF-8 text"
)


CONTROL_CHARACTER_ID = "ids must not contain control characters"


def decode_id(value: str) -> str:
    """The id a path segment names, decoding the `b64(...)` form."""
    if not (value.startswith("b64(") and value.endswith(")")):
        return _no_control_characters(value)
    encoded = value[4:-1]
    if not _BASE64URL.fullmatch(encoded):
        raise InvalidInput(BAD_B64_ID.format(value=value))
    try:
        raw = base64.b64decode(encoded + "=" * (-len(encoded) % 4), altchars=b"-_", validate=True)
        decoded = raw.decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidInput(BAD_B64_ID.format(value=value)) from None
    if not decoded:
        raise InvalidInput(BAD_B64_ID.format(value=value))
    return _no_control_characters(decoded)


def has_control_characters(value: str) -> bool:
    """True when `value` holds a C0 control character or DEL (no database stores NUL in text)."""
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in value)


def _no_control_characters(value: str) -> str:
    if has_control_characters(value):
        raise InvalidInput(CONTROL_CHARACTER_ID)
    return value


def encode_id(value: str) -> str:
    """The `b64(...)` form of `value` (no padding, as Visma writes it)."""
    raw = base64.urlsafe_b64encode(value.encode("utf-8")).decode("ascii").rstrip("=")
    return f"b64({raw})"


def time_ordered_uuid(unix_ms: int, random_bits: int) -> str:
    """A UUID version 7 (RFC 9562): 48 bits of Unix time in ms, then 74 random bits.

    Rows keyed by it are inserted in time order, at the right edge of the primary-key index,
    instead of on a random page each (what a uuid4 key costs a busy inbox).
    """
    rand_a = (random_bits >> 62) & 0xFFF
    rand_b = random_bits & ((1 << 62) - 1)
    value = (unix_ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
