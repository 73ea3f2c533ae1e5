"""What is kept of a finished job's request (Visma forgets it after 24 hours), and how it is
shown."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class KeptResult:
    """A finished request's status, headers and content, cut to the size we keep."""

    status: int | None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None
    content: bytes | None = None
    size: int = 0
    truncated: bool = False


def keep_result(
    *,
    status: int | None,
    headers: Mapping[str, str],
    content_type: str | None,
    content: bytes | None,
    max_bytes: int,
) -> KeptResult:
    """The result to store: content beyond `max_bytes` is cut off and marked truncated."""
    size = len(content) if content is not None else 0
    return KeptResult(
        status=status,
        headers=dict(headers),
        content_type=content_type,
        content=content[:max_bytes] if content is not None else None,
        size=size,
        truncated=size > max_bytes,
    )


def shown_content(content: bytes | None, *, truncated: bool) -> tuple[str | None, str]:
    """The content as JSON can carry it, and how: `utf-8` text, or `base64` for other bytes.

    A cut may fall inside a UTF-8 character: up to three trailing bytes are dropped then, so
    that truncated text stays text."""
    if content is None:
        return None, "utf-8"
    for cut in range(4 if truncated else 1):
        try:
            return content[: len(content) - cut].decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            continue
    return base64.b64encode(content).decode("ascii"), "base64"
