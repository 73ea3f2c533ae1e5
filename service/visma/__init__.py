"""The outside world: the Visma.net API client and webhook signatures. Never touches the DB."""

from service.visma.client import Content, SubmitAccepted, VismaClient
from service.visma.errors import (
    VismaError,
    VismaNotConfigured,
    VismaNotFound,
    VismaRejected,
    VismaUnavailable,
)
from service.visma.signatures import sign, verify

__all__ = [
    "Content",
    "SubmitAccepted",
    "VismaClient",
    "VismaError",
    "VismaNotConfigured",
    "VismaNotFound",
    "VismaRejected",
    "VismaUnavailable",
    "sign",
    "verify",
]
