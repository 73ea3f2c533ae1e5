"""The REST API on a real database: auth, validation, filters, paging, ETags, b64 ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service import store
from service.domain import encode_id
from service.web.auth import BAD_TOKEN, NO_TOKENS
from tests.harness import Harness, in_process


@pytest.fixture(name="harness")
async def fixture_harness(clean_database: str):
    async with in_process(clean_database) as harness:
        yield harness


T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


async def add_jobs(harness: Harness, count: int, **fields) -> list[str]:
    ids = []
    async with harness.resources.sessions.begin() as session:
        for n in range(count):
            at = T0 + timedelta(minutes=n)
            job_id = fields.get("id", f"job-{n:04d}")
            values = {
                "state": "accepted",
                "method": "POST",
                "path": "/v1/customer",
                "tags": {"batch": str(n % 3)},
                "notify": True,
                "submitted_at": at,
                "last_modified_at": at,
                **{k: v for k, v in fields.items() if k != "id"},
            }
            await store.add_job(session, store.Job(id=job_id, **values))
            ids.append(job_id)
    return ids


@pytest.mark.parametrize("path", ["/api/v1/jobs", "/api/v1/deliveries", "/api/v1/jobs/x"])
async def test_api_refuses_requests_without_a_valid_token(harness: Harness, path: str) -> None:
    missing = await harness.client.get(path, headers={"Authorization": ""})
    wrong = await harness.client.get(path, headers={"Authorization": "Bearer nope"})
    for response in (missing, wrong):
        assert response.status_code == 401
        assert response.json() == {"error": "unauthorized", "detail": BAD_TOKEN}
        assert response.headers["www-authenticate"] == "Bearer"


async def test_api_without_tokens_configured_answers_401(clean_database: str) -> None:
    async with in_process(clean_database, API_TOKENS=[]) as harness:
        response = await harness.client.get("/api/v1/jobs")
        assert response.status_code == 401
        assert response.json()["detail"] == NO_TOKENS


@pytest.mark.parametrize(
    ("body", "detail_part"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"method": "POST"}', "path: Field required"),
        (b'{"method": "POST", "path": "/v1/customer", "colour": "red"}', "colour: unknown field"),
        (b'{"method": "TRACE", "path": "/v1/customer"}', "method must be one of"),
        (b'{"method": "POST", "path": "/v9/customer"}', "path must start with /v1/ or /v2/"),
        (b'{"method": "POST", "path": "/v1/customer", "tags": {"a": "x,y"}}', "tags: tag 'a'"),
        (b'{"method": "POST", "path": "/v1/customer", "tags": ["a"]}', "tags:"),
        (b'{"method": "POST", "path": "/v1/customer", "notify": "yes"}', "notify:"),
        (b'{"method": 1, "path": "/v1/customer"}', "method:"),
        (b'{"method": "PUT", "path": "/v1/customer/1", "ifMatch": "a\\u0000b"}', "ifMatch:"),
    ],
)
async def test_create_job_refuses_bad_input_with_a_clear_400(
    harness: Harness, body: bytes, detail_part: str
) -> None:
    response = await harness.client.post("/api/v1/jobs", content=body)
    assert response.status_code == 400
    data = response.json()
    assert data["error"] == "invalid_input"
    assert detail_part in data["detail"]
    listed = await harness.client.get("/api/v1/jobs")
    assert listed.json()["metadata"]["totalCount"] == 0  # nothing was written


async def test_create_job_without_credentials_is_503_and_names_the_settings(
    clean_database: str,
) -> None:
    async with in_process(clean_database, VISMA_CLIENT_ID="", VISMA_TENANT_ID="") as harness:
        response = await harness.client.post(
            "/api/v1/jobs", json={"method": "POST", "path": "/v1/customer"}
        )
        assert response.status_code == 503
        assert response.json()["error"] == "not_configured"
        assert "VISMA_CLIENT_ID" in response.json()["detail"]
        assert "VISMA_TENANT_ID" in response.json()["detail"]


async def test_list_jobs_pages_and_filters(harness: Harness) -> None:
    await add_jobs(harness, 7)
    first = (await harness.client.get("/api/v1/jobs", params={"pageSize": "3"})).json()
    assert first["metadata"] == {
        "totalCount": 7,
        "maxPageSize": 500,
        "pageNumber": 1,
        "pageSize": 3,
    }
    assert [j["id"] for j in first["items"]] == ["job-0006", "job-0005", "job-0004"]
    last = await harness.client.get("/api/v1/jobs", params={"pageSize": "3", "pageNumber": "3"})
    assert [j["id"] for j in last.json()["items"]] == ["job-0000"]
    capped = (await harness.client.get("/api/v1/jobs", params={"pageSize": "99999"})).json()
    assert capped["metadata"]["pageSize"] == 500
    tagged = (await harness.client.get("/api/v1/jobs", params={"tag.batch": "1"})).json()
    assert {j["id"] for j in tagged["items"]} == {"job-0001", "job-0004"}
    newer = await harness.client.get(
        "/api/v1/jobs",
        params={
            "lastModifiedDateTime": (T0 + timedelta(minutes=5)).isoformat(),
            "lastModifiedDateTimeCondition": ">=",
        },
    )
    assert {j["id"] for j in newer.json()["items"]} == {"job-0005", "job-0006"}
    older = await harness.client.get(
        "/api/v1/jobs",
        params={"createdDateTime": "2026-03-02T08:01:00Z", "createdDateTimeCondition": "<"},
    )
    assert [j["id"] for j in older.json()["items"]] == ["job-0000"]


async def test_list_jobs_by_state_and_visma_id(harness: Harness) -> None:
    await add_jobs(harness, 1, id="a", state="failed", visma_job_id="v-1")
    await add_jobs(harness, 1, id="b", state="succeeded", visma_job_id="v-2")
    failed = (await harness.client.get("/api/v1/jobs", params={"state": "failed"})).json()
    assert [j["id"] for j in failed["items"]] == ["a"]
    both = (await harness.client.get("/api/v1/jobs", params={"state": "failed,succeeded"})).json()
    assert both["metadata"]["totalCount"] == 2
    by_visma = (await harness.client.get("/api/v1/jobs", params={"vismaJobId": "v-2"})).json()
    assert [j["id"] for j in by_visma["items"]] == ["b"]


@pytest.mark.parametrize(
    "params",
    [
        {"pageSize": "0"},
        {"pageSize": "abc"},
        {"pageNumber": "-2"},
        {"state": "finished"},
        {"lastModifiedDateTime": "not-a-date"},
        {"lastModifiedDateTime": "2026-01-01", "lastModifiedDateTimeCondition": "~"},
        {"unknown": "1"},
        {"vismaJobId": "a\x00b"},
        {"tag.orderRef": "\x00"},
    ],
)
async def test_list_jobs_refuses_bad_query_values(harness: Harness, params: dict) -> None:
    response = await harness.client.get("/api/v1/jobs", params=params)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_input"


async def test_list_deliveries_refuses_bad_filters(harness: Harness) -> None:
    for params in ({"matched": "perhaps"}, {"kind": "mail"}, {"pageSize": "x"}):
        response = await harness.client.get("/api/v1/deliveries", params=params)
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_input"


async def test_get_job_etag_and_304(harness: Harness) -> None:
    await add_jobs(harness, 1, id="job-etag")
    first = await harness.client.get("/api/v1/jobs/job-etag")
    assert first.status_code == 200
    etag = first.headers["etag"]
    assert first.json()["events"] == []
    cached = await harness.client.get("/api/v1/jobs/job-etag", headers={"If-None-Match": etag})
    assert cached.status_code == 304
    assert cached.headers["etag"] == etag
    async with harness.resources.sessions.begin() as session:
        await store.add_event(session, "job-etag", kind="note", source="test", at=T0)
    changed = await harness.client.get("/api/v1/jobs/job-etag", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag


async def test_get_job_takes_b64_ids(harness: Harness) -> None:
    odd_id = "order:/?#[]@&*+;"
    await add_jobs(harness, 1, id=odd_id)
    response = await harness.client.get(f"/api/v1/jobs/{encode_id(odd_id)}")
    assert response.status_code == 200
    assert response.json()["id"] == odd_id


@pytest.mark.parametrize("job_id", ["b64(!!)", "b64()", "b64(a+b)", "a%00b", "b64(AA)"])
async def test_get_job_bad_b64_is_400(harness: Harness, job_id: str) -> None:
    response = await harness.client.get(f"/api/v1/jobs/{job_id}")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_input"


async def test_unknown_job_route_and_method_are_json_errors(harness: Harness) -> None:
    missing = await harness.client.get("/api/v1/jobs/nope")
    assert missing.status_code == 404
    assert missing.json() == {"error": "not_found", "detail": "no job with id 'nope'"}
    route = await harness.client.get("/nowhere")
    assert route.status_code == 404 and route.json()["error"] == "not_found"
    method = await harness.client.delete("/api/v1/jobs")
    assert method.status_code == 405 and method.json()["error"] == "method_not_allowed"


async def test_health_and_readiness(harness: Harness) -> None:
    assert (await harness.client.get("/healthz")).json() == {"status": "ok"}
    ready = (await harness.client.get("/readyz")).json()
    assert ready["status"] == "ready"
    assert ready["tables"] == {"measuredAt": None, "items": []}  # housekeeping has not run
    metrics = await harness.client.get("/metrics")
    assert metrics.status_code == 200 and "python_info" in metrics.text
