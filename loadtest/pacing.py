"""Request pacing for the Locust users: each user's request starts form a Poisson process.

Stdlib only, so it can be tested without importing locust (whose gevent patching would change the
test process).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def poisson_pacing(requests_per_s: float, clock: Callable[[], float] = time.monotonic) -> Callable[[Any], float]:
    """A Locust `wait_time`: pauses that make each user's request starts a Poisson process of
    `requests_per_s`, as independent clients send them. Locust's constant_throughput kept users that
    were all spawned within 50 ms firing in lockstep, a burst of every user's request once a second
    that no real traffic has (singles at 16 users: p50 75 ms, against 19 ms for one user). A user that
    fell behind (its answer came after its next start) goes on at once and does not catch up in a
    burst. The user needs `random` (a random.Random) and `next_request_at` (its last request's start
    on `clock`)."""

    def wait_time(user: Any) -> float:
        now = clock()
        user.next_request_at = max(user.next_request_at + user.random.expovariate(requests_per_s), now)
        return float(user.next_request_at - now)

    return wait_time
