"""The OpenAPI route table of what the service watches and says: Visma's status page
(`/api/v1/status/...`) and its own alerts (`/api/v1/alerts`)."""

from __future__ import annotations

from typing import Any

from service.domain import (
    Component,
    ComponentDetail,
    Incident,
)
from service.web.openapi_common import (
    PAGING,
    READ_ERRORS,
    json_content,
    page,
    query,
    ref,
)
from service.web.schemas import AlertView


def status_paths() -> dict[str, Any]:
    """The routes of Visma's status page as the service has heard it."""
    return {
        "/api/v1/status/components": {
            "get": {
                "operationId": "list_components",
                "summary": "Status-page components and their current status",
                "parameters": [
                    query("status", "comma-separated statuses", {"type": "string"}),
                    query(
                        "component",
                        "one component's id or name (adds its history)",
                        {"type": "string"},
                    ),
                    *PAGING,
                ],
                "responses": {
                    "200": json_content(
                        page({"anyOf": [ref(ComponentDetail), ref(Component)]}),
                        "one page of components",
                    ),
                    **READ_ERRORS,
                },
            }
        },
        "/api/v1/status/incidents": {
            "get": {
                "operationId": "list_incidents",
                "summary": "Status-page incidents and maintenance, with their updates",
                "parameters": [
                    query("status", "comma-separated statuses", {"type": "string"}),
                    query("component", "affecting this component (id or name)", {"type": "string"}),
                    *PAGING,
                ],
                "responses": {
                    "200": json_content(page(ref(Incident)), "one page of incidents"),
                    **READ_ERRORS,
                },
            }
        },
    }


def alert_paths() -> dict[str, Any]:
    """The routes of alerts."""
    return {
        "/api/v1/alerts": {
            "get": {
                "operationId": "list_alerts",
                "summary": "Alerts raised, and every attempt at delivering each",
                "parameters": [
                    query("kind", "comma-separated alert kinds", {"type": "string"}),
                    *PAGING,
                ],
                "responses": {
                    "200": json_content(page(ref(AlertView)), "one page of alerts"),
                    **READ_ERRORS,
                },
            }
        },
    }
