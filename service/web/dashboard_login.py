"""Logging in to the dashboard with an API token, and out again (the session's row goes)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from service.web.dashboard_auth import COOKIE, SESSION_SECONDS, csrf_matches
from service.web.dashboard_render import read_form, refused, render_page
from service.web.dashboard_sessions import (
    current_session,
    dashboard_keys,
    end_session,
    start_session,
)
from service.web.sources import in_networks, parse_address
from service.web.state import State

LOGIN_REFUSED = "That token is not one of API_TOKENS or API_READ_TOKENS."
NO_TOKENS = "API_TOKENS and API_READ_TOKENS are not set: nobody can log in."
LOGOUT_REFUSED = (
    "Logging out needs the CSRF token from the page (the form was stale or not ours): you are "
    "still logged in; reload the page and log out again."
)
HELD_BACK = (
    "Too many wrong tokens from this address: try again in {seconds} s (AUTH_FAILURES_PER_MINUTE)."
)


async def login_form(request: Request[State]) -> Response:
    problem = None if dashboard_keys(request).configured else NO_TOKENS
    return render_page(request, "login.html", None, problem=problem, next=_next(request))


async def log_in(request: Request[State]) -> Response:
    form = await read_form(request)
    token = form.get("token")
    next_url = _safe_next(str(form.get("next") or "/"))
    keys = dashboard_keys(request)
    throttle = request.state["auth_throttle"]
    address = throttle.address_of(request.scope) if token and keys.configured else None
    if address is not None:
        held = await throttle.held_back(address)
        if held is not None:
            problem = HELD_BACK.format(seconds=held.retry_after_seconds)
            response = render_page(request, "login.html", None, problem=problem, next=next_url)
            response.status_code = 429
            response.headers["Retry-After"] = str(held.retry_after_seconds)
            return response
    new = keys.log_in(token) if token and len(token) <= 1024 else None
    if new is None:
        if address is not None:
            await throttle.failed(address, where="login")
        problem = LOGIN_REFUSED if keys.configured else NO_TOKENS
        response = render_page(request, "login.html", None, problem=problem, next=next_url)
        response.status_code = 401
        return response
    await start_session(request, new)
    response = RedirectResponse(next_url, status_code=303)
    response.set_cookie(
        COOKIE,
        new.session.cookie,
        httponly=True,
        samesite="strict",
        secure=_came_over_https(request),
        max_age=SESSION_SECONDS,
    )
    return response


def _came_over_https(request: Request[State]) -> bool:
    """Whether the session cookie must be `Secure`: forced by SESSION_COOKIE_SECURE, or the
    request was https, to us or to the TRUSTED_PROXIES peer that forwarded it."""
    settings = request.state["settings"]
    if settings.SESSION_COOKIE_SECURE or request.url.scheme == "https":
        return True
    peer = parse_address(request.client.host) if request.client else None
    if not in_networks(peer, settings.TRUSTED_PROXIES):
        return False
    # A chain of proxies appends: the last value is the one the trusted peer set.
    proto = request.headers.get("x-forwarded-proto", "").split(",")[-1].strip().lower()
    return proto == "https"


async def log_out(request: Request[State]) -> Response:
    """End the session server-side (its row goes: the cookie opens nothing after, wherever it
    was copied to), with the page's CSRF token so another site cannot log anyone out. Without
    a live session there is nothing to end: the cookie is cleared all the same."""
    session = await current_session(request)
    if session is not None:
        form = await read_form(request)
        if not csrf_matches(session, form.get("csrf")):
            return refused(request, session, 403, LOGOUT_REFUSED, back="/")
        await end_session(request, session)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE)
    return response


def _next(request: Request[State]) -> str:
    return _safe_next(request.query_params.get("next") or "/")


def _safe_next(target: str) -> str:
    """Only a path of this site: never `//elsewhere` or `https://elsewhere`."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target[:2000]
