"""The alert sender: takes due alerts from the outbox and sends them to every target.

JSON hooks get the Alert JSON signed with Standard Webhooks headers (`webhook-id` is the alert's
id, the same on every retry, so receivers can drop repeats); Slack targets get an
incoming-webhook message. Deliveries are claimed with SKIP LOCKED and a lease, so replicas never
send the same one at once; the HTTP call runs with no transaction open. A send is at least once:
a replica that dies after the target answered but before recording it leaves the delivery to be
sent again when its lease runs out.
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

from service import metrics, store
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

log = logging.getLogger(__name__)

USER_AGENT = "visma-hooks-alerts/1"
NO_SIGNING_SECRET = "ALERT_SIGNING_SECRET is not set: JSON alerts cannot be signed"
NO_CALLBACK_SECRET = "CALLBACK_SIGNING_SECRET is not set: callbacks cannot be signed"
NO_EVENT_SECRET = "EVENT_SIGNING_SECRET is not set: forwarded events cannot be signed"
REFUSED_AT_SEND = "not sent: {why}"


class AlertSender:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: OutboxSettings,
        *,
        signing_secret: str,
        timeout_seconds: float = 15.0,
        poll_seconds: float = 1.0,
        concurrency: int = 8,
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
        self._slots = asyncio.Semaphore(concurrency)
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
        """Send everything due now (each delivery at most once per pass); returns how many."""
        total = 0
        while True:
            dispatched = await dispatch_due_alerts(self._sessions, self._settings)
            claimed = await claim_deliveries(self._sessions, self._settings)
            await asyncio.gather(*(self._send_and_record(c) for c in claimed))
            total += len(claimed)
            if not dispatched and not claimed:
                return total

    async def run_forever(self) -> None:
        while True:
            self._wake.clear()
            wait = self._poll_seconds
            try:
                await self.run_once()
                due = await next_due(self._sessions)
                if due is not None:
                    wait = min(wait, max((due - datetime.now(UTC)).total_seconds(), 0.0))
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
        await self._client.aclose()

    async def _send_and_record(self, delivery: store.ClaimedDelivery) -> None:
        async with self._slots:
            result = await self.send(delivery)
        outcome = await record_send(self._sessions, delivery.id, result, self._settings)
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
        return await self._post(target.url, text, headers, extensions=extensions)

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
    ) -> SendResult:
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
            return SendResult(at=datetime.now(UTC), error=error[:500])
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
