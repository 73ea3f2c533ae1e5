"""Idempotency keys: what a key may be, and when a repeat is "the same request".

The semantics are those of the IETF HTTPAPI draft "The Idempotency-Key HTTP Header Field" (and
of Stripe's API): the first request with a key makes the job; a repeat with the same key and
the same request answers that job and sends nothing; the same key with another request is
refused. A key belongs to one company (tenant), so two companies' keys never collide.
"""

from __future__ import annotations

import hashlib
import json

from service.domain.errors import InvalidInput
from service.domain.submission import JobRequest

MAX_KEY_CHARS = 255
IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEY_RULE = f"must be 1 to {MAX_KEY_CHARS} printable ASCII characters"


def validate_key(raw: str) -> str:
    """The key a client sent; InvalidInput unless it is 1-255 printable ASCII characters.

    The draft writes the header as a structured-field string (`"8e03978e-..."`); clients that
    follow Stripe send the bare key. Both are taken, and mean the same key.
    """
    key = raw
    if len(key) >= 2 and key.startswith('"') and key.endswith('"'):
        key = key[1:-1]
    if not 0 < len(key) <= MAX_KEY_CHARS or any(not 0x20 <= ord(c) < 0x7F for c in key):
        raise InvalidInput(f"{IDEMPOTENCY_HEADER} {KEY_RULE}")
    return key


def fingerprint(request: JobRequest, *, tenant: str | None) -> str:
    """SHA-256 of the request in a canonical form: what a repeat must match to be "the same".

    Every field that changes what is sent, or what the job does once it ends, is in it: method,
    path, body (its JSON with keys sorted, so key order or spacing does not count), tags,
    tenant (the company it resolves to), notify, ifMatch and callbackUrl.
    """
    body = None if request.body is None else json.loads(request.body)
    canonical = {
        "method": request.method,
        "path": request.path,
        "body": body,
        "tags": request.tags,
        "tenant": tenant,
        "notify": request.notify,
        "ifMatch": request.if_match,
        "callbackUrl": request.callback_url,
    }
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()
