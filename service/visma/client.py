"""The async Visma.net client: token, background submission, state and content.

httpx types never leave this module: every failure becomes one of `service.visma.errors`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import socket
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import stamina
from opentelemetry.trace import Span

from service import metrics, tracing
from service.visma.errors import (
    VismaDeferred,
    VismaError,
    VismaNotConfigured,
    VismaNotFound,
    VismaNotSent,
    VismaRejected,
    VismaUnavailable,
    VismaUnsendable,
)
from service.visma.pacing import (
    MAX_WAIT_SECONDS,
    BudgetSnapshot,
    CompanyBudget,
    Pacer,
    RequestKind,
    not_before,
)

BACKGROUND_HEADER = "erp-api-background"
# Renew a little before Visma says the token expires, so a request never carries a dead one.
TOKEN_RENEW_MARGIN_SECONDS = 60.0
# Retries inside one call (a 5xx, the token endpoint's 429) wait at most this long; a 429 from
# the API is never retried in place: the work is parked for the whole Retry-After instead.
MAX_RETRY_AFTER_SECONDS = 60.0
ACCEPT_ENCODING = "br, gzip, deflate"
DEFAULT_429_PAUSE_SECONDS = 1.0
INLINE_WAIT_SECONDS = 0.5
"""A state read whose company's spacing asks for a wait this short waits in place; a longer
one is handed back (VismaDeferred) to be parked, so no task sits in a long sleep."""
# Tells Visma's support (and the simulator's log) which replica sent a request.
USER_AGENT = f"visma-hooks/{socket.gethostname()}/{os.getpid()}"


@dataclass(frozen=True)
class SubmitAccepted:
    """Visma's 202 to a background call."""

    visma_job_id: str
    state_location: str | None


@dataclass(frozen=True)
class SubmitCompleted:
    """Visma answered a background call at once with a 2xx (it did the work synchronously)."""

    status: int
    location: str | None


@dataclass(frozen=True)
class Content:
    """What a finished background request returned (`/content`)."""

    status: int
    content_type: str | None
    body: bytes


@dataclass
class _Token:
    value: str
    renew_at: float


