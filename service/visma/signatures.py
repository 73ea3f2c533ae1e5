"""Webhook Dispatcher signatures and header names.

Visma documents the signature scheme but not the header names; the names below come from public
integrations that verify real deliveries. They live here, and only here, so that a correction is
one edit.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Iterable

SIGNATURE_HEADER = "x-vwd-signature-v1"
NOTIFICATION_ID_HEADER = "x-vwd-notification-id"
EVENT_ID_HEADER = "x-vwd-event-id"
SUBSCRIPTION_ID_HEADER = "x-vwd-subscription-id"
TENANT_ID_HEADER = "x-vwd-tenant-id"
APPLICATION_ID_HEADER = "x-vwd-application-id"
APPLICATION_VERSION_HEADER = "x-vwd-application-version"
GROUP_ID_HEADER = "x-vwd-group-id"
NOTIFICATION_TIMESTAMP_HEADER = "x-vwd-notification-timestamp"
WEBHOOK_TIMESTAMP_HEADER = "x-vwd-webhook-timestamp"

DISPATCHER_HEADER_PREFIX = "x-vwd-"
BACKGROUND_EVENT = "BACKGROUND_API_RESPONSE"


def sign(body: bytes, secret: str) -> str:
    """The `x-vwd-signature-v1` value for `body`: base64 of HMAC-SHA256 keyed with the secret."""
    digest = hmac.digest(secret.encode("utf-8"), body, "sha256")  # one-shot: OpenSSL's own
    return base64.b64encode(digest).decode("ascii")


def verify(body: bytes, signature: str | None, secrets: Iterable[str]) -> bool:
    """True when `signature` matches `body` under any of `secrets` (several allow rotation)."""
    if not signature:
        return False
    given = signature.strip().encode("ascii", errors="replace")
    matched = False
    # Check every secret, not just until the first match, so timing says nothing about which.
    for secret in secrets:
        if secret:
            matched |= hmac.compare_digest(sign(body, secret).encode("ascii"), given)
    return matched
