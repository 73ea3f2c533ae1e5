"""Submitting many jobs at once: every row written in one transaction, sent later.

A batch answers at once: its jobs are stored with their request still to send
(`send_pending`, due now), and the state-read worker sends them as each company's rate budget
allows, as it sends a job that waited for the budget. So a thousand jobs never go out at once,
and a company whose budget is spent takes the batch and sends it when the budget returns.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service import store, tracing
from service.domain import (
    DomainError,
    EventKind,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    JobRequest,
    JobState,
    NotConfigured,
    choose_tenant,
    fingerprint,
)
from service.flows.clock import utcnow
from service.flows.submit import KEY_IN_USE, KEY_REUSED
from service.store import KeyClaim
from service.visma import VismaClient

WRITE_ATTEMPTS = 3
"""Tries at writing a batch whose keys another request claimed meanwhile (each looks again)."""


@dataclass(frozen=True)
class BatchItem:
    """One job of a batch as the caller gave it: a checked request, or why it is refused."""

    request: JobRequest | None
    key: str | None = None
    error: DomainError | None = None


@dataclass(frozen=True)
class ItemResult:
    """How one job of a batch went: 201 made, 200 an earlier request's (its key), or 4xx."""

    index: int
    status: int
    job_id: str | None = None
    error: DomainError | None = None


@dataclass
class _Plan:
    results: list[ItemResult]
    jobs: list[dict[str, Any]]
    events: list[dict[str, Any]]
    callbacks: list[dict[str, Any]]
    claims: list[KeyClaim]


def job_to_send(
    job_id: str,
    *,
    method: str,
    path: str,
    body: bytes | None,
    tags: dict[str, Any],
    if_match: str | None,
    notify: bool,
    tenant: str | None,
    at: datetime,
    **more: Any,
) -> dict[str, Any]:
    """The row of a job written now and sent later: due at once, `send_pending`, so the
    state-read worker sends it as the company's rate budget allows (a batch's, a resend's)."""
    return {
        "id": job_id,
        "state": JobState.SUBMITTED.value,
        "method": method,
        "path": path,
        "request_body": body,
        "tags": tags,
        "if_match": if_match,
        "notify": notify,
        "submitted_at": at,
        "last_modified_at": at,
        "next_check_at": at,
        "send_pending": True,
        "tenant": tenant,
        **more,
    }


async def submit_batch(
    sessions: async_sessionmaker[AsyncSession],
    visma: VismaClient,
    items: list[BatchItem],
    *,
    source: str,
    readers: async_sessionmaker[AsyncSession] | None = None,
) -> list[ItemResult]:
    """Store every good item as a job to send (one transaction) and say how each went, in the
    items' order. A bad item fails alone; an item whose key made a job answers that job."""
    missing = visma.missing_settings()
    if missing:
        raise NotConfigured(f"cannot submit jobs: set {', '.join(missing)}")
    for _attempt in range(WRITE_ATTEMPTS):
        async with (readers or sessions).begin() as session:
            keyed = [(_scope(visma, item), item.key) for item in items if item.key]
            claims = await store.find_keys(session, keyed)
        plan = _plan(visma, items, claims)
        try:
            async with sessions.begin() as session:
                await _write(session, plan)
        except IntegrityError as exc:
            if not store.is_key_taken(exc):
                raise
            continue  # another request claimed one of the keys meanwhile: look again
        return plan.results
    raise IdempotencyKeyInUse(KEY_IN_USE)


def _scope(visma: VismaClient, item: BatchItem) -> str | None:
    """The company an item's key belongs to (None for an item refused, or with no company)."""
    if item.request is None:
        return None
    try:
        return choose_tenant(item.request.tenant, visma.tenant_ids)
    except DomainError:
        return None


def _plan(
    visma: VismaClient,
    items: list[BatchItem],
    claims: dict[tuple[str | None, str], store.KeyClaim],
) -> _Plan:
    now = utcnow()
    traceparent = tracing.current_traceparent()  # each job's reads and send join the batch's
    plan = _Plan([], [], [], [], [])
    made: dict[tuple[str | None, str], KeyClaim] = {}  # keys claimed earlier in this batch
    for index, item in enumerate(items):
        if item.request is None:
            plan.results.append(ItemResult(index, 400, error=item.error))
            continue
        request = item.request
        try:
            tenant = choose_tenant(request.tenant, visma.tenant_ids)
        except DomainError as exc:
            plan.results.append(ItemResult(index, 400, error=exc))
            continue
        job_id = str(uuid.uuid4())
        if item.key is not None:
            scoped = (tenant, item.key)
            wanted = fingerprint(request, tenant=tenant)
            earlier = claims.get(scoped) or made.get(scoped)
            if earlier is not None:
                if earlier.fingerprint != wanted:
                    error = IdempotencyKeyReused(KEY_REUSED)
                    plan.results.append(ItemResult(index, 422, error=error))
                else:
                    plan.results.append(ItemResult(index, 200, job_id=earlier.job_id))
                continue
            made[scoped] = claim = KeyClaim(tenant, item.key, wanted, job_id)
            plan.claims.append(claim)
        plan.results.append(ItemResult(index, 201, job_id=job_id))
        plan.jobs.append(
            job_to_send(
                job_id,
                method=request.method,
                path=request.path,
                body=request.body,
                tags=request.tags,
                if_match=request.if_match,
                notify=request.notify,
                tenant=tenant,
                at=now,
                idempotency_key=item.key,
                traceparent=traceparent,
            )
        )
        plan.events.append(
            {
                "job_id": job_id,
                "kind": EventKind.SUBMITTED.value,
                "source": "api-batch",
                "at": now,
                "detail": {
                    "method": request.method,
                    "path": request.path,
                    "tenant": tenant,
                    "note": "in a batch: sent as the company's rate budget allows",
                },
            }
        )
        if request.callback_url is not None:
            plan.callbacks.append({"job_id": job_id, "url": request.callback_url})
    return plan


async def _write(session: AsyncSession, plan: _Plan) -> None:
    """The batch's rows as a few bulk statements: jobs, their first timeline entry, callbacks,
    and the keys' claims last (a key another request holds fails the whole transaction)."""
    await store.add_jobs_to_send(session, plan.jobs, plan.events, plan.callbacks)
    await store.add_keys(session, plan.claims, at=utcnow())
