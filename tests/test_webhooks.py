"""`POST /webhooks/visma` against a real database: verify, store, dedupe, flag."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from service import store
from service.app import create_app
from service.domain.deliveries import PROBLEM_BAD_ID, PROBLEM_NOT_JSON, PROBLEM_UNKNOWN_SHAPE
from service.visma import signatures
from service.web.webhooks import BAD_SIGNATURE, NO_SECRETS
from tests.conftest import make_settings
from tests.factories import insert_job
from tests.harness import Harness, in_process, signed_delivery
from tests.servers import bind_loopback, serving

WEBHOOK = "/webhooks/visma"


@pytest.fixture(name="harness")
async def fixture_harness(clean_database: str):
    async with in_process(clean_database) as harness:
        yield harness


async def inbox(harness: Harness) -> list[dict]:
    response = await harness.client.get("/api/v1/deliveries", params={"pageSize": "500"})
    assert response.status_code == 200
    return response.json()["items"]


async def make_job(harness: Harness, state: str = "accepted") -> str:
    """A job with the Visma job id `visma_id_of(it)`, as after its 202."""
    job_id = str(uuid.uuid4())
    sessions = harness.resources.sessions
    return await insert_job(sessions, id=job_id, state=state, visma_job_id=visma_id_of(job_id))


def visma_id_of(job_id: str) -> str:
    return f"v-{job_id}"


def webhook_for(job_id: str) -> tuple[bytes, dict[str, str]]:
    """A signed delivery for the job's own Visma job, naming the job in its header."""
    visma_id = visma_id_of(job_id)
    body = {"id": visma_id, "stateLocation": f"https://api.example/v1/background/{visma_id}"}
    return signed_delivery(body, job_id=job_id)


async def test_receive_visma_webhook_stores_a_signed_delivery(harness: Harness) -> None:
    body, headers = signed_delivery()
    response = await harness.client.post(WEBHOOK, content=body, headers=headers)
    assert response.status_code == 200
    assert response.json()["status"] == "stored"
    [stored] = await inbox(harness)
    assert stored["notificationId"] == headers[signatures.NOTIFICATION_ID_HEADER]
    assert stored["verified"] is True
    assert stored["matched"] is False  # no vh-job-id: kept as unmatched
    assert stored["body"] == body.decode()


async def test_receive_visma_webhook_keeps_a_body_whose_job_id_no_database_can_store(
    harness: Harness,
) -> None:
    """A lone surrogate ("\\ud800" in JSON) cannot be encoded by either driver: as a job id it
    would fail every write of its delivery (503 for ever). It is kept raw, with its problem."""
    body, headers = signed_delivery(b'{"id": "abc\\ud800", "stateLocation": "/x"}')
    response = await harness.client.post(WEBHOOK, content=body, headers=headers)

    assert response.status_code == 200
    [stored] = await inbox(harness)
    assert stored["problem"] == PROBLEM_BAD_ID and stored["vismaJobId"] is None
    assert stored["body"] == body.decode()


@pytest.mark.parametrize(
    "tamper",
    ["missing", "forged", "unknown-secret", "body-changed"],
)
async def test_receive_visma_webhook_refuses_bad_signatures(harness: Harness, tamper: str) -> None:
    body, headers = signed_delivery()
    if tamper == "missing":
        del headers[signatures.SIGNATURE_HEADER]
    elif tamper == "forged":
        headers[signatures.SIGNATURE_HEADER] = "AAAA" + headers[signatures.SIGNATURE_HEADER][4:]
    elif tamper == "unknown-secret":
        body, headers = signed_delivery(secret="not-configured")
    else:
        body = body.replace(b"}", b', "x": 1}')
    response = await harness.client.post(WEBHOOK, content=body, headers=headers)
    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized", "detail": BAD_SIGNATURE}
    assert await inbox(harness) == []


async def test_receive_visma_webhook_accepts_either_rotated_secret(clean_database: str) -> None:
    async with in_process(clean_database, VISMA_WEBHOOK_SECRETS=["old-secret", "new-secret"]) as h:
        for secret in ("old-secret", "new-secret"):
            body, headers = signed_delivery(secret=secret)
            assert (await h.client.post(WEBHOOK, content=body, headers=headers)).status_code == 200
        assert len(await inbox(h)) == 2


async def test_receive_visma_webhook_without_secrets_refuses_everything(
    clean_database: str,
) -> None:
    async with in_process(clean_database, VISMA_WEBHOOK_SECRETS=[]) as h:
        body, headers = signed_delivery()
        response = await h.client.post(WEBHOOK, content=body, headers=headers)
        assert response.status_code == 401
        assert response.json()["detail"] == NO_SECRETS


async def test_receive_visma_webhook_duplicate_changes_nothing(harness: Harness) -> None:
    job_id = await make_job(harness)
    body, headers = webhook_for(job_id)
    first = await harness.client.post(WEBHOOK, content=body, headers=headers)
    assert first.json()["status"] == "stored"
    job_before = await harness.client.get(f"/api/v1/jobs/{job_id}")
    second = await harness.client.post(WEBHOOK, content=body, headers=headers)
    assert second.status_code == 200
    assert second.json()["status"] == "duplicate"
    job_after = await harness.client.get(f"/api/v1/jobs/{job_id}")
    assert job_after.headers["etag"] == job_before.headers["etag"]
    assert job_after.json() == job_before.json()
    assert len(await inbox(harness)) == 1


