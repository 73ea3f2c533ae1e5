"""Generated bad input: every route answers with a 4xx JSON error, never a 500."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.domain import encode_id
from service.domain.deliveries import PROBLEM_BAD_ID
from service.domain.status import parse_time
from tests.factories import insert_job
from tests.harness import Harness, in_process, signed_delivery

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
submissions = st.fixed_dictionaries(
    {},
    optional={
        "method": st.one_of(st.sampled_from(["POST", "get", "TRACE", ""]), json_values),
        "path": st.one_of(st.sampled_from(["/v1/customer", "/v3/x", "v1/a", ""]), json_values),
        "body": json_values,
        "tags": st.one_of(
            st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3), json_values
        ),
        "ifMatch": json_values,
        "notify": json_values,
        "extra": json_values,
    },
)
query_keys = st.sampled_from(
    [
        "pageSize",
        "pageNumber",
        "state",
        "vismaJobId",
        "tag.x",
        "lastModifiedDateTime",
        "lastModifiedDateTimeCondition",
        "createdDateTime",
        "createdDateTimeCondition",
        "matched",
        "kind",
        "notificationId",
        "status",
        "component",
        "other",
    ]
)
query_values = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12
)
STATUS_TOKEN = "status-token-any"
# Statuspage-like payloads with any values where the fields are, and some without the fields.
status_payloads = st.one_of(
    st.fixed_dictionaries(
        {
            "component": st.dictionaries(
                st.sampled_from(["id", "name", "status", "updated_at", "group_id"]),
                json_values,
                max_size=5,
            )
        },
        optional={
            "component_update": st.dictionaries(
                st.sampled_from(["id", "component_id", "old_status", "new_status", "created_at"]),
                json_values | st.sampled_from(["operational", "major_outage", "2026-03-02T09:00Z"]),
                max_size=5,
            )
        },
    ),
    st.fixed_dictionaries(
        {
            "incident": st.dictionaries(
                st.sampled_from(
                    [
                        "id",
                        "name",
                        "status",
                        "updated_at",
                        "created_at",
                        "components",
                        "incident_updates",
                        "scheduled_for",
                        "shortlink",
                    ]
                ),
                json_values | st.sampled_from(["resolved", "2026-03-02T09:00Z", "i\x00d"]),
                max_size=9,
            )
        }
    ),
    json_values,
)
SLOW = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(name="harness")
async def fixture_harness(clean_database: str):
    # No Visma credentials: a submission that passes validation stops at a clear 503.
    async with in_process(
        clean_database, VISMA_CLIENT_ID="", STATUS_WEBHOOK_TOKEN=STATUS_TOKEN
    ) as harness:
        yield harness


@SLOW
@given(data=submissions)
async def test_create_job_never_fails_with_a_500(harness: Harness, data: dict) -> None:
    response = await harness.client.post("/api/v1/jobs", content=json.dumps(data))
    assert response.status_code in (400, 503), response.text
    assert set(response.json()) == {"error", "detail"}


@SLOW
@given(raw=st.binary(max_size=200))
async def test_create_job_with_any_bytes_is_a_4xx(harness: Harness, raw: bytes) -> None:
    response = await harness.client.post("/api/v1/jobs", content=raw)
    assert 400 <= response.status_code < 500 or response.status_code == 503
    assert "error" in response.json()


@SLOW
@given(params=st.lists(st.tuples(query_keys, query_values), max_size=5))
async def test_lists_never_fail_with_a_500(harness: Harness, params: list) -> None:
    for path in (
        "/api/v1/jobs",
        "/api/v1/deliveries",
        "/api/v1/status/components",
        "/api/v1/status/incidents",
        "/api/v1/alerts",
    ):
        response = await harness.client.get(path, params=params)
        assert response.status_code in (200, 400), response.text
        if response.status_code == 400:
            assert response.json()["error"] == "invalid_input"


@SLOW
# "." and ".." are path segments httpx resolves away, so they never reach the job route.
@given(
    job_id=st.text(min_size=1, max_size=30).filter(lambda s: "/" not in s and s not in (".", ".."))
)
async def test_get_job_with_any_id_is_400_or_404(harness: Harness, job_id: str) -> None:
    response = await harness.client.get("/api/v1/jobs/" + quote(job_id, safe=""))
    assert response.status_code in (400, 404), response.text
    assert "error" in response.json()


@SLOW
@given(payload=status_payloads)
async def test_status_deliveries_of_any_shape_are_stored(harness: Harness, payload: object) -> None:
    raw = json.dumps(payload).encode()
    response = await harness.client.post(f"/webhooks/status/{STATUS_TOKEN}", content=raw)
    assert response.status_code == 200, response.text
    assert response.json()["status"] in ("stored", "flagged")


@SLOW
@given(body=st.binary(max_size=300), job_id=st.one_of(st.none(), st.text(max_size=40)))
async def test_signed_deliveries_of_any_shape_are_stored(
    harness: Harness, body: bytes, job_id: str | None
) -> None:
    headers_job = None
    if job_id is not None and job_id.isprintable() and job_id.isascii() and job_id.strip():
        headers_job = job_id
    raw, headers = signed_delivery(body, job_id=headers_job)
    response = await harness.client.post("/webhooks/visma", content=raw, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "stored"


# Inputs that once got a 500 or were misread, each checked by name.


@pytest.mark.parametrize(
    "params",
    [
        {"pageSize": "²"},
        {"pageNumber": "9" * 5000},
        {"pageNumber": "99999999999999999999999"},
        {"lastModifiedDateTime": "0001-01-01T00:00:00+01:00"},
    ],
)
async def test_list_jobs_odd_numbers_and_dates_are_400(harness: Harness, params: dict) -> None:
    response = await harness.client.get("/api/v1/jobs", params=params)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_input"


async def test_create_job_refuses_nan_and_deep_nesting(harness: Harness) -> None:
    nan = b'{"method": "POST", "path": "/v1/customer", "body": {"amount": NaN}}'
    deep = (
        b'{"method": "POST", "path": "/v1/customer", "body": '
        + b"[" * 100_000
        + b"]" * 100_000
        + b"}"
    )
    for raw in (nan, deep):
        response = await harness.client.post("/api/v1/jobs", content=raw)
        assert response.status_code == 400
        assert "not valid JSON" in response.json()["detail"]


async def test_deeply_nested_signed_delivery_is_stored_and_flagged(harness: Harness) -> None:
    body, headers = signed_delivery(b"[" * 100_000 + b"]" * 100_000)
    response = await harness.client.post("/webhooks/visma", content=body, headers=headers)
    assert response.status_code == 200
    [stored] = (await harness.client.get("/api/v1/deliveries")).json()["items"]
    assert stored["problem"] == "body is not JSON"


@pytest.mark.parametrize("visma_id", ["x" * 65, "abc\u0000def"])
async def test_delivery_with_an_impossible_visma_id_is_stored_and_flagged(
    harness: Harness, visma_id: str
) -> None:
    body, headers = signed_delivery({"id": visma_id})
    response = await harness.client.post("/webhooks/visma", content=body, headers=headers)
    assert response.status_code == 200
    [stored] = (await harness.client.get("/api/v1/deliveries")).json()["items"]
    assert stored["problem"] == PROBLEM_BAD_ID and stored["vismaJobId"] is None


def test_status_time_out_of_range_is_no_time() -> None:
    assert parse_time("0001-01-01T00:00:00+01:00") is None


async def test_list_jobs_visma_id_filter_takes_b64(harness: Harness) -> None:
    await insert_job(harness.resources.sessions, id="j1", visma_job_id="a/b?c", path="/v1/x")
    response = await harness.client.get("/api/v1/jobs", params={"vismaJobId": encode_id("a/b?c")})
    assert [job["id"] for job in response.json()["items"]] == ["j1"]
