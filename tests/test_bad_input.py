"""Generated bad input: every route answers with a 4xx JSON error, never a 500."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
