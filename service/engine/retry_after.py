"""How long a refused client should wait: the backlog divided by the recent completion rate.

Shared by the engine's queue (Overloaded) and the HTTP edge's in-flight limit. Pure Python.
"""

from __future__ import annotations

from collections import deque

RETRY_WINDOW_S = 10.0  # completions older than this do not count towards the rate
MIN_RETRY_AFTER_S = 1.0  # HTTP's Retry-After is in whole seconds
MAX_RETRY_AFTER_S = 30.0


class RetryAfterEstimator:
    """Remembers recent completion times (monotonic seconds) and turns a backlog into a wait."""

    def __init__(self, remembered: int = 1024) -> None:
        self._finished_at: deque[float] = deque(maxlen=remembered)

    def record(self, at_s: float) -> None:
        self._finished_at.append(at_s)

    def retry_after_s(self, backlog: int, now_s: float) -> float:
        """Seconds until `backlog` requests are likely done, in [MIN, MAX]; MIN without recent history."""
        recent = [t for t in self._finished_at if now_s - t <= RETRY_WINDOW_S]
        if len(recent) < 2:
            return MIN_RETRY_AFTER_S
        rate_per_s = len(recent) / max(now_s - recent[0], 1e-3)
        return min(MAX_RETRY_AFTER_S, max(MIN_RETRY_AFTER_S, backlog / rate_per_s))
