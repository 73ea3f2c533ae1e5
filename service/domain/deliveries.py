"""What a dispatcher delivery's body says, and which job it may be linked to.

The `BACKGROUND_API_RESPONSE` body is not documented: seen variants carry `id`, `stateLocation`
and `contentLocation`, sometimes `status`/`statusCode`, with varying case. The custom header
correlates; the state endpoint decides the outcome; the body only helps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from service.domain.jobs import OPEN_STATES, JobState
from service.domain.jsontext import parse_json

PROBLEM_NOT_JSON = "body is not JSON"
PROBLEM_NOT_OBJECT = "body is JSON but not an object"
PROBLEM_UNKNOWN_SHAPE = "body has none of id, stateLocation, contentLocation"
PROBLEM_BAD_ID = "body's job id is not an id Visma would give (too long or control characters)"
MAX_VISMA_ID_CHARS = 64
# Control characters, and lone surrogates (JSON's "\ud800" escapes decode to one, and no
# database driver can encode it: such an id would fail every write of its delivery).
_UNUSABLE_CHARACTER = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
PROBLEM_NO_NOTIFICATION_ID = "x-vwd-notification-id header is missing"


@dataclass(frozen=True)
class BackgroundNotice:
    """The useful part of a `BACKGROUND_API_RESPONSE` body."""

    visma_job_id: str | None
    state_location: str | None


def read_background_body(body: bytes) -> tuple[BackgroundNotice | None, str | None]:
    """The notice in `body`, or None and the problem that makes it unusable."""
    try:
        data = parse_json(body)
    except ValueError:
        return None, PROBLEM_NOT_JSON
    if not isinstance(data, dict):
        return None, PROBLEM_NOT_OBJECT
    fields = {str(k).lower(): v for k, v in data.items()}
    job_id = _text(fields.get("id"))
    state_location = _text(fields.get("statelocation"))
    content_location = _text(fields.get("contentlocation"))
    if not (job_id or state_location or content_location):
        return None, PROBLEM_UNKNOWN_SHAPE
    if job_id is None:
        job_id = _id_from_location(state_location) or _id_from_location(
            content_location, strip="content"
        )
    if job_id is not None and not usable_visma_id(job_id):
        # Visma's ids are uuids; anything else cannot be looked up, and is kept only raw.
        return None, PROBLEM_BAD_ID
    return BackgroundNotice(visma_job_id=job_id, state_location=state_location), None


def _id_from_location(location: str | None, *, strip: str | None = None) -> str | None:
    if not location:
        return None
    parts = [p for p in location.split("?", 1)[0].split("/") if p]
    if strip and parts and parts[-1].lower() == strip:
        parts.pop()
    return parts[-1] if parts else None


def _text(value: object) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def usable_visma_id(value: str) -> bool:
    """Whether `value` can be a Visma job id: short, without control characters or lone
    surrogates."""
    return len(value) <= MAX_VISMA_ID_CHARS and _UNUSABLE_CHARACTER.search(value) is None


@dataclass(frozen=True)
class LinkRules:
    """When a verified delivery may be linked to the job its `vh-job-id` header names.

    The header is not signed (only the body is), so it is a claim, not a fact. The inbox writer
    compiles these rules into the statement that stores a batch of deliveries; a delivery that
    breaks one is kept, unlinked, with its problem named, and changes no job:

    - its body names a Visma job id, and the job already holds a different one;
    - another job already holds that Visma job id (a Visma job belongs to one job);
    - it names a company (`x-vwd-tenant-id`) other than the job's (a job stored before jobs
      named their company is not checked);
    - the job has no Visma job id but is not `adopting_state`: only a job whose 202 never came
      may learn its Visma job id from a webhook, and only once the resolver has checked that
      Visma's own state for that id describes the job's request (`decide_adoption`).

    A delivery whose body names no Visma job id (an unusable body) is linked: it only makes the
    job's own state read due. A webhook makes an open job's state read due now.
    """

    open_states: tuple[str, ...]
    adopting_state: str
    visma_id_differs: str
    visma_id_taken: str
    cannot_adopt: str
    tenant_differs: str


PROBLEM_VISMA_ID_DIFFERS = (
    "the body names a Visma job id other than the named job's own: not linked to the job"
)
PROBLEM_VISMA_ID_TAKEN = (
    "the body names a Visma job id that another job holds: not linked to the named job"
)
PROBLEM_CANNOT_ADOPT = (
    "the named job has no Visma job id and is past `submitted` (refused, or finished): it does "
    "not adopt one from a webhook"
)
PROBLEM_TENANT_DIFFERS = (
    "the delivery's x-vwd-tenant-id names another company than the named job's: not linked to "
    "the job"
)
PROBLEM_STATE_MISMATCH = "Visma's state for the body's job id does not match the named job: {why}"
"""The resolver found that the candidate Visma job is not the named job's (see decide_adoption)."""


LINK_RULES = LinkRules(
    open_states=tuple(sorted(state.value for state in OPEN_STATES)),
    adopting_state=JobState.SUBMITTED.value,
    visma_id_differs=PROBLEM_VISMA_ID_DIFFERS,
    visma_id_taken=PROBLEM_VISMA_ID_TAKEN,
    cannot_adopt=PROBLEM_CANNOT_ADOPT,
    tenant_differs=PROBLEM_TENANT_DIFFERS,
)


@dataclass(frozen=True)
class ReplayLink:
    """Where a replayed delivery belongs: the job it links to (None: none) and why not."""

    job_id: str | None
    problem: str | None


def decide_replay_link(
    *,
    named_job_id: str | None,
    body_problem: str | None,
    body_visma_id: str | None,
    job_state: str | None,
    job_visma_id: str | None,
    visma_id_holder: str | None,
) -> ReplayLink:
    """The inbox writer's `LINK_RULES`, for one stored delivery run through them again.

    `job_state` is None when the named job does not exist; `visma_id_holder` is the job that
    holds the body's Visma job id, if any.
    """
    if named_job_id is None or job_state is None:
        return ReplayLink(None, body_problem)
    if body_visma_id is not None:
        if job_visma_id is not None and job_visma_id != body_visma_id:
            return ReplayLink(None, PROBLEM_VISMA_ID_DIFFERS)
        if visma_id_holder is not None and visma_id_holder != named_job_id:
            return ReplayLink(None, PROBLEM_VISMA_ID_TAKEN)
        if job_visma_id is None and job_state != LINK_RULES.adopting_state:
            return ReplayLink(None, PROBLEM_CANNOT_ADOPT)
    return ReplayLink(named_job_id, body_problem)
