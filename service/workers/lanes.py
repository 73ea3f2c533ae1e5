"""Send lanes: one per target URL (alert hook, Slack, a job's callback, whatever the channel).

Each lane holds at most `per_target` sends in flight, and all lanes together at most `total`.
A target that hangs fills only its own lane: the others keep sending. The sender claims work
only for lanes with room, so nothing waits in memory while its lease runs out.
"""

from __future__ import annotations


class TargetLanes:
    """How many sends are in flight per target, within the per-target and overall caps."""

    def __init__(self, *, per_target: int, total: int) -> None:
        if per_target < 1 or total < 1:
            raise ValueError("a lane needs room for at least one send")
        self._per_target = per_target
        self._total = total
        self._busy: dict[str, int] = {}
        self._in_flight = 0

    @property
    def free(self) -> int:
        """Sends that may start now, over all targets."""
        return self._total - self._in_flight

    def room(self, target: str) -> int:
        """Sends that may start now for `target`."""
        return min(self._per_target - self._busy.get(target, 0), self.free)

    def full(self) -> list[str]:
        """The targets whose lane has no room (their due work is left for later)."""
        return [target for target, busy in self._busy.items() if busy >= self._per_target]

    def take(self, target: str) -> None:
        """One send for `target` starts (the caller checked `room`)."""
        if self.room(target) < 1:
            raise RuntimeError("no room in this lane")
        self._busy[target] = self._busy.get(target, 0) + 1
        self._in_flight += 1

    def release(self, target: str) -> None:
        """One send for `target` ended; an idle lane is forgotten (targets come and go)."""
        left = self._busy[target] - 1
        if left:
            self._busy[target] = left
        else:
            del self._busy[target]
        self._in_flight -= 1
