"""The Starlette application: routes, middleware, and the lifespan that owns every resource."""

from __future__ import annotations

import contextlib
import gc
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from service import tracing
from service.domain import (
    LINK_RULES,
    AlertPolicy,
    DomainError,
    EventRoutes,
    Pacing,
    Retention,
    compile_routes,
)
from service.flows import (
    OperationRun,
    OutboxSettings,
    ResolveSettings,
    SignatureWatch,
    SubmitSettings,
)
from service.logs import configure_logging
from service.settings import Settings, get_settings
from service.store import (
    JOB_CHANGES,
    IngestWriter,
    create_engine,
    create_readers,
    create_sessionmaker,
    listener_for,
)
from service.visma import VismaClient
from service.web import (
    AuthThrottle,
    FastLane,
    RequestErrorHandler,
    RequestId,
    SecurityHeaders,
    State,
    TracedWebhook,
    TraceRequests,
    Waiters,
    domain_error,
    http_error,
    receive_visma_webhook,
    server_error,
    site_routes,
    storage_error,
)
from service.workers import AlertSender, HousekeepingWorker, OperationWorker, ResolverWorker

GZIP_MINIMUM_BYTES = 1024
"""REST answers at least this large are gzip-compressed for clients that accept it."""


@dataclass
class Resources:
    """Everything a running service holds open: database, Visma client, writer, workers."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    visma: VismaClient
    ingest: IngestWriter
    resolver: ResolverWorker
    alerts: AlertSender
    housekeeping: HousekeepingWorker
    signature_watch: SignatureWatch
    operations: OperationWorker

    def state(self) -> State:
        readers = create_readers(self.engine)
        return {
            "settings": self.settings,
            "sessions": self.sessions,
            "readers": readers,
            "visma": self.visma,
            "ingest": self.ingest,
            "alert_policy": alert_policy(self.settings),
            "submit_settings": submit_settings(self.settings),
            "resolve_settings": resolve_settings(self.settings),
            "table_sizes": self.housekeeping.measured_tables,
            "signature_watch": self.signature_watch,
            "wake_resolver": self.resolver.wake,
            "wake_operations": self.operations.wake,
            "auth_throttle": AuthThrottle.from_settings(self.settings, self.sessions, readers),
            "waiters": Waiters(self.settings.MAX_WAITERS),
        }


def retention(settings: Settings) -> Retention:
    """How long rows are kept, from the service settings."""
    return Retention(
        deliveries_days=settings.RETENTION_DELIVERIES_DAYS,
        jobs_days=settings.RETENTION_JOBS_DAYS,
        status_days=settings.RETENTION_STATUS_DAYS,
        alerts_days=settings.RETENTION_ALERTS_DAYS,
        dedupe_days=settings.RETENTION_DEDUPE_DAYS,
        idempotency_days=settings.IDEMPOTENCY_KEY_DAYS,
    )


def alert_policy(settings: Settings) -> AlertPolicy:
    """The alert decisions' settings: noise windows and watched components."""
    return AlertPolicy(
        flap_window_seconds=settings.ALERT_FLAP_WINDOW_SECONDS,
        burst_window_seconds=settings.ALERT_BURST_WINDOW_SECONDS,
        watch_components=tuple(settings.WATCH_COMPONENTS),
        silent_after_jobs=settings.ALERT_SILENT_AFTER_JOBS,
        bad_signatures=settings.ALERT_BAD_SIGNATURES,
        bad_signatures_window_seconds=settings.ALERT_BAD_SIGNATURES_WINDOW_SECONDS,
        default_tenant=settings.default_tenant,
        job_failures=settings.ALERT_JOB_FAILURES,
    )


def event_routes(settings: Settings) -> EventRoutes:
    """EVENT_ROUTES compiled (the settings checked their form at start)."""
    return compile_routes(settings.EVENT_ROUTES, allowed_hosts=settings.EVENT_ALLOWED_HOSTS)


