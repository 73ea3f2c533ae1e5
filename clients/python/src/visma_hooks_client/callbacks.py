"""Verifying a job's callback: the service signs it per Standard Webhooks."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from visma_hooks_client.errors import VismaHooksError


class ForgedCallback(VismaHooksError):
    """A callback whose signature does not verify (forged, altered, stale or replayed)."""

    def __init__(self, detail: str) -> None:
        super().__init__(401, "forged_callback", detail)


def verify_callback(headers: Mapping[str, str], body: bytes | str, secret: str) -> dict[str, Any]:
    """The job's JSON from a callback request, once its signature is verified with the
    service's CALLBACK_SIGNING_SECRET (`whsec_...`); ForgedCallback otherwise."""
    lowered = {name.lower(): value for name, value in headers.items()}
    payload = body.decode() if isinstance(body, bytes) else body
    try:
        Webhook(secret).verify(payload, lowered)
    except WebhookVerificationError as exc:
        raise ForgedCallback(str(exc) or "the signature does not verify") from None
    job: dict[str, Any] = json.loads(payload)
    return job
