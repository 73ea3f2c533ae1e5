"""The only package that talks to the database. Functions take a session and never commit."""

from service.store.deliveries import count_deliveries, list_deliveries
from service.store.engine import (
    DatabaseUrlError,
    async_url,
    create_engine,
    create_sessionmaker,
    is_sqlite,
)
from service.store.ingest import DeliveryRecord, IngestUnavailable, IngestWriter, Stored
from service.store.jobs import (
    add_event,
    add_job,
    claim_due_jobs,
    get_job,
    job_events,
    list_jobs,
    next_due_at,
)
from service.store.models import Base, Delivery, Job, JobEvent

__all__ = [
    "Base",
    "DatabaseUrlError",
    "Delivery",
    "DeliveryRecord",
    "IngestUnavailable",
    "IngestWriter",
    "Job",
    "JobEvent",
    "Stored",
    "add_event",
    "add_job",
    "async_url",
    "claim_due_jobs",
    "count_deliveries",
    "create_engine",
    "create_sessionmaker",
    "get_job",
    "is_sqlite",
    "job_events",
    "list_deliveries",
    "list_jobs",
    "next_due_at",
]
