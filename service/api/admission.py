"""Admission control at the HTTP edge: at most N work requests inside the service; the rest get 429 at once.

Why at the edge and not only in the engine's bounded queue: each request costs Python work (body
parsing, validation, tokenizing) before it reaches the queue, so under a flood of small requests the
event loop itself becomes the queue, unbounded and invisible, and overload shows up as latency instead
of a refusal. Counting requests as they enter the middleware, before the body is read, bounds the
work the service holds and makes refusing one nearly free. HTTP edge only: no engine, no onnxruntime.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

RETRY_WINDOW_S = 10.0  # completions older than this do not count towards the throughput estimate
MAX_RETRY_AFTER_S = 30


class AdmissionGate:
    """Counts work requests in flight; `try_enter` refuses once `limit` are inside."""

    def __init__(self, limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1:
            raise ValueError("the in-flight limit must be at least 1")
        self.limit = limit
        self.in_flight = 0
        self._clock = clock
        self._finished_at: deque[float] = deque(maxlen=1024)

    def try_enter(self) -> bool:
        if self.in_flight >= self.limit:
            return False
        self.in_flight += 1
        return True

    def leave(self) -> None:
        self.in_flight -= 1
        self._finished_at.append(self._clock())

    def retry_after_s(self) -> int:
        """Seconds until the requests now inside are likely answered, at the recent completion rate.

        At least 1 (HTTP's unit), at most MAX_RETRY_AFTER_S; 1 when there is no recent history.
        """
        now = self._clock()
        recent = [t for t in self._finished_at if now - t <= RETRY_WINDOW_S]
        if len(recent) < 2:
            return 1
        rate_per_s = len(recent) / max(now - recent[0], 1e-3)
        return int(min(MAX_RETRY_AFTER_S, max(1, math.ceil(self.in_flight / rate_per_s))))
