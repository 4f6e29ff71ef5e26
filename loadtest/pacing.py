"""Request pacing for the Locust users: each user's request starts follow a Poisson schedule, and each
request is timed from its scheduled start.

Stdlib only, so it can be tested without importing locust (whose gevent patching would change the
test process).
"""

from __future__ import annotations

import bisect
import random
import time
from collections.abc import Callable
from typing import Any


class PoissonSchedule:
    """One user's scheduled request starts: a Poisson process of `rate_per_s` from `start` (the first
    request's start). The schedule never moves: a user whose answer came after its next start sends
    the next request at once, and the one after that, until it is back on schedule (one request in
    flight per user, so never a burst), and every request is timed from its scheduled start, not from
    when it could be sent (no coordinated omission: a saturated server's queueing shows in the
    latency instead of in fewer requests sent)."""

    def __init__(self, rate_per_s: float, rng: random.Random, start: float) -> None:
        self.rate_per_s = rate_per_s
        self.rng = rng
        self.slots = [start]  # every scheduled start drawn so far, in order; the last is `current`

    @property
    def current(self) -> float:
        """The scheduled start of the request being sent (or about to be)."""
        return self.slots[-1]

    def advance(self) -> float:
        """Draw the next scheduled start and make it current."""
        self.slots.append(self.slots[-1] + self.rng.expovariate(self.rate_per_s))
        return self.slots[-1]

    def due_between(self, begin: float, end: float) -> int:
        """How many requests the schedule meant to start in [begin, end): the offered load, whatever
        was sent. Draws the starts the user has not reached yet (only at the end of a run: it moves
        the schedule on)."""
        while self.slots[-1] < end:
            self.advance()
        return bisect.bisect_left(self.slots, end) - bisect.bisect_left(self.slots, begin)


def poisson_pacing(clock: Callable[[], float] = time.monotonic) -> Callable[[Any], float]:
    """A Locust `wait_time` over each user's PoissonSchedule (`user.schedule`): the pause until its
    next scheduled start, 0 when that has passed. Locust's constant_throughput kept users that were
    all spawned within 50 ms firing in lockstep, a burst of every user's request once a second that
    no real traffic has (singles at 16 users: p50 75 ms, against 19 ms for one user); independent
    Poisson schedules do not."""

    def wait_time(user: Any) -> float:
        return max(0.0, float(user.schedule.advance() - clock()))

    return wait_time
