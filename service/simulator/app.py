"""The simulator's HTTP face: Visma Connect's token endpoint, the ERP API and `/_sim/` controls."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import httpx
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.simulator.chaos_http import ChaosMiddleware, chaos_routes, drop_response
from service.simulator.compression import CompressAnswers
from service.simulator.config import SimulatorConfig
from service.simulator.dispatcher import Notification
from service.simulator.events import MAX_EVENT_ID_CHARS, entity_event_body
from service.simulator.jobs import (
    BACKGROUND_HEADER,
    BackgroundHeaderError,
    BackgroundJob,
    parse_background_header,
)
from service.simulator.outcomes import (
    API_PREFIXES,
    GATEWAY_PAGE,
    JSON_CONTENT_TYPE,
    CallTarget,
    Outcome,
    dump_json,
    ipp_exception,
    reject_body,
)
from service.simulator.state import (
    RECORD_SCOPE_KEY,
    RequestRecord,
    SimulatorState,
    request_kind,
)
from service.simulator.statuspage import StatusDelivery
from service.simulator.tokens import TokenError

API_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
CONTROL_PREFIX = "/_sim/"
UNAUTHORIZED_MESSAGE = "Authorization has been denied for this request."
JOB_NOT_FOUND_MESSAGE = "Background request not found."
NO_CONTENT_MESSAGE = "Background request has no content."
BACKGROUND_METHOD_MESSAGE = "Background requests can only be read."
# The wording of Visma's 403 for another company's job is not documented.
FORBIDDEN_MESSAGE = "The background request was made by another company or user."
# After forget_after_seconds. Which of 404/410 the state endpoint answers for an expired job is
# not documented (the reference gives 410, "removed after 24 hours", for content), hence
# SimulatorConfig.forgotten_state_status; the content endpoint answers 410.
JOB_REMOVED_MESSAGE = "Background request has been removed."


class _RequestLog:
    """ASGI middleware: log each Visma-facing request with the status it got."""

    def __init__(self, app: ASGIApp, *, simulator: SimulatorState) -> None:
        self.app = app
        self.simulator = simulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The control plane is not part of what Visma saw, so it stays out of the log.
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        record = self.simulator.log_request(
            scope["method"],
            scope["path"],
            scope.get("query_string", b"").decode("latin-1"),
            client=headers.get("user-agent"),
            kind=request_kind(scope["path"], background=BACKGROUND_HEADER in headers),
            tenant=self.simulator.tenant_for(headers.get("authorization")),
        )
        scope[RECORD_SCOPE_KEY] = record

        async def send_and_note_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
            await send(message)

        await self.app(scope, receive, send_and_note_status)


def _note_job(request: Request, job_id: str) -> None:
    record = request.scope.get(RECORD_SCOPE_KEY)
    if isinstance(record, RequestRecord):
        record.job_id = job_id


def _message(message: str, status_code: int) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status_code)


def _control_error(detail: str) -> JSONResponse:
    return JSONResponse({"error": "invalid_request", "detail": detail}, status_code=400)


class _Endpoints:
    """Request handlers bound to one simulator's state."""

    def __init__(self, simulator: SimulatorState) -> None:
        self.sim = simulator

    def _public_base(self, request: Request) -> str:
        configured = self.sim.config.public_base_url
        return configured or f"{request.url.scheme}://{request.url.netloc}"

    def _tenant(self, request: Request) -> str | None:
        """The company the request's token acts for; None: no valid token (401)."""
        return self.sim.tenant_for(request.headers.get("authorization"))

    @staticmethod
    def _unauthorized() -> JSONResponse:
        # The exact 401 body Visma sends for a bad token is not documented; IPPException-like.
        body = ipp_exception(UNAUTHORIZED_MESSAGE, "401")
        return JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})

    async def issue_token(self, request: Request) -> Response:
        """`POST /connect/token`: the client-credentials grant of Visma Connect."""
        no_store = {"Cache-Control": "no-store", "Pragma": "no-cache"}
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            if content_type != "application/x-www-form-urlencoded":
                raise TokenError("invalid_request", "send the form as x-www-form-urlencoded")
            form = _parse_form(await request.body())
            issued = self.sim.token_issuer.issue(form, basic=_basic_credentials(request))
        except TokenError as exc:
            error = {"error": exc.error, "error_description": exc.description}
            return JSONResponse(error, status_code=exc.status, headers=no_store)
        body = {
            "access_token": issued.access_token,
            "token_type": "Bearer",
            "expires_in": issued.expires_in,
            "scope": issued.scope,
        }
        return JSONResponse(body, headers=no_store)

    async def call_api(self, request: Request) -> Response:
        """Any ERP v1/v2 call: queued as a background job when `erp-api-background` is set."""
        tenant = self._tenant(request)
        if tenant is None:
            return self._unauthorized()
        target = CallTarget.parse(
            request.method, request.url.path, public_base=self._public_base(request)
        )
        if target.resource.lower() == "background":
            return _message(BACKGROUND_METHOD_MESSAGE, 405)  # the state routes only answer GET
        header = request.headers.get(BACKGROUND_HEADER)
        background = None
        if header is not None:
            try:
                background = parse_background_header(header)
            except BackgroundHeaderError as exc:
                return _message(str(exc), 400)
        outcome = self.sim.outcomes.take(target.path)
        if outcome.kind == "reject":
            return Response(
                reject_body(outcome),
                status_code=outcome.reject_status,
                media_type=JSON_CONTENT_TYPE,
            )
        if background is None:
            return self._answer_now(target, outcome, if_match=request.headers.get("if-match"))
        job = await self.sim.submit(
            target,
            query=request.url.query,
            headers=dict(request.headers),
            body=await request.body(),
            background=background,
            outcome=outcome,
            tenant=tenant,
        )
        _note_job(request, job.id)
        if job.accept_dropped:
            drop_response(request.scope)  # the job runs; its 202 never reaches the caller
        if outcome.gateway_status is not None:  # the job runs; a gateway's page replaces the 202
            page = GATEWAY_PAGE.format(status=outcome.gateway_status)
            return HTMLResponse(page, status_code=outcome.gateway_status)
        return JSONResponse({"id": job.id, "stateLocation": job.state_location}, status_code=202)

    def _answer_now(
        self, target: CallTarget, outcome: Outcome, *, if_match: str | None
    ) -> Response:
        # Synchronous calls matter little to the service; run the same outcome without a job.
        result = self.sim.run(target, outcome, if_match=if_match)
        if result.status == "Failed":
            return _message(result.error_message or "", result.status_code)
        return Response(
            result.content,
            status_code=result.status_code,
            headers=result.headers,
            media_type=result.content_type if result.content is not None else None,
        )

    def _job_for(self, request: Request, *, forgotten_status: int) -> BackgroundJob | Response:
        tenant = self._tenant(request)
        if tenant is None:
            return self._unauthorized()
        job_id = request.path_params["job_id"]
        _note_job(request, job_id)
        job = self.sim.lookup(job_id)
        if job is None:
            return _message(JOB_NOT_FOUND_MESSAGE, 404)
        if job.tenant and job.tenant != tenant:
            # Another company's token: Visma's 403, which never heals.
            return _message(FORBIDDEN_MESSAGE, 403)
        if job.outcome.state_status is not None:
            status = job.outcome.state_status
            return _message(FORBIDDEN_MESSAGE if status == 403 else f"HTTP {status}", status)
        if self.sim.forgotten(job):
            self.sim.chaos.counters.forgotten_reads += 1
            gone = JOB_NOT_FOUND_MESSAGE if forgotten_status == 404 else JOB_REMOVED_MESSAGE
            return _message(gone, forgotten_status)
        return job

    async def read_state(self, request: Request) -> Response:
        """`GET /v1/background/{id}`: the job's BackgroundRequestStateDto."""
        job = self._job_for(request, forgotten_status=self.sim.config.forgotten_state_status)
        if isinstance(job, Response):
            return job
        return JSONResponse(job.to_state())

    async def read_content(self, request: Request) -> Response:
        """`GET /v1/background/{id}/content`: the original response body; 404 without one."""
        job = self._job_for(request, forgotten_status=410)
        if isinstance(job, Response):
            return job
        if job.result is None or job.result.content is None:
            return _message(NO_CONTENT_MESSAGE, 404)
        return Response(job.result.content, media_type=job.result.content_type)

    async def add_outcomes(self, request: Request) -> Response:
        """`POST /_sim/outcomes`: queue one outcome or a list of them."""
        try:
            data = json.loads(await request.body())
            items = data if isinstance(data, list) else [data]
            outcomes = [Outcome.from_json(item) for item in items]
        except ValueError as exc:  # json.JSONDecodeError is a ValueError too
            return _control_error(str(exc))
        self.sim.script(*outcomes)
        return JSONResponse({"queued": len(outcomes), "pending": self._pending()}, 201)

    async def list_outcomes(self, request: Request) -> Response:
        """`GET /_sim/outcomes`: the outcomes still waiting."""
        return JSONResponse({"items": self._pending()})

    async def clear_outcomes(self, request: Request) -> Response:
        """`DELETE /_sim/outcomes`: forget every scripted outcome."""
        self.sim.clear_outcomes()
        return Response(status_code=204)

    def _pending(self) -> list[dict[str, Any]]:
        return [outcome.to_json() for outcome in self.sim.outcomes.pending]

    async def list_jobs(self, request: Request) -> Response:
        """`GET /_sim/jobs`: every job with its request, outcome and state."""
        return JSONResponse({"items": [job.to_json() for job in self.sim.jobs.values()]})

    async def read_job(self, request: Request) -> Response:
        """`GET /_sim/jobs/{id}`: one job."""
        job = self.sim.jobs.get(request.path_params["job_id"])
        if job is None:
            return JSONResponse({"error": "not_found", "detail": "no such job"}, 404)
        return JSONResponse(job.to_json())

    async def list_requests(self, request: Request) -> Response:
        """`GET /_sim/requests[?job_id=...&kind=...&client=...]`: the request log."""
        wanted = {
            key: value
            for key in ("job_id", "kind", "client")
            if (value := request.query_params.get(key)) is not None
        }
        records = [
            r for r in self.sim.requests if all(getattr(r, k) == v for k, v in wanted.items())
        ]
        return JSONResponse({"items": [record.to_json() for record in records]})

    async def list_deliveries(self, request: Request) -> Response:
        """`GET /_sim/deliveries[?job_id=...]`: every webhook delivery attempt."""
        job_id = request.query_params.get("job_id")
        attempts = [a for a in self.sim.deliveries if job_id is None or a.job_id == job_id]
        return JSONResponse({"items": [attempt.to_json() for attempt in attempts]})

    async def send_event(self, request: Request) -> Response:
        """`POST /_sim/events`: `{"eventId", "tenant"?, "entityId"?, "copies"?, "body"?}`; the
        dispatcher sends that entity event, signed like every delivery (the default body is
        illustrative: Visma publishes no schema). Answers the notification id."""
        try:
            data = json.loads(await request.body())
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object")
            event_id = _required(data, "eventId")
            if len(event_id) > MAX_EVENT_ID_CHARS:
                raise ValueError("eventId must be a string of 1 to 128 characters")
            tenant = data.get("tenant") or self.sim.config.tenant_id
            copies = int(data.get("copies", 1))
            if not 1 <= copies <= 5:
                raise ValueError("copies must be 1 to 5")
            body = data.get("body")
            raw = (
                dump_json(body)
                if body is not None
                else entity_event_body(
                    event_id, tenant_id=str(tenant), entity_id=data.get("entityId")
                )
            )
        except (ValueError, TypeError) as exc:
            return _control_error(str(exc))
        if not self.sim.dispatcher.running or self.sim.config.webhook_url is None:
            return _control_error("the dispatcher is not running or has no webhook_url")
        notification = Notification.for_event(event_id, body=raw, tenant_id=str(tenant))
        self.sim.dispatcher.enqueue(notification, copies=copies)
        return JSONResponse(
            {"notificationId": notification.id, "eventId": event_id, "tenant": tenant}, 202
        )

    async def set_status_component(self, request: Request) -> Response:
        """`POST /_sim/status/components`: `{"component", "status", "at"?}`; sends the update."""
        return await self._status(
            request,
            lambda data: self.sim.statuspage.set_component(
                _required(data, "component"), _required(data, "status"), at=_time(data, "at")
            ),
        )

    async def set_status_incident(self, request: Request) -> Response:
        """`POST /_sim/status/incidents`: open or update an incident and send it whole.

        Body: `{"name", "status", "id"?, "body"?, "impact"?, "components"?, "at"?}`.
        """
        return await self._status(
            request,
            lambda data: self.sim.statuspage.set_incident(
                _required(data, "name"),
                _required(data, "status"),
                incident_id=data.get("id"),
                body=str(data.get("body") or ""),
                impact=str(data.get("impact") or "minor"),
                components=_names(data.get("components")),
                at=_time(data, "at"),
            ),
        )

    async def schedule_status_maintenance(self, request: Request) -> Response:
        """`POST /_sim/status/maintenance`: `{"name", "scheduledFor", "scheduledUntil",
        "components", "status"?, "id"?, "body"?}`."""

        def send(data: dict[str, Any]) -> Awaitable[StatusDelivery]:
            starts, ends = _time(data, "scheduledFor"), _time(data, "scheduledUntil")
            if starts is None or ends is None:
                raise ValueError("scheduledFor and scheduledUntil are required")
            return self.sim.statuspage.schedule_maintenance(
                _required(data, "name"),
                scheduled_for=starts,
                scheduled_until=ends,
                components=_names(data.get("components")) or [],
                status=str(data.get("status") or "scheduled"),
                incident_id=data.get("id"),
                body=str(data.get("body") or ""),
            )

        return await self._status(request, send)

    async def resend_status(self, request: Request) -> Response:
        """`POST /_sim/status/resend`: `{"index"}`; sends an earlier payload again, unchanged."""

        def send(data: dict[str, Any]) -> Awaitable[StatusDelivery]:
            index = data.get("index")
            if not isinstance(index, int) or not 0 <= index < len(self.sim.statuspage.sent):
                raise ValueError("index must be the index of a payload already sent")
            return self.sim.statuspage.resend(index)

        return await self._status(request, send)

    async def list_status_sent(self, request: Request) -> Response:
        """`GET /_sim/status/sent`: every status webhook sent, with the listener's answer."""
        return JSONResponse({"items": [d.to_json() for d in self.sim.statuspage.sent]})

    async def _status(
        self,
        request: Request,
        send: Callable[[dict[str, Any]], Awaitable[StatusDelivery]],
    ) -> Response:
        try:
            data = json.loads(await request.body())
            if not isinstance(data, dict):
                raise ValueError("send a JSON object")
            delivery = await send(data)
        except (ValueError, KeyError) as exc:
            return _control_error(str(exc))
        return JSONResponse(delivery.to_json(), status_code=201)

    async def list_budgets(self, request: Request) -> Response:
        """`GET /_sim/budgets`: each company's budget window (limit, used, remaining, reset)."""
        return JSONResponse({"budgets": self.sim.chaos.budgets.to_json()})

    async def spend_budget(self, request: Request) -> Response:
        """`POST /_sim/budgets/{tenant}/spend`: spend what remains of a company's budget in its
        current window, so its requests get 429 until the window resets."""
        tenant = request.path_params["tenant"]
        if tenant not in self.sim.config.tenants:
            return JSONResponse({"error": "not_found", "detail": "no such tenant"}, 404)
        if self.sim.config.rate_budget is None:
            return _control_error("no budget is set: set rate_budget first (PUT /_sim/chaos)")
        return JSONResponse(self.sim.spend_budget(tenant))

    async def read_stats(self, request: Request) -> Response:
        """`GET /_sim/stats`: counters."""
        return JSONResponse(self.sim.stats())


