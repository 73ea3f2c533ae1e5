"""Log lines: structlog renders every line, the service's and uvicorn's, as JSON or for a console.

`configure_logging` installs one handler on the root logger whose formatter runs the same
processors structlog uses, so a `logging.getLogger(__name__)` line and a structlog line look
alike, and both carry what is bound in the context (`request_id`, `job_id`) through async code,
and, with tracing on, the current span's `trace_id` and `span_id`.
`FailureLog` keeps one cause that fails again and again to one line, then a count now and then.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import MutableMapping
from typing import Any, Literal

import structlog
from opentelemetry import trace

LogFormat = Literal["json", "console"]

_HANDLER_NAME = "visma-hooks"
_OUTBOUND_LOGGERS = ("httpx", "httpcore", "aiosqlite")
_CONTROL = {code: f"\\x{code:02x}" for code in range(32)} | {10: "\\n", 13: "\\r", 9: "\\t"}
MAX_REASON_CHARS = 300
"""An exception's text in a log line is cut here: a driver may quote a whole statement."""


def _escape_controls(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Outside text can hold newlines: on a console one line stays one line."""
    for key, value in event.items():
        if isinstance(value, str) and key != "exception":
            event[key] = value.translate(_CONTROL)
    return event


def _add_trace_ids(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """The current span's `trace_id` and `span_id` (hex, as trace back ends show them)."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event["trace_id"] = format(context.trace_id, "032x")
        event["span_id"] = format(context.span_id, "016x")
    return event


def _shared_processors(*, traced: bool = False) -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        *([_add_trace_ids] if traced else []),
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


_configured: LogFormat | None = None


def configured_format() -> LogFormat | None:
    """The format `configure_logging` set up in this process (None: it did not run), for a
    helper process that writes to the same stderr."""
    return _configured


def default_format() -> LogFormat:
    """Console lines for a person at a terminal, JSON for everything else."""
    return "console" if sys.stderr.isatty() else "json"


def configure_logging(
    *, level: str = "info", fmt: LogFormat | None = None, traced: bool = False
) -> None:
    """Route every log line through structlog's renderer at `level` (idempotent); `traced`:
    lines written inside a span carry its `trace_id` and `span_id`."""
    global _configured
    fmt = fmt or default_format()
    _configured = fmt
    renderer: Any
    final: list[Any]
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
        final = [structlog.processors.format_exc_info]
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
        final = [_escape_controls]
    shared = _shared_processors(traced=traced)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *final,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Alembic tells every plugin it loads at info: noise before each start.
    logging.getLogger("alembic").setLevel(max(root.level, logging.WARNING))
    # httpx writes each request's full URL at info (httpcore its connections, aiosqlite each
    # statement's parameters at debug): a Slack webhook's path is its secret. Our own lines
    # name a target only as `redact_url`.
    for name in _OUTBOUND_LOGGERS:
        logging.getLogger(name).setLevel(max(root.level, logging.WARNING))
    # uvicorn's own lines come to the root handler instead of their own formats.
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # No access log: a line per request would be most of the webhook path's cost (uvicorn
    # writes one whenever this logger has a handler, its parents' included).
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False


def reason(exc: BaseException) -> str:
    """An exception as one bounded line: its type and its first words. A database error's
    statement and parameters (which can hold bodies) are left out."""
    text = str(exc).split("\n[SQL:", 1)[0]
    text = " ".join(text.split())
    if len(text) > MAX_REASON_CHARS:
        text = text[:MAX_REASON_CHARS] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class FailureLog:
    """One line when something starts failing (or fails for another cause), then at most one
    line per `every_seconds` while the same cause goes on, and one when it recovers.

    The traceback goes with the first line only, and only at debug level: a loop that fails
    every pass because the database is gone writes a line a minute, not a traceback a second.
    """

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        every_seconds: float = 60.0,
        clock: Any = time.monotonic,
    ) -> None:
        self._log = logger
        self._what = what
        self._every = every_seconds
        self._clock = clock
        self._cause: str | None = None
        self._repeats = 0
        self._last_line = 0.0

    @property
    def failing(self) -> bool:
        return self._cause is not None

    def failed(self, exc: BaseException) -> None:
        cause = reason(exc)
        now = self._clock()
        if cause != self._cause:
            self._cause, self._repeats, self._last_line = cause, 0, now
            self._log.error(
                "%s failed: %s",
                self._what,
                cause,
                exc_info=exc if self._log.isEnabledFor(logging.DEBUG) else None,
            )
            return
        self._repeats += 1
        if now - self._last_line >= self._every:
            self._last_line = now
            self._log.error(
                "%s still failing (%d more times): %s", self._what, self._repeats, cause
            )

    def succeeded(self) -> None:
        if self._cause is not None:
            self._log.warning("%s works again after %d more failures", self._what, self._repeats)
            self._cause, self._repeats = None, 0
