"""The decoder's own thread (DecodeLoop) driven directly, without the scheduler: what it reports,
when, and how it survives failures. The scheduler's tests cover it end to end."""

from __future__ import annotations

import asyncio
import queue
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from service.engine import EngineFailure, SpecialIds, TranslationRequest
from service.engine.batch import DecodeBatch
from service.engine.decode_loop import REPORT_INTERVAL_S, DecodeLoop, DecoderReport, Encoded, Ticket

SPECIAL = SpecialIds(pad_id=0, unk_id=1, bos_id=2, eos_id=3)


@pytest.fixture
def event_loop_for_futures() -> Iterator[asyncio.AbstractEventLoop]:
    """Tickets carry asyncio futures; the decode loop only reads `done()`, so no loop needs to run."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def tickets(loop: asyncio.AbstractEventLoop, sources: list[list[int]], first_key: int = 0) -> list[Ticket]:
    return [
        Ticket(first_key + i, TranslationRequest(source_ids=[*s, SPECIAL.eos_id]), loop.create_future(),
               time.monotonic(), 60)
        for i, s in enumerate(sources)
    ]


def encoded(model: Any, group: list[Ticket]) -> Encoded:
    lengths = np.array([len(t.request.source_ids) for t in group], np.int64)
    ids = np.zeros((len(group), int(lengths.max())), np.int64)
    for row, ticket in enumerate(group):
        ids[row, : lengths[row]] = ticket.request.source_ids
    return Encoded(group, lengths, model.encode(ids, lengths))


def collect(reports: queue.SimpleQueue[DecoderReport], until: Any, timeout_s: float = 10.0) -> list[DecoderReport]:
    """Reports until `until(all reports so far)` holds."""
    seen: list[DecoderReport] = []
    deadline = time.monotonic() + timeout_s
    while not until(seen):
        seen.append(reports.get(timeout=max(0.01, deadline - time.monotonic())))
    return seen


def finished_keys(reports: list[DecoderReport]) -> list[int]:
    return [ticket.key for report in reports for ticket, _ in report.finished]


def test_a_long_decode_reports_its_steps_before_it_ends(
    fake_model_class, greedy_oracle, event_loop_for_futures
) -> None:
    """Nothing ends for a while, yet the step counters reach the event loop every REPORT_INTERVAL_S."""
    model = fake_model_class(step_delay_s=0.01)
    reports: queue.SimpleQueue[DecoderReport] = queue.SimpleQueue()
    decoder = DecodeLoop(model, SPECIAL, reports.put)
    decoder.start()
    try:
        [ticket] = tickets(event_loop_for_futures, [[40, 5, 6]])  # 40 tokens + eos: 41 steps of >= 10 ms
        decoder.join([encoded(model, [ticket])])
        seen = collect(reports, lambda seen: finished_keys(seen) == [0])
    finally:
        decoder.stop()
    assert REPORT_INTERVAL_S < 0.41
    interim = [r for r in seen if not r.ended()]
    assert interim and all(r.step_rows for r in interim)
    assert sum(len(r.step_rows) for r in seen) == len(model.step_rows) == 41
    [(_, result)] = seen[-1].finished
    assert result.target_ids == greedy_oracle([40, 5, 6, 3])


def test_requests_abandoned_before_they_join_are_reported_and_never_decoded(
    fake_model, greedy_oracle, event_loop_for_futures
) -> None:
    reports: queue.SimpleQueue[DecoderReport] = queue.SimpleQueue()
    decoder = DecodeLoop(fake_model, SPECIAL, reports.put)
    decoder.start()
    try:
        group = tickets(event_loop_for_futures, [[5, 6], [6, 7], [7, 8]])
        group[1].future.cancel()  # the caller went away while its request was being encoded
        decoder.join([encoded(fake_model, group)])
        seen = collect(reports, lambda seen: len(finished_keys(seen)) == 2)
    finally:
        decoder.stop()
    assert [t.key for r in seen for t in r.abandoned] == [1]
    assert sorted(finished_keys(seen)) == [0, 2]
    assert fake_model.step_rows[0] == 2  # the abandoned one never took a row
    results = {t.key: res.target_ids for r in seen for t, res in r.finished}
    assert results == {0: greedy_oracle([5, 6, 3]), 2: greedy_oracle([7, 8, 3])}


def test_a_failed_join_fails_its_batch_and_the_thread_goes_on(
    fake_model_class, greedy_oracle, event_loop_for_futures, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug while joining may leave the batch half-written: every request in it fails with
    EngineFailure, and the next requests are decoded normally."""
    real_join = DecodeBatch.join
    calls = 0

    def join_failing_second_time(self: DecodeBatch, *args: Any, **kwargs: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("injected join failure")
        real_join(self, *args, **kwargs)

    monkeypatch.setattr(DecodeBatch, "join", join_failing_second_time)
    model = fake_model_class(step_delay_s=0.01)  # the running request takes ~0.5 s
    reports: queue.SimpleQueue[DecoderReport] = queue.SimpleQueue()
    decoder = DecodeLoop(model, SPECIAL, reports.put)
    decoder.start()
    try:
        running = tickets(event_loop_for_futures, [[50, 5]])
        newcomer = tickets(event_loop_for_futures, [[6, 7]], first_key=1)
        later = tickets(event_loop_for_futures, [[5, 6]], first_key=2)
        decoder.join([encoded(model, running)])
        collect(reports, lambda seen: sum(len(r.step_rows) for r in seen) >= 1)  # it is decoding
        decoder.join([encoded(model, newcomer)])
        failed = collect(reports, lambda seen: any(r.failed for r in seen))
        decoder.join([encoded(model, later)])
        done = collect(reports, lambda seen: finished_keys(seen) == [2])
    finally:
        decoder.stop()
    failures = {t.key: error for r in failed for t, error in r.failed}
    assert sorted(failures) == [0, 1] and all(isinstance(e, EngineFailure) for e in failures.values())
    [(_, result)] = done[-1].finished
    assert result.target_ids == greedy_oracle([5, 6, 3])
    assert decoder.live_rows == 0


def test_greedy_rows_whose_model_prefers_pad_take_the_best_allowed_token(
    fake_model_class, greedy_oracle, event_loop_for_futures
) -> None:
    """The decode loop's greedy shortcut (argmax for the whole step) hands such a row to the search,
    which masks pad and bos: the translation is the fake's usual one, its score that of real tokens."""

    class LovesPad(fake_model_class):  # type: ignore[misc,valid-type]
        def decode_step(self, previous_tokens, state, memory):  # type: ignore[no-untyped-def]
            out = super().decode_step(previous_tokens, state, memory)
            out.log_probs[:, SPECIAL.pad_id] = 0.0  # above every real token
            return out

    model = LovesPad()
    reports: queue.SimpleQueue[DecoderReport] = queue.SimpleQueue()
    decoder = DecodeLoop(model, SPECIAL, reports.put)
    decoder.start()
    try:
        group = tickets(event_loop_for_futures, [[5, 6], [7, 8, 9]])
        decoder.join([encoded(model, group)])
        seen = collect(reports, lambda seen: len(finished_keys(seen)) == 2)
    finally:
        decoder.stop()
    results = {t.key: res for r in seen for t, res in r.finished}
    assert results[0].target_ids == greedy_oracle([5, 6, 3])
    assert results[1].target_ids == greedy_oracle([7, 8, 9, 3])
    assert all(-20 < res.score < 0 for res in results.values())  # pad's log-prob 0 was never taken


def test_stop_ends_the_thread_and_lets_go_of_the_batch(fake_model_class, event_loop_for_futures) -> None:
    """A model reload stops the old version's scheduler: its decoder thread must not linger."""
    model = fake_model_class(step_delay_s=0.01)
    reports: queue.SimpleQueue[DecoderReport] = queue.SimpleQueue()
    decoder = DecodeLoop(model, SPECIAL, reports.put)
    decoder.start()
    decoder.join([encoded(model, tickets(event_loop_for_futures, [[50, 5]]))])
    collect(reports, lambda seen: sum(len(r.step_rows) for r in seen) >= 1)  # it is decoding
    decoder.stop()
    decoder._thread.join(timeout=5)
    assert not decoder._thread.is_alive()
    assert decoder.live_rows == 0 and decoder._batch is None
    steps = len(model.step_rows)
    time.sleep(0.05)
    assert len(model.step_rows) == steps  # no step after the stop
