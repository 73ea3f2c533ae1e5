"""Per-job callbacks: the target checked on the addresses its host resolves to (at submission,
and at every send, pinned to the address checked), and the outbox delivery a job's outcome
queues. The sender (`workers.AlertSender`) posts it like an alert: the same claims, retries
and attempts."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy.ext.asyncio import AsyncSession

from service import store
from service.domain import InvalidInput, callback_host, callback_refusal, job_json
from service.flows.alerts import PENDING

CALLBACK = "callback"
"""The outbox channel of per-job callbacks."""
RESOLVE_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class CallbackTarget:
    """Where to connect for a callback: the checked address, and the name it was given as (the
    Host header, and the TLS server name its certificate must match)."""

    url: str
    host_header: str
    server_name: str
    https: bool


async def resolve_addresses(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (none if it does not)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_SECONDS
        )
    except (OSError, TimeoutError, UnicodeError):
        return []
    return sorted({str(info[4][0]) for info in infos})


async def check_callback(url: str, *, allowed_hosts: Collection[str]) -> CallbackTarget:
    """The target to connect to for `url`; InvalidInput says why it may not be called."""
    parts = urlsplit(url)
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    host = callback_host(url)
    addresses = await resolve_addresses(host, port)
    refusal = callback_refusal(url, addresses, allowed_hosts=allowed_hosts)
    if refusal is not None:
        raise InvalidInput(refusal)
    address = addresses[0]
    literal = f"[{address}]" if ":" in address else address
    netloc = literal if parts.port is None else f"{literal}:{parts.port}"
    return CallbackTarget(
        url=urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, "")),
        host_header=parts.netloc,
        server_name=host,
        https=https,
    )


async def queue_callback(
    session: AsyncSession, job: store.Job, *, at: datetime
) -> dict[str, Any] | None:
    """Queue the job's JSON for its callback URL, if it has one (in the outcome's
    transaction, so a recorded outcome always has its callback queued)."""
    url = (await store.callback_urls(session, [job.id])).get(job.id)
    if url is None:
        return None
    body = job_json(job, await store.job_events(session, job.id), callback_url=url)
    session.add(
        store.AlertDelivery(
            job_id=job.id,
            channel=CALLBACK,
            target=url,
            state=PENDING,
            attempts=0,
            next_attempt_at=at,
            body=body,
        )
    )
    return body
