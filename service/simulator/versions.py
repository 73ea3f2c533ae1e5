"""Record versions: the `ETag` (and `timeStamp`) the simulated API serves for each record, and
the `If-Match` check on updates (Visma.net's optimistic concurrency: a mismatch is
`412 Precondition Failed`; a successful update is `204` with the new ETag).

What Visma's ETag looks like is not documented here; its bodies' `timeStamp` is the base64 of
an 8-byte row version (SQL Server rowversion), so the simulator serves that, quoted as an HTTP
entity tag in the `ETag` header. Whether Visma accepts `*` or weak tags in `If-Match` is
unknown: the simulator accepts `*` and ignores a `W/` prefix.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any
from urllib.parse import urlsplit

from service.simulator.outcomes import JSON_CONTENT_TYPE, CallTarget, JobResult, dump_json

PRECONDITION_FAILED_MESSAGE = (
    "The record has been changed by another user since it was read (If-Match does not match)."
)
_UPDATES = ("PUT", "PATCH", "DELETE", "POST")


def _stamp(version: int) -> str:
    return base64.b64encode(version.to_bytes(8, "big")).decode("ascii")


def _bare(tag: str) -> str:
    return tag.strip().removeprefix("W/").strip('"')


class RecordVersions:
    """The version of every record the simulated API has served or changed."""

    def __init__(self) -> None:
        self._versions: dict[str, int] = {}
        self._next = 1000

    def _key(self, target: CallTarget) -> str | None:
        # A record is `/vN/<resource>/<id>[/...]`; a collection (`/v1/customer`) has no ETag.
        rest = target.path[len(target.prefix) :].rstrip("/").lower()
        return rest if rest.count("/") >= 3 else None

    def _bump(self, key: str) -> str:
        self._next += 1
        self._versions[key] = self._next
        return _stamp(self._next)

    def current(self, key: str) -> str:
        if key not in self._versions:
            return self._bump(key)
        return _stamp(self._versions[key])

    def apply(self, target: CallTarget, result: JobResult, *, if_match: str | None) -> JobResult:
        """`result` (a success) as this record's version makes it: 412 for a stale
        `If-Match`, the new ETag after an update, the current one on a read."""
        key = self._key(target)
        if key is None:
            location = result.headers.get("Location")
            if target.method == "POST" and location:  # a record created: its first version
                created = dataclasses.replace(target, path=_path_of(location, target))
                new_key = self._key(created)
                if new_key is not None:
                    return _with_etag(result, self._bump(new_key))
            return result
        current = self.current(key)
        if target.method in _UPDATES:
            if if_match is not None and _bare(if_match) not in ("*", current):
                return JobResult(
                    status="Finished",
                    status_code=412,
                    content=dump_json({"message": PRECONDITION_FAILED_MESSAGE}),
                    content_type=JSON_CONTENT_TYPE,
                    headers={"ETag": f'"{current}"'},
                )
            if target.method == "DELETE":
                self._versions.pop(key, None)
                return result
            return _with_etag(result, self._bump(key))
        return _with_etag(result, current)


def _path_of(location: str, target: CallTarget) -> str:
    return urlsplit(location).path or target.path


def _with_etag(result: JobResult, stamp: str) -> JobResult:
    headers = {**result.headers, "ETag": f'"{stamp}"'}
    content = result.content
    if content is not None:
        try:
            data: Any = json.loads(content)
        except ValueError:
            data = None
        if isinstance(data, dict) and "timeStamp" not in data:
            content = dump_json({**data, "timeStamp": stamp})
    return dataclasses.replace(result, headers=headers, content=content)
