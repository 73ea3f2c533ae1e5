"""The OpenAPI route table of `/api/v1/deliveries`: the webhook inbox, one delivery, its replay."""

from __future__ import annotations

from typing import Any

from service.domain import JobDetail
from service.web.openapi_common import (
    PAGING,
    READ_ERRORS,
    WRITE_ERRORS,
    error,
    json_content,
    page,
    query,
    ref,
)
from service.web.schemas import DeliveryDetail, DeliveryView


def delivery_paths() -> dict[str, Any]:
    """The routes of the webhook inbox."""
    job = ref(JobDetail)
    return {
        "/api/v1/deliveries": {
            "get": {
                "operationId": "list_deliveries",
                "summary": "The webhook inbox, newest first",
                "parameters": [
                    query(
                        "notificationId",
                        "the dispatcher's notification id",
                        {"type": "string", "maxLength": 128},
                    ),
                    query(
                        "matched",
                        "linked to a job or not",
                        {"type": "string", "enum": ["true", "false"]},
                    ),
                    query(
                        "kind", "visma or status", {"type": "string", "enum": ["visma", "status"]}
                    ),
                    query(
                        "event",
                        "the deliveries of one event id (x-vwd-event-id, exactly)",
                        {"type": "string", "maxLength": 128},
                    ),
                    *PAGING,
                ],
                "responses": {
                    "200": json_content(page(ref(DeliveryView)), "one page of deliveries"),
                    **READ_ERRORS,
                },
            }
        },
        "/api/v1/deliveries/{delivery_id}": {
            "get": {
                "operationId": "get_delivery",
                "summary": "One stored delivery, with its forwards and their attempts",
                "parameters": [
                    {
                        "name": "delivery_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 200},
                    }
                ],
                "responses": {
                    "200": json_content(ref(DeliveryDetail), "the delivery and its forwards"),
                    "404": error("no such delivery"),
                    **READ_ERRORS,
                },
            }
        },
        "/api/v1/deliveries/{delivery_id}/replay": {
            "post": {
                "operationId": "replay_delivery",
                "summary": "Run a stored delivery through correlation and resolution again",
                "description": "Idempotent: a settled job stays settled; its timeline says so.",
                "parameters": [
                    {
                        "name": "delivery_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 200},
                    }
                ],
                "responses": {
                    "200": json_content(
                        {
                            "type": "object",
                            "required": ["deliveryId", "jobId", "job"],
                            "properties": {
                                "deliveryId": {"type": "string"},
                                "jobId": {"type": ["string", "null"]},
                                "job": {"anyOf": [job, {"type": "null"}]},
                            },
                        },
                        "the delivery's job as it stands after the replay (null: it names none)",
                    ),
                    "404": error("no such delivery"),
                    "409": error("not a Visma delivery (status-page deliveries are not replayed)"),
                    **WRITE_ERRORS,
                },
            }
        },
    }
