"""The OpenAPI route table of `/api/v1/jobs`: submitting, batches, a job and its kept result."""

from __future__ import annotations

from typing import Any

from service.domain import (
    IDEMPOTENCY_HEADER,
    MAX_KEY_CHARS,
    REPLAYED_HEADER,
    BatchCreate,
    JobCreate,
    JobDetail,
    JobResult,
    JobView,
)
from service.web.openapi_common import (
    CONDITION,
    PAGING,
    READ_ERRORS,
    TIME,
    WRITE_ERRORS,
    error,
    json_content,
    page,
    query,
    ref,
)
from service.web.schemas import ErrorBody

_JOB_ID = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "description": "the job's id (or b64(<base64url>) of it)",
    "schema": {"type": "string", "minLength": 1, "maxLength": 200},
}
_IDEMPOTENCY_KEY = {
    "name": IDEMPOTENCY_HEADER,
    "in": "header",
    "required": False,
    "description": (
        "makes a retry safe: the first request with a key makes the job; a repeat of the same "
        "request (method, path, body, tags, tenant, notify, ifMatch, callbackUrl) within "
        "IDEMPOTENCY_KEY_DAYS answers that job (200) and sends nothing to Visma; another request "
        "with the key is refused (422). Keys belong to a company. The draft standard's quoted "
        'form ("key") is the same key.'
    ),
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_CHARS + 2},
}
_JOB_HEADERS = {
    "Location": {"schema": {"type": "string"}, "description": "the job's URL"},
    "ETag": {"schema": {"type": "string"}},
}
_BATCH_RESULT = {
    "type": "object",
    "required": ["index", "status"],
    "properties": {
        "index": {"type": "integer", "description": "the job's place in the request's list"},
        "status": {
            "type": "integer",
            "description": "201 made; 200 made earlier with its idempotencyKey; 4xx refused",
        },
        "job": ref(JobView),
        "error": ref(ErrorBody),
    },
}
_JOB_STATES = ["submitted", "accepted", "succeeded", "failed", "expired", "rejected"]


def job_paths() -> dict[str, Any]:
    """The routes of jobs."""
    job = ref(JobDetail)
    return {
        "/api/v1/jobs": {
            "post": {
                "operationId": "create_job",
                "summary": "Submit a request to run in Visma as a background call",
                "parameters": [_IDEMPOTENCY_KEY],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": ref(JobCreate)}},
                },
                "responses": {
                    "201": {
                        **json_content(job, "the job, as stored once Visma answered"),
                        "headers": _JOB_HEADERS,
                    },
                    "200": {
                        **json_content(
                            job,
                            "a repeat of an earlier request with this Idempotency-Key: "
                            "its job as it stands now; nothing was sent",
                        ),
                        "headers": {
                            **_JOB_HEADERS,
                            REPLAYED_HEADER: {"schema": {"type": "string", "enum": ["true"]}},
                        },
                    },
                    **WRITE_ERRORS,
                    "400": error(
                        "a field is wrong (or the body is not a JSON object), or the "
                        "Idempotency-Key is not 1-255 printable ASCII characters"
                    ),
                    "409": {
                        **error(
                            "idempotency_key_in_use: a request with this key is still being "
                            "written; retry after Retry-After seconds"
                        ),
                        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                    },
                    "413": error("the body is larger than MAX_SUBMIT_BYTES"),
                    "422": error(
                        "idempotency_key_reused: the key made a job from a different request"
                    ),
                    "503": error("Visma credentials are not configured, or the database is down"),
                },
            },
            "get": {
                "operationId": "list_jobs",
                "summary": "List jobs, newest first",
                "description": "Tags filter as `tag.<key>=<value>` (any number of them).",
                "parameters": [
                    query(
                        "state", "comma-separated states", {"type": "string", "enum": _JOB_STATES}
                    ),
                    query(
                        "tenant",
                        "comma-separated companies (tenant ids of VISMA_TENANT_ID)",
                        {"type": "string", "maxLength": 1000},
                    ),
                    query("vismaJobId", "Visma's job id", {"type": "string", "maxLength": 64}),
                    query("lastModifiedDateTime", "compare lastModifiedAt with this", TIME),
                    query("lastModifiedDateTimeCondition", "how (default >=)", CONDITION),
                    query("createdDateTime", "compare submittedAt with this", TIME),
                    query("createdDateTimeCondition", "how (default >=)", CONDITION),
                    *PAGING,
                ],
                "responses": {
                    "200": json_content(page(ref(JobView)), "one page of jobs"),
                    **READ_ERRORS,
                },
            },
        },
        "/api/v1/jobs/batch": {
            "post": {
                "operationId": "create_jobs_batch",
                "summary": "Submit many jobs at once; each is sent as its company's budget allows",
                "description": (
                    "At most MAX_BATCH_JOBS jobs and MAX_BATCH_BYTES. Every good job is stored "
                    "(one transaction) before the answer, which comes at once; the jobs are "
                    "sent afterwards, as each company's rate budget allows. A bad job is "
                    "refused alone; results keep the request's order."
                ),
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": ref(BatchCreate)}},
                },
                "responses": {
                    "200": json_content(
                        {
                            "type": "object",
                            "required": ["results"],
                            "properties": {"results": {"type": "array", "items": _BATCH_RESULT}},
                        },
                        "how each job went, in the request's order",
                    ),
                    **WRITE_ERRORS,
                    "400": error('not {"jobs": [...]}, no jobs, or more than MAX_BATCH_JOBS'),
                    "409": error("idempotency_key_in_use: other requests hold the batch's keys"),
                    "413": error("the body is larger than MAX_BATCH_BYTES"),
                    "503": error("Visma credentials are not configured, or the database is down"),
                },
            }
        },
        "/api/v1/jobs/{job_id}": {
            "get": {
                "operationId": "get_job",
                "summary": "One job with its timeline; optionally wait for it to change",
                "parameters": [
                    _JOB_ID,
                    query(
                        "wait",
                        "with If-None-Match: answer as soon as the job's ETag differs, else 304 "
                        "after this many seconds; while MAX_WAITERS long polls are held, "
                        "answered at once as without wait, with `Retry-After: 1` (ask again)",
                        {"type": "integer", "minimum": 0, "maximum": 60},
                    ),
                    query(
                        "until",
                        "with wait: `finished` answers once the job has ended (not on its first "
                        "change), else the job as it stands (304 if its ETag is the one sent) "
                        "when the wait is over",
                        {"type": "string", "enum": ["finished"]},
                    ),
                    {
                        "name": "If-None-Match",
                        "in": "header",
                        "required": False,
                        "description": "the ETag you hold; 304 while it is still the job's",
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": {
                        **json_content(job, "the job"),
                        "headers": {
                            "ETag": {"schema": {"type": "string"}},
                            "Retry-After": {
                                "description": "a wait turned away: ask again after it",
                                "schema": {"type": "integer"},
                            },
                        },
                    },
                    "304": {"description": "the job's ETag is still the one given"},
                    "404": error("no such job"),
                    **READ_ERRORS,
                },
            }
        },
        "/api/v1/jobs/{job_id}/result": {
            "get": {
                "operationId": "get_job_result",
                "summary": "What the finished request returned, kept after Visma forgets it",
                "parameters": [_JOB_ID],
                "responses": {
                    "200": json_content(ref(JobResult), "the kept result"),
                    "404": error("no such job, or it has no result (yet)"),
                    **READ_ERRORS,
                },
            }
        },
    }
