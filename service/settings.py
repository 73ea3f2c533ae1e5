"""Every knob of the service, read from the environment or `.env` (`.env.example` lists them)."""

from __future__ import annotations

import base64
import binascii
import json
from functools import lru_cache
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_SCOPES = (
    "vismanet_erp_service_api:create vismanet_erp_service_api:read "
    "vismanet_erp_service_api:update vismanet_erp_service_api:delete"
)

BAD_SIGNING_SECRET = (
    "must be whsec_ followed by the base64 of 24 to 64 random bytes (Standard Webhooks), "
    "e.g. whsec_$(openssl rand -base64 32)"
)
UNSIGNED_ALERTS = (
    "ALERT_WEBHOOK_URLS is set but ALERT_SIGNING_SECRET is empty: JSON alerts are signed"
)
UNSIGNED_EVENTS = (
    "EVENT_ROUTES is set but EVENT_SIGNING_SECRET is empty: forwarded events are signed"
)
BAD_EVENT_ROUTES = (
    "must be a JSON object from an event id pattern to a list of target URLs, e.g. "
    '{"CUSTOMER_*": ["https://crm.example.com/visma"]}'
)
TOKEN_IN_BOTH = "a token is in both API_TOKENS and API_READ_TOKENS; give each token one role"
SIGNING_SECRET_BYTES = (24, 64)
"""How long a Standard Webhooks secret must be once decoded (the spec's range)."""

CommaList = Annotated[list[str], NoDecode]
SecretList = Annotated[list[SecretStr], NoDecode]
Network = IPv4Network | IPv6Network
NetworkList = Annotated[list[Network], NoDecode]
RouteMap = Annotated[dict[str, list[str]], NoDecode]


