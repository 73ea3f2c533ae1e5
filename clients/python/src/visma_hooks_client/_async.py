"""`AsyncClient`: the service's API for asyncio code."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

import httpx

from visma_hooks_client import _requests as r
from visma_hooks_client.models import BatchResult, Job, JobResult


class AsyncClient:
    """`async with AsyncClient(url, token) as client: job = await client.submit(...)`.

    `base_url` and `token` default to VISMA_HOOKS_URL and VISMA_HOOKS_TOKEN. Reads are tried
    again on a lost connection or a 502/503/504 (`tries` in all, with backoff); a submission
    only when it has an idempotency key (`retry=True` makes one up)."""

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        tries: int = 4,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        url, secret = r.settings(base_url, token)
        # The long poll holds a request open for up to a minute.
        self._http = httpx.AsyncClient(
            base_url=url,
            headers={"Authorization": f"Bearer {secret}"},
            timeout=httpx.Timeout(timeout, read=max(timeout, r.MAX_WAIT_SECONDS + 10)),
            transport=transport,
        )
        self._tries = tries

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: r.Call) -> httpx.Response:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._http.request(
                    call.method, call.path, params=call.params, json=call.json, headers=call.headers
                )
            except httpx.TransportError as exc:
                if not r.should_retry(call, None, attempt, self._tries):
                    raise r.unavailable(exc) from exc
            else:
                if not r.should_retry(call, response, attempt, self._tries):
                    return r.checked(response)
            await asyncio.sleep(r.backoff(attempt))

    async def submit(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        tags: Mapping[str, str] | None = None,
        tenant: str | None = None,
        notify: bool = True,
        if_match: str | None = None,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
        retry: bool = False,
    ) -> Job:
        """Submit a request to run in Visma as a background job; the job as stored."""
        call = r.submit_call(
            method,
            path,
            body,
            tags=tags,
            tenant=tenant,
            notify=notify,
            if_match=if_match,
            callback_url=callback_url,
            idempotency_key=idempotency_key,
            retry=retry or idempotency_key is not None,
        )
        return r.job_of(await self._send(call))

    async def submit_batch(self, jobs: Sequence[Mapping[str, Any]]) -> list[BatchResult]:
        """Submit many jobs at once (`job_json` builds each); how each went, in order."""
        return r.batch_results(await self._send(r.batch_call(jobs)))

    async def get(self, job_id: str) -> Job:
        """The job with its timeline."""
        return r.job_of(await self._send(r.Call("GET", f"/api/v1/jobs/{job_id}")))

    async def wait(self, job_id: str, *, timeout: float = 300.0) -> Job:
        """The job once it has ended, or as it stands when `timeout` seconds have passed (see
        `Job.finished`). Long polls: each answers as soon as the job changes; one the service
        answers at once with Retry-After (all its long polls taken) is asked again after it."""
        deadline = time.monotonic() + timeout
        job = await self.get(job_id)
        while not job.finished:
            left = deadline - time.monotonic()
            if left < 1:
                return job
            response = await self._send(r.wait_call(job_id, job.etag, left))
            if response.status_code != 304:
                job = r.job_of(response)
            # Turned away (the service holds all the long polls it takes): the answer came at
            # once, so ask again when it says, not straight away.
            pause = r.retry_after(response, deadline - time.monotonic())
            if pause and not job.finished:
                await asyncio.sleep(pause)
        return job

    async def submit_and_wait(
        self, method: str, path: str, body: Any = None, *, timeout: float = 300.0, **options: Any
    ) -> Job:
        """`submit`, then `wait` for the job."""
        job = await self.submit(method, path, body, **options)
        return await self.wait(job.id, timeout=timeout)

    async def jobs(
        self,
        *,
        state: str | Sequence[str] | None = None,
        tenant: str | Sequence[str] | None = None,
        tags: Mapping[str, str] | None = None,
        modified_since: datetime | None = None,
        page_size: int = r.PAGE_SIZE,
    ) -> AsyncIterator[Job]:
        """Every job that matches, newest first, page by page."""
        pages = r.Pages(page_size, set())
        page = 1
        while not pages.done:
            params = r.list_params(
                state=state,
                tenant=tenant,
                tags=tags,
                modified_since=modified_since,
                page_size=page_size,
                page=page,
            )
            response = await self._send(r.Call("GET", "/api/v1/jobs", params=params))
            for job in pages.take(response):  # (no `yield from` in an async generator)
                yield job
            page += 1

    async def result(self, job_id: str) -> JobResult:
        """What the finished job's request returned, as kept."""
        response = await self._send(r.Call("GET", f"/api/v1/jobs/{job_id}/result"))
        return JobResult.from_json(response.json())

    async def replay(self, delivery_id: str) -> dict[str, Any]:
        """Run a stored delivery through correlation again (idempotent)."""
        call = r.Call("POST", f"/api/v1/deliveries/{delivery_id}/replay")
        data: dict[str, Any] = (await self._send(call)).json()
        return data
