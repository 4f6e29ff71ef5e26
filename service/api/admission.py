"""Admission control at the HTTP edge: at most N work requests inside the service; the rest get 429 at once.

Why at the edge and not only in the engine's bounded queue: each request costs Python work (body
parsing, validation, tokenizing) before it reaches the queue, so under a flood of small requests the
event loop itself becomes the queue, unbounded and invisible, and overload shows up as latency instead
of a refusal. Counting requests as they enter the middleware, before the body is read, bounds the
work the service holds and makes refusing one nearly free. Retry-After comes from the same estimate
the engine's queue uses. HTTP edge: no onnxruntime.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from service.engine.retry_after import RetryAfterEstimator


class AdmissionGate:
    """Counts work requests in flight; `try_enter` refuses once `limit` are inside."""

    def __init__(self, limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1:
            raise ValueError("the in-flight limit must be at least 1")
        self.limit = limit
        self.in_flight = 0
        self._clock = clock
        self._completions = RetryAfterEstimator()

    def try_enter(self) -> bool:
        if self.in_flight >= self.limit:
            return False
        self.in_flight += 1
        return True

    def leave(self) -> None:
        self.in_flight -= 1
        self._completions.record(self._clock())

    def retry_after_s(self) -> int:
        """Whole seconds until the requests now inside are likely answered, at the recent completion rate."""
        return math.ceil(self._completions.retry_after_s(self.in_flight, self._clock()))
