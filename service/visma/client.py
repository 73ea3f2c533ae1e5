"""The async Visma.net client: token, background submission, state and content.

httpx types never leave this module: every failure becomes one of `service.visma.errors`.
"""

from __future__ import annotations

import asyncio
import functools
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
from service.visma.answers import (
    Content,
    SubmitAccepted,
    SubmitCompleted,
    budget_wait,
    json_object,
    raise_for_status,
    retry_wait,
    retry_wait_unsent,
    submit_answer,
    transport_error,
    unavailable,
)
from service.visma.errors import (
    VismaDeferred,
    VismaNotConfigured,
    VismaNotFound,
    VismaNotSent,
    VismaRejected,
    VismaUnavailable,
    VismaUnsendable,
)
from service.visma.pacing import (
    BudgetSnapshot,
    CompanyBudget,
    Pacer,
    RequestKind,
)

BACKGROUND_HEADER = "erp-api-background"
# Renew a little before Visma says the token expires, so a request never carries a dead one.
TOKEN_RENEW_MARGIN_SECONDS = 60.0
ACCEPT_ENCODING = "br, gzip, deflate"
INLINE_WAIT_SECONDS = 0.5
"""A state read whose company's spacing asks for a wait this short waits in place; a longer
one is handed back (VismaDeferred) to be parked, so no task sits in a long sleep."""
# Tells Visma's support (and the simulator's log) which replica sent a request.
USER_AGENT = f"visma-hooks/{socket.gethostname()}/{os.getpid()}"


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
            answer = submit_answer(response)
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
        raise_for_status(response)
        return json_object(response)

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
        raise_for_status(response)
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
            on=retry_wait if resend else retry_wait_unsent,
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
                    raise unavailable(response)
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
            raise transport_error(exc) from exc
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
            raise unavailable(response)
        if response.status_code != 200:
            raise VismaRejected(
                f"the token endpoint refused the credentials ({response.status_code}): "
                f"{response.text[:300]}",
                status=response.status_code,
                body=response.content,
            )
        data = json_object(response)
        value = data.get("access_token")
        if not isinstance(value, str) or not value:
            raise VismaRejected("the token endpoint answered without an access_token")
        try:
            expires_in = float(data.get("expires_in", 3600))
        except (TypeError, ValueError):
            expires_in = 3600.0
        margin = min(TOKEN_RENEW_MARGIN_SECONDS, expires_in / 2)
        return _Token(value=value, renew_at=time.monotonic() + expires_in - margin)


def _request_kind(url: str) -> str:
    """Which kind of Visma request `url` is, for the metrics."""
    _, _, after = url.partition("/background/")
    if not after:
        return "submit"
    return "content" if after.rstrip("/").endswith("/content") else "state"
