"""What recording an outcome costs: `record_outcome`, the real flow, for a job that fails (its
failure now also counted on its issue) beside one that succeeds (which touches no issue), and
the same failure with the issue step left out (`record_failure` replaced by a no-op for those
runs only): what a failure cost before issues.

Each run is a transaction of its own, rolled back, so every run finds the same open job: the
job read and locked, the outcome recorded and flushed (the job's UPDATE, its timeline event,
for a failure the issue's upsert and the per-job alert). The two kinds are timed in turns, so
this machine's drift weighs on both alike. One failure is committed first: the issue exists,
as it does for all but the first failure of a cause (the runs count on it, none opens it).
No worker runs meanwhile.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from service import store
from service.app import alert_policy, open_resources
from service.domain import AlertPolicy, JobState, Outcome, Resolver, VismaErrorInfo
from service.flows import outcomes
from service.settings import Settings

RUNS = 200
SUCCEEDS = "bench-outcome-succeeds"
FAILS = "bench-outcome-fails"
FIRST_FAILURE = "bench-outcome-first-failure"

_SUCCESS = Outcome(state=JobState.SUCCEEDED, http_status=200, created_resource_id="10001")
_FAILURE = Outcome(
    state=JobState.FAILED,
    http_status=400,
    error=VismaErrorInfo(type="IPPException", message="No license.", fault_code="12027"),
    hint="The company's licence has expired.",
)


@dataclass(frozen=True)
class OutcomeTiming:
    runs: int
    succeeded_ms: float
    """Median ms of recording a success (no issue touched)."""
    failed_ms: float
    """Median ms of recording a failure (counted on its existing issue)."""
    failed_without_issue_ms: float
    """Median ms of the same failure with the issue step left out (as before issues)."""

    @property
    def ratio(self) -> float:
        """Failed against succeeded."""
        return self.failed_ms / self.succeeded_ms

    @property
    def issue_cost(self) -> float:
        """Failed with its issue against failed without."""
        return self.failed_ms / self.failed_without_issue_ms


async def time_outcomes(settings: Settings, *, runs: int = RUNS) -> OutcomeTiming:
    """Medians of `runs` rolled-back recordings of each kind, taken in turns."""
    policy = alert_policy(settings)
    async with open_resources(settings, run_workers=False) as resources:
        engine = resources.engine
        now = datetime.now(UTC)
        async with resources.sessions.begin() as session:
            await session.execute(
                insert(store.Job),
                [
                    {
                        "id": job_id,
                        "visma_job_id": f"v-{job_id}",
                        "state": JobState.ACCEPTED.value,
                        "method": "POST",
                        "path": "/v1/customerInvoice/1001/action/release",
                        "tags": {},
                        "notify": True,
                        "submitted_at": now,
                        "last_modified_at": now,
                        "check_attempts": 0,
                    }
                    for job_id in (SUCCEEDS, FAILS, FIRST_FAILURE)
                ],
            )
        await _record(engine, FIRST_FAILURE, _FAILURE, policy, commit=True)
        for _ in range(3):  # warm caches and prepared statements
            await _record(engine, SUCCEEDS, _SUCCESS, policy)
            await _record(engine, FAILS, _FAILURE, policy)
            await _record(engine, FAILS, _FAILURE, policy, issues=False)
        succeeded: list[float] = []
        failed: list[float] = []
        without: list[float] = []
        for _ in range(runs):
            succeeded.append(await _record(engine, SUCCEEDS, _SUCCESS, policy))
            failed.append(await _record(engine, FAILS, _FAILURE, policy))
            without.append(await _record(engine, FAILS, _FAILURE, policy, issues=False))
    return OutcomeTiming(
        runs, statistics.median(succeeded), statistics.median(failed), statistics.median(without)
    )


async def _no_issue(*_args: Any, **_kwargs: Any) -> None:
    return None


async def _record(
    engine: AsyncEngine,
    job_id: str,
    outcome: Outcome,
    policy: AlertPolicy,
    *,
    commit: bool = False,
    issues: bool = True,
) -> float:
    """Ms to read, lock and record the job's outcome, flushed; then rolled back (or kept).
    `issues=False`: the issue step left out, as before issues."""
    counting = outcomes.record_failure
    if not issues:
        outcomes.record_failure = _no_issue  # type: ignore[assignment]
    try:
        return await _record_once(engine, job_id, outcome, policy, commit=commit, issues=issues)
    finally:
        outcomes.record_failure = counting


async def _record_once(
    engine: AsyncEngine,
    job_id: str,
    outcome: Outcome,
    policy: AlertPolicy,
    *,
    commit: bool,
    issues: bool,
) -> float:
    async with engine.connect() as conn:
        transaction = await conn.begin()
        session = AsyncSession(bind=conn)
        started = time.perf_counter()
        job = await store.get_job(session, job_id, for_update=True)
        assert job is not None
        moved = await outcomes.record_outcome(
            session,
            job,
            outcome,
            source=Resolver.POLL,
            at=datetime.now(UTC),
            resolved_by=Resolver.POLL,
            alerts=policy,
        )
        await session.flush()
        elapsed = (time.perf_counter() - started) * 1000
        assert moved, job.state
        if issues and outcome.state != JobState.SUCCEEDED:
            assert job.issue_id is not None  # counted on its issue
        if commit:
            await transaction.commit()
        else:
            await transaction.rollback()
        await session.close()
    return elapsed
