"""What the ingest writer and its backends share: the delivery record and its columns, the
write path's statements, and what a batch comes to.

It sits below the writer (`ingest.py`) and its backends (`ingest_postgres.py`,
`ingest_sqlite.py`), so each backend builds the same statements from the same column list
without importing the writer that loads it.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol


class BatchRefused(Exception):
    """The database refused a batch as a whole (a bad row, say); nothing of it was committed."""


class Stored(enum.Enum):
    """What became of one delivery handed to the writer."""

    NEW = "stored"
    DUPLICATE = "duplicate"
    """Its notification id was already committed (or is, by an earlier one of the same batch)."""
    FAILED = "failed"
    """Not committed: the sender must retry."""


@dataclass
class DeliveryRecord:
    """One verified delivery, ready to insert: its fields are the inbox columns it brings, in
    order (`DELIVERY_COLUMNS`). `claimed_job_id` is the job its header names; whether the row
    links to it (`deliveries.job_id`) is the writer's decision."""

    id: str
    kind: str
    notification_id: str | None
    event_id: str | None
    received_at: datetime
    headers: dict[str, str]
    body: bytes
    verified: bool
    claimed_job_id: str | None = None
    visma_job_id: str | None = None
    problem: str | None = None
    tenant_id: str | None = None
    """The company the delivery says it is for (`x-vwd-tenant-id`)."""

    def values(self) -> dict[str, Any]:
        """The inbox columns of this delivery."""
        return {name: getattr(self, name) for name in DELIVERY_COLUMNS}


DELIVERY_COLUMNS = tuple(field.name for field in dataclasses.fields(DeliveryRecord))
"""The inbox columns a delivery brings, in the order every statement and row uses."""


class LinkRules(Protocol):
    """The domain's rules for linking a delivery to the job it names (`domain.LINK_RULES`),
    as plain values; the writer compiles them into its statement."""

    @property
    def open_states(self) -> tuple[str, ...]: ...

    @property
    def adopting_state(self) -> str: ...

    @property
    def visma_id_differs(self) -> str: ...

    @property
    def visma_id_taken(self) -> str: ...

    @property
    def cannot_adopt(self) -> str: ...

    @property
    def tenant_differs(self) -> str: ...


class EventRouter(Protocol):
    """The domain's event routes (`domain.EventRoutes`): which targets a delivery's event goes
    to, and the label it is counted under."""

    def __bool__(self) -> bool: ...

    def targets_for(self, event_id: str | None) -> Sequence[str]: ...

    def label_for(self, event_id: str | None) -> str: ...


FORWARD = "forward"
"""The outbox channel of a forwarded Visma event."""
FORWARD_COLUMNS = (
    "inbox_delivery_id",
    "channel",
    "target",
    "state",
    "attempts",
    "next_attempt_at",
)
"""The outbox columns a forward row sets (the rest are their defaults)."""


def forwards_of(records: Sequence[DeliveryRecord], routes: EventRouter) -> list[tuple[str, str]]:
    """(delivery id, target) for each target each delivery's event is routed to."""
    targets_for = routes.targets_for
    return [(r.id, target) for r in records for target in targets_for(r.event_id)]


def deliveries_insert(rules: LinkRules, *, source: str, returning: bool) -> str:
    """INSERT of the deliveries in `source` (a derived table with `DELIVERY_COLUMNS`), each
    linked to its named job when `rules` allow; with `returning`, it returns what it inserted.

    `j` is the named job, `h` the job that holds the body's Visma job id (unique, so one).
    The first copy of a notification id wins; later ones are no-ops, and so is one whose
    delivery retention has removed while the dispatcher may still send it (`purged_notifications`).
    """
    refusal = f"""CASE
            WHEN d.tenant_id IS NOT NULL AND j.tenant IS NOT NULL AND d.tenant_id <> j.tenant
                THEN {_literal(rules.tenant_differs)}
            WHEN j.id IS NULL OR d.visma_job_id IS NULL OR j.visma_job_id = d.visma_job_id
                THEN NULL
            WHEN j.visma_job_id IS NOT NULL THEN {_literal(rules.visma_id_differs)}
            WHEN h.id IS NOT NULL THEN {_literal(rules.visma_id_taken)}
            WHEN j.state <> {_literal(rules.adopting_state)} THEN {_literal(rules.cannot_adopt)}
        END"""
    picked = [
        "coalesce(refusal, problem)" if name == "problem" else name for name in DELIVERY_COLUMNS
    ]
    # The WHERE also keeps SQLite from taking the upsert's ON for a join's.
    return f"""
INSERT INTO deliveries ({", ".join(DELIVERY_COLUMNS)}, job_id)
SELECT {", ".join(picked)}, CASE WHEN refusal IS NULL THEN named_job END
FROM (
    SELECT d.*, j.id AS named_job, {refusal} AS refusal
    FROM {source} AS d
    LEFT JOIN jobs AS j ON j.id = d.claimed_job_id
    LEFT JOIN jobs AS h ON h.visma_job_id = d.visma_job_id
) AS linked
WHERE NOT EXISTS (
    SELECT 1 FROM purged_notifications AS p WHERE p.notification_id = linked.notification_id
)
ORDER BY notification_id
ON CONFLICT (notification_id) DO NOTHING
{"RETURNING id, job_id, received_at" if returning else ""}
"""


def jobs_touch(rules: LinkRules, *, inserted: str, also: str = "true") -> str:
    """UPDATE of each open job that a delivery in `inserted` (a derived table of inbox rows) is
    linked to: its webhook time is the latest delivery's, and its state read is due now.
    Returns the jobs it made due."""
    return f"""
UPDATE jobs SET last_webhook_at = u.at, last_modified_at = u.at, next_check_at = u.at
FROM (
    SELECT job_id, max(received_at) AS at FROM {inserted} AS i
    WHERE job_id IS NOT NULL GROUP BY job_id
) AS u
WHERE jobs.id = u.job_id AND jobs.state IN ({sql_list(rules.open_states)}) AND {also}
RETURNING jobs.id
"""


def sql_list(values: Collection[str]) -> str:
    """`values` as an SQL list of string literals, for `IN (...)`."""
    return ", ".join(_literal(value) for value in values)


def sql_literal(text: str) -> str:
    """`text` as an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


_literal = sql_literal


def first_of_each_notification(records: Sequence[DeliveryRecord]) -> list[DeliveryRecord]:
    """`records` less later copies of a notification id; the first copy wins."""
    seen: set[str] = set()
    rows: list[DeliveryRecord] = []
    for record in records:
        key = record.notification_id
        if key is not None:
            if key in seen:
                continue
            seen.add(key)
        rows.append(record)
    return rows


@dataclass(frozen=True)
class BatchResult:
    """Per delivery of a batch (same order) what became of it, and the jobs it made due."""

    outcomes: list[Stored]
    due_job_ids: list[str]
    """Jobs still open that a stored delivery is linked to: their state read is due now."""
    linked: Collection[str] = ()
    """The stored deliveries that were linked to the job they name (open or finished)."""
    forwarded: bool = False
    """Whether a stored delivery's forwards were queued (the sender has work)."""
