"""`POST /webhooks/status/{token}`: deliveries of the Visma Cloud Services status page.

The page signs nothing: the secret token in the URL is the only check, so a wrong (or unset)
token answers 404, as if the route did not exist, and stores nothing. STATUS_ALLOWED_SOURCE_IPS
can restrict the senders too (403 from elsewhere, checked first). The answer is a `2xx` only
once the delivery, the state it changes and its alerts are committed; it never redirects (the
page counts a `3xx` as a failure).
"""

from __future__ import annotations

import hmac
from datetime import timedelta

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.flows import record_status_delivery, utcnow
from service.web.errors import error_response
from service.web.sources import client_address, in_networks
from service.web.state import State
from service.web.webhooks import BodyTooLarge, read_body

NOT_FOUND = "no such webhook"
SOURCE_NOT_ALLOWED = "this source address is not in STATUS_ALLOWED_SOURCE_IPS"


async def receive_status_webhook(request: Request[State]) -> Response:
    settings = request.state["settings"]
    allowed = settings.STATUS_ALLOWED_SOURCE_IPS
    if allowed:
        peer = request.client.host if request.client else None
        sender = client_address(
            peer, request.headers.get("x-forwarded-for"), settings.TRUSTED_PROXIES
        )
        if not in_networks(sender, allowed):
            return error_response(403, "forbidden", SOURCE_NOT_ALLOWED)
    token = settings.STATUS_WEBHOOK_TOKEN.get_secret_value()
    given = request.path_params["token"]
    if not token or not hmac.compare_digest(token.encode(), given.encode()):
        return error_response(404, "not_found", NOT_FOUND)
    try:
        body = await read_body(request, settings.MAX_BODY_BYTES)
    except BodyTooLarge:
        return error_response(
            413, "too_large", f"body is larger than MAX_BODY_BYTES={settings.MAX_BODY_BYTES}"
        )
    async with request.state["sessions"].begin() as session:
        receipt = await record_status_delivery(
            session,
            headers=dict(request.headers),
            body=body,
            received_at=utcnow(),
            policy=request.state["alert_policy"],
            clock_skew=timedelta(seconds=settings.STATUS_CLOCK_SKEW_SECONDS),
        )
    return JSONResponse(
        {
            "status": "flagged" if receipt.problem else "stored",
            "deliveryId": receipt.delivery_id,
            "event": receipt.event,
            "changed": receipt.changed,
            "problem": receipt.problem,
        }
    )
