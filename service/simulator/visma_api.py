"""The simulator's Visma.net API: the token endpoint of Visma Connect, the ERP calls (run at
once, or queued as background jobs) and the background jobs' state and content."""

from __future__ import annotations

import base64
import binascii
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from service.simulator.chaos_http import drop_response
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
    ipp_exception,
    reject_body,
)
from service.simulator.state import RECORD_SCOPE_KEY, RequestRecord, SimulatorState
from service.simulator.tokens import TokenError

API_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
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


def _note_job(request: Request, job_id: str) -> None:
    record = request.scope.get(RECORD_SCOPE_KEY)
    if isinstance(record, RequestRecord):
        record.job_id = job_id


def _message(message: str, status_code: int) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status_code)


class VismaEndpoints:
    """The Visma-facing handlers, bound to one simulator's state."""

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


def visma_routes(simulator: SimulatorState) -> list[BaseRoute]:
    """The token endpoint, then the ERP API under each of its path layouts."""
    endpoints = VismaEndpoints(simulator)
    routes: list[BaseRoute] = [
        Route("/connect/token", endpoints.issue_token, methods=["POST"], name="issue_token"),
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
