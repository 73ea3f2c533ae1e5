"""Long polls held to MAX_WAITERS: beyond them `GET /api/v1/jobs/{id}?wait=` answers at once
as the plain GET does, with `Retry-After: 1`, while `/healthz` (from another address) and a
signed webhook keep answering; and the Python client, turned away, asks again after the pause
instead of at once or giving up. Real service and simulator over loopback, on both databases.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from visma_hooks_client import AsyncClient

from service import store
from service.simulator import Outcome
from tests.conftest import API_TOKEN
from tests.harness import signed_delivery
from tests.stack import running_stack
from tests.test_edge_connections import probing
from tests.test_job_wait import _deliver_webhook, _open_job, _until

pytestmark = pytest.mark.e2e

MAX_WAITERS = 5


async def test_get_job_wait_beyond_max_waiters_answers_at_once(clean_database: str) -> None:
    async with running_stack(
        clean_database, POLL_AFTER_SECONDS=300, MAX_WAITERS=MAX_WAITERS
    ) as stack:
        job, etag = await _open_job(stack)
        path = f"/api/v1/jobs/{job['id']}"
        plain = await stack.api.get(path)
        plain_held = await stack.api.get(path, headers={"If-None-Match": etag})
        async with probing(stack.service_url) as probes:  # /healthz from 127.0.0.2 throughout
            held = [
                asyncio.create_task(
                    stack.api.get(path, params={"wait": "30"}, headers={"If-None-Match": etag})
                )
                for _ in range(MAX_WAITERS)
            ]
            await _until(lambda: store.JOB_CHANGES.waiting() >= MAX_WAITERS)
            started = time.monotonic()
            extra = await asyncio.gather(
                *(
                    stack.api.get(path, params={"wait": "30"}, headers={"If-None-Match": etag})
                    for _ in range(3)
                ),
                stack.api.get(path, params={"wait": "30", "until": "finished"}),
            )
            answered_in = time.monotonic() - started
            # With the waiters at their cap, a signed webhook is still stored.
            body, headers = signed_delivery()
            webhook = await stack.api.post("/webhooks/visma", content=body, headers=headers)
            await asyncio.sleep(0.5)
            assert store.JOB_CHANGES.waiting() == MAX_WAITERS
            assert not any(task.done() for task in held)

        await _deliver_webhook(stack, job)
        answers = await asyncio.gather(*held)
        # The slots are given back: the next wait is held again.
        await stack.wait_for_end(job["id"])
        final_etag = (await stack.api.get(path)).headers["etag"]
        again = asyncio.create_task(
            stack.api.get(path, params={"wait": "30"}, headers={"If-None-Match": final_etag})
        )
        await _until(lambda: store.JOB_CHANGES.waiting() == 1)
        assert not again.done()
        again.cancel()

    # The ones beyond the cap: at once, the plain GET's answer, and Retry-After.
    assert answered_in < 1.0
    for response in extra[:3]:
        assert response.status_code == plain_held.status_code == 304
        assert response.headers["etag"] == etag
        assert response.headers["retry-after"] == "1"
    until_finished = extra[3]
    assert until_finished.status_code == 200
    assert until_finished.json() == plain.json()
    assert until_finished.headers["etag"] == plain.headers["etag"]
    assert until_finished.headers["retry-after"] == "1"
    assert "retry-after" not in plain.headers
    probes.check()
    assert webhook.status_code == 200, webhook.text
    assert {a.status_code for a in answers} == {200}
    assert all("retry-after" not in a.headers for a in answers)


class CountingTransport(httpx.AsyncHTTPTransport):
    """Counts the long polls the client sends."""

    def __init__(self) -> None:
        super().__init__()
        self.waits = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if "wait" in request.url.params:
            self.waits += 1
        return await super().handle_async_request(request)


async def test_client_wait_asks_again_after_retry_after_until_the_job_ends(
    clean_database: str,
) -> None:
    # No long poll is held at all: each `?wait` answers at once with Retry-After.
    async with running_stack(clean_database, POLL_AFTER_SECONDS=300, MAX_WAITERS=0) as stack:
        stack.simulator.script(Outcome(webhook="drop"))
        transport = CountingTransport()
        async with AsyncClient(stack.service_url, API_TOKEN, transport=transport) as client:
            job = await client.submit("POST", "/v1/customer", {"name": "Turned Away AS"})
            stack_job = (await stack.api.get(f"/api/v1/jobs/{job.id}")).json()

            async def finish_later() -> None:
                await asyncio.sleep(2.5)
                await _deliver_webhook(stack, stack_job)

            finishing = asyncio.create_task(finish_later())
            started = time.monotonic()
            ended = await client.wait(job.id, timeout=20)
            took = time.monotonic() - started
            await finishing
    # It kept asking (not treating the first answer as final), about once a second (not in a
    # tight loop), and saw the job end soon after it did.
    assert ended.finished and ended.state == "succeeded", ended.state
    assert 2.5 <= took < 6
    assert 2 <= transport.waits <= 6, transport.waits