class VismaClient:
    """One client per process; safe to share between tasks."""

    def __init__(
        self,
        *,
        api_url: str,
        token_url: str,
        client_id: str,
        client_secret: str,
        tenant_ids: Sequence[str],
        scopes: str,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
        retry_attempts: int = 8,
        retry_timeout: float = 60.0,
        max_requests_per_second: float = 10.0,
        budget_reserve_share: float = 0.1,
    ) -> None:
        self._api_url = api_url.rstrip("/")
        self._token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        # The companies this deployment acts for; the first is the default.
        self._tenant_ids = tuple(tenant_ids)
        self._scopes = scopes
        self._retry_attempts = retry_attempts
        self._retry_timeout = retry_timeout
        self._http = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=10.0),
            # Visma compresses answers for a client that accepts it; httpx decodes all three
            # (brotli through the `brotli` package).
            headers={
                "Accept": "application/json",
                "Accept-Encoding": ACCEPT_ENCODING,
                "User-Agent": USER_AGENT,
            },
        )
        self._pacer = Pacer(max_requests_per_second)
        self._budgets = {
            tenant: CompanyBudget(tenant, reserve_share=budget_reserve_share)
            for tenant in self._tenant_ids
        }
        # A token is issued for one company, so each company has its own.
        self._tokens: dict[str, _Token] = {}
        self._token_locks: dict[str, asyncio.Lock] = {}

    @property
    def tenant_ids(self) -> tuple[str, ...]:
        """The companies configured (`VISMA_TENANT_ID`); the first is the default."""
        return self._tenant_ids

    @property
    def default_tenant(self) -> str | None:
        """The company a job that names none belongs to; None when none is configured."""
        return self._tenant_ids[0] if self._tenant_ids else None

    def budget_snapshot(self) -> list[BudgetSnapshot]:
        """Each configured company's rate budget as this process last heard it from Visma."""
        now = time.monotonic()
        return [budget.snapshot(now=now) for budget in self._budgets.values()]

    def restore_budgets(self, recorded: Sequence[BudgetSnapshot]) -> None:
        """Start each configured company's budget from a recorded one (`CompanyBudget.restore`)."""
        now = time.monotonic()
        for snapshot in recorded:
            budget = self._budgets.get(snapshot.tenant)
            if budget is not None:
                budget.restore(snapshot, now=now)

    def _tenant(self, tenant: str | None) -> str:
        chosen = tenant or self.default_tenant
        if chosen is None:
            raise VismaNotConfigured("set VISMA_TENANT_ID to call Visma")
        if chosen not in self._tenant_ids:
            # Never ask for a token for a company this deployment was not given.
            raise VismaNotConfigured(f"tenant {chosen!r} is not in VISMA_TENANT_ID")
        return chosen

    def missing_settings(self) -> list[str]:
        """The settings a call to Visma needs but that are empty."""
        named = {
            "VISMA_CLIENT_ID": self._client_id,
            "VISMA_CLIENT_SECRET": self._client_secret,
            "VISMA_TENANT_ID": ",".join(self._tenant_ids),
            "VISMA_API_URL": self._api_url,
            "VISMA_TOKEN_URL": self._token_url,
        }
        return [name for name, value in named.items() if not value]

    async def aclose(self) -> None:
        await self._http.aclose()

    async def submit(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None,
        background: str,
        if_match: str | None = None,
        tenant: str | None = None,
    ) -> SubmitAccepted | SubmitCompleted:
        """Send a background call. Not retried once it may have reached Visma (not idempotent).

        Raises VismaRejected for a 4xx answer, VismaUnavailable for a 5xx (with its status and
        body: Visma's own refusal or a gateway's), for a request that may or may not have
        arrived (no status: timeout, connection closed) or when Visma kept answering 429,
        VismaNotSent when nothing reached Visma, and VismaError for a 202 we cannot read (it
        was accepted: uncertain).
        """
        headers = {BACKGROUND_HEADER: background}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if if_match:
            headers["If-Match"] = if_match
        with self._span(method, path, tenant) as span:
            response = await self._send(
                method,
                path,
                tenant=tenant,
                kind="submit",
                headers=headers,
                content=body,
                resend=False,
            )
            tracing.set_http_status(span, response.status_code)
            answer = _submit_answer(response)
            if isinstance(answer, SubmitAccepted):
                tracing.set_attributes(span, visma_job_id=answer.visma_job_id)
            return answer

    async def background_state(
        self, visma_job_id: str, *, tenant: str | None = None
    ) -> dict[str, Any]:
        """`GET /v1/background/{id}` with the token of the job's company; VismaNotFound for
        404/410."""
        path = self._background_path(visma_job_id)
        with self._span("GET", path, tenant, visma_job_id=visma_job_id) as span:
            response = await self._send("GET", path, tenant=tenant, kind="read")
            tracing.set_http_status(span, response.status_code)
        if response.status_code in (404, 410):
            raise VismaNotFound(
                f"Visma does not know background job {visma_job_id} ({response.status_code})",
                status=response.status_code,
                body=response.content,
            )
        _raise_for_status(response)
        return _json_object(response)

    async def background_content(
        self, visma_job_id: str, *, tenant: str | None = None
    ) -> Content | None:
        """`GET /v1/background/{id}/content`, or None when there is none (404/410)."""
        path = self._background_path(visma_job_id) + "/content"
        with self._span("GET", path, tenant, visma_job_id=visma_job_id) as span:
            response = await self._send("GET", path, tenant=tenant, kind="read")
            tracing.set_http_status(span, response.status_code)
        if response.status_code in (404, 410):
            return None
        _raise_for_status(response)
        return Content(
            status=response.status_code,
            content_type=response.headers.get("content-type"),
            body=response.content,
        )

    def _span(
        self, method: str, path: str, tenant: str | None, *, visma_job_id: str | None = None
    ) -> AbstractContextManager[Span | None]:
        """A client span for one call (its retries included); the URL is the API's, without
        credentials (tokens travel in a header, never in a span)."""
        return tracing.client_span(
            method,
            self._api_url + path,
            attributes={
                tracing.TENANT: tenant or self.default_tenant,
                tracing.VISMA_JOB_ID: visma_job_id,
            },
        )

    def _background_path(self, visma_job_id: str) -> str:
        return "/v1/background/" + quote(visma_job_id, safe="")

    async def _send(
        self,
        method: str,
        path: str,
        *,
        tenant: str | None,
        kind: RequestKind,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        resend: bool = True,
    ) -> httpx.Response:
        """One API call with token, 401 renewal and retries.

        With `resend=False` only failures that prove the request was not processed are retried:
        a refused connection. Neither retries a 429 or waits long for the company's budget:
        VismaDeferred says how long to wait, and the caller parks the work.
        """
        url = self._api_url + path
        company = self._tenant(tenant)
        renewed = False
        async for attempt in stamina.retry_context(
            on=_retry_wait if resend else _retry_wait_unsent,
            attempts=self._retry_attempts,
            timeout=self._retry_timeout,
        ):
            with attempt:
                try:
                    token = await self._access_token(company)
                except VismaUnavailable as exc:
                    # Without a token nothing was sent to the API itself.
                    raise VismaNotSent(
                        f"no token: {exc.message}", status=exc.status, retry_after=exc.retry_after
                    ) from exc
                request_headers = {**(headers or {}), "Authorization": f"Bearer {token}"}
                send = functools.partial(
                    self._request,
                    method,
                    url,
                    company=company,
                    kind=kind,
                    headers=request_headers,
                    content=content,
                )
                response = await send()
                if response.status_code == 401 and not renewed:
                    # The token may have been revoked early; renew once and try again.
                    renewed = True
                    self._tokens.pop(company, None)
                    token = await self._access_token(company)
                    request_headers["Authorization"] = f"Bearer {token}"
                    response = await send()
                if response.status_code == 429 or (resend and response.status_code >= 500):
                    raise _unavailable(response)
                return response
        raise AssertionError("unreachable: stamina re-raises the last error")

    async def _request(
        self,
        method: str,
        url: str,
        *,
        company: str,
        kind: RequestKind,
        headers: Mapping[str, str],
        content: bytes | None,
    ) -> httpx.Response:
        budget = self._budgets[company]
        await self._admit(budget, kind)
        await self._pacer.wait()
        metric_kind = _request_kind(url)
        try:
            response = await self._http.request(method, url, headers=headers, content=content)
        except httpx.HTTPError as exc:
            metrics.visma_request(metric_kind, None)
            raise _transport_error(exc) from exc
        except httpx.InvalidURL as exc:  # not an HTTPError: it must not escape as one
            raise VismaUnsendable(f"the request cannot be sent: {exc}") from exc
        metrics.visma_request(metric_kind, response.status_code)
        now = time.monotonic()
        budget.observe(response.headers, now=now)
        if response.status_code == 429:
            wait = budget_wait(response.headers)
            budget.pause(wait, now=now)
            raise VismaDeferred(
                f"Visma answered 429 for company {company}: its rate budget is spent; "
                f"retry after {wait:g} s",
                retry_after=wait,
                tenant=company,
                status=429,
                body=response.content,
            )
        return response

    async def _admit(self, budget: CompanyBudget, kind: RequestKind) -> None:
        """Return when the company's budget lets this request go; VismaDeferred when that is
        more than a moment away (nothing was sent)."""
        while True:
            wait = budget.admit(kind, now=time.monotonic())
            if wait <= 0:
                return
            if kind == "read" and wait <= INLINE_WAIT_SECONDS:
                await asyncio.sleep(wait)
                continue
            raise VismaDeferred(
                f"company {budget.tenant}'s rate budget asks to wait {wait:.1f} s",
                retry_after=wait,
                tenant=budget.tenant,
            )

    async def _access_token(self, tenant: str) -> str:
        token = self._tokens.get(tenant)
        if token is not None and time.monotonic() < token.renew_at:
            return token.value
        lock = self._token_locks.setdefault(tenant, asyncio.Lock())
        async with lock:
            token = self._tokens.get(tenant)
            if token is not None and time.monotonic() < token.renew_at:
                return token.value
            token = self._tokens[tenant] = await self._fetch_token(tenant)
            return token.value

    async def _fetch_token(self, tenant: str) -> _Token:
        missing = self.missing_settings()
        if missing:
            raise VismaNotConfigured(f"set {', '.join(missing)} to call Visma")
        form = {
            "grant_type": "client_credentials",
            "client_id": self._client_id,
            "client_secret": self._client_secret,
            "scope": self._scopes,
            "tenant_id": tenant,
        }
        try:
            response = await self._http.post(self._token_url, data=form)
        except httpx.ConnectError as exc:
            metrics.visma_request("token", None)
            raise VismaNotSent(f"cannot connect to the token endpoint: {exc}") from exc
        except httpx.HTTPError as exc:
            metrics.visma_request("token", None)
            raise VismaUnavailable(f"token endpoint failed: {exc!r}") from exc
        metrics.visma_request("token", response.status_code)
        if response.status_code == 429 or response.status_code >= 500:
            raise _unavailable(response)
        if response.status_code != 200:
            raise VismaRejected(
                f"the token endpoint refused the credentials ({response.status_code}): "
                f"{response.text[:300]}",
                status=response.status_code,
                body=response.content,
            )
        data = _json_object(response)
        value = data.get("access_token")
        if not isinstance(value, str) or not value:
            raise VismaRejected("the token endpoint answered without an access_token")
        try:
            expires_in = float(data.get("expires_in", 3600))
        except (TypeError, ValueError):
            expires_in = 3600.0
        margin = min(TOKEN_RENEW_MARGIN_SECONDS, expires_in / 2)
        return _Token(value=value, renew_at=time.monotonic() + expires_in - margin)


