"""The simulator's control plane, `/_sim/...`: what tests and people script (outcomes, events,
status-page updates, budgets) and what they read back (jobs, requests, deliveries, counters).
Not part of Visma: the request log leaves it out."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from service.simulator.dispatcher import Notification
from service.simulator.events import MAX_EVENT_ID_CHARS, entity_event_body
from service.simulator.outcomes import Outcome, dump_json
from service.simulator.state import SimulatorState
from service.simulator.statuspage import StatusDelivery

CONTROL_PREFIX = "/_sim/"


def _control_error(detail: str) -> JSONResponse:
    return JSONResponse({"error": "invalid_request", "detail": detail}, status_code=400)


class ControlEndpoints:
    """The `/_sim/` handlers, bound to one simulator's state."""

    def __init__(self, simulator: SimulatorState) -> None:
        self.sim = simulator

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


def control_routes(simulator: SimulatorState) -> list[BaseRoute]:
    """Every `/_sim/` route but the chaos settings' (`chaos_http.py`)."""
    endpoints = ControlEndpoints(simulator)
    return [
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
