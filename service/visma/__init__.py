"""The outside world: the Visma.net API client and webhook signatures. Never touches the DB."""

from service.visma.answers import Content, SubmitAccepted, SubmitCompleted
from service.visma.client import VismaClient
from service.visma.errors import (
    VismaDeferred,
    VismaError,
    VismaNotConfigured,
    VismaNotFound,
    VismaNotSent,
    VismaRejected,
    VismaUnavailable,
)
from service.visma.pacing import BudgetSnapshot
from service.visma.signatures import (
    EVENT_ID_HEADER,
    NOTIFICATION_ID_HEADER,
    SIGNATURE_HEADER,
    TENANT_ID_HEADER,
    sign,
    verify,
)

__all__ = [
    "EVENT_ID_HEADER",
    "NOTIFICATION_ID_HEADER",
    "SIGNATURE_HEADER",
    "TENANT_ID_HEADER",
    "Content",
    "SubmitAccepted",
    "SubmitCompleted",
    "BudgetSnapshot",
    "VismaClient",
    "VismaDeferred",
    "VismaError",
    "VismaNotConfigured",
    "VismaNotFound",
    "VismaNotSent",
    "VismaRejected",
    "VismaUnavailable",
    "sign",
    "verify",
]
