"""The imperative shell shared by the web handlers, the CLI and the workers.

Each flow opens its own short transactions: load through `store/`, decide through `domain/`,
write through `store/`. Visma is called with no transaction open.
"""

from service.flows.resolve import ResolveSettings, read_and_apply, resolve_due_jobs
from service.flows.submit import JobRequest, resend_job, submit_job

__all__ = [
    "JobRequest",
    "ResolveSettings",
    "read_and_apply",
    "resend_job",
    "resolve_due_jobs",
    "submit_job",
]