async def test_receive_visma_webhook_concurrent_duplicates_store_one(harness: Harness) -> None:
    job_id = await make_job(harness)
    body, headers = webhook_for(job_id)
    others = [webhook_for(job_id) for _ in range(20)]
    responses = await asyncio.gather(
        *(harness.client.post(WEBHOOK, content=body, headers=headers) for _ in range(10)),
        *(harness.client.post(WEBHOOK, content=b, headers=h) for b, h in others),
    )
    assert all(r.status_code == 200 for r in responses)
    statuses = [r.json()["status"] for r in responses[:10]]
    assert statuses.count("stored") == 1 and statuses.count("duplicate") == 9
    assert len(await inbox(harness)) == 21
    job = (await harness.client.get(f"/api/v1/jobs/{job_id}")).json()
    assert [e["kind"] for e in job["events"]].count("webhook") == 21


async def test_receive_visma_webhook_matches_its_job_and_makes_the_read_due(
    harness: Harness,
) -> None:
    job_id = await make_job(harness)
    visma_id = visma_id_of(job_id)
    body, headers = signed_delivery({"ID": visma_id}, extra={"VH-JOB-ID": job_id})
    assert (await harness.client.post(WEBHOOK, content=body, headers=headers)).status_code == 200
    [stored] = await inbox(harness)
    assert stored["matched"] is True and stored["jobId"] == job_id
    assert stored["vismaJobId"] == visma_id
    async with harness.resources.sessions.begin() as session:
        job = await store.get_job(session, job_id)
    assert job is not None
    assert job.visma_job_id == visma_id
    assert job.next_check_at is not None and job.last_webhook_at is not None
    events = (await harness.client.get(f"/api/v1/jobs/{job_id}")).json()["events"]
    assert events[-1]["kind"] == "webhook" and events[-1]["source"] == "webhook"


@pytest.mark.parametrize(
    ("body", "problem"), [(b"<xml/>", PROBLEM_NOT_JSON), (b'{"hello": 1}', PROBLEM_UNKNOWN_SHAPE)]
)
async def test_receive_visma_webhook_keeps_unusable_bodies_flagged(
    harness: Harness, body: bytes, problem: str
) -> None:
    body, headers = signed_delivery(body)
    response = await harness.client.post(WEBHOOK, content=body, headers=headers)
    assert response.status_code == 200  # acknowledged, so the dispatcher stops retrying
    [stored] = await inbox(harness)
    assert stored["problem"] == problem
    assert stored["body"] == body.decode()


async def test_receive_visma_webhook_refuses_a_body_over_the_limit(clean_database: str) -> None:
    async with in_process(clean_database, MAX_BODY_BYTES=64) as h:
        body, headers = signed_delivery({"id": "x" * 100})
        response = await h.client.post(WEBHOOK, content=body, headers=headers)
        assert response.status_code == 413
        assert response.json()["error"] == "too_large"
        assert await inbox(h) == []


async def test_receive_visma_webhook_source_allow_list(clean_database: str) -> None:
    async with in_process(clean_database, ALLOWED_SOURCE_IPS=["18.202.121.26"]) as h:
        body, headers = signed_delivery()
        response = await h.client.post(WEBHOOK, content=body, headers=headers)
        assert response.status_code == 403
    async with in_process(
        clean_database, ALLOWED_SOURCE_IPS=["18.202.121.26"], TRUSTED_PROXIES=["127.0.0.1"]
    ) as h:
        body, headers = signed_delivery(extra={"x-forwarded-for": "18.202.121.26"})
        response = await h.client.post(WEBHOOK, content=body, headers=headers)
        assert response.status_code == 200


async def test_receive_visma_webhook_answers_503_when_it_cannot_store(harness: Harness) -> None:
    await harness.resources.engine.dispose()
    await harness.resources.ingest.close()  # the writer is gone: nothing can be stored
    body, headers = signed_delivery()
    response = await harness.client.post(WEBHOOK, content=body, headers=headers)
    assert response.status_code == 503
    assert response.json()["error"] == "unavailable"


async def test_receive_visma_webhook_names_the_job_only_when_it_linked_to_it(
    clean_database: str,
) -> None:
    """Over a real server: the answer's `matchedJob` is the job the delivery was linked to,
    never a claim the link rules refused (an unknown job, or another Visma job's id)."""
    settings = make_settings(clean_database)
    engine = store.create_engine(clean_database)
    try:
        sessions = store.create_sessionmaker(engine)
        open_job = str(uuid.uuid4())
        await insert_job(
            sessions, id=open_job, state="accepted", visma_job_id=visma_id_of(open_job)
        )
        finished = str(uuid.uuid4())
        await insert_job(
            sessions, id=finished, state="succeeded", visma_job_id=visma_id_of(finished)
        )
        other = str(uuid.uuid4())
        await insert_job(sessions, id=other, state="accepted", visma_job_id=visma_id_of(other))
    finally:
        await engine.dispose()
    wrong_visma = {"id": "v-someone-else", "stateLocation": "https://api.example/v1/background/x"}
    cases = [
        (webhook_for(open_job), open_job),
        (webhook_for(finished), finished),  # a finished job's webhook is still linked to it
        (signed_delivery(wrong_visma, job_id=other), None),
        (signed_delivery(job_id=str(uuid.uuid4())), None),  # no such job
        (signed_delivery(), None),  # names none
    ]
    async with serving(create_app(settings), bind_loopback(), settings=settings) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            for (body, headers), expected in cases:
                answer = await client.post(WEBHOOK, content=body, headers=headers)
                assert answer.status_code == 200, answer.text
                assert answer.json()["status"] == "stored"
                assert answer.json()["matchedJob"] == expected, headers.get("vh-job-id")
