"""Every route of the service: the API under `/api/v1` (behind the bearer tokens), the
webhooks, health and metrics, and the dashboard's pages (with a login of their own)."""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from service.web.alerts_api import list_alerts
from service.web.auth import BearerAuth
from service.web.batch_api import create_jobs_batch
from service.web.dashboard import (
    alerts_page,
    favicon,
    inbox_page,
    job_page,
    jobs_page,
    overview,
    replay_from_inbox,
    status_page,
)
from service.web.dashboard_issues import (
    acknowledge_from_dashboard,
    ignore_from_dashboard,
    issue_page,
    issues_page,
    operation_page,
    resend_confirm_page,
    resend_from_dashboard,
    resolve_from_dashboard,
)
from service.web.dashboard_login import log_in, log_out, login_form
from service.web.dashboard_render import STATIC_DIR
from service.web.deliveries_api import get_delivery, list_deliveries, replay
from service.web.health import healthz, metrics, readyz
from service.web.issues_api import (
    acknowledge_issue,
    get_issue,
    ignore_issue,
    list_issues,
    resolve_issue,
)
from service.web.jobs_api import create_job, get_job, get_job_result, list_jobs
from service.web.openapi import get_docs, get_openapi
from service.web.operations_api import (
    cancel_operation,
    get_operation,
    replay_deliveries,
    resend_issue,
)
from service.web.status_api import list_components, list_incidents
from service.web.status_webhooks import receive_status_webhook
from service.web.webhooks import receive_visma_webhook


def site_routes(*, tokens: list[str], read_tokens: list[str]) -> list[BaseRoute]:
    """The route table; `tokens` may read and write the API, `read_tokens` only read it."""
    api = [
        Route("/jobs", create_job, methods=["POST"], name="create_job"),
        Route("/jobs", list_jobs, methods=["GET"], name="list_jobs"),
        Route("/jobs/batch", create_jobs_batch, methods=["POST"], name="create_jobs_batch"),
        Route("/jobs/{job_id}", get_job, methods=["GET"], name="get_job"),
        Route("/jobs/{job_id}/result", get_job_result, methods=["GET"], name="get_job_result"),
        Route("/deliveries", list_deliveries, methods=["GET"], name="list_deliveries"),
        Route("/deliveries/{delivery_id}", get_delivery, methods=["GET"], name="get_delivery"),
        Route(
            "/deliveries/{delivery_id}/replay",
            replay,
            methods=["POST"],
            name="replay_delivery",
        ),
        Route("/status/components", list_components, methods=["GET"], name="list_components"),
        Route("/status/incidents", list_incidents, methods=["GET"], name="list_incidents"),
        Route("/alerts", list_alerts, methods=["GET"], name="list_alerts"),
        Route("/issues", list_issues, methods=["GET"], name="list_issues"),
        Route("/issues/{issue_id}", get_issue, methods=["GET"], name="get_issue"),
        Route("/issues/{issue_id}/acknowledge", acknowledge_issue, methods=["POST"]),
        Route("/issues/{issue_id}/resolve", resolve_issue, methods=["POST"]),
        Route("/issues/{issue_id}/ignore", ignore_issue, methods=["POST"]),
        Route("/issues/{issue_id}/resend", resend_issue, methods=["POST"], name="resend_issue"),
        Route("/deliveries/replay", replay_deliveries, methods=["POST"], name="replay_deliveries"),
        Route("/operations/{operation_id}", get_operation, methods=["GET"], name="get_operation"),
        Route(
            "/operations/{operation_id}/cancel",
            cancel_operation,
            methods=["POST"],
            name="cancel_operation",
        ),
    ]
    routes = [
        Route("/webhooks/visma", receive_visma_webhook, methods=["POST"], name="visma_webhook"),
        Route(
            "/webhooks/status/{token}",
            receive_status_webhook,
            methods=["POST"],
            name="status_webhook",
        ),
        Route("/healthz", healthz, methods=["GET"], name="healthz"),
        Route("/readyz", readyz, methods=["GET"], name="readyz"),
        Route("/metrics", metrics, methods=["GET"], name="metrics"),
        # The dashboard (web/dashboard.py): its own login, so no bearer middleware.
        Route("/", overview, methods=["GET"], name="dashboard"),
        Route("/login", login_form, methods=["GET"], name="login_form"),
        Route("/login", log_in, methods=["POST"], name="log_in"),
        Route("/logout", log_out, methods=["POST"], name="log_out"),
        Route("/jobs", jobs_page, methods=["GET"], name="jobs_page"),
        Route("/jobs/{job_id}", job_page, methods=["GET"], name="job_page"),
        Route("/inbox", inbox_page, methods=["GET"], name="inbox_page"),
        Route(
            "/inbox/{delivery_id}/replay",
            replay_from_inbox,
            methods=["POST"],
            name="replay_from_inbox",
        ),
        Route("/issues", issues_page, methods=["GET"], name="issues_page"),
        Route("/issues/{issue_id}", issue_page, methods=["GET"], name="issue_page"),
        Route(
            "/issues/{issue_id}/acknowledge",
            acknowledge_from_dashboard,
            methods=["POST"],
            name="acknowledge_from_dashboard",
        ),
        Route(
            "/issues/{issue_id}/resolve",
            resolve_from_dashboard,
            methods=["POST"],
            name="resolve_from_dashboard",
        ),
        Route(
            "/issues/{issue_id}/ignore",
            ignore_from_dashboard,
            methods=["POST"],
            name="ignore_from_dashboard",
        ),
        Route(
            "/issues/{issue_id}/resend",
            resend_confirm_page,
            methods=["GET"],
            name="resend_confirm_page",
        ),
        Route(
            "/issues/{issue_id}/resend",
            resend_from_dashboard,
            methods=["POST"],
            name="resend_from_dashboard",
        ),
        Route("/operations/{operation_id}", operation_page, methods=["GET"], name="operation_page"),
        Route("/status", status_page, methods=["GET"], name="status_page"),
        Route("/alerts", alerts_page, methods=["GET"], name="alerts_page"),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
        Route("/favicon.ico", favicon, methods=["GET"], name="favicon"),
        Route("/openapi.json", get_openapi, methods=["GET"], name="openapi"),
        Route("/docs", get_docs, methods=["GET"], name="docs"),
        Mount(
            "/api/v1",
            routes=api,
            middleware=[
                Middleware(
                    BearerAuth,
                    tokens=tokens,
                    read_tokens=read_tokens,
                )
            ],
        ),
    ]
    return routes
