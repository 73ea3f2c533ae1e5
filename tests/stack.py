"""The end-to-end stack: the service and the Visma simulator as real servers on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import httpx

from service import store
from service.app import create_app
from service.settings import Settings
from service.simulator import SimulatorConfig, SimulatorState, create_simulator_app
from service.store import create_engine, create_sessionmaker
from tests.conftest import API_TOKEN, WEBHOOK_SECRET, make_settings
from tests.servers import bind_loopback, serving, url_of

T = TypeVar("T")
TERMINAL = ("succeeded", "failed", "expired", "rejected")


@dataclass
class Stack:
    api: httpx.AsyncClient
    simulator: SimulatorState
    service_url: str
    simulator_url: str
    settings: Settings

    async def submit(self, **job: Any) -> dict[str, Any]:
        job.setdefault("method", "POST")
        job.setdefault("path", "/v1/customer")
        response = await self.api.post("/api/v1/jobs", json=job)
        assert response.status_code == 201, response.text
        data: dict[str, Any] = response.json()
        assert response.headers["location"] == f"/api/v1/jobs/{data['id']}"
        return data

    async def job(self, job_id: str) -> dict[str, Any]:
        response = await self.api.get(f"/api/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    async def wait_for_end(self, job_id: str, *, timeout: float = 15.0) -> dict[str, Any]:
        """The job once it reaches a final state (fails the test after `timeout`)."""
        deadline = time.monotonic() + timeout
        while True:
            job = await self.job(job_id)
            if job["state"] in TERMINAL:
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still {job['state']}: {job['events']}")
            await asyncio.sleep(0.05)

    async def wait_for_event(
        self, job_id: str, kind: str, *, timeout: float = 15.0
    ) -> dict[str, Any]:
        """The job once its timeline has an event of `kind` (fails the test after `timeout`)."""
        deadline = time.monotonic() + timeout
        while True:
            job = await self.job(job_id)
            if kind in [e["kind"] for e in job["events"]]:
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} has no {kind} event: {job['events']}")
            await asyncio.sleep(0.05)

    async def inbox(self, **params: str) -> list[dict[str, Any]]:
        response = await self.api.get("/api/v1/deliveries", params={"pageSize": "500", **params})
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items


async def stored_row(database_url: str, model: type[T], key: str) -> T:
    """A row as the database holds it, read on a connection of its own."""
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine).begin() as session:
            row = await session.get(model, key)
    finally:
        await engine.dispose()
    assert row is not None, f"no {model.__name__} {key!r}"
    return row


async def next_check_of(database_url: str, job_id: str) -> datetime | None:
    """When the job's state read is due, as stored (None: none is, the job is finished)."""
    return (await stored_row(database_url, store.Job, job_id)).next_check_at


@contextlib.asynccontextmanager
async def running_stack(
    database_url: str,
    *,
    simulator_secret: str = WEBHOOK_SECRET,
    chaos: dict[str, Any] | None = None,
    **overrides: Any,
) -> AsyncIterator[Stack]:
    """The service (settings `overrides`) and the simulator (`chaos`: SimulatorConfig fields)."""
    service_sock, simulator_sock = bind_loopback(), bind_loopback()
    service_url, simulator_url = url_of(service_sock), url_of(simulator_sock)
    status_token = overrides.get("STATUS_WEBHOOK_TOKEN")
    simulator_app = create_simulator_app(
        SimulatorConfig(
            webhook_url=f"{service_url}/webhooks/visma",
            webhook_secret=simulator_secret,
            job_duration_seconds=0.05,
            retry_base_seconds=0.05,
            max_delivery_attempts=4,
            # The simulated status page sends to the service when it has a token to send to.
            status_webhook_url=(
                f"{service_url}/webhooks/status/{status_token}" if status_token else None
            ),
            **(chaos or {}),
        )
    )
    settings = make_settings(
        database_url,
        VISMA_API_URL=simulator_url,
        VISMA_TOKEN_URL=f"{simulator_url}/connect/token",
        **overrides,
    )
    async with (
        serving(simulator_app, simulator_sock),
        serving(create_app(settings), service_sock, settings=settings),
        httpx.AsyncClient(
            base_url=service_url, headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=30
        ) as api,
    ):
        yield Stack(api, simulator_app.state.simulator, service_url, simulator_url, settings)
