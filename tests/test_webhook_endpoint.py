"""The plain-ASGI `POST /webhooks/visma` endpoint, driven directly (no database, no server).

What it answers must be byte for byte what the `JSONResponse` it replaced answered; these
cover the paths the HTTP tests do not reach: a body in several ASGI messages, repeated headers,
header names a server did not lower-case, and answers with characters JSON escapes.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.responses import JSONResponse

from service.settings import Settings
from service.store import DeliveryRecord, IngestUnavailable
from service.web.webhooks import receive_visma_webhook
from tests.harness import WEBHOOK_SECRET, signed_delivery


class FakeIngest:
    def __init__(self, *, new: bool = True, fail: bool = False, linked: bool = True) -> None:
        self.records: list[DeliveryRecord] = []
        self._new = new
        self._fail = fail
        self._linked = linked

    async def store_linking(self, record: DeliveryRecord) -> tuple[bool, bool]:
        if self._fail:
            raise IngestUnavailable("down")
        self.records.append(record)
        return self._new, self._linked and record.claimed_job_id is not None


async def call(
    raw_headers: list[tuple[bytes, bytes]],
    chunks: list[bytes],
    ingest: FakeIngest,
    **settings: Any,
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    config = Settings(_env_file=None, VISMA_WEBHOOK_SECRETS=WEBHOOK_SECRET, **settings)  # type: ignore[call-arg]
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/webhooks/visma",
        "headers": raw_headers,
        "client": ("10.0.0.1", 5000),
        "state": {"settings": config, "ingest": ingest},
    }
    messages = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await receive_visma_webhook(scope, receive, send)
    start, body = sent
    return start["status"], start["headers"], body["body"]


def raw(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


def as_json_response(content: dict[str, Any]) -> tuple[list[tuple[bytes, bytes]], bytes]:
    response = JSONResponse(content)
    return response.raw_headers, response.body


async def test_a_body_in_several_messages_is_verified_and_stored_whole() -> None:
    body, headers = signed_delivery(job_id="job-1", notification_id="n-1")
    ingest = FakeIngest()
    status, _, answer = await call(raw(headers), [body[:5], b"", body[5:]], ingest)
    assert status == 200
    [record] = ingest.records
    assert record.body == body
    assert json.loads(answer) == {
        "status": "stored",
        "deliveryId": record.id,
        "matchedJob": "job-1",
    }


@pytest.mark.parametrize("job_id", ['j"1\\x', "jöb-é", None])
async def test_the_answer_is_what_json_response_wrote(job_id: str | None) -> None:
    body, headers = signed_delivery(job_id=job_id, notification_id='n"ö')
    ingest = FakeIngest()
    status, sent_headers, answer = await call(raw(headers), [body], ingest)
    [record] = ingest.records
    expected = {"status": "stored", "deliveryId": record.id, "matchedJob": record.claimed_job_id}
    assert (status, (sent_headers, answer)) == (200, as_json_response(expected))

    status, sent_headers, answer = await call(raw(headers), [body], FakeIngest(new=False))
    expected = {"status": "duplicate", "notificationId": 'n"ö'}
    assert (status, (sent_headers, answer)) == (200, as_json_response(expected))


async def test_a_repeated_header_keeps_its_first_value() -> None:
    body, headers = signed_delivery(notification_id="first")
    ingest = FakeIngest()
    repeated = [*raw(headers), (b"x-vwd-notification-id", b"second"), (b"x-extra", b"a")]
    status, _, _ = await call(repeated, [body], ingest)
    assert status == 200
    [record] = ingest.records
    assert record.notification_id == "first"
    assert record.headers["x-vwd-notification-id"] == "first"
    assert list(record.headers)[-1] == "x-extra"


async def test_header_names_a_server_left_in_upper_case_still_name_the_job() -> None:
    body, headers = signed_delivery(notification_id="n-1")
    ingest = FakeIngest()
    upper = [*raw(headers), (b"VH-Job-Id", b" job-7 ")]
    status, _, _ = await call(upper, [body], ingest)
    assert status == 200
    assert ingest.records[0].claimed_job_id == "job-7"


async def test_refusals_and_503_are_the_error_json() -> None:
    body, headers = signed_delivery()
    status, sent_headers, answer = await call(raw(headers), [body], FakeIngest(fail=True))
    assert status == 503
    assert (b"retry-after", b"5") in sent_headers
    assert json.loads(answer)["error"] == "unavailable"

    status, _, answer = await call(raw(headers), [body + b" "], FakeIngest())
    assert (status, json.loads(answer)["error"]) == (401, "unauthorized")

    status, _, answer = await call(raw(headers), [body], FakeIngest(), MAX_BODY_BYTES=10)
    assert (status, json.loads(answer)["error"]) == (413, "too_large")

    status, _, answer = await call(
        raw(headers), [body[:3], body[3:]], FakeIngest(), MAX_BODY_BYTES=len(body) - 1
    )
    assert status == 413  # no content-length: counted while reading

    forwarded = [*raw(headers), (b"x-forwarded-for", b"1.2.3.4, 10.9.9.9")]
    status, _, _ = await call(
        forwarded,
        [body],
        FakeIngest(),
        ALLOWED_SOURCE_IPS="10.9.9.9",
        TRUSTED_PROXIES="10.0.0.1",
    )
    assert status == 200
    status, _, answer = await call(forwarded, [body], FakeIngest(), ALLOWED_SOURCE_IPS="10.9.9.9")
    assert (status, json.loads(answer)["error"]) == (403, "forbidden")
