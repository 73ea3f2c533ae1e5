"""The simulator's knobs. Later chaos features (global drop/delay/reorder of webhooks, a share of
429s or 5xx, forgetting jobs after a TTL) are meant to arrive as further fields here."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_SUBSCRIPTION_ID = "5d0f6a3e-2b8c-4e71-9a4d-3c6b8e1f0a27"


@dataclass
class SimulatorConfig:
    """How the simulated Visma.net (token endpoint, ERP API, webhook dispatcher) behaves."""

    client_id: str = "sim-client"
    client_secret: str = "sim-secret"
    tenant_id: str = "sim-tenant"
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
