"""In-process harness: the real app, real database, HTTP through httpx's ASGITransport."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.applications import Starlette

from service.app import Resources, create_app, open_resources
from service.visma import signatures
from tests.conftest import API_TOKEN, WEBHOOK_SECRET, make_settings


@dataclass
class Harness:
    client: httpx.AsyncClient
    resources: Resources
    app: Starlette


@contextlib.asynccontextmanager
async def in_process(
    database_url: str,
    *,
    visma_transport: httpx.AsyncBaseTransport | None = None,
    **overrides: Any,
) -> AsyncIterator[Harness]:
    settings = make_settings(database_url, **overrides)
    async with open_resources(
        settings, visma_transport=visma_transport, run_workers=False
    ) as resources:
        app = create_app(resources=resources)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://testserver",
            headers={"Authorization": f"Bearer {API_TOKEN}"},
        ) as client:
            yield Harness(client, resources, app)


def signed_delivery(
    body: bytes | dict[str, Any] | None = None,
    *,
    job_id: str | None = None,
    notification_id: str | None = None,
    secret: str = WEBHOOK_SECRET,
    extra: dict[str, str] | None = None,
) -> tuple[bytes, dict[str, str]]:
    """A dispatcher delivery: body bytes and headers, signed with `secret`."""
    if body is None:
        visma_id = str(uuid.uuid4())
        body = {
            "id": visma_id,
            "stateLocation": f"https://api.example/v1/background/{visma_id}",
        }
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {
        "content-type": "application/json",
        signatures.SIGNATURE_HEADER: signatures.sign(raw, secret),
        signatures.NOTIFICATION_ID_HEADER: notification_id or str(uuid.uuid4()),
        signatures.EVENT_ID_HEADER: signatures.BACKGROUND_EVENT,
        signatures.WEBHOOK_TIMESTAMP_HEADER: "1772439307412",
    }
    if job_id is not None:
        headers["vh-job-id"] = job_id
    headers.update(extra or {})
    return raw, headers
