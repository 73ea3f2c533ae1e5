"""Checks on a batch of submissions (`POST /api/v1/jobs/batch`): the envelope, then each item
on its own, so one bad item is refused alone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.domain.errors import InvalidInput
from service.domain.idempotency import KEY_RULE, MAX_KEY_CHARS, validate_key
from service.domain.jsontext import parse_json
from service.domain.submission import JobCreate, JobRequest, validation_detail

KEY_FIELD = "idempotencyKey"


class BatchJob(JobCreate):
    """One job of a batch: a `POST /api/v1/jobs` body, and its own Idempotency-Key."""

    idempotencyKey: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_KEY_CHARS,
        description=f"as the Idempotency-Key header of a single submission: {KEY_RULE}",
    )


class BatchCreate(BaseModel):
    """`POST /api/v1/jobs/batch` (its schema; `parse_batch` reads it item by item)."""

    model_config = ConfigDict(extra="forbid")

    jobs: list[BatchJob] = Field(min_length=1)


@dataclass(frozen=True)
class ParsedItem:
    """One item of a batch: its request and key, or what is wrong with it."""

    request: JobRequest | None
    key: str | None = None
    error: InvalidInput | None = None


def parse_batch(raw: bytes, *, max_jobs: int) -> list[ParsedItem]:
    """The items of `{"jobs": [...]}`; InvalidInput when the envelope itself is wrong (not
    JSON, no list, too many jobs), else each item parsed on its own."""
    try:
        data = parse_json(raw)
    except ValueError:
        raise InvalidInput("request body must be a JSON object; it is not valid JSON") from None
    if not isinstance(data, dict) or set(data) != {"jobs"} or not isinstance(data["jobs"], list):
        raise InvalidInput('request body must be {"jobs": [<job>, ...]}')
    jobs = data["jobs"]
    if not jobs:
        raise InvalidInput("jobs must hold at least one job")
    if len(jobs) > max_jobs:
        raise InvalidInput(f"jobs holds {len(jobs)} jobs; at most MAX_BATCH_JOBS={max_jobs}")
    return [parse_item(item) for item in jobs]


def parse_item(item: Any) -> ParsedItem:
    """A batch item: the fields of `POST /api/v1/jobs`, and an optional `idempotencyKey`."""
    if not isinstance(item, dict):
        return ParsedItem(None, error=InvalidInput("each job must be a JSON object"))
    fields = dict(item)
    key = fields.pop(KEY_FIELD, None)
    try:
        if key is not None:
            if not isinstance(key, str):
                raise InvalidInput(f"{KEY_FIELD} must be a string")
            try:
                key = validate_key(key)
            except InvalidInput:
                raise InvalidInput(f"{KEY_FIELD} {KEY_RULE}") from None
        request = JobCreate.model_validate(fields).to_request()
    except InvalidInput as exc:
        return ParsedItem(None, error=exc)
    except ValidationError as exc:
        return ParsedItem(None, error=InvalidInput(validation_detail(exc)))
    return ParsedItem(request, key=key)