def _split(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    """The service's configuration; every field has a safe default."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    DATABASE_URL: str = "sqlite:///./data/visma-hooks.db"
    """`sqlite:///path` or `postgresql://user:pass@host:port/db`; the async driver is chosen."""

    VISMA_API_URL: str = "https://api.finance.visma.net"
    """ERP API base; job paths are appended as given (`/v1/customer`)."""

    VISMA_TOKEN_URL: str = "https://connect.visma.com/connect/token"
    """Visma Connect token endpoint (client credentials)."""

    VISMA_CLIENT_ID: str = ""
    """Service client id from the Visma Developer Portal."""

    VISMA_CLIENT_SECRET: SecretStr = SecretStr("")
    """Service client secret."""

    VISMA_TENANT_ID: str = ""
    """The companies' tenant ids (not the customer contract's), comma-separated; the first is
    the default for a job that names none."""

    VISMA_SCOPES: str = DEFAULT_SCOPES
    """Space-separated scopes asked for with each token."""

    VISMA_WEBHOOK_SECRETS: SecretList = Field(default_factory=list)
    """Comma-separated webhook secrets; any one verifies. Empty: every delivery is refused."""

    STATUS_WEBHOOK_TOKEN: SecretStr = SecretStr("")
    """Secret path segment of `/webhooks/status/{token}`. Empty: the endpoint is off."""

    API_TOKENS: SecretList = Field(default_factory=list)
    """Comma-separated bearer tokens for `/api/` and the dashboard. Empty: the API answers 401."""

    API_READ_TOKENS: SecretList = Field(default_factory=list)
    """Comma-separated bearer tokens that may only read: submitting, resending or replaying
    answers 403 (a monitoring dashboard's token cannot send work to the ERP). Empty: none."""

    POLL_AFTER_SECONDS: float = Field(default=120, gt=0)
    """An accepted job with no webhook after this long is polled."""

    JOB_TTL_SECONDS: float = Field(default=86400, gt=0)
    """After this a job Visma no longer knows is `expired`."""

    POLL_MAX_INTERVAL_SECONDS: float = Field(default=1800, gt=0)
    """Polls of a job Visma still runs grow apart up to this interval."""

    POLL_LEASE_SECONDS: float = Field(default=180, gt=0)
    """A replica's claim on a job's state read; a replica that dies frees it after this.

    Longer than the slowest read (state and content, each retried for up to 60 s), so a slow
    read is never taken over by another replica while it is still running."""

    OPERATION_LEASE_SECONDS: float = Field(default=180, gt=0)
    """A replica's claim on a bulk operation (a resend, a replay), renewed at each step; a
    replica that dies frees it after this, and another goes on where it stopped."""

    OPERATION_ITEMS_PER_SECOND: float = Field(default=1000, gt=0)
    """A bulk operation takes at most this many jobs (or deliveries) a second, so its writes
    leave room for the webhook path. The re-sent jobs go to Visma as each company's rate
    budget allows, whatever this is."""

    VISMA_MAX_REQUESTS_PER_SECOND: float = Field(default=10, gt=0)
    """A ceiling: requests per second this process sends to Visma at most (each replica has
    its own). Within it, each company's hourly budget, as Visma's answers announce it, paces
    the requests."""

    VISMA_RATE_RESERVE: float = Field(default=0.1, ge=0, lt=1)
    """Share of each company's hourly budget kept for submissions: state reads wait once no
    more than this remains (0.1 of 15,000 keeps 1,500 requests an hour for submissions)."""

    ALERT_WEBHOOK_URLS: CommaList = Field(default_factory=list)
    """Comma-separated URLs that receive JSON alert hooks."""

    ALERT_SLACK_URLS: CommaList = Field(default_factory=list)
    """Comma-separated Slack incoming-webhook URLs."""

    ALERT_SIGNING_SECRET: SecretStr = SecretStr("")
    """Standard Webhooks secret (`whsec_...`) that signs JSON alerts."""

    WATCH_COMPONENTS: CommaList = Field(default_factory=list)
    """Status-page components (names or ids) that raise alerts. Empty: all."""

    ALERT_FLAP_WINDOW_SECONDS: float = Field(default=300, ge=0)
    """A component's status changes within this window after an alert make at most one more
    alert, sent when the window closes (and none if it is back where the alert left it). 0: off."""

    ALERT_BURST_WINDOW_SECONDS: float = Field(default=300, ge=0)
    """Failed jobs with the same fault code within this window after the first one's alert are
    counted into one `jobs.burst` alert, sent when the window closes. 0: off."""

    ALERT_SILENT_AFTER_JOBS: int = Field(default=5, ge=0)
    """A company whose last this many jobs (that asked for a webhook) were all resolved by
    polling raises `webhooks.silent`: its webhooks do not arrive. 0: off."""

    ALERT_BAD_SIGNATURES: int = Field(default=10, ge=0)
    """This many deliveries failing the signature check within
    ALERT_BAD_SIGNATURES_WINDOW_SECONDS raise `webhooks.bad_signatures` (a rotated or mistyped
    secret). 0: off."""

    ALERT_BAD_SIGNATURES_WINDOW_SECONDS: float = Field(default=300, gt=0)
    """The window ALERT_BAD_SIGNATURES counts in."""

    ALERT_JOB_FAILURES: bool = True
    """Alert on each failed, expired or rejected job (and bursts of them). false: only the
    `issue.opened` and `issue.reopened` alerts of the issues those failures make."""

    ALERT_RETRY_BASE_SECONDS: float = Field(default=5, gt=0)
    """Wait before the first retry of a failed alert send; doubles with each further attempt."""

    ALERT_RETRY_MAX_SECONDS: float = Field(default=36000, gt=0)
    """Longest wait between two attempts at one alert send (10 h, Standard Webhooks' longest)."""

    ALERT_MAX_ATTEMPTS: int = Field(default=16, ge=1)
    """Attempts per alert and target before it is given up (`failed` in `/api/v1/alerts`).

    With the defaults the retries wait 5 s, 10 s, 20 s ... doubling up to 10 h apart: the 16th
    and last attempt comes about 31 hours after the first, past a day as Standard Webhooks
    asks. A target answering 410 Gone is not retried at all (`gone`)."""

    ALERT_TIMEOUT_SECONDS: float = Field(default=15, gt=0)
    """How long one alert send waits for the target's answer (Standard Webhooks: 15-30 s)."""

    ALERT_TARGET_CONCURRENCY: int = Field(default=4, ge=1, le=1000)
    """Sends in flight at once to one target URL (an alert hook, a Slack URL, a callback URL):
    each target has its own lane, so one that hangs never delays another's sends."""

    ALERT_CONCURRENCY: int = Field(default=16, ge=1, le=10_000)
    """Sends in flight at once over all targets, per process."""

    ALERT_POLL_SECONDS: float = Field(default=1, gt=0)
    """How often the alert sender looks for alerts raised by other processes or replicas."""

    MAX_BODY_BYTES: int = Field(default=1_048_576, gt=0)
    """Largest webhook body accepted; larger ones get 413."""

    MAX_SUBMIT_BYTES: int = Field(default=1_048_576, gt=0)
    """Largest `POST /api/v1/jobs` body accepted; larger ones get 413."""

    MAX_BATCH_JOBS: int = Field(default=1000, gt=0, le=100_000)
    """Most jobs one `POST /api/v1/jobs/batch` may carry (400 above)."""

    MAX_BATCH_BYTES: int = Field(default=16 * 1_048_576, gt=0)
    """Largest `POST /api/v1/jobs/batch` body accepted, in bytes (413 above)."""

    ALLOWED_SOURCE_IPS: NetworkList = Field(default_factory=list)
    """Optional allow-list for `/webhooks/visma`: addresses or CIDR ranges, IPv4 or IPv6,
    comma-separated (an IPv4-mapped IPv6 peer matches its IPv4 entry). Empty: all."""

    STATUS_ALLOWED_SOURCE_IPS: NetworkList = Field(default_factory=list)
    """Optional allow-list for `/webhooks/status/{token}`, in the same form. Empty: all."""

    STATUS_CLOCK_SKEW_SECONDS: float = Field(default=300, ge=0, le=86_400)
    """How far ahead of our clock a status-page time may be and still order its update; one
    further ahead is kept, flagged `futureDated`, and ordered by when we received it."""

    TRUSTED_PROXIES: NetworkList = Field(default_factory=list)
    """Peers (addresses or CIDR ranges) whose `X-Forwarded-For` header is believed."""

    AUTH_FAILURES_PER_MINUTE: int = Field(default=10, ge=1, le=100_000)
    """Wrong tokens one client address (as TRUSTED_PROXIES resolve it) may send in a minute, at
    `POST /login` and as `/api/` bearer tokens together; after that its attempts answer 429
    (with Retry-After) until the minute since its first failure has passed. Counted in the
    database, so across `serve --workers` and replicas."""

    AUTH_FAILURES_TOTAL_PER_MINUTE: int = Field(default=1000, ge=1, le=1_000_000)
    """Wrong tokens from all addresses together in a minute; past it, every address that has
    failed in the minute is held back too (guessing from many addresses gains little)."""

    SESSION_COOKIE_SECURE: bool = False
    """`true`: the dashboard's session cookie is always `Secure`. `false`: it is when the
    request came over https, directly or as a TRUSTED_PROXIES peer's `X-Forwarded-Proto` says."""

    MAX_HEADER_BYTES: int = Field(default=8192, ge=1024)
    """Largest request line or single header line; larger ones get 414 or 431."""

    MAX_HEAD_BYTES: int = Field(default=65536, ge=1024)
    """Largest request head (request line and every header); larger ones get 431."""

    HEAD_TIMEOUT_SECONDS: float = Field(default=10, gt=0)
    """Time a client has to send a whole request head, from its connection (or, on a
    kept-alive connection, from the head's first byte); after that it is closed."""

    MAX_CONNECTIONS: int = Field(default=1000, ge=1)
    """Open connections per server process. At the limit a new connection pushes out the one
    that has waited longest for a request head; if none waits, the new one gets 503."""

    BODY_TIMEOUT_SECONDS: float = Field(default=10, gt=0)
    """Time a request body may go without a byte arriving (each chunk starts the time again);
    after that the connection is closed (with 408 if nothing was answered yet)."""

    MAX_CONNECTIONS_PER_CLIENT: int = Field(default=100, ge=1)
    """Open connections one client address may hold per server process; beyond them a new one
    gets 429 and is closed. Addresses in TRUSTED_PROXIES are exempt."""

    MAX_WAITERS: int = Field(default=200, ge=0)
    """Long polls (`GET /api/v1/jobs/{id}?wait=`) held at once per server process; beyond them
    a `?wait` answers at once as the plain GET would, with `Retry-After: 1`. 0: no long polls."""

    MAX_RESULT_BYTES: int = Field(default=1_048_576, ge=0)
    """Largest finished-request content kept per job."""

    CALLBACK_SIGNING_SECRET: SecretStr = SecretStr("")
    """Standard Webhooks secret (`whsec_...`) that signs per-job callbacks (`callbackUrl`).
    Empty: submissions with a callbackUrl are refused."""

    CALLBACK_ALLOWED_HOSTS: CommaList = Field(default_factory=list)
    """Hosts a `callbackUrl` may name over http or on a private or loopback address (others
    must be https on public addresses)."""

    EVENT_ROUTES: RouteMap = Field(default_factory=dict)
    """Where Visma's events are forwarded: a JSON object from an event id pattern (exact, or a
    glob with `*`) to a list of target URLs, e.g. `{"CUSTOMER_*": ["https://crm.example.com/hook"]}`.
    Each stored delivery whose `x-vwd-event-id` matches goes to each of its targets once,
    through the outbox. Empty: events are stored and listed only."""

    EVENT_ALLOWED_HOSTS: CommaList = Field(default_factory=list)
    """Hosts an EVENT_ROUTES target may name over http or on a private or loopback address
    (others must be https on public addresses), as CALLBACK_ALLOWED_HOSTS for callbacks."""

    EVENT_SIGNING_SECRET: SecretStr = SecretStr("")
    """Standard Webhooks secret (`whsec_...`) that signs forwarded events; needed when
    EVENT_ROUTES is set."""

    ALERT_FORWARD_FAILING_MINUTES: float = Field(default=30, ge=0)
    """A forward target that has failed every attempt for this long raises
    `events.forward_failing` (once per failing streak). 0: off."""

    RETENTION_DELIVERIES_DAYS: float = Field(default=30, ge=0)
    """Days a webhook delivery is kept in the inbox (never one of a job still open). 0: forever."""

    RETENTION_JOBS_DAYS: float = Field(default=90, ge=0)
    """Days a finished job is kept after it finished, with its timeline (open jobs: always).
    0: forever."""

    RETENTION_STATUS_DAYS: float = Field(default=90, ge=0)
    """Days status-page history is kept (component updates, closed incidents); each component's
    current status always stays. 0: forever."""

    RETENTION_ALERTS_DAYS: float = Field(default=90, ge=0)
    """Days an alert that has gone out (or was given up) is kept, with its attempts. 0: forever."""

    RETENTION_DEDUPE_DAYS: float = Field(default=7, gt=0)
    """Days a notification id is refused as a duplicate even after retention removed its
    delivery: longer than the Visma dispatcher may go on retrying it."""

    IDEMPOTENCY_KEY_DAYS: float = Field(default=7, gt=0)
    """Days an `Idempotency-Key` answers the job it made: a repeat within them sends nothing.
    After them retention forgets the key (the job still shows it)."""

    HOUSEKEEPING_INTERVAL_SECONDS: float = Field(default=60, gt=0)
    """How often each replica folds the job counts, measures the tables, and looks for rows
    past retention (a purge with rows left goes on without waiting for the next time)."""

    LOG_LEVEL: Literal["debug", "info", "warning", "error", "critical"] = "info"
    """The usual levels, any case; `debug` also shows the traceback behind a CLI error and the
    first traceback of a failure that repeats."""

    LOG_FORMAT: Literal["json", "console"] | None = None
    """`json` (one object a line) or `console`. Empty: console on a terminal, else JSON."""

    @field_validator("LOG_LEVEL", "LOG_FORMAT", mode="before")
    @classmethod
    def _lower_case(cls, value: object) -> object:
        if isinstance(value, str):
            return value.strip().lower() or None
        return value

    @field_validator(
        "VISMA_WEBHOOK_SECRETS",
        "API_TOKENS",
        "API_READ_TOKENS",
        "ALERT_WEBHOOK_URLS",
        "ALERT_SLACK_URLS",
        "WATCH_COMPONENTS",
        "CALLBACK_ALLOWED_HOSTS",
        "EVENT_ALLOWED_HOSTS",
        mode="before",
    )
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return _split(value)

    @field_validator(
        "ALLOWED_SOURCE_IPS", "STATUS_ALLOWED_SOURCE_IPS", "TRUSTED_PROXIES", mode="before"
    )
    @classmethod
    def _networks(cls, value: object) -> object:
        items = _split(value)
        if not isinstance(items, list):
            return items
        return [parse_network(item) if isinstance(item, str) else item for item in items]

    @field_validator("EVENT_ROUTES", mode="before")
    @classmethod
    def _event_routes(cls, value: object) -> object:
        if isinstance(value, str):
            if not value.strip():
                return {}
            try:
                value = json.loads(value)
            except ValueError:
                raise ValueError(f"{BAD_EVENT_ROUTES}; this one is not JSON") from None
        if not isinstance(value, dict) or not all(
            isinstance(targets, list) and targets and all(isinstance(t, str) for t in targets)
            for targets in value.values()
        ):
            raise ValueError(BAD_EVENT_ROUTES)
        for pattern in value:
            if not str(pattern).strip() or len(str(pattern)) > 128:
                raise ValueError("EVENT_ROUTES: each pattern must be 1 to 128 characters")
        return value

    @field_validator("ALERT_SIGNING_SECRET", "CALLBACK_SIGNING_SECRET", "EVENT_SIGNING_SECRET")
    @classmethod
    def _signing_secret(cls, value: SecretStr) -> SecretStr:
        secret = value.get_secret_value()
        if secret:
            problem = signing_secret_problem(secret)
            if problem:
                raise ValueError(f"{BAD_SIGNING_SECRET}; this one {problem}")
        return value

    @model_validator(mode="after")
    def _alert_hooks_are_signed(self) -> Settings:
        if self.ALERT_WEBHOOK_URLS and not self.ALERT_SIGNING_SECRET.get_secret_value():
            raise ValueError(UNSIGNED_ALERTS)
        return self

    @model_validator(mode="after")
    def _event_targets(self) -> Settings:
        if self.EVENT_ROUTES and not self.EVENT_SIGNING_SECRET.get_secret_value():
            raise ValueError(UNSIGNED_EVENTS)
        allowed = {h.strip().lower().strip("[]") for h in self.EVENT_ALLOWED_HOSTS}
        for pattern, targets in self.EVENT_ROUTES.items():
            for url in targets:
                problem = event_target_problem(url, allowed)
                if problem:
                    raise ValueError(f"EVENT_ROUTES[{pattern!r}]: target {url!r} {problem}")
        return self

    @model_validator(mode="after")
    def _tenant_ids_fit(self) -> Settings:
        if any(len(tenant) > 64 for tenant in self.tenant_ids):
            raise ValueError("VISMA_TENANT_ID: each tenant id must be at most 64 characters")
        return self

    @model_validator(mode="after")
    def _one_role_per_token(self) -> Settings:
        if set(self.api_tokens()) & set(self.api_read_tokens()):
            raise ValueError(TOKEN_IN_BOTH)
        return self

    @property
    def tenant_ids(self) -> list[str]:
        """`VISMA_TENANT_ID` as a list, blanks and repeats dropped; the first is the default."""
        tenants: list[str] = []
        for item in self.VISMA_TENANT_ID.split(","):
            if item.strip() and item.strip() not in tenants:
                tenants.append(item.strip())
        return tenants

    @property
    def default_tenant(self) -> str | None:
        """The first of `VISMA_TENANT_ID`: the company of a submission that names none, and of
        jobs stored before jobs named theirs."""
        tenants = self.tenant_ids
        return tenants[0] if tenants else None

    def webhook_secrets(self) -> list[str]:
        """The configured webhook secrets as plain strings."""
        return [s.get_secret_value() for s in self.VISMA_WEBHOOK_SECRETS]

    def api_tokens(self) -> list[str]:
        """The configured API bearer tokens as plain strings."""
        return [t.get_secret_value() for t in self.API_TOKENS]

    def api_read_tokens(self) -> list[str]:
        """The read-only API bearer tokens as plain strings."""
        return [t.get_secret_value() for t in self.API_READ_TOKENS]


def parse_network(text: str) -> Network:
    """An address or CIDR range; an IPv4-mapped IPv6 one becomes its IPv4 form, so it matches
    the addresses a dual-stack socket reports."""
    try:
        network = ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address or CIDR range") from None
    mapped = network.network_address.ipv4_mapped if network.version == 6 else None
    if mapped is not None and network.prefixlen >= 96:
        return IPv4Network(f"{mapped}/{network.prefixlen - 96}")
    return network


def event_target_problem(url: str, allowed_hosts: set[str]) -> str | None:
    """Why events may not be forwarded to `url`, or None (its addresses are checked at send)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # raises for a port that is not a number
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "must be an absolute https:// URL"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials"
    if parts.scheme != "https" and parts.hostname.lower() not in allowed_hosts:
        return "must use https (http only for a host in EVENT_ALLOWED_HOSTS)"
    return None


def signing_secret_problem(secret: str) -> str | None:
    """Why `secret` is no Standard Webhooks secret (`whsec_` + base64 of 24-64 bytes), or None.

    The reason never repeats the secret."""
    if not secret.startswith("whsec_"):
        return "does not start with whsec_"
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        return "is not base64 after whsec_"
    low, high = SIGNING_SECRET_BYTES
    if not low <= len(key) <= high:
        return f"decodes to {len(key)} bytes"
    return None


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
