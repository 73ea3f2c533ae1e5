"""What `Client` and `AsyncClient` share: how each call becomes a request, how an answer
becomes a result, and when to try again. Only the I/O differs between the two."""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from visma_hooks_client.errors import ServiceUnavailable, VismaHooksError, error_for
from visma_hooks_client.models import BatchResult, Job

URL_VARIABLE = "VISMA_HOOKS_URL"
TOKEN_VARIABLE = "VISMA_HOOKS_TOKEN"
MAX_WAIT_SECONDS = 60
"""The longest `?wait=` the service takes: longer waits are several in a row."""
RETRY_STATUSES = frozenset({502, 503, 504})
PAGE_SIZE = 100


@dataclass(frozen=True)
class Call:
    """One request to make: method, path, params, JSON body, headers; and whether it may be
    sent again when the answer is lost (a read, or a write with an idempotency key)."""

    method: str
    path: str
    params: Mapping[str, str] | None = None
    json: Any = None
    headers: Mapping[str, str] | None = None
    retryable: bool = True


def settings(base_url: str | None, token: str | None) -> tuple[str, str]:
    """The base URL and token given, else from VISMA_HOOKS_URL and VISMA_HOOKS_TOKEN."""
    base_url = base_url or os.environ.get(URL_VARIABLE)
    token = token or os.environ.get(TOKEN_VARIABLE)
    if not base_url:
        raise ValueError(f"give base_url or set {URL_VARIABLE}")
    if not token:
        raise ValueError(f"give token or set {TOKEN_VARIABLE}")
    return base_url.rstrip("/"), token


def backoff(attempt: int) -> float:
    """Seconds before retry `attempt` (1-based): 0.2, 0.4, 0.8 ... with jitter, at most 5."""
    ceiling: float = min(5.0, 0.2 * 2 ** (attempt - 1))
    return ceiling * random.uniform(0.5, 1.0)


def should_retry(call: Call, response: httpx.Response | None, attempt: int, tries: int) -> bool:
    """A lost answer or a 502/503/504 is tried again, if the call may be and tries are left."""
    if not call.retryable or attempt >= tries:
        return False
    return response is None or response.status_code in RETRY_STATUSES


def checked(response: httpx.Response) -> httpx.Response:
    """The response, or the exception for its error."""
    if response.status_code < 400:
        return response
    try:
        body = response.json()
    except ValueError:
        body = None
    raise error_for(response.status_code, body)


def submit_call(
    method: str,
    path: str,
    body: Any,
    *,
    tags: Mapping[str, str] | None,
    tenant: str | None,
    notify: bool,
    if_match: str | None,
    callback_url: str | None,
    idempotency_key: str | None,
    retry: bool,
) -> Call:
    """`POST /api/v1/jobs`. With `retry`, a key is made up if none was given: only a request
    with a key is safe to send again (the service answers the first one's job)."""
    if retry and idempotency_key is None:
        idempotency_key = str(uuid.uuid4())
    job = job_json(
        method,
        path,
        body,
        tags=tags,
        tenant=tenant,
        notify=notify,
        if_match=if_match,
        callback_url=callback_url,
    )
    headers = {} if idempotency_key is None else {"Idempotency-Key": idempotency_key}
    return Call("POST", "/api/v1/jobs", json=job, headers=headers, retryable=retry)


def job_json(
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
) -> dict[str, Any]:
    """A job as `POST /api/v1/jobs` (and each item of a batch) takes it."""
    job: dict[str, Any] = {"method": method, "path": path, "notify": notify}
    optional = {
        "body": body,
        "tags": dict(tags) if tags else None,
        "tenant": tenant,
        "ifMatch": if_match,
        "callbackUrl": callback_url,
        "idempotencyKey": idempotency_key,
    }
    job.update({name: value for name, value in optional.items() if value is not None})
    return job


def batch_call(jobs: Sequence[Mapping[str, Any]]) -> Call:
    """`POST /api/v1/jobs/batch`: safe to send again only when every job has its key."""
    keyed = all("idempotencyKey" in job for job in jobs)
    return Call("POST", "/api/v1/jobs/batch", json={"jobs": list(jobs)}, retryable=keyed)


def batch_results(response: httpx.Response) -> list[BatchResult]:
    return [BatchResult.from_json(item) for item in response.json()["results"]]


def job_of(response: httpx.Response) -> Job:
    return Job.from_json(response.json(), etag=response.headers.get("etag"))


def retry_after(response: httpx.Response, left: float) -> float:
    """Seconds the answer's Retry-After asks for (a long poll turned away), at most `left` and
    a minute, with a little jitter so turned-away clients do not come back together; 0 if it
    asks for nothing."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return 0.0
    seconds = float(value) if value.isdigit() else 1.0  # an HTTP date: a second will do
    pause: float = seconds * random.uniform(1.0, 1.25)
    return max(0.0, min(pause, left, MAX_WAIT_SECONDS))


def wait_call(job_id: str, etag: str | None, seconds: float) -> Call:
    """One long poll: answered as soon as the job's ETag differs from `etag`."""
    wait = str(max(1, min(MAX_WAIT_SECONDS, int(seconds))))
    headers = {"If-None-Match": etag} if etag else {}
    return Call("GET", f"/api/v1/jobs/{job_id}", params={"wait": wait}, headers=headers)


def list_params(
    *,
    state: str | Sequence[str] | None,
    tenant: str | Sequence[str] | None,
    tags: Mapping[str, str] | None,
    modified_since: datetime | None,
    page_size: int,
    page: int,
) -> dict[str, str]:
    params = {"pageSize": str(page_size), "pageNumber": str(page)}
    if state:
        params["state"] = state if isinstance(state, str) else ",".join(state)
    if tenant:
        params["tenant"] = tenant if isinstance(tenant, str) else ",".join(tenant)
    for key, value in (tags or {}).items():
        params[f"tag.{key}"] = value
    if modified_since is not None:
        params["lastModifiedDateTime"] = modified_since.isoformat()
        params["lastModifiedDateTimeCondition"] = ">="
    return params


@dataclass
class Pages:
    """Walking the job list page by page (Visma's rule: read `totalCount` on each page, and
    stop once as many as it says were read or a page comes back short). A job that moves
    between two pages while they are read is given once."""

    page_size: int
    seen: set[str]
    read: int = 0
    done: bool = False

    def take(self, response: httpx.Response) -> list[Job]:
        data = response.json()
        items = data["items"]
        total = data["metadata"]["totalCount"]
        self.read += len(items)
        self.done = len(items) < self.page_size or self.read >= total
        fresh = [Job.from_json(item) for item in items if item["id"] not in self.seen]
        self.seen.update(job.id for job in fresh)
        return fresh


def unavailable(exc: Exception) -> VismaHooksError:
    """A connection that failed on every try, as the error a caller handles."""
    return ServiceUnavailable(503, "unreachable", f"the service could not be reached: {exc}")
