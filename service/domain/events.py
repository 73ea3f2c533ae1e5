"""Where Visma's events go: `EVENT_ROUTES` compiled once into a lookup, pure.

Visma's dispatcher delivers every event the application subscribes to (`x-vwd-event-id`:
`BACKGROUND_API_RESPONSE`, and the entity events of the Financial, Sales Order and Journal
Transaction publishers). A route maps an event id pattern to target URLs: an exact id, or a
glob where `*` stands for any run of characters (`CUSTOMER_*`, `*`). Ids are compared as they
come, case and all. An event matched by several patterns goes to each target once.

Each target must be an absolute URL (`validate_callback_url`), https unless its host is listed
in EVENT_ALLOWED_HOSTS: the same rule as callbacks, whose resolved addresses are checked again
at each send.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from service.domain.callbacks import is_allowed_host, validate_callback_url
from service.domain.errors import InvalidInput

BACKGROUND_EVENT = "BACKGROUND_API_RESPONSE"
"""The event of a background job's answer: the one this service reads itself."""
OTHER_EVENTS = "other"
"""The metric label of every event no route names (so an unknown id adds no new series)."""
MAX_PATTERN_CHARS = 128
MAX_TARGETS_PER_ROUTE = 20
MAX_ROUTES = 200


@dataclass(frozen=True)
class EventRoutes:
    """`EVENT_ROUTES`, compiled: exact ids in a dict, globs as regular expressions."""

    exact: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    globs: tuple[tuple[str, re.Pattern[str], tuple[str, ...]], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.exact or self.globs)

    def targets_for(self, event_id: str | None) -> tuple[str, ...]:
        """Every target an event goes to (none for an event no route names), each once."""
        if event_id is None:
            return ()
        targets = self.exact.get(event_id, ())
        for _pattern, regex, glob_targets in self.globs:
            if regex.fullmatch(event_id):
                targets = targets + tuple(t for t in glob_targets if t not in targets)
        return targets

    def label_for(self, event_id: str | None) -> str:
        """The event's metric label: its id when a route names it exactly (or it is the
        background answer), the pattern that routes it, else `other`: the labels stay as few
        as the routes."""
        if event_id is None:
            return OTHER_EVENTS
        if event_id == BACKGROUND_EVENT or event_id in self.exact:
            return event_id
        for pattern, regex, _targets in self.globs:
            if regex.fullmatch(event_id):
                return pattern
        return OTHER_EVENTS


NO_ROUTES = EventRoutes()


def compile_routes(
    routes: Mapping[str, Sequence[str]], *, allowed_hosts: Collection[str] = ()
) -> EventRoutes:
    """`routes` (pattern -> target URLs) checked and compiled; InvalidInput says what is wrong."""
    if len(routes) > MAX_ROUTES:
        raise InvalidInput(f"at most {MAX_ROUTES} event patterns")
    exact: dict[str, tuple[str, ...]] = {}
    globs: list[tuple[str, re.Pattern[str], tuple[str, ...]]] = []
    for pattern, targets in routes.items():
        if not isinstance(pattern, str) or not pattern.strip():
            raise InvalidInput("an event pattern is empty")
        if len(pattern) > MAX_PATTERN_CHARS or any(not c.isprintable() for c in pattern):
            raise InvalidInput(
                f"event pattern {pattern[:40]!r} must be at most {MAX_PATTERN_CHARS} printable "
                "characters"
            )
        if isinstance(targets, str) or not isinstance(targets, Sequence) or not targets:
            raise InvalidInput(f"event pattern {pattern!r} needs a list of target URLs")
        if len(targets) > MAX_TARGETS_PER_ROUTE:
            raise InvalidInput(f"event pattern {pattern!r} has more than 20 targets")
        checked = tuple(dict.fromkeys(check_target(t, allowed_hosts) for t in targets))
        if "*" in pattern:
            regex = re.compile(".*".join(re.escape(part) for part in pattern.split("*")))
            globs.append((pattern, regex, checked))
        else:
            exact[pattern] = checked
    return EventRoutes(exact=exact, globs=tuple(globs))


def check_target(url: object, allowed_hosts: Collection[str]) -> str:
    """`url` if events may be forwarded to it: https, or http for an allowed host."""
    if not isinstance(url, str):
        raise InvalidInput("an event target must be a URL (a string)")
    try:
        validate_callback_url(url)
    except InvalidInput as exc:
        raise InvalidInput(exc.detail.replace("callbackUrl", f"event target {url!r}")) from None
    parts = urlsplit(url)
    if parts.scheme != "https" and not is_allowed_host(parts.hostname or "", allowed_hosts):
        raise InvalidInput(
            f"event target {url!r} must use https (http only for a host in EVENT_ALLOWED_HOSTS)"
        )
    return url


def forward_failing(
    streak_started: datetime | None, *, now: datetime, minutes: float, told: datetime | None
) -> bool:
    """Whether a target whose every attempt since `streak_started` failed makes an alert now:
    the streak is `minutes` old, and not the one already told of (one alert per streak)."""
    if streak_started is None or minutes <= 0:
        return False
    if now - streak_started < timedelta(minutes=minutes):
        return False
    return told is None or told != streak_started


def forward_failing_summary(target: str, *, minutes: float) -> str:
    return (
        f"Forwarding Visma events to {target} has failed every attempt for {minutes:g} minutes: "
        "check that the target is up and answers 2xx (410 Gone stops a delivery)."
    )