def _required(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} is required (a string)")
    return value


def _names(value: object) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("components must be a list of component names or ids")
    return list(value)


def _time(data: dict[str, Any], name: str) -> datetime | None:
    value = data.get(name)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"{name} must be an ISO 8601 date-time") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _parse_form(body: bytes) -> dict[str, str]:
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError) as exc:
        raise TokenError("invalid_request", "the form is not valid") from exc
    form: dict[str, str] = {}
    for key, value in pairs:
        if key in form:  # RFC 6749 3.2: parameters must not repeat
            raise TokenError("invalid_request", f"{key} is given more than once")
        form[key] = value
    return form


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        client_id, colon, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise TokenError("invalid_client", "malformed Basic credentials", status=401) from exc
    if not colon:
        raise TokenError("invalid_client", "malformed Basic credentials", status=401)
    return client_id, secret


def _routes(endpoints: _Endpoints) -> list[BaseRoute]:
    routes: list[BaseRoute] = [
        Route("/connect/token", endpoints.issue_token, methods=["POST"], name="issue_token"),
        Route("/_sim/outcomes", endpoints.add_outcomes, methods=["POST"], name="add_outcomes"),
        Route("/_sim/outcomes", endpoints.list_outcomes, name="list_outcomes"),
        Route(
            "/_sim/outcomes", endpoints.clear_outcomes, methods=["DELETE"], name="clear_outcomes"
        ),
        Route("/_sim/jobs", endpoints.list_jobs, name="list_jobs"),
        Route("/_sim/jobs/{job_id}", endpoints.read_job, name="read_job"),
        Route("/_sim/requests", endpoints.list_requests, name="list_requests"),
        Route("/_sim/deliveries", endpoints.list_deliveries, name="list_deliveries"),
        Route("/_sim/stats", endpoints.read_stats, name="read_stats"),
        Route("/_sim/events", endpoints.send_event, methods=["POST"], name="send_event"),
        Route("/_sim/budgets", endpoints.list_budgets, name="list_budgets"),
        Route(
            "/_sim/budgets/{tenant}/spend",
            endpoints.spend_budget,
            methods=["POST"],
            name="spend_budget",
        ),
        Route(
            "/_sim/status/components",
            endpoints.set_status_component,
            methods=["POST"],
            name="set_status_component",
        ),
        Route(
            "/_sim/status/incidents",
            endpoints.set_status_incident,
            methods=["POST"],
            name="set_status_incident",
        ),
        Route(
            "/_sim/status/maintenance",
            endpoints.schedule_status_maintenance,
            methods=["POST"],
            name="schedule_status_maintenance",
        ),
        Route(
            "/_sim/status/resend", endpoints.resend_status, methods=["POST"], name="resend_status"
        ),
        Route("/_sim/status/sent", endpoints.list_status_sent, name="list_status_sent"),
    ]
    for prefix in API_PREFIXES:
        # Route names of the older layouts carry their prefix; the current layout's are plain.
        suffix = prefix.replace("/", "_").lower()
        # The state routes come first: `/v1/background/...` is not a background call.
        routes += [
            Route(
                f"{prefix}/v1/background/{{job_id}}",
                endpoints.read_state,
                name=f"read_background_state{suffix}",
            ),
            Route(
                f"{prefix}/v1/background/{{job_id}}/content",
                endpoints.read_content,
                name=f"read_background_content{suffix}",
            ),
        ]
        routes += [
            Route(
                f"{prefix}/{version}/{{path:path}}",
                endpoints.call_api,
                methods=API_METHODS,
                name=f"call_api_{version}{suffix}",
            )
            for version in ("v1", "v2")
        ]
    return routes


