"""The alert sender: takes due alerts from the outbox and sends them to every target.

JSON hooks get the Alert JSON signed with Standard Webhooks headers (`webhook-id` is the alert's
id, the same on every retry, so receivers can drop repeats); Slack targets get an
incoming-webhook message. Deliveries are claimed with SKIP LOCKED and a lease, so replicas never
send the same one at once; the HTTP call runs with no transaction open. A send is at least once:
a replica that dies after the target answered but before recording it leaves the delivery to be
sent again when its lease runs out.

Each target URL has its own lane (`lanes.TargetLanes`): a few sends in flight per target, a cap
over all, and each attempt cut off at its timeout. Sends are not gathered in batches, so a
target that hangs holds only its own lane and never delays another target's alerts or callbacks.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks.webhooks import Webhook

from service import metrics, store, tracing
from service.domain import InvalidInput, redact_url, slack_message
from service.flows import (
    CALLBACK,
    FORWARD,
    GONE_FROM_INBOX,
    SLACK,
    OutboxSettings,
    SendResult,
    check_callback,
    check_forward_target,
    claim_deliveries,
    dispatch_due_alerts,
    forward_request,
    next_due,
    record_send,
    signing_key,
)
from service.logs import FailureLog
from service.workers.background import BackgroundLoop
from service.workers.lanes import TargetLanes

log = logging.getLogger(__name__)

USER_AGENT = "visma-hooks-alerts/1"
NO_SIGNING_SECRET = "ALERT_SIGNING_SECRET is not set: JSON alerts cannot be signed"
NO_CALLBACK_SECRET = "CALLBACK_SIGNING_SECRET is not set: callbacks cannot be signed"
NO_EVENT_SECRET = "EVENT_SIGNING_SECRET is not set: forwarded events cannot be signed"
REFUSED_AT_SEND = "not sent: {why}"
TIMED_OUT = "no whole answer within {seconds:g} s (twice ALERT_TIMEOUT_SECONDS)"
ATTEMPT_BOUND = 2
"""One attempt may take this many ALERT_TIMEOUT_SECONDS in all (the lease is three)."""


class AlertSender:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: OutboxSettings,
        *,
        signing_secret: str,
        timeout_seconds: float = 15.0,
        poll_seconds: float = 1.0,
        concurrency: int = 16,
        per_target: int = 4,
        transport: httpx.AsyncBaseTransport | None = None,
        callback_secret: str = "",
        callback_allowed_hosts: Collection[str] = (),
        event_secret: str = "",
        event_allowed_hosts: Collection[str] = (),
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._signer = Webhook(signing_secret) if signing_secret else None
        self._callback_signer = Webhook(callback_secret) if callback_secret else None
        self._callback_hosts = tuple(callback_allowed_hosts)
        self._event_key = signing_key(event_secret) if event_secret else None
        self._event_hosts = tuple(event_allowed_hosts)
        self._poll_seconds = poll_seconds
        self._timeout_seconds = timeout_seconds
        self._lanes = TargetLanes(per_target=per_target, total=concurrency)
        self._sending: set[asyncio.Task[None]] = set()
        # Redirects are not followed: a 3xx is a failed send, retried like any other.
        self._client = httpx.AsyncClient(
            timeout=timeout_seconds,
            follow_redirects=False,
            transport=transport,
            headers={"User-Agent": USER_AGENT},
        )
        self._wake = asyncio.Event()
        self._failures = FailureLog(log, "alert sender pass")
        self._loop = BackgroundLoop(self.run_forever, name="alert-sender")

    def wake(self) -> None:
        """Look for due alerts now."""
        self._wake.set()

    async def run_once(self) -> int:
        """Send everything due now and wait for those sends; returns how many were claimed."""
        total = 0
        while True:
            started = await self._start_due()
            total += started
            if self._sending:
                await asyncio.wait(set(self._sending), return_when=asyncio.FIRST_COMPLETED)
            elif not started:
                return total

    async def _start_due(self) -> int:
        """Fan out due alerts and start every due delivery its lane has room for, without
        waiting for any send; returns how many started."""
        started = 0
        while True:
            dispatched = await dispatch_due_alerts(self._sessions, self._settings)
            claimed: list[store.ClaimedDelivery] = []
            if self._lanes.free > 0:
                claimed = list(
                    await claim_deliveries(
                        self._sessions,
                        self._settings,
                        limit=self._lanes.free,
                        room=self._lanes.room,
                        full=self._lanes.full(),
                    )
                )
            for delivery in claimed:
                self._lanes.take(delivery.target)
                task = asyncio.create_task(self._send_and_record(delivery))
                self._sending.add(task)
                task.add_done_callback(self._sent)
            started += len(claimed)
            if not dispatched and not claimed:
                return started

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        error = None if task.cancelled() else task.exception()
        if isinstance(error, Exception):
            # Recording failed (the database): the lease runs out and the send is retried.
            self._failures.failed(error)
        self._wake.set()  # a lane has room again

    async def run_forever(self) -> None:
        while True:
            self._wake.clear()
            wait = self._poll_seconds
            try:
                await self._start_due()
                due = await next_due(self._sessions)
                # Due work left now is a full lane's: a send ending wakes us for it.
                if due is not None and due > datetime.now(UTC):
                    wait = min(wait, (due - datetime.now(UTC)).total_seconds())
            except Exception as exc:
                # A database or programming error must not kill the worker; it tries again.
                self._failures.failed(exc)
            else:
                self._failures.succeeded()
            await self._loop.pause(wait, self._wake)

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def aclose(self) -> None:
        await self.stop()
        # A send cut off here is sent again once its lease runs out (at least once).
        for task in list(self._sending):
            task.cancel()
        await asyncio.gather(*list(self._sending), return_exceptions=True)
        await self._client.aclose()

    async def _send_and_record(self, delivery: store.ClaimedDelivery) -> None:
        try:
            try:
                # httpx's timeouts bound each step (connect, TLS, each read) and end a hung
                # target cleanly; this bounds the whole attempt, a slow trickle too.
                async with asyncio.timeout(ATTEMPT_BOUND * self._timeout_seconds):
                    result = await self.send(delivery)
            except TimeoutError:
                result = SendResult(
                    at=datetime.now(UTC),
                    error=TIMED_OUT.format(seconds=ATTEMPT_BOUND * self._timeout_seconds),
                )
            outcome = await record_send(self._sessions, delivery.id, result, self._settings)
        finally:
            self._lanes.release(delivery.target)
        sent = result.status_code is not None and 200 <= result.status_code < 300
        gone = result.status_code == 410
        if not sent:
            log.warning(
                "%s delivery %s to %s not sent: %s",
                delivery.channel,
                delivery.id,
                redact_url(delivery.target),
                result.error or f"HTTP {result.status_code}",
            )
        metrics.ALERT_SENDS.labels(
            delivery.channel, "sent" if sent else "gone" if gone else "failed"
        ).inc()
        del outcome

    async def send(self, delivery: store.ClaimedDelivery) -> SendResult:
        """One attempt at one delivery; never raises for what the target or network does."""
        if delivery.channel == CALLBACK:
            return await self._send_callback(delivery)
        if delivery.channel == FORWARD:
            return await self._send_forward(delivery)
        assert delivery.alert_id is not None  # every other delivery is an alert's
        if delivery.channel == SLACK:
            content = _dump(slack_message(delivery.body))
            headers = {"Content-Type": "application/json"}
        else:
            if self._signer is None:
                return SendResult(at=datetime.now(UTC), error=NO_SIGNING_SECRET)
            text = _dump(delivery.body)
            now = datetime.now(UTC)
            headers = {
                "Content-Type": "application/json",
                "webhook-id": delivery.alert_id,
                "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": self._signer.sign(delivery.alert_id, now, text),
            }
            content = text
        return await self._post(delivery.target, content, headers)

    async def _send_callback(self, delivery: store.ClaimedDelivery) -> SendResult:
        """A job's callback: its target checked again now and connected to at the address
        checked (so DNS cannot point it elsewhere meanwhile), signed with the callback secret;
        `webhook-id` is the job's, the same on every retry."""
        if self._callback_signer is None:
            return SendResult(at=datetime.now(UTC), error=NO_CALLBACK_SECRET)
        try:
            target = await check_callback(delivery.target, allowed_hosts=self._callback_hosts)
        except InvalidInput as exc:
            return SendResult(at=datetime.now(UTC), error=REFUSED_AT_SEND.format(why=exc.detail))
        message_id = f"job_{delivery.job_id}"
        text = _dump(delivery.body)
        now = datetime.now(UTC)
        headers = {
            "Content-Type": "application/json",
            "Host": target.host_header,
            "webhook-id": message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self._callback_signer.sign(message_id, now, text),
        }
        # The certificate is checked against the name, though the connection goes to the IP.
        extensions = {"sni_hostname": target.server_name} if target.https else None
        return await self._post(
            target.url,
            text,
            headers,
            extensions=extensions,
            traceparent=delivery.traceparent,
            job_id=delivery.job_id,
        )

    async def _send_forward(self, delivery: store.ClaimedDelivery) -> SendResult:
        """A forwarded Visma event (flows/forwards.py builds it), checked and pinned as a
        callback is."""
        if self._event_key is None:
            return SendResult(at=datetime.now(UTC), error=NO_EVENT_SECRET)
        if delivery.source is None:
            return SendResult(at=datetime.now(UTC), error=GONE_FROM_INBOX)
        try:
            target = await check_forward_target(delivery.target, allowed_hosts=self._event_hosts)
        except InvalidInput as exc:
            return SendResult(at=datetime.now(UTC), error=REFUSED_AT_SEND.format(why=exc.detail))
        request = forward_request(
            delivery.source,
            target=target,
            target_url=delivery.target,
            key=self._event_key,
            now=datetime.now(UTC),
        )
        extensions = {"sni_hostname": target.server_name} if target.https else None
        return await self._post(target.url, request.content, request.headers, extensions=extensions)

    async def _post(
        self,
        url: str,
        content: str | bytes,
        headers: dict[str, str],
        *,
        extensions: dict[str, Any] | None = None,
        traceparent: str | None = None,
        job_id: str | None = None,
    ) -> SendResult:
        # A callback joins its job's trace (`traceparent`) and passes it on, so the team's
        # receiver joins it too; an alert's send is a trace of its own.
        with tracing.client_span(
            "POST", redact_url(url), traceparent=traceparent, attributes={tracing.JOB_ID: job_id}
        ) as span:
            tracing.inject(headers)
            try:
                response = await self._client.post(
                    url,
                    content=content.encode() if isinstance(content, str) else content,
                    headers=headers,
                    extensions=extensions,
                )
            except httpx.HTTPError as exc:
                # Kept, shown and logged: the target's secret parts stay out of it.
                error = f"{type(exc).__name__}: {exc}".replace(url, redact_url(url))
                tracing.set_failed(span, error[:500])
                return SendResult(at=datetime.now(UTC), error=error[:500])
            tracing.set_http_status(span, response.status_code)
        return SendResult(
            at=datetime.now(UTC),
            status_code=response.status_code,
            answer=response.text,
            retry_after=_retry_after(response.headers.get("retry-after")),
        )


def _dump(data: object) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None  # an HTTP date: our own backoff will do