def _retry_wait(exc: Exception) -> bool | float:
    if isinstance(exc, VismaUnsendable | VismaDeferred):
        return False
    if isinstance(exc, VismaUnavailable):
        return exc.retry_after if exc.retry_after is not None else True
    return False


def _retry_wait_unsent(exc: Exception) -> bool | float:
    if isinstance(exc, VismaUnsendable | VismaDeferred):
        return False
    return isinstance(exc, VismaNotSent)


def _unavailable(response: httpx.Response) -> VismaUnavailable:
    return VismaUnavailable(
        f"Visma answered {response.status_code}",
        status=response.status_code,
        body=response.content,
        retry_after=retry_after(response.headers),
    )


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from `Retry-After` or `X-RateLimit-Reset` (both in seconds here)."""
    for name in ("retry-after", "x-ratelimit-reset"):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            return max(0.0, min(float(raw), MAX_RETRY_AFTER_SECONDS))
        except ValueError:
            continue
    return None


def budget_wait(headers: Mapping[str, str]) -> float:
    """Seconds a 429 asks to wait, in full: `Retry-After`, else `X-RateLimit-Reset` (seconds),
    read as "not before" (whole seconds may be rounded down); bounded, as outside input is."""
    for name in ("retry-after", "x-ratelimit-reset"):
        try:
            seconds = float(headers.get(name, ""))
        except ValueError:
            continue
        if seconds == seconds:  # not NaN
            return min(max(not_before(seconds), DEFAULT_429_PAUSE_SECONDS), MAX_WAIT_SECONDS)
    return DEFAULT_429_PAUSE_SECONDS


def _raise_for_status(response: httpx.Response) -> None:
    if response.status_code >= 500 or response.status_code == 429:
        raise _unavailable(response)
    if response.status_code >= 400:
        raise VismaRejected(
            f"Visma answered {response.status_code}",
            status=response.status_code,
            body=response.content,
        )


def _submit_answer(response: httpx.Response) -> SubmitAccepted | SubmitCompleted:
    """What Visma's answer to a background call says (the errors `VismaClient.submit` names)."""
    if 200 <= response.status_code < 300 and response.status_code != 202:
        return SubmitCompleted(response.status_code, response.headers.get("location"))
    if response.status_code >= 500:
        raise _unavailable(response)
    if response.status_code != 202:
        raise VismaRejected(
            f"Visma answered {response.status_code} instead of 202",
            status=response.status_code,
            body=response.content,
        )
    data = _json_object(response)
    fields = {k.lower(): v for k, v in data.items()}
    job_id = fields.get("id")
    if not isinstance(job_id, str) or not job_id:
        raise VismaError("Visma's 202 carried no job id", status=202, body=response.content)
    location = fields.get("statelocation")
    return SubmitAccepted(
        visma_job_id=job_id, state_location=location if isinstance(location, str) else None
    )


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        data = json.loads(response.content)
    except ValueError:
        raise VismaError(
            f"Visma answered {response.status_code} with a body that is not JSON",
            status=response.status_code,
            body=response.content,
        ) from None
    if not isinstance(data, dict):
        raise VismaError(
            "Visma answered with JSON that is not an object",
            status=response.status_code,
            body=response.content,
        )
    return data


def _transport_error(exc: httpx.HTTPError) -> Exception:
    """What a request that got no answer means for the caller."""
    if isinstance(exc, httpx.ConnectError):
        return VismaNotSent(f"cannot connect to Visma: {exc}")
    if isinstance(exc, httpx.TimeoutException):
        return VismaUnavailable(f"Visma did not answer in time: {exc!r}")
    return VismaUnavailable(f"HTTP error talking to Visma: {exc!r}")


def _request_kind(url: str) -> str:
    """Which kind of Visma request `url` is, for the metrics."""
    _, _, after = url.partition("/background/")
    if not after:
        return "submit"
    return "content" if after.rstrip("/").endswith("/content") else "state"
