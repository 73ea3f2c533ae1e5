"""How many long polls (`GET /api/v1/jobs/{id}?wait=`) this process holds at once.

A long poll holds a connection for up to a minute. Past MAX_WAITERS, a `?wait` is answered at
once as the plain GET would be, with `Retry-After: 1`: the client comes back a second later
instead of holding a connection, so waiters never fill the server's connections and
`/healthz` and the webhook keep getting in. Requests of one event loop share the count: no lock.
"""

from __future__ import annotations

from service.metrics import WAITS_TURNED_AWAY

RETRY_AFTER_SECONDS = 1
"""What a `?wait` turned away is told to wait before it asks again."""


class Waiters:
    """The long polls held now, at most `limit`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self) -> bool:
        """A slot for one long poll (give it back with `give_back`); False when all are held."""
        if self.held >= self.limit:
            WAITS_TURNED_AWAY.inc()
            return False
        self.held += 1
        return True

    def give_back(self) -> None:
        self.held -= 1
