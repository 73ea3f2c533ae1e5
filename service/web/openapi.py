"""`/openapi.json` and `/docs`: the API described from the models that parse and render it.

The schemas come from the same pydantic models the handlers use (`domain.JobCreate` parses a
submission, `domain.views` renders jobs and status-page state, `web.schemas` the inbox, alerts,
pages and errors), so the document cannot drift from what the service does. What the models
cannot say (routes, parameters, status codes) is written once in a route table per resource
(`openapi_jobs.py`, `openapi_deliveries.py`, `openapi_issues.py`, `openapi_status.py`, on the
shared parts in `openapi_common.py`); this module puts them together.
"""

from __future__ import annotations

import functools
import importlib.resources
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from service.domain import (
    BatchCreate,
    Component,
    ComponentDetail,
    Incident,
    Issue,
    JobCreate,
    JobDetail,
    JobResult,
    JobView,
    Operation,
    ResendPreview,
)
from service.web.openapi_common import REF
from service.web.openapi_deliveries import delivery_paths
from service.web.openapi_issues import issue_paths, operation_paths
from service.web.openapi_jobs import job_paths
from service.web.openapi_status import alert_paths, status_paths
from service.web.schemas import AlertView, DeliveryDetail, DeliveryView, ErrorBody, PageMetadata

OPENAPI_VERSION = "3.1.0"

_MODELS: list[tuple[type[BaseModel], JsonSchemaMode]] = [
    (JobCreate, "validation"),
    (BatchCreate, "validation"),
    (JobView, "serialization"),
    (JobDetail, "serialization"),
    (JobResult, "serialization"),
    (Component, "serialization"),
    (ComponentDetail, "serialization"),
    (Incident, "serialization"),
    (DeliveryView, "serialization"),
    (DeliveryDetail, "serialization"),
    (AlertView, "serialization"),
    (Issue, "serialization"),
    (Operation, "serialization"),
    (ResendPreview, "serialization"),
    (PageMetadata, "serialization"),
    (ErrorBody, "serialization"),
]


def _paths() -> dict[str, Any]:
    # In this order: the document lists them in it.
    return {
        **job_paths(),
        **delivery_paths(),
        **status_paths(),
        **issue_paths(),
        **operation_paths(),
        **alert_paths(),
    }


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of every `/api/` route (built once per process)."""
    _, definitions = models_json_schema(_MODELS, ref_template=REF)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "visma-hooks",
            "version": "1",
            "description": (
                "Run Visma.net ERP API requests as background calls and learn how they ended. "
                'Errors are `{"error", "detail"}`.'
            ),
        },
        "security": [{"bearer": []}],
        "paths": _paths(),
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "one of API_TOKENS (or API_READ_TOKENS, to read only)",
                }
            },
        },
    }


async def get_openapi(_request: Request) -> Response:
    return JSONResponse(openapi_document())


# The page ships inside the package (web/docs.html) with its script and style in /static/
# (the site's Content-Security-Policy allows nothing inline) and loads nothing from elsewhere.
_DOCS_HTML = (importlib.resources.files("service.web") / "docs.html").read_text("utf-8")


async def get_docs(_request: Request) -> Response:
    return HTMLResponse(_DOCS_HTML)
