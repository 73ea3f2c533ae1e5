"""What every dashboard page is made with: the templates (autoescaped, with their filters),
rendering a page or its refreshing part, the small forms, and the refusal page."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.datastructures import URL
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from service.domain import cause_words, pretty_json
from service.web.dashboard_auth import Session
from service.web.state import State
from service.web.webhooks import BodyTooLarge, read_body

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
PAGE_SIZE = 50
FORM_TYPE = "application/x-www-form-urlencoded"
MAX_FORM_BYTES = 8192
CSRF_REFUSED = "The form was stale or not ours (CSRF check failed); reload the page and retry."

templates = Jinja2Templates(directory=str(HERE / "templates"))
# Bounded and without recursion: an outside body nested 100,000 deep is shown raw, cut.
templates.env.filters["pretty"] = lambda value: pretty_json(value)
templates.env.filters["event_fields"] = lambda detail, job: event_fields(detail, job)
templates.env.filters["cause_words"] = cause_words


def render_page(
    request: Request[State],
    name: str,
    session: Session | None,
    *,
    partial: str | None = None,
    **context: Any,
) -> Response:
    """Render page `name`; with `?partial=1`, only its refreshing list (`partial`)."""
    if partial and request.query_params.get("partial"):
        name = partial
    return templates.TemplateResponse(
        request,  # type: ignore[arg-type]  # Starlette types it with its plain State
        name,
        {"session": session, **context},
        headers={"Cache-Control": "no-store"},
    )


def to_login(request: Request[State]) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    login = URL("/login").include_query_params(next=target)
    return RedirectResponse(str(login), status_code=303)


async def read_form(request: Request[State]) -> dict[str, str]:
    """The dashboard's small url-encoded forms (a token, a CSRF value); anything larger or of
    another type is no form of ours and reads as empty."""
    if request.headers.get("content-type", "").split(";")[0].strip() != FORM_TYPE:
        return {}
    try:
        raw = await read_body(request, MAX_FORM_BYTES)
    except BodyTooLarge:
        return {}
    try:
        fields = parse_qs(raw.decode("utf-8", errors="replace"), max_num_fields=8)
    except ValueError:  # more fields than any form of ours has
        return {}
    return {name: values[0] for name, values in fields.items() if values}


def refused(
    request: Request[State],
    session: Session,
    status: int,
    problem: str,
    *,
    back: str = "/inbox",
) -> Response:
    response = render_page(request, "refused.html", session, problem=problem, back=back)
    response.status_code = status
    return response


def default_company(request: Request[State]) -> str | None:
    """The company of jobs stored before jobs named theirs (the first of VISMA_TENANT_ID)."""
    return request.state["settings"].default_tenant


EVENT_FIELD_CHARS = 120
"""A timeline row shows a field's value up to this long; the raw JSON below it has it all."""


def event_fields(detail: Mapping[str, Any], job: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A timeline event's plain fields as (name, value) for its row. Visma's error message is
    left out where the job's Error section already shows it, so it is read once."""
    shown_error = (job.get("error") or {}).get("message")
    fields = []
    for key, value in detail.items():
        if isinstance(value, Mapping | list) or value is None:
            continue  # nested values stay in the raw JSON
        if key == "error" and value == shown_error:
            continue
        text = str(value)
        if len(text) > EVENT_FIELD_CHARS:
            text = text[: EVENT_FIELD_CHARS - 1] + "…"
        fields.append((key, text))
    return fields
