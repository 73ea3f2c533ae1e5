"""A typed client for visma-hooks: submit Visma.net background jobs, wait for them, page
through them, and verify their callbacks.

    from visma_hooks_client import Client

    with Client("http://127.0.0.1:8000", token) as client:
        job = client.submit_and_wait("POST", "/v1/customer", {"name": "Acme AS"}, retry=True)
        print(job.state, job.created_resource_id)
"""

from visma_hooks_client._async import AsyncClient
from visma_hooks_client._requests import job_json
from visma_hooks_client._sync import Client
from visma_hooks_client.callbacks import ForgedCallback, verify_callback
from visma_hooks_client.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    ServiceUnavailable,
    Unauthorized,
    VismaHooksError,
)
from visma_hooks_client.models import (
    TERMINAL_STATES,
    ApiError,
    BatchResult,
    Event,
    Job,
    JobError,
    JobResult,
)

__all__ = [
    "TERMINAL_STATES",
    "ApiError",
    "AsyncClient",
    "BatchResult",
    "Client",
    "Conflict",
    "Event",
    "Forbidden",
    "ForgedCallback",
    "InvalidInput",
    "Job",
    "JobError",
    "JobResult",
    "NotFound",
    "ServiceUnavailable",
    "Unauthorized",
    "VismaHooksError",
    "job_json",
    "verify_callback",
]
