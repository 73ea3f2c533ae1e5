"""What the simulated Webhook Dispatcher puts on the wire: header names and the signature.

Written here, apart from the service's own `visma/signatures.py`, on purpose: the simulator is
an independent check of the client, so a wrong header name or signing scheme on either side
fails the tests instead of agreeing with itself. Visma documents the scheme (base64 of
HMAC-SHA256 over the raw body, keyed with the subscription's secret as UTF-8) but not the
header names; these are the ones public integrations that verify real deliveries use.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

SIGNATURE = "x-vwd-signature-v1"
NOTIFICATION_ID = "x-vwd-notification-id"
EVENT_ID = "x-vwd-event-id"
SUBSCRIPTION_ID = "x-vwd-subscription-id"
TENANT_ID = "x-vwd-tenant-id"
APPLICATION_ID = "x-vwd-application-id"
APPLICATION_VERSION = "x-vwd-application-version"
GROUP_ID = "x-vwd-group-id"
NOTIFICATION_TIMESTAMP = "x-vwd-notification-timestamp"
WEBHOOK_TIMESTAMP = "x-vwd-webhook-timestamp"
DISPATCHER_PREFIX = "x-vwd-"
"""Custom keys may not take a name the dispatcher uses itself."""

BACKGROUND_API_RESPONSE = "BACKGROUND_API_RESPONSE"


def signature(body: bytes, secret: str) -> str:
    """The dispatcher's signature of `body`."""
    mac = hmac.new(secret.encode("utf-8"), body, hashlib.sha256)
    return base64.b64encode(mac.digest()).decode("ascii")
