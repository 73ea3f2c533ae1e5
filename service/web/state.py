"""What the lifespan shares with every request."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TypedDict

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.domain import AlertPolicy
from service.flows import ResolveSettings, SignatureWatch, SubmitSettings
from service.settings import Settings
from service.store import IngestWriter, TableSize
from service.visma import VismaClient
from service.web.throttle import AuthThrottle
from service.web.waiters import Waiters


class State(TypedDict):
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    # For transactions that only read (lists, single views, readiness).
    readers: async_sessionmaker[AsyncSession]
    visma: VismaClient
    ingest: IngestWriter
    alert_policy: AlertPolicy
    submit_settings: SubmitSettings
    resolve_settings: ResolveSettings
    # The tables retention trims, as housekeeping last measured them (and when).
    table_sizes: Callable[[], tuple[Sequence[TableSize], datetime | None]]
    # Failed signature checks on their way to the shared count (webhooks.bad_signatures).
    signature_watch: SignatureWatch
    # Tells the state-read worker that jobs are due now (a batch waits for it to send them).
    wake_resolver: Callable[[], None]
    # Tells the bulk-operation worker that an operation was started here.
    wake_operations: Callable[[], None]
    # Failed authentication counted across workers and replicas (429 past the limit).
    auth_throttle: AuthThrottle
    # The long polls held now in this process (at most MAX_WAITERS).
    waiters: Waiters
