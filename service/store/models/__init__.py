"""Tables: jobs and their timeline, the delivery inbox, status-page state, alerts and their
outbox. Timestamps are UTC.

One module per area; each imports the base from `models.base` (never from this package), and
this package gathers them, so `Base.metadata` holds every table once it is imported.
"""

from __future__ import annotations

from service.store.models.alerts import Alert, AlertAttempt, AlertDelivery, AlertWindow
from service.store.models.base import NAMING_CONVENTION, Base, UtcDateTime
from service.store.models.bookkeeping import (
    AuthFailureWindow,
    CompanyBudgetRecord,
    DashboardSession,
)
from service.store.models.inbox import Delivery, PurgedNotification
from service.store.models.issues import Issue, Operation
from service.store.models.jobs import (
    DUE_INDEX_WHERE,
    IdempotencyKey,
    Job,
    JobCallback,
    JobEvent,
    JobResult,
    JobStateCount,
)
from service.store.models.status import (
    StatusComponent,
    StatusComponentUpdate,
    StatusIncident,
    StatusIncidentComponent,
    StatusIncidentUpdate,
)

__all__ = [
    "DUE_INDEX_WHERE",
    "NAMING_CONVENTION",
    "Alert",
    "AlertAttempt",
    "AlertDelivery",
    "AlertWindow",
    "AuthFailureWindow",
    "Base",
    "CompanyBudgetRecord",
    "DashboardSession",
    "Delivery",
    "IdempotencyKey",
    "Issue",
    "Job",
    "JobCallback",
    "JobEvent",
    "JobResult",
    "JobStateCount",
    "Operation",
    "PurgedNotification",
    "StatusComponent",
    "StatusComponentUpdate",
    "StatusIncident",
    "StatusIncidentComponent",
    "StatusIncidentUpdate",
    "UtcDateTime",
]
