"""Source allow-lists: addresses and CIDR ranges, IPv4 and IPv6, parsed once with the settings,
for the Visma webhook and the status-page webhook, behind trusted proxies or not."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from service.app import create_app
from service.settings import Settings
from service.web.sources import client_address, in_networks, parse_address
from tests.conftest import make_settings
from tests.harness import in_process, signed_delivery
from tests.servers import serving

WEBHOOK = "/webhooks/visma"
STATUS_TOKEN = "status-token-sources"
FIXTURES = Path(__file__).parent / "fixtures"
VISMA_DISPATCHERS = ["18.202.121.26", "34.242.104.102", "54.220.26.45"]


def networks(*entries: str) -> Any:
    return Settings(_env_file=None, ALLOWED_SOURCE_IPS=",".join(entries)).ALLOWED_SOURCE_IPS  # type: ignore[call-arg]


async def post_delivery(client: httpx.AsyncClient, **extra: str) -> httpx.Response:
    body, headers = signed_delivery(extra=extra)
    return await client.post(WEBHOOK, content=body, headers=headers)


async def test_allow_list_takes_cidr_ranges(clean_database: str) -> None:
    # httpx's ASGITransport connects from 127.0.0.1.
    async with in_process(clean_database, ALLOWED_SOURCE_IPS="127.0.0.0/8") as h:
        assert (await post_delivery(h.client)).status_code == 200
    async with in_process(clean_database, ALLOWED_SOURCE_IPS="10.0.0.0/8, ::1") as h:
        refused = await post_delivery(h.client)
        assert refused.status_code == 403
        assert refused.json()["error"] == "forbidden"


async def test_allow_list_and_trusted_proxies_take_ranges_behind_a_proxy(
    clean_database: str,
) -> None:
    async with in_process(
        clean_database,
        ALLOWED_SOURCE_IPS=",".join(VISMA_DISPATCHERS),
        TRUSTED_PROXIES="127.0.0.0/8, 10.1.0.0/16",
    ) as h:
        # The client's own hops on the left are not believed; the trusted ones are skipped.
        through_two = "6.6.6.6, 34.242.104.102, 10.1.2.3"
        assert (
            await post_delivery(h.client, **{"x-forwarded-for": through_two})
        ).status_code == 200
        forged = "34.242.104.102, 6.6.6.6"
        assert (await post_delivery(h.client, **{"x-forwarded-for": forged})).status_code == 403
        assert (await post_delivery(h.client, **{"x-forwarded-for": "nonsense"})).status_code == 403


def test_ipv6_ranges_and_ipv4_mapped_addresses_match() -> None:
    allowed = networks("127.0.0.0/8", "2001:db8::/32", "::ffff:18.202.121.26")
    for address in ("127.0.0.1", "::ffff:127.0.0.1", "2001:db8::7", "18.202.121.26"):
        assert in_networks(parse_address(address), allowed), address
    for address in ("128.0.0.1", "::1", "2001:db9::1", "::ffff:10.0.0.1", "", "x"):
        assert not in_networks(parse_address(address), allowed), address
    proxies = networks("::1")
    assert client_address("::1", "::ffff:18.202.121.26", proxies) == parse_address("18.202.121.26")
    assert client_address("::2", "18.202.121.26", proxies) == parse_address("::2")


async def test_allow_list_matches_an_ipv4_client_on_a_dual_stack_socket(
    clean_database: str,
) -> None:
    # A server listening on [::] sees an IPv4 client as ::ffff:127.0.0.1.
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(("::", 0))
    port = sock.getsockname()[1]
    settings = make_settings(clean_database, ALLOWED_SOURCE_IPS="127.0.0.0/8")
    async with serving(create_app(settings), sock, settings=settings):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            response = await post_delivery(client)
            assert response.status_code == 200, response.text
            assert response.json()["status"] == "stored"


async def test_status_webhook_can_be_restricted_to_sources(clean_database: str) -> None:
    body = (FIXTURES / "status-component-update.json").read_bytes()
    path = f"/webhooks/status/{STATUS_TOKEN}"
    async with in_process(
        clean_database, STATUS_WEBHOOK_TOKEN=STATUS_TOKEN, STATUS_ALLOWED_SOURCE_IPS="10.0.0.0/8"
    ) as h:
        refused = await h.client.post(path, content=body)
        assert refused.status_code == 403
        assert refused.json()["error"] == "forbidden"
        assert "STATUS_ALLOWED_SOURCE_IPS" in refused.json()["detail"]
        components = await h.client.get("/api/v1/status/components")
        assert components.json()["metadata"]["totalCount"] == 0  # nothing was stored
    async with in_process(
        clean_database, STATUS_WEBHOOK_TOKEN=STATUS_TOKEN, STATUS_ALLOWED_SOURCE_IPS="127.0.0.1"
    ) as h:
        assert (await h.client.post(path, content=body)).status_code == 200


@pytest.mark.parametrize(
    "name", ["ALLOWED_SOURCE_IPS", "STATUS_ALLOWED_SOURCE_IPS", "TRUSTED_PROXIES"]
)
@pytest.mark.parametrize("entry", ["10.0.0.300", "example.com", "10.0.0.0/33", "::1/129"])
def test_a_bad_entry_is_a_settings_error_naming_it(name: str, entry: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, **{name: f"10.0.0.0/8, {entry}"})  # type: ignore[arg-type]
    [error] = caught.value.errors()
    assert error["loc"] == (name,)
    assert repr(entry) in error["msg"]
