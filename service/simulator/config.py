"""The simulator's knobs, including the chaos modes teams rehearse Visma's failures with.

Every chaos field defaults to "no chaos". They can change at run time (`PUT /_sim/chaos`,
`SimulatorState.update_chaos`); `CHAOS_FIELDS` lists them and `parse_chaos` checks new values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_SUBSCRIPTION_ID = "5d0f6a3e-2b8c-4e71-9a4d-3c6b8e1f0a27"
# Visma's API reference: "404: no state or no content; 410: removed after 24 hours".
FORGOTTEN_STATE_STATUSES = (404, 410)
ROUNDINGS = ("down", "up")
"""How announced seconds may be rounded (`announce_rounding`)."""


@dataclass
class SimulatorConfig:
    """How the simulated Visma.net (token endpoint, ERP API, webhook dispatcher) behaves."""

    client_id: str = "sim-client"
    client_secret: str = "sim-secret"
    tenant_id: str = "sim-tenant"
    other_tenant_ids: list[str] = field(default_factory=list)
    """Further companies the client may get tokens for (a group, or a vendor's customers)."""
    webhook_url: str | None = None
    """Where the dispatcher POSTs webhooks; None: none are sent."""
    webhook_secret: str = "sim-webhook-secret"
    token_ttl_seconds: int = 3600
    job_duration_seconds: float = 0.05
    """Time from the 202 to Finished."""
    retry_base_seconds: float = 0.2
    """Backoff after failed attempt n (1-based): base * 2**(n-1), plus a little jitter."""
    max_delivery_attempts: int = 6
    application_id: str = "visma-hooks-sim"
    subscription_id: str = DEFAULT_SUBSCRIPTION_ID
    public_base_url: str | None = None
    """Base of stateLocation/contentLocation/Location; None: the request's own base URL."""
    webhook_timeout_seconds: float = 10.0
    """How long the dispatcher waits for the receiver's answer before counting an attempt failed."""
    max_concurrent_deliveries: int = 64
    """Attempts in flight at once, so a benchmark can't open unbounded connections."""
    max_log_entries: int = 100_000
    """The request and delivery logs keep this many newest entries (bounded memory)."""
    status_webhook_url: str | None = None
    """Where the simulated status page POSTs its webhooks
    (`.../webhooks/status/<STATUS_WEBHOOK_TOKEN>`); None: none are sent."""

    # Chaos. "ERP API requests" below means every request except the token endpoint and /_sim/.
    seed: int | None = None
    """Seeds the one random.Random behind every chaos decision; None: a fresh seed per run."""
    webhook_drop_share: float = 0.0
    """Share (0..1) of notifications never delivered, decided once per notification."""
    webhook_delay_seconds: float = 0.0
    """Each notification waits this long after its job ends before its first attempt."""
    webhook_delay_jitter_seconds: float = 0.0
    """Plus a uniform random 0..jitter seconds, drawn per notification."""
    webhook_duplicate_share: float = 0.0
    """Share (0..1) of notifications delivered twice: same notification id, same body."""
    webhook_duplicate_gap_seconds: float = 0.05
    """The second copy starts this long after the first; 0 sends both at once (a race)."""
    webhook_reorder_window_seconds: float = 0.0
    """When > 0, notifications are held up to this long and released together, shuffled."""
    rate_limit_share: float = 0.0
    """Share (0..1) of ERP API requests answered 429 (a 429'd background call creates no job)."""
    rate_limit_per_second: float | None = None
    """A token bucket over ERP API requests (burst max(1, rate)); over it: 429. None: no limit."""
    rate_budget: int | None = None
    """Requests per window per company (Visma: per hour, per company and client); over it: 429
    with Retry-After until the window resets. None: no budget."""
    rate_budget_window_seconds: float = 3600.0
    """The budget's window (a fixed window, as Visma's); shorter in tests, so they run in
    seconds."""
    server_error_share: float = 0.0
    """Share (0..1) of ERP API requests answered 503 (a 503'd background call creates no job)."""
    forget_after_seconds: float | None = None
    """A job older than this (since received) is forgotten: state 404 (see below), content 410."""
    forgotten_state_status: int = 404
    """What `GET /v1/background/{id}` answers for a forgotten job: 404 or 410."""
    accept_drop_share: float = 0.0
    """Share (0..1) of background calls accepted (the job runs) whose 202 is lost on the way."""
    announce_rounding: str = "down"
    """How the whole seconds of `X-RateLimit-Reset` and `Retry-After` are rounded: "down", as a
    server computing "seconds left" with integer division does (so a client that sends at the
    announced instant is a fraction of a second early), or "up" (a client waiting that long is
    always admitted). Which one Visma's servers do is not documented: rehearse both."""

    def __post_init__(self) -> None:
        for name in CHAOS_FIELDS:
            _check(name, getattr(self, name))

    @property
    def tenants(self) -> list[str]:
        """Every company the client may act for; the first is `tenant_id`."""
        return [self.tenant_id, *(t for t in self.other_tenant_ids if t != self.tenant_id)]

    def chaos(self) -> dict[str, Any]:
        """The chaos fields and their current values, as `GET /_sim/chaos` shows them."""
        return {name: getattr(self, name) for name in CHAOS_FIELDS}


_SHARE = "share"
_SECONDS = "seconds"
_RULES: dict[str, tuple[str, bool]] = {
    # name: (kind, may be None)
    "seed": ("seed", True),
    "webhook_drop_share": (_SHARE, False),
    "webhook_delay_seconds": (_SECONDS, False),
    "webhook_delay_jitter_seconds": (_SECONDS, False),
    "webhook_duplicate_share": (_SHARE, False),
    "webhook_duplicate_gap_seconds": (_SECONDS, False),
    "webhook_reorder_window_seconds": (_SECONDS, False),
    "rate_limit_share": (_SHARE, False),
    "rate_limit_per_second": ("rate", True),
    "rate_budget": ("count", True),
    "rate_budget_window_seconds": ("window", False),
    "server_error_share": (_SHARE, False),
    "forget_after_seconds": (_SECONDS, True),
    "forgotten_state_status": ("status", False),
    "accept_drop_share": (_SHARE, False),
    "announce_rounding": ("rounding", False),
}
CHAOS_FIELDS = tuple(_RULES)


def _check(name: str, value: object) -> None:
    kind, nullable = _RULES[name]
    if value is None:
        if not nullable:
            raise ValueError(f"{name} must not be null")
        return
    if kind == "rounding":
        if value not in ROUNDINGS:
            raise ValueError(f"{name} must be one of {', '.join(ROUNDINGS)}")
        return
    # bool is an int in Python, but `"seed": true` is a mistake.
    if kind in ("seed", "status", "count"):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{name} must be an integer")
        if kind == "count" and value < 0:
            raise ValueError(f"{name} must not be negative (null turns the budget off)")
        if kind == "status" and value not in FORGOTTEN_STATE_STATUSES:
            raise ValueError(f"{name} must be 404 or 410")
        return
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number")
    if kind == _SHARE and not 0 <= value <= 1:
        raise ValueError(f"{name} must be a share from 0 to 1")
    if kind == _SECONDS and value < 0:
        raise ValueError(f"{name} must not be negative")
    if kind in ("rate", "window") and value <= 0:
        raise ValueError(f"{name} must be above 0 (null turns the limit off)")


def parse_chaos(data: object) -> dict[str, Any]:
    """Check a JSON object of chaos fields; ValueError names the first thing wrong."""
    if not isinstance(data, Mapping):
        raise ValueError("chaos settings must be a JSON object")
    unknown = sorted(str(key) for key in data if key not in _RULES)
    if unknown:
        raise ValueError(f"unknown chaos fields: {', '.join(unknown)}")
    for name, value in data.items():
        _check(name, value)
    return {str(name): value for name, value in data.items()}
