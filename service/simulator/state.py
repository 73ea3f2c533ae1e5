"""The simulator's state: tokens, scripted outcomes, jobs and their lifecycle, and the logs."""

from __future__ import annotations

import asyncio
import itertools
import re
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from service.simulator.chaos import Chaos, WebhookHold
from service.simulator.config import SimulatorConfig, parse_chaos
from service.simulator.dispatcher import DeliveryAttempt, Notification, WebhookDispatcher
from service.simulator.jobs import BackgroundJob, BackgroundRequest
from service.simulator.outcomes import (
    CallTarget,
    JobResult,
    Outcome,
    OutcomeScript,
    is_erp_path,
    resolve,
)
from service.simulator.statuspage import StatusPage
from service.simulator.tokens import TokenIssuer
from service.simulator.versions import RecordVersions

RequestKind = Literal["token", "submit", "state", "content", "call"]
RECORD_SCOPE_KEY = "visma_simulator.record"
"""Where the request log keeps a request's RequestRecord in the ASGI scope."""
TOKEN_PATH = "/connect/token"
_BACKGROUND_PATH = re.compile(
    r"^(?:(?:/API/controller)?/api)?/v1/background/[^/]+(?P<content>/content)?/?$"
)


def request_kind(path: str, *, background: bool) -> RequestKind | None:
    """What a request is: token, submit (a background call), state or content read, or call."""
    if path == TOKEN_PATH:
        return "token"
    if not is_erp_path(path):
        return None
    match = _BACKGROUND_PATH.match(path)
    if match is not None:
        return "content" if match["content"] else "state"
    return "submit" if background else "call"


@dataclass
class RequestRecord:
    """One request the simulator received."""

    method: str
    path: str
    query: str
    at: datetime
    job_id: str | None = None
    """The background job the request created or read, if any."""
    status: int | None = None
    """The status answered; None while running, or when no answer was sent (a dropped 202)."""
    client: str | None = None
    """The caller's User-Agent (the service sends `visma-hooks/<host>/<pid>` per replica)."""
    kind: RequestKind | None = None
    chaos: str | None = None
    """The chaos that struck: rate_limit, rate_limit_share, rate_budget, server_error or
    accept_dropped."""
    tenant: str | None = None
    """The company the request's token acts for (None without a valid token)."""

    def to_json(self) -> dict[str, Any]:
        """The record as `GET /_sim/requests` shows it."""
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "at": self.at.isoformat(),
            "job_id": self.job_id,
            "status": self.status,
            "client": self.client,
            "kind": self.kind,
            "chaos": self.chaos,
            "tenant": self.tenant,
        }


