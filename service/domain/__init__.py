"""The functional core: pure decisions on plain values, no I/O."""

from service.domain.correlation import (
    BACKGROUND_HEADER,
    JOB_ID_KEY,
    background_header,
    job_id_from_headers,
    validate_tags,
)
from service.domain.deliveries import BackgroundNotice, read_background_body
from service.domain.errors import (
    Conflict,
    DomainError,
    InvalidInput,
    InvalidState,
    NotConfigured,
    NotFound,
)
from service.domain.ids import decode_id, encode_id, time_ordered_uuid
from service.domain.jobs import (
    OPEN_STATES,
    TERMINAL_STATES,
    BackgroundState,
    EventKind,
    JobState,
    Outcome,
    Resolver,
    can_move,
    decide_outcome,
    decide_rejection,
    needs_content,
    parse_background_state,
)
from service.domain.listing import (
    MAX_PAGE_SIZE,
    DeliveryFilter,
    JobFilter,
    Page,
    TimeCondition,
    parse_delivery_query,
    parse_job_query,
)
from service.domain.submission import METHODS, validate_method, validate_path
from service.domain.visma_errors import VismaErrorInfo, hint_for, parse_error

__all__ = [
    "BACKGROUND_HEADER",
    "JOB_ID_KEY",
    "MAX_PAGE_SIZE",
    "METHODS",
    "OPEN_STATES",
    "TERMINAL_STATES",
    "BackgroundNotice",
    "BackgroundState",
    "Conflict",
    "DeliveryFilter",
    "DomainError",
    "EventKind",
    "InvalidInput",
    "InvalidState",
    "JobFilter",
    "JobState",
    "NotConfigured",
    "NotFound",
    "Outcome",
    "Page",
    "Resolver",
    "TimeCondition",
    "VismaErrorInfo",
    "background_header",
    "can_move",
    "decide_outcome",
    "decide_rejection",
    "decode_id",
    "encode_id",
    "time_ordered_uuid",
    "hint_for",
    "job_id_from_headers",
    "needs_content",
    "parse_background_state",
    "parse_delivery_query",
    "parse_error",
    "parse_job_query",
    "read_background_body",
    "validate_method",
    "validate_path",
    "validate_tags",
]
