"""The simulated Visma Webhook Dispatcher: signs, POSTs and retries BACKGROUND_API_RESPONSE, and
the entity events a test or the CLI asks for (`events.py`)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from service.simulator import wire
from service.simulator.config import SimulatorConfig
from service.simulator.outcomes import dump_json


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class Notification:
    """One webhook notification; every attempt (and duplicate) of it sends the same bytes and id."""

    job_id: str
    body: bytes
    custom_headers: Mapping[str, str] = field(default_factory=dict)
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    # The group id's meaning is undocumented; one fresh uuid per notification is our guess.
    group_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    created_ms: int = field(default_factory=_now_ms)
    tenant_id: str | None = None
    """The company whose job it is (x-vwd-tenant-id); None: the configured default company."""
    event_id: str = wire.BACKGROUND_API_RESPONSE
    """x-vwd-event-id: a job's answer, or an entity event (then `job_id` is empty)."""

    @classmethod
    def for_event(cls, event_id: str, *, body: bytes, tenant_id: str | None) -> Notification:
        """An entity event's notification (its body is illustrative: see events.py)."""
        return cls(job_id="", body=body, tenant_id=tenant_id or None, event_id=event_id)

    @classmethod
    def for_job(
        cls,
        job_id: str,
        *,
        state_location: str,
        content_location: str | None,
        custom_headers: Mapping[str, str],
        tenant_id: str | None = None,
    ) -> Notification:
        """The notification for a finished job."""
        # Visma does not document the body; this is the variant seen most (id and locations).
        payload = {"id": job_id, "stateLocation": state_location}
        if content_location is not None:
            payload["contentLocation"] = content_location
        return cls(
            job_id=job_id,
            body=dump_json(payload),
            custom_headers=dict(custom_headers),
            tenant_id=tenant_id or None,
        )


@dataclass(frozen=True)
class DeliveryAttempt:
    """One POST of a notification to the webhook URL and how it went."""

    notification_id: str
    job_id: str
    attempt: int
    """1 for the first try of this copy, 2 for its first retry, ..."""
    copy: int
    """0, or 1 for the second copy of a duplicated notification."""
    status_code: int | None
    error: str | None
    at: datetime

    @property
    def ok(self) -> bool:
        """True when the receiver answered 2xx."""
        return self.status_code is not None and 200 <= self.status_code < 300

    def to_json(self) -> dict[str, Any]:
        """The attempt as `GET /_sim/deliveries` shows it."""
        return {
            "notification_id": self.notification_id,
            "job_id": self.job_id,
            "attempt": self.attempt,
            "copy": self.copy,
            "status_code": self.status_code,
            "error": self.error,
            "ok": self.ok,
            "at": self.at.isoformat(),
        }


@dataclass
class _Delivery:
    notification: Notification
    copy: int
    first_answer: asyncio.Future[DeliveryAttempt]
    delay_seconds: float = 0.0


class WebhookDispatcher:
    """Sends notifications from one background task with one httpx client, retrying on non-2xx."""

    def __init__(
        self, config: SimulatorConfig, *, on_attempt: Callable[[DeliveryAttempt], None]
    ) -> None:
        self._config = config
        self._on_attempt = on_attempt
        self._queue: asyncio.Queue[_Delivery] = asyncio.Queue()
        self._client: httpx.AsyncClient | None = None
        self._runner: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(config.max_concurrent_deliveries)

    @property
    def running(self) -> bool:
        """True between `start` and `stop`."""
        return self._runner is not None

    @property
    def pending(self) -> int:
        """Deliveries queued or still being attempted."""
        return self._queue.qsize() + len(self._tasks)

    def headers_for(self, notification: Notification) -> dict[str, str]:
        """The headers of one attempt (the webhook timestamp is taken now)."""
        config = self._config
        headers = {
            "Content-Type": "application/json",
            wire.SIGNATURE: wire.signature(notification.body, config.webhook_secret),
            wire.NOTIFICATION_ID: notification.id,
            wire.EVENT_ID: notification.event_id,
            wire.SUBSCRIPTION_ID: config.subscription_id,
            wire.TENANT_ID: notification.tenant_id or config.tenant_id,
            wire.APPLICATION_ID: config.application_id,
            wire.APPLICATION_VERSION: "1",
            wire.GROUP_ID: notification.group_id,
            wire.NOTIFICATION_TIMESTAMP: str(notification.created_ms),
            wire.WEBHOOK_TIMESTAMP: str(_now_ms()),
        }
        headers.update(notification.custom_headers)
        return headers

    def enqueue(
        self,
        notification: Notification,
        *,
        copies: int = 1,
        first_answer: asyncio.Future[DeliveryAttempt] | None = None,
        gap_seconds: float = 0.0,
    ) -> asyncio.Future[DeliveryAttempt]:
        """Queue `copies` deliveries of one notification, each `gap_seconds` after the last.

        The future (`first_answer`, or a new one) gets the first answer.
        """
        if first_answer is None:
            first_answer = asyncio.get_running_loop().create_future()
        for copy in range(copies):
            delivery = _Delivery(notification, copy, first_answer, delay_seconds=copy * gap_seconds)
            self._queue.put_nowait(delivery)
        return first_answer

    async def start(self, client: httpx.AsyncClient) -> None:
        """Start sending with `client` (owned by the caller, who closes it after `stop`)."""
        self._client = client
        self._runner = asyncio.create_task(self._run(), name="simulator-dispatcher")

    async def stop(self) -> None:
        """Stop sending; deliveries still waiting for a retry are abandoned."""
        tasks = list(self._tasks)
        if self._runner is not None:
            tasks.append(self._runner)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._runner = None
        self._client = None

    async def _run(self) -> None:
        # One task reads the queue; each delivery then lives in its own task so that one
        # receiver's backoff does not hold up the others (Visma's dispatcher is parallel too).
        while True:
            delivery = await self._queue.get()
            task = asyncio.create_task(self._deliver(delivery))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, delivery: _Delivery) -> None:
        config = self._config
        if delivery.delay_seconds > 0:
            # A duplicate's gap: it waits here, not in the queue, so others are not held up.
            await asyncio.sleep(delivery.delay_seconds)
        for attempt in range(1, config.max_delivery_attempts + 1):
            result = await self._attempt(delivery, attempt)
            self._on_attempt(result)
            if not delivery.first_answer.done():
                delivery.first_answer.set_result(result)
            if result.ok or attempt == config.max_delivery_attempts:
                return
            base = config.retry_base_seconds
            # Jitter keeps many failing deliveries from retrying in lockstep.
            await asyncio.sleep(base * 2 ** (attempt - 1) + random.uniform(0, base / 10))

    async def _attempt(self, delivery: _Delivery, attempt: int) -> DeliveryAttempt:
        notification = delivery.notification
        status_code: int | None = None
        error: str | None = None
        url = self._config.webhook_url
        if self._client is None or url is None:
            raise RuntimeError("the dispatcher is not started or has no webhook_url")
        async with self._slots:
            try:
                response = await self._client.post(
                    url, content=notification.body, headers=self.headers_for(notification)
                )
                status_code = response.status_code
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
        return DeliveryAttempt(
            notification_id=notification.id,
            job_id=notification.job_id,
            attempt=attempt,
            copy=delivery.copy,
            status_code=status_code,
            error=error,
            at=datetime.now(UTC),
        )
