"""The edge's in-flight gate: counting, refusing at the limit, and the Retry-After estimate."""

from __future__ import annotations

import pytest

from service.api.admission import AdmissionGate
from service.engine.retry_after import MAX_RETRY_AFTER_S


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_refuses_at_the_limit_and_admits_again_after_leave() -> None:
    gate = AdmissionGate(2)
    assert gate.try_enter() and gate.try_enter()
    assert not gate.try_enter()
    assert gate.in_flight == 2
    gate.leave()
    assert gate.try_enter() and gate.in_flight == 2


def test_retry_after_is_one_second_without_history() -> None:
    gate = AdmissionGate(4, clock=FakeClock())
    for _ in range(4):
        gate.try_enter()
    assert gate.retry_after_s() == 1


def test_retry_after_follows_the_completion_rate() -> None:
    clock = FakeClock()
    gate = AdmissionGate(100, clock=clock)
    for _ in range(100):
        gate.try_enter()
    for _ in range(10):  # 10 answers over 5 s: 2 per second
        clock.now += 0.5
        gate.leave()
    # 90 inside at 10 answers in 4.5 s (first to last) -> ceil(90 / 2.22) = 41 s, capped
    assert gate.retry_after_s() == MAX_RETRY_AFTER_S
    for _ in range(80):
        gate.leave()  # 80 answers at the same instant: a fast recent rate
    assert gate.in_flight == 10
    assert gate.retry_after_s() == 1


def test_old_completions_do_not_count() -> None:
    clock = FakeClock()
    gate = AdmissionGate(10, clock=clock)
    for _ in range(10):
        gate.try_enter()
    for _ in range(5):
        gate.leave()
    clock.now += 60.0
    assert gate.retry_after_s() == 1


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError):
        AdmissionGate(0)
