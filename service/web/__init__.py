"""The HTTP layer: parse, call a flow or a store query, serialise. Nothing else."""

from service.web.alerts_api import list_alerts
from service.web.auth import BearerAuth, may_write, require_write
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
from service.web.errors import domain_error, http_error, server_error, storage_error
from service.web.fast_lane import FastLane, RequestErrorHandler
from service.web.health import healthz, metrics, readyz
from service.web.issues_api import (
    acknowledge_issue,
    get_issue,
    ignore_issue,
    list_issues,
    resolve_issue,
)
from service.web.jobs_api import create_job, get_job, get_job_result, list_jobs
from service.web.openapi import get_docs, get_openapi, openapi_document
from service.web.operations_api import (
    cancel_operation,
    get_operation,
    replay_deliveries,
    resend_issue,
)
from service.web.request_id import RequestId
from service.web.routes import site_routes
from service.web.security_headers import SecurityHeaders
from service.web.sources import in_networks, parse_address
from service.web.state import State
from service.web.status_api import list_components, list_incidents
from service.web.status_webhooks import receive_status_webhook
from service.web.throttle import AuthThrottle
from service.web.traces import TracedWebhook, TraceRequests
from service.web.waiters import Waiters
from service.web.webhooks import receive_visma_webhook

__all__ = [
    "site_routes",
    "cancel_operation",
    "get_operation",
    "replay_deliveries",
    "resend_issue",
    "get_issue",
    "list_issues",
    "acknowledge_issue",
    "ignore_issue",
    "resolve_issue",
    "acknowledge_from_dashboard",
    "ignore_from_dashboard",
    "issue_page",
    "issues_page",
    "operation_page",
    "resend_confirm_page",
    "resend_from_dashboard",
    "resolve_from_dashboard",
    "SecurityHeaders",
    "AuthThrottle",
    "STATIC_DIR",
    "alerts_page",
    "favicon",
    "inbox_page",
    "job_page",
    "jobs_page",
    "log_in",
    "log_out",
    "login_form",
    "overview",
    "replay_from_inbox",
    "status_page",
    "BearerAuth",
    "FastLane",
    "RequestErrorHandler",
    "RequestId",
    "TraceRequests",
    "TracedWebhook",
    "State",
    "Waiters",
    "create_job",
    "create_jobs_batch",
    "domain_error",
    "get_docs",
    "get_job",
    "get_job_result",
    "get_openapi",
    "openapi_document",
    "parse_address",
    "healthz",
    "http_error",
    "in_networks",
    "list_alerts",
    "list_components",
    "get_delivery",
    "list_deliveries",
    "list_incidents",
    "list_jobs",
    "may_write",
    "metrics",
    "readyz",
    "receive_status_webhook",
    "receive_visma_webhook",
    "replay",
    "require_write",
    "server_error",
    "storage_error",
]