def alert_sender(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> AlertSender:
    """The outbox sender for the configured targets and retry schedule."""
    outbox = OutboxSettings(
        webhook_urls=tuple(settings.ALERT_WEBHOOK_URLS),
        slack_urls=tuple(settings.ALERT_SLACK_URLS),
        retry_base_seconds=settings.ALERT_RETRY_BASE_SECONDS,
        retry_max_seconds=settings.ALERT_RETRY_MAX_SECONDS,
        max_attempts=settings.ALERT_MAX_ATTEMPTS,
        lease_seconds=max(60.0, 3 * settings.ALERT_TIMEOUT_SECONDS),
        forward_failing_minutes=settings.ALERT_FORWARD_FAILING_MINUTES,
    )
    return AlertSender(
        sessions,
        outbox,
        signing_secret=settings.ALERT_SIGNING_SECRET.get_secret_value(),
        timeout_seconds=settings.ALERT_TIMEOUT_SECONDS,
        poll_seconds=settings.ALERT_POLL_SECONDS,
        concurrency=settings.ALERT_CONCURRENCY,
        per_target=settings.ALERT_TARGET_CONCURRENCY,
        transport=transport,
        callback_secret=settings.CALLBACK_SIGNING_SECRET.get_secret_value(),
        callback_allowed_hosts=settings.CALLBACK_ALLOWED_HOSTS,
        event_secret=settings.EVENT_SIGNING_SECRET.get_secret_value(),
        event_allowed_hosts=settings.EVENT_ALLOWED_HOSTS,
    )


def visma_client(
    settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
) -> VismaClient:
    return VismaClient(
        api_url=settings.VISMA_API_URL,
        token_url=settings.VISMA_TOKEN_URL,
        client_id=settings.VISMA_CLIENT_ID,
        client_secret=settings.VISMA_CLIENT_SECRET.get_secret_value(),
        tenant_ids=settings.tenant_ids,
        scopes=settings.VISMA_SCOPES,
        transport=transport,
        max_requests_per_second=settings.VISMA_MAX_REQUESTS_PER_SECOND,
        budget_reserve_share=settings.VISMA_RATE_RESERVE,
    )


def pacing(settings: Settings) -> Pacing:
    """When jobs' states are read, and for how long, from the service settings."""
    return Pacing(
        poll_after_seconds=settings.POLL_AFTER_SECONDS,
        job_ttl_seconds=settings.JOB_TTL_SECONDS,
        max_recheck_seconds=settings.POLL_MAX_INTERVAL_SECONDS,
    )


def resolve_settings(settings: Settings) -> ResolveSettings:
    """How the state-read worker paces itself, from the service settings."""
    return ResolveSettings(
        pacing=pacing(settings),
        lease_seconds=settings.POLL_LEASE_SECONDS,
        alerts=alert_policy(settings),
        max_result_bytes=settings.MAX_RESULT_BYTES,
    )


def operation_run(settings: Settings) -> OperationRun:
    """How this replica runs bulk operations: its own name on their leases."""
    return OperationRun(
        owner=f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
        lease_seconds=settings.OPERATION_LEASE_SECONDS,
        items_per_second=settings.OPERATION_ITEMS_PER_SECOND,
        resolve=resolve_settings(settings),
    )


def submit_settings(settings: Settings) -> SubmitSettings:
    """What a submission needs to know, from the service settings."""
    return SubmitSettings(pacing=pacing(settings), alerts=alert_policy(settings))


def _woken(resolver: ResolverWorker) -> Callable[[Sequence[str]], None]:
    """What the ingest writer calls after a commit that linked deliveries to open jobs: the
    resolver reads them, and whoever waits on them (`?wait=`) sees their new timeline entry."""

    def woken(job_ids: Sequence[str]) -> None:
        resolver.wake(job_ids)
        JOB_CHANGES.publish(job_ids)

    return woken


@contextlib.asynccontextmanager
async def open_resources(
    settings: Settings,
    *,
    visma_transport: httpx.AsyncBaseTransport | None = None,
    run_workers: bool = True,
    resolve: ResolveSettings | None = None,
) -> AsyncIterator[Resources]:
    """Open the engine, the Visma client, the ingest writer and (optionally) the workers."""
    # Each resource is closed even when a later one fails to open (say, the database is down).
    async with contextlib.AsyncExitStack() as stack:
        engine = create_engine(settings.DATABASE_URL)
        stack.push_async_callback(engine.dispose)
        sessions = create_sessionmaker(engine)
        visma = visma_client(settings, transport=visma_transport)
        stack.push_async_callback(visma.aclose)
        resolver = ResolverWorker(sessions, visma, resolve or resolve_settings(settings))
        alerts = alert_sender(settings, sessions)
        stack.push_async_callback(alerts.aclose)
        ingest = IngestWriter(
            engine,
            rules=LINK_RULES,
            routes=event_routes(settings),
            on_matched=_woken(resolver),
            on_forwarded=alerts.wake,
        )
        stack.push_async_callback(ingest.close)
        await ingest.start()
        stack.push_async_callback(resolver.stop)
        housekeeping = HousekeepingWorker(
            sessions,
            readers=create_readers(engine),
            retention=retention(settings),
            every_seconds=settings.HOUSEKEEPING_INTERVAL_SECONDS,
            visma=visma,
        )
        stack.push_async_callback(housekeeping.stop)
        signature_watch = SignatureWatch(sessions, alert_policy(settings))
        stack.push_async_callback(signature_watch.close)
        operations = OperationWorker(sessions, visma, operation_run(settings))
        stack.push_async_callback(operations.stop)
        listener = listener_for(engine)
        if listener is not None:
            listener.start()
            stack.push_async_callback(listener.stop)
        if run_workers:
            resolver.start()
            alerts.start()
            housekeeping.start()
            operations.start()
        yield Resources(
            settings,
            engine,
            sessions,
            visma,
            ingest,
            resolver,
            alerts,
            housekeeping,
            signature_watch,
            operations,
        )


def create_app(
    settings: Settings | None = None, *, resources: Resources | None = None
) -> Starlette:
    """The service. With `resources`, the caller owns them (tests); else the lifespan opens them."""
    settings = resources.settings if resources else (settings or get_settings())

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[State]:
        if resources is not None:
            yield resources.state()
            return
        async with open_resources(settings) as opened:
            # Everything alive now (modules, metadata, settings) lives as long as the process:
            # keep it out of the garbage collector's full passes, which otherwise walk all of
            # it every so often and stall the event loop (they were most of the p99 latency).
            gc.collect()
            gc.freeze()
            yield opened.state()
        tracing.flush_tracing()  # the last spans (the workers' last passes) before the exit

    routes = site_routes(tokens=settings.api_tokens(), read_tokens=settings.api_read_tokens())
    exception_handlers: dict[Any, RequestErrorHandler] = {
        DomainError: domain_error,
        HTTPException: http_error,
        # The database is down or refuses connections (asyncpg raises OSError itself when
        # nothing listens).
        sa_exc.DBAPIError: storage_error,
        OSError: storage_error,
        Exception: server_error,
    }
    middleware = []
    if resources is not None:
        middleware.append(Middleware(_ProvideState, state=resources.state()))
    # The route above stays for the rest (405 for other methods, url_path_for); this only
    # takes its POSTs past the router (web/fast_lane.py says why).
    middleware.append(
        Middleware(
            FastLane,
            method="POST",
            path="/webhooks/visma",
            # Wrapped only when tracing is on: off, the hot path has no extra call at all.
            endpoint=TracedWebhook(receive_visma_webhook)
            if tracing.enabled
            else receive_visma_webhook,
            exception_handlers=exception_handlers,
        )
    )
    if tracing.enabled:  # server spans for submissions and status webhooks (web/traces.py)
        middleware.append(Middleware(TraceRequests))
    # Inside FastLane: webhook deliveries never pay for a request id or these headers.
    middleware.append(Middleware(RequestId))
    middleware.append(Middleware(SecurityHeaders))
    # Inside the fast lane: the webhook hot path never passes through it.
    middleware.append(Middleware(GZipMiddleware, minimum_size=GZIP_MINIMUM_BYTES, compresslevel=5))
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers=exception_handlers,
        lifespan=lifespan,
    )


def create_served_app() -> Starlette:
    """The app `visma-hooks serve` runs: each worker process makes its own, and sets up its log
    lines first (LOG_FORMAT, LOG_LEVEL), so uvicorn's and the service's come out alike, and
    its traces (the OTEL_* variables: service/tracing.py)."""
    settings = get_settings()
    traced = tracing.configure_tracing()  # from the OTEL_* variables, in each worker process
    configure_logging(level=settings.LOG_LEVEL, fmt=settings.LOG_FORMAT, traced=traced)
    return create_app(settings)


class _ProvideState:
    """Gives requests the lifespan state when no lifespan ran (httpx's ASGITransport)."""

    def __init__(self, app: ASGIApp, *, state: State) -> None:
        self.app = app
        self._state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            scope.setdefault("state", {})
            for key, value in self._state.items():
                scope["state"].setdefault(key, value)
        await self.app(scope, receive, send)
