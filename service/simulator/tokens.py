"""The simulated Visma Connect token endpoint: client-credentials grants and bearer tokens."""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

from service.simulator.config import SimulatorConfig

SCOPE_PREFIX = "vismanet_erp_service_api:"
SERVICE_SCOPES = frozenset(SCOPE_PREFIX + verb for verb in ("create", "read", "update", "delete"))


class TokenError(Exception):
    """An OAuth error answer: `error` code, description and HTTP status (RFC 6749 5.2)."""

    def __init__(self, error: str, description: str, *, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


@dataclass(frozen=True)
class IssuedToken:
    """A bearer token as issued."""

    access_token: str
    expires_in: int
    scope: str
    tenant_id: str


class TokenIssuer:
    """Checks client-credentials grants, issues tokens and knows which are still valid."""

    def __init__(self, config: SimulatorConfig) -> None:
        self._config = config
        self._expiry: dict[str, float] = {}  # token -> time.monotonic() deadline
        self._tenant: dict[str, str] = {}  # token -> the company it was issued for
        self.issued = 0

    def issue(
        self, form: Mapping[str, str], *, basic: tuple[str, str] | None = None
    ) -> IssuedToken:
        """A token for a valid grant; TokenError (as RFC 6749 names it) otherwise."""
        config = self._config
        grant_type = form.get("grant_type")
        if not grant_type:
            raise TokenError("invalid_request", "grant_type is required")
        if grant_type != "client_credentials":
            raise TokenError(
                "unsupported_grant_type", f"grant_type {grant_type!r} is not supported"
            )
        client_id, client_secret = basic or (form.get("client_id"), form.get("client_secret"))
        if not client_id or not client_secret:
            raise TokenError("invalid_client", "client authentication is missing", status=401)
        if not (
            secrets.compare_digest(client_id, config.client_id)
            and secrets.compare_digest(client_secret, config.client_secret)
        ):
            raise TokenError("invalid_client", "unknown client or wrong secret", status=401)
        scopes = form.get("scope", "").split()
        if not scopes or not set(scopes) <= SERVICE_SCOPES:
            raise TokenError(
                "invalid_scope", "scope must be one or more vismanet_erp_service_api scopes"
            )
        # Which error Visma Connect gives for a missing or foreign tenant is not documented;
        # invalid_request is our choice.
        tenant_id = form.get("tenant_id")
        if not tenant_id:
            raise TokenError("invalid_request", "tenant_id is required")
        if tenant_id not in config.tenants:
            raise TokenError("invalid_request", "the client has no access to this tenant")
        return self._new(" ".join(scopes), tenant_id)

    def _new(self, scope: str, tenant_id: str) -> IssuedToken:
        now = time.monotonic()
        # Drop expired tokens here so a long benchmark doesn't grow the table forever.
        self._expiry = {token: at for token, at in self._expiry.items() if at > now}
        self._tenant = {token: self._tenant[token] for token in self._expiry}
        token = secrets.token_urlsafe(32)
        ttl = self._config.token_ttl_seconds
        self._expiry[token] = now + ttl
        self._tenant[token] = tenant_id
        self.issued += 1
        return IssuedToken(access_token=token, expires_in=ttl, scope=scope, tenant_id=tenant_id)

    def is_valid(self, token: str) -> bool:
        """True for a token this issuer gave out that has not expired."""
        deadline = self._expiry.get(token)
        return deadline is not None and time.monotonic() < deadline

    def tenant_of(self, token: str) -> str | None:
        """The company a valid token acts for; None for a token that is not (or no longer) valid."""
        return self._tenant.get(token) if self.is_valid(token) else None

    @property
    def active(self) -> int:
        """Tokens issued and not yet expired."""
        now = time.monotonic()
        return sum(1 for deadline in self._expiry.values() if deadline > now)