def create_simulator_app(
    config: SimulatorConfig, *, webhook_transport: httpx.AsyncBaseTransport | None = None
) -> Starlette:
    """A Starlette app that behaves like Visma.net; its state is `app.state.simulator`.

    The lifespan runs the webhook dispatcher; when the app is driven in-process (ASGITransport
    skips the lifespan) enter `app.router.lifespan_context(app)` to get webhooks.
    `webhook_transport` lets the dispatcher deliver in-process too (e.g. to the service's app).
    """
    simulator = SimulatorState(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        limits = httpx.Limits(max_connections=config.max_concurrent_deliveries)
        async with httpx.AsyncClient(
            timeout=config.webhook_timeout_seconds, limits=limits, transport=webhook_transport
        ) as client:
            await simulator.dispatcher.start(client)
            simulator.statuspage.attach(client)
            try:
                yield
            finally:
                simulator.statuspage.attach(None)
                await simulator.dispatcher.stop()
                simulator.close()

    app = Starlette(
        routes=[*_routes(_Endpoints(simulator)), *chaos_routes(simulator)],
        middleware=[
            Middleware(_RequestLog, simulator=simulator),
            # Inside the log, so refused and dropped requests are logged with what struck them.
            Middleware(ChaosMiddleware, simulator=simulator),
            Middleware(CompressAnswers),
        ],
        lifespan=lifespan,
    )
    app.state.simulator = simulator
    return app
