"""Webhook signatures against a known answer: a delivery signed outside this code base."""

from __future__ import annotations

from pathlib import Path

from service.simulator import wire
from service.visma import signatures

FIXTURE = Path(__file__).parent / "fixtures" / "delivery-background-response.http"
SECRET = "example-secret"  # what the fixture's signature was made with (fixtures/README.md)


def read_delivery() -> tuple[dict[str, str], bytes]:
    """The fixture's headers (lower-case names) and its body, byte for byte."""
    head, _, body = FIXTURE.read_bytes().partition(b"\n\n")
    body = body.removesuffix(b"\n")  # the file's own line end is not part of the body
    lines = head.decode().splitlines()[1:]  # after the request line
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers, body


def test_verify_accepts_the_known_signature() -> None:
    headers, body = read_delivery()
    assert len(body) == int(headers["content-length"])
    assert signatures.verify(body, headers["x-vwd-signature-v1"], [SECRET])


def test_verify_refuses_it_under_another_secret_or_a_changed_body() -> None:
    headers, body = read_delivery()
    given = headers["x-vwd-signature-v1"]
    assert not signatures.verify(body, given, ["example-secret2"])
    assert not signatures.verify(body + b" ", given, [SECRET])
    assert signatures.verify(body, given, ["old-secret", SECRET])  # rotation: any one verifies


def test_the_service_reads_the_header_names_the_known_delivery_uses() -> None:
    headers, _ = read_delivery()
    for name in (
        signatures.SIGNATURE_HEADER,
        signatures.NOTIFICATION_ID_HEADER,
        signatures.EVENT_ID_HEADER,
        signatures.TENANT_ID_HEADER,
        signatures.WEBHOOK_TIMESTAMP_HEADER,
    ):
        assert name in headers


def test_the_simulator_signs_as_the_known_delivery_was_signed() -> None:
    headers, body = read_delivery()
    assert wire.signature(body, SECRET) == headers[wire.SIGNATURE]
