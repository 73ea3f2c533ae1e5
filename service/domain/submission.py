"""Checks on what a team asks us to send to Visma."""

from __future__ import annotations

import re

from service.domain.errors import InvalidInput

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# Only v1 and v2 endpoints take the background header (DESIGN.md 1.1); the older layout put
# them under /api/.
_VERSIONED = re.compile(r"^/(api/)?v[12]/\S+$", re.IGNORECASE)
_BACKGROUND = re.compile(r"^/(api/)?v1/background(/|$)", re.IGNORECASE)


def validate_method(method: str) -> str:
    """The HTTP method, upper-cased; raises InvalidInput for one Visma would not take."""
    upper = method.upper()
    if upper not in METHODS:
        raise InvalidInput(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    return upper


def validate_path(path: str) -> str:
    """A Visma API path such as `/v1/customer`; raises InvalidInput naming the problem."""
    if "://" in path:
        raise InvalidInput("path is relative to VISMA_API_URL: give /v1/..., not a full URL")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in path) or "#" in path:
        raise InvalidInput("path must not contain spaces, control characters or '#'")
    if not _VERSIONED.match(path):
        raise InvalidInput(
            "path must start with /v1/ or /v2/ (only those endpoints run in the background)"
        )
    if any(segment in (".", "..") for segment in path.split("?", 1)[0].split("/")):
        raise InvalidInput("path must not contain '.' or '..' segments")
    if _BACKGROUND.match(path):
        raise InvalidInput("path must not be a /v1/background endpoint")
    return path


def validate_if_match(value: str) -> str:
    """An `If-Match` value (an ETag) that can travel as a header."""
    if not value or len(value) > 512 or any(not (0x20 <= ord(c) < 0x7F) for c in value):
        raise InvalidInput("ifMatch must be an ETag of up to 512 printable ASCII characters")
    return value