class SimulatorState:
    """Everything the simulator knows; tests script it and read it in-process or over /_sim/."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.token_issuer = TokenIssuer(config)
        self.outcomes = OutcomeScript()
        self.jobs: dict[str, BackgroundJob] = {}
        self.requests: deque[RequestRecord] = deque(maxlen=config.max_log_entries)
        self.deliveries: deque[DeliveryAttempt] = deque(maxlen=config.max_log_entries)
        self.dispatcher = WebhookDispatcher(config, on_attempt=self.deliveries.append)
        self.chaos = Chaos(config)  # owns the one seeded random.Random of every chaos decision
        self.webhooks = WebhookHold(self.chaos, self.dispatcher)
        self.statuspage = StatusPage(config.status_webhook_url)
        self._numbers = itertools.count(20001)
        self.versions = RecordVersions()
        self._timers: dict[str, asyncio.TimerHandle] = {}

    @property
    def tokens_issued(self) -> int:
        """How many tokens the token endpoint has issued."""
        return self.token_issuer.issued

    def script(self, *outcomes: Outcome) -> None:
        """Queue outcomes for the next background calls (first matching path wins)."""
        self.outcomes.add(outcomes)

    def clear_outcomes(self) -> None:
        """Forget every scripted outcome; calls succeed again."""
        self.outcomes.clear()

    def update_chaos(self, changes: Mapping[str, object]) -> dict[str, Any]:
        """Change chaos fields at run time (ValueError if one is invalid); the new settings."""
        checked = parse_chaos(changes)
        for name, value in checked.items():
            setattr(self.config, name, value)
        if "seed" in checked:
            self.chaos.reseed()
        if "rate_limit_per_second" in checked:
            self.chaos.reset_bucket()
        return self.config.chaos()

    def reset_chaos(self) -> dict[str, Any]:
        """Turn every chaos mode off (back to the defaults); the seed and the counters stay."""
        defaults = SimulatorConfig().chaos()
        del defaults["seed"]
        return self.update_chaos(defaults)

    def log_request(
        self,
        method: str,
        path: str,
        query: str = "",
        *,
        client: str | None = None,
        kind: RequestKind | None = None,
        tenant: str | None = None,
    ) -> RequestRecord:
        """Add a request to the log; the caller fills in job id and status as they are known."""
        record = RequestRecord(
            method=method,
            path=path,
            query=query,
            at=datetime.now(UTC),
            client=client,
            kind=kind,
            tenant=tenant,
        )
        self.requests.append(record)
        return record

    def tenant_for(self, authorization: str | None) -> str | None:
        """The company a request's `Authorization: Bearer <token>` acts for; None if invalid."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        return self.token_issuer.tenant_of(token.strip())

    def spend_budget(self, tenant: str) -> dict[str, Any]:
        """Spend a company's budget for its current window (chaos); its window as it stands."""
        self.chaos.budgets.spend(tenant)
        return self.chaos.budgets.to_json()[tenant]

    def lookup(self, job_id: str) -> BackgroundJob | None:
        """The job with this id, if the simulator (still) knows it."""
        return self.jobs.get(job_id)

    def forgotten(self, job: BackgroundJob) -> bool:
        """True once `forget_after_seconds` have passed since the job was received."""
        return self.chaos.forgotten(job.received_at)

    async def submit(
        self,
        target: CallTarget,
        *,
        query: str,
        headers: Mapping[str, str],
        body: bytes,
        background: BackgroundRequest,
        outcome: Outcome,
        tenant: str,
    ) -> BackgroundJob:
        """Accept a background call and schedule its finish.

        With `webhook_before_accept` the job runs to the end and its webhook gets its first
        answer before this returns, so the webhook beats the 202.
        """
        job_id = str(uuid.uuid4())
        now = datetime.now(UTC)
        state_location = f"{target.base}/v1/background/{job_id}"
        job = BackgroundJob(
            id=job_id,
            method=target.method,
            path=target.path,
            query=query,
            request_headers=dict(headers),
            request_body=body,
            background=background,
            outcome=outcome,
            original_uri=target.origin + target.path + (f"?{query}" if query else ""),
            state_location=state_location,
            content_location=f"{state_location}/content",
            received_at=now,
            # Visma queues the job until a server is free; the simulator starts it at once.
            started_at=now,
            tenant=tenant,
        )
        self.jobs[job_id] = job
        if outcome.drop_accept or self.chaos.drop_accept():
            job.accept_dropped = True
            self.chaos.counters.accepts_dropped += 1
        result = self.run(target, outcome, if_match=_header(headers, "if-match"))
        delay = self.duration_of(outcome)
        if outcome.webhook_before_accept:
            await asyncio.sleep(delay)
            first_answer = self.finish(job, result)
            # Without a running dispatcher (no lifespan) nothing would ever answer.
            if first_answer is not None and self.dispatcher.running:
                await first_answer
        else:
            self._timers[job_id] = asyncio.get_running_loop().call_later(
                delay, self._finish_later, job, result
            )
        return job

    def _finish_later(self, job: BackgroundJob, result: JobResult) -> None:
        self._timers.pop(job.id, None)
        self.finish(job, result)

    def run(
        self, target: CallTarget, outcome: Outcome, *, if_match: str | None = None
    ) -> JobResult:
        """What the call returns under `outcome` (also used for calls without the header); a
        success is checked against the record's version (`If-Match`, see `versions`)."""
        result = resolve(outcome, target, next_number=lambda: next(self._numbers))
        if outcome.kind != "success" or result.status != "Finished":
            return result
        return self.versions.apply(target, result, if_match=if_match)

    def duration_of(self, outcome: Outcome) -> float:
        """How long a job with this outcome runs."""
        if outcome.duration_seconds is not None:
            return outcome.duration_seconds
        return self.config.job_duration_seconds

    def finish(
        self, job: BackgroundJob, result: JobResult
    ) -> asyncio.Future[DeliveryAttempt] | None:
        """Mark the job done and queue its webhook; the future gets the first delivery answer."""
        job.result = result
        job.status = result.status
        job.finished_at = datetime.now(UTC)
        copies = self._webhook_copies(job)
        if copies == 0:
            return None
        notification = Notification.for_job(
            job.id,
            state_location=job.state_location,
            content_location=job.content_location if job.has_content else None,
            custom_headers=job.background.custom_headers,
            tenant_id=job.tenant,
        )
        job.notification_ids.append(notification.id)
        return self.webhooks.send(notification, copies=copies)

    def _webhook_copies(self, job: BackgroundJob) -> int:
        # The one place that decides how often a notification goes out, once per notification
        # (the dispatcher's retries of it are not decided again).
        if job.background.webhook_address != "subscription" or self.config.webhook_url is None:
            return 0
        counters = self.chaos.counters
        if job.outcome.webhook == "drop" or self.chaos.drop_webhook():
            counters.webhooks_dropped += 1
            return 0
        if job.outcome.duplicate_webhook or self.chaos.duplicate_webhook():
            counters.webhooks_duplicated += 1
            return 2
        return 1

    def stats(self) -> dict[str, Any]:
        """Counters for `GET /_sim/stats`."""
        statuses = Counter(job.status for job in self.jobs.values())
        attempts = list(self.deliveries)
        last = self.config.max_delivery_attempts
        return {
            "tokens_issued": self.tokens_issued,
            "tokens_active": self.token_issuer.active,
            "jobs": {
                "total": len(self.jobs),
                **{status: statuses[status] for status in ("Started", "Finished", "Failed")},
            },
            "requests": len(self.requests),
            "deliveries": {
                "attempts": len(attempts),
                "delivered": sum(1 for attempt in attempts if attempt.ok),
                "failed_attempts": sum(1 for attempt in attempts if not attempt.ok),
                "gave_up": sum(1 for a in attempts if not a.ok and a.attempt == last),
                "dropped": self.chaos.counters.webhooks_dropped,
                "held": self.webhooks.held,
                "pending": self.dispatcher.pending,
            },
            "outcomes_pending": len(self.outcomes.pending),
            "chaos": self.chaos.counters.to_json(),
        }

    async def wait_until(
        self, predicate: Callable[[], bool], *, timeout: float = 5.0, interval: float = 0.005
    ) -> None:
        """Wait until `predicate()` holds; TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout} s")
            await asyncio.sleep(interval)

    def close(self) -> None:
        """Cancel jobs still waiting to finish and webhooks still held (at shutdown)."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self.webhooks.close()


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name), None)
