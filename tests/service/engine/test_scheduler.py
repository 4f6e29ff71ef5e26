"""Scheduler behaviour with a fake model: batching at step boundaries, ordering, deadlines,
cancellation, overload, drain, failure isolation and equivalence of the three batching modes."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar

import numpy as np
import pytest

from service.engine import (
    DeadlineExceeded,
    Draining,
    EngineFailure,
    GreedySearch,
    InvalidRequest,
    Overloaded,
    Scheduler,
    SchedulerConfig,
    SpecialIds,
    StepStats,
    TranslationRequest,
    TranslationResult,
)
from service.engine.batch import SOURCE_ALIGN

SPECIAL = SpecialIds(pad_id=0, unk_id=1, bos_id=2, eos_id=3)
T = TypeVar("T")


def aligned(source_positions: int) -> int:
    """The memory's source axis for the longest source: rounded up to SOURCE_ALIGN."""
    return -(-source_positions // SOURCE_ALIGN) * SOURCE_ALIGN


def run(coro: Coroutine[Any, Any, T], timeout_s: float = 30.0) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


@contextlib.asynccontextmanager
async def running(
    model: Any, on_stats: Callable[[StepStats], None] | None = None, **config: Any
) -> AsyncIterator[Scheduler]:
    scheduler = Scheduler(model, SPECIAL, SchedulerConfig(**config), on_stats=on_stats)
    await scheduler.start()
    try:
        yield scheduler
    finally:
        await scheduler.stop()


async def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.002)


def request(source: list[int], **kwargs: Any) -> TranslationRequest:
    return TranslationRequest(source_ids=[*source, SPECIAL.eos_id], **kwargs)


def test_greedy_translation_follows_the_model(fake_model, greedy_oracle) -> None:
    async def main() -> TranslationResult:
        async with running(fake_model) as scheduler:
            return await scheduler.submit(request([6, 9, 12]))

    result = run(main())
    assert result.target_ids == greedy_oracle([6, 9, 12, 3])
    assert result.attention is None
    assert -20 < result.score < 0
    assert result.queue_wait_seconds >= 0 and result.encode_seconds > 0 and result.decode_seconds > 0
    # the model ran on the worker threads (one per graph), never on the event loop's thread
    assert fake_model.threads == {"engine-encoder_0", "engine-decoder"}


def test_lanes_decode_short_and_long_sources_on_their_own_threads(fake_model, greedy_oracle) -> None:
    """decoder_lane_bounds=(8,): sources of up to 8 tokens (eos included) and longer ones are encoded
    in separate calls and stepped by separate decoder threads, so the short rows attend over 8
    positions instead of the long ones' 32. Every translation is still the model's."""
    sources = [[5, 6], [7, 8, 9], [6, 5, 4, 7, 8, 9, 10], [9, *range(4, 30)], [4, *range(10, 30)]]

    async def main() -> tuple[list[TranslationResult], int]:
        async with running(fake_model, decoder_lane_bounds=(8,)) as scheduler:
            results = await asyncio.gather(*(scheduler.submit(request(s)) for s in sources))
            return results, scheduler.snapshot().active_rows

    results, active_rows = run(main())
    assert [r.target_ids for r in results] == [greedy_oracle([*s, 3]) for s in sources]
    assert active_rows == 0
    assert fake_model.encode_rows == [3, 2]  # admitted together: one encoder call per lane
    steps = list(zip(fake_model.step_threads, fake_model.step_src_lens, strict=True))
    assert {src_len for thread, src_len in steps if thread == "engine-decoder"} == {8}
    assert {src_len for thread, src_len in steps if thread == "engine-decoder-1"} == {aligned(28)}
    assert len(steps) == 10 + 8  # each lane steps until its own longest output (+ eos) is done


def test_attention_rows_cover_every_generated_token(fake_model, greedy_oracle) -> None:
    source = [5, 11, 17, 23, 3]

    async def main() -> TranslationResult:
        async with running(fake_model) as scheduler:
            return await scheduler.submit(TranslationRequest(source, want_attention=True))

    result = run(main())
    assert result.target_ids == greedy_oracle(source)
    assert result.attention is not None
    assert result.attention.shape == (len(result.target_ids) + 1, len(source))
    assert result.attention.dtype == np.float32
    np.testing.assert_allclose(result.attention.sum(1), 1.0, rtol=1e-5)
    previous = [SPECIAL.bos_id, *result.target_ids]
    expected_peaks = [(step + previous[step]) % len(source) for step in range(len(previous))]
    assert result.attention.argmax(1).tolist() == expected_peaks


def test_requests_admitted_together_share_one_encoder_call(fake_model, greedy_oracle) -> None:
    sources = [[4 + i, 7, 8 + i] for i in range(6)]

    async def main() -> list[TranslationResult]:
        async with running(fake_model) as scheduler:
            return await asyncio.gather(*(scheduler.submit(request(s)) for s in sources))

    results = run(main())
    assert [r.target_ids for r in results] == [greedy_oracle([*s, 3]) for s in sources]
    assert fake_model.encode_rows == [6]
    # the k-th source produces 4 + k tokens + eos; a finished request's rows stay (dead, ignored)
    # while they are at most a quarter of the batch, then the batch is compacted
    assert fake_model.step_rows[:5] == [6] * 5
    assert fake_model.step_rows[5:] == [6, 4, 4, 2, 1]


def test_short_request_joins_a_running_batch_and_finishes_first(slow_model, greedy_oracle) -> None:
    long_source, short_source = [40, 5, 6, 7, 8, 9, 10, 11], [3 + 1, 5]
    finished: list[str] = []

    async def main() -> tuple[TranslationResult, TranslationResult]:
        async with running(slow_model) as scheduler:

            async def translate(name: str, source: list[int]) -> TranslationResult:
                result = await scheduler.submit(request(source, max_length=60))
                finished.append(name)
                return result

            long_task = asyncio.create_task(translate("long", long_source))
            await wait_until(lambda: len(slow_model.step_rows) >= 3)
            short = await translate("short", short_source)
            assert scheduler.snapshot().active_requests == 1  # the long one is still decoding
            return await long_task, short

    long_result, short_result = run(main())
    assert finished == ["short", "long"]
    assert long_result.target_ids == greedy_oracle([*long_source, 3])
    assert short_result.target_ids == greedy_oracle([*short_source, 3])
    assert slow_model.encode_rows == [1, 1]
    assert 2 in slow_model.step_rows  # they shared decoder steps
    assert slow_model.step_rows[-1] == 1  # and the long one went on alone
    # memory was padded to the long source (rounded up) while both ran, and stayed so
    assert set(slow_model.step_src_lens) == {aligned(len(long_source) + 1)}


def test_memory_shrinks_when_the_long_source_leaves(slow_model) -> None:
    async def main() -> None:
        async with running(slow_model) as scheduler:
            await asyncio.gather(
                scheduler.submit(request([30, 5])),  # short source, long output
                scheduler.submit(request([4, 5, 6, 7, 8, 9, 10, 11, 12, 13])),  # long source, short output
            )

    run(main())
    assert slow_model.step_src_lens[0] == aligned(11) == 16
    assert slow_model.step_src_lens[-1] == aligned(3) == 8  # halved: the rows were re-laid out
    assert slow_model.step_rows[-1] == 1


def test_many_concurrent_requests_get_their_own_results(fake_model, greedy_oracle) -> None:
    rng = random.Random(3)
    sources = [
        [rng.randint(4, 30)] + [rng.randint(4, 63) for _ in range(rng.randint(0, 12))] for _ in range(40)
    ]

    async def main() -> list[TranslationResult]:
        async with running(fake_model, max_batch_rows=8) as scheduler:
            tasks = []
            for source in sources:
                tasks.append(asyncio.create_task(scheduler.submit(request(source, max_length=64))))
                await asyncio.sleep(rng.random() * 0.002)  # arrivals spread over several steps
            return await asyncio.gather(*tasks)

    results = run(main())
    assert [r.target_ids for r in results] == [greedy_oracle([*s, 3]) for s in sources]
    assert max(fake_model.step_rows) <= 8
    assert len(fake_model.encode_rows) > 1


def test_max_length_caps_the_output_and_forces_eos(fake_model, greedy_oracle) -> None:
    async def main() -> TranslationResult:
        async with running(fake_model) as scheduler:
            return await scheduler.submit(request([50, 6], max_length=7, want_attention=True))

    result = run(main())
    assert result.target_ids == greedy_oracle([50, 6, 3])[:7]
    assert result.attention is not None and result.attention.shape == (8, 3)


def test_default_max_length_derives_from_the_source(fake_model) -> None:
    async def main() -> TranslationResult:
        async with running(fake_model, max_output_tokens=12) as scheduler:
            return await scheduler.submit(request([60, 6]))  # wants 60 tokens; 2 * 3 + 10 = 16 > cap 12

    assert len(run(main()).target_ids) == 12


def test_invalid_requests_are_rejected_before_queueing(fake_model) -> None:
    async def main() -> list[str]:
        errors = []
        async with running(fake_model, max_batch_rows=4, max_output_tokens=50) as scheduler:
            for bad in (
                TranslationRequest([]),
                TranslationRequest([5, 64, 3]),
                TranslationRequest([5, -1, 3]),
                request([5], beam_size=0),
                request([5], beam_size=9),
                request([5], beam_size=5),  # wider than max_batch_rows
                request([5], max_length=0),
                request([5], max_length=51),
                request([5], length_penalty=float("nan")),
            ):
                with pytest.raises(InvalidRequest) as info:
                    await scheduler.submit(bad)
                errors.append(str(info.value))
            assert scheduler.snapshot().queue_depth == 0
        return errors

    errors = run(main())
    assert len(errors) == 9 and all(errors)
    assert fake_model.encode_rows == []


def test_deadline_exceeded_frees_the_rows(slow_model, greedy_oracle) -> None:
    stats: list[StepStats] = []

    async def main() -> TranslationResult:
        async with running(slow_model, on_stats=stats.append) as scheduler:
            started = time.monotonic()
            with pytest.raises(DeadlineExceeded):
                await scheduler.submit(request([60, 5], max_length=60, deadline=time.monotonic() + 0.05))
            assert time.monotonic() - started < 0.5  # answered at the deadline, not at the end
            await wait_until(lambda: scheduler.snapshot().active_rows == 0)
            with pytest.raises(DeadlineExceeded):  # already past: refused at once
                await scheduler.submit(request([5], deadline=time.monotonic() - 1))
            return await scheduler.submit(request([5, 6]))  # the loop keeps serving

    assert run(main()).target_ids == greedy_oracle([5, 6, 3])
    assert sum(s.expired for s in stats) == 1
    assert len(slow_model.step_rows) < 30  # the expired request stopped decoding early


def test_a_request_that_expires_in_the_queue_reports_its_wait(slow_model) -> None:
    """Its whole life was queueing: the wait goes to the queue-wait metric (autoscaling reads its mean),
    not nowhere because the request never finished."""
    stats: list[StepStats] = []

    async def main() -> None:
        async with running(slow_model, on_stats=stats.append, max_batch_rows=1) as scheduler:
            first = asyncio.create_task(scheduler.submit(request([60, 5], max_length=60)))
            await wait_until(lambda: scheduler.snapshot().active_requests == 1)
            with pytest.raises(DeadlineExceeded):  # the one row is taken: it waits, then expires
                await scheduler.submit(request([5], deadline=time.monotonic() + 0.05))
            first.cancel()
            await asyncio.gather(first, return_exceptions=True)

    run(main())
    waits = [wait for s in stats for wait in s.unadmitted_queue_waits]
    assert len(waits) == 1 and 0.04 <= waits[0] < 1.0, waits


def test_a_result_that_cannot_be_built_fails_that_request_and_frees_its_rows(
    fake_model, greedy_oracle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in building one result (search.best) is an EngineFailure for that request, not a request
    out of the batch but never answered, with its rows held for good (and, at one row, nothing else served)."""
    original = GreedySearch.best
    calls = {"n": 0}

    def best_failing_first(self: GreedySearch) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ValueError("injected")
        return original(self)

    monkeypatch.setattr(GreedySearch, "best", best_failing_first)

    async def main() -> TranslationResult:
        async with running(fake_model, max_batch_rows=1) as scheduler:
            with pytest.raises(EngineFailure):
                await scheduler.submit(request([5, 6], deadline=time.monotonic() + 5))
            await wait_until(lambda: scheduler.snapshot().active_rows == 0)
            return await scheduler.submit(request([5, 6]))

    assert run(main()).target_ids == greedy_oracle([5, 6, 3])


def test_default_timeout_applies_without_a_deadline(slow_model) -> None:
    async def main() -> None:
        async with running(slow_model, default_timeout_s=0.05) as scheduler:
            with pytest.raises(DeadlineExceeded):
                await scheduler.submit(request([60, 5], max_length=60))

    run(main())


def test_cancelled_requests_leak_no_rows_or_futures(slow_model, greedy_oracle) -> None:
    rng = random.Random(0)
    stats: list[StepStats] = []

    async def main() -> TranslationResult:
        async with running(slow_model, on_stats=stats.append, max_batch_rows=6) as scheduler:
            requests = [request([rng.randint(10, 40), 5], beam_size=rng.randint(1, 3)) for _ in range(60)]
            tasks = [asyncio.create_task(scheduler.submit(r)) for r in requests]
            for task in rng.sample(tasks, len(tasks)):  # cancel queued and active ones alike
                await asyncio.sleep(rng.random() * 0.004)
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await wait_until(lambda: scheduler.snapshot().active_rows == 0)
            snapshot = scheduler.snapshot()
            assert (snapshot.queue_depth, snapshot.active_requests, snapshot.active_rows) == (0, 0, 0)
            assert not scheduler._waiting and not scheduler._decoding and scheduler._held_rows == 0
            return await scheduler.submit(request([6, 7]))

    assert run(main()).target_ids == greedy_oracle([6, 7, 3])
    finished = sum(len(s.finished) for s in stats)
    assert sum(s.cancelled for s in stats) + finished == 61
    assert sum(s.cancelled for s in stats) > 30


def test_full_queue_raises_overloaded(slow_model, greedy_oracle) -> None:
    async def main() -> list[TranslationResult]:
        async with running(slow_model, max_batch_rows=1, max_queue_requests=2) as scheduler:
            first = asyncio.create_task(scheduler.submit(request([20, 5], max_length=60)))
            await wait_until(lambda: scheduler.snapshot().active_requests == 1)
            queued = [asyncio.create_task(scheduler.submit(request([4 + i, 5]))) for i in range(2)]
            await wait_until(lambda: scheduler.snapshot().queue_depth == 2)
            with pytest.raises(Overloaded) as info:
                await scheduler.submit(request([5]))
            assert info.value.retry_after_s > 0
            return await asyncio.gather(first, *queued)

    results = run(main())
    assert [r.target_ids for r in results] == [greedy_oracle(s) for s in ([20, 5, 3], [4, 5, 3], [5, 5, 3])]


def test_drain_finishes_accepted_work_and_refuses_new(slow_model, greedy_oracle) -> None:
    sources = [[12, 5], [6, 7], [8, 9]]

    async def main() -> list[TranslationResult]:
        scheduler = Scheduler(slow_model, SPECIAL, SchedulerConfig(max_batch_rows=1))
        await scheduler.start()
        tasks = [asyncio.create_task(scheduler.submit(request(s))) for s in sources]
        await wait_until(lambda: scheduler.snapshot().active_requests == 1)
        drain = asyncio.create_task(scheduler.drain(timeout_s=10))
        await asyncio.sleep(0)
        with pytest.raises(Draining):
            await scheduler.submit(request([5]))
        assert scheduler.snapshot().draining
        results = await asyncio.gather(*tasks)
        await drain
        assert not scheduler.snapshot().running
        with pytest.raises(Draining):
            await scheduler.submit(request([5]))
        return results

    results = run(main())
    assert [r.target_ids for r in results] == [greedy_oracle([*s, 3]) for s in sources]


def test_drain_timeout_fails_what_is_left(slow_model) -> None:
    async def main() -> None:
        scheduler = Scheduler(slow_model, SPECIAL, SchedulerConfig())
        await scheduler.start()
        task = asyncio.create_task(scheduler.submit(request([60, 5], max_length=60)))
        await wait_until(lambda: scheduler.snapshot().active_requests == 1)
        await scheduler.drain(timeout_s=0.05)
        with pytest.raises(Draining):
            await task
        assert scheduler.snapshot().active_rows == 0

    run(main())


def test_a_failing_step_fails_only_its_requests(failing_model_class, greedy_oracle) -> None:
    model = failing_model_class(fail_step=3, step_delay_s=0.005)
    stats: list[StepStats] = []

    async def main() -> tuple[list[Any], TranslationResult]:
        async with running(model, on_stats=stats.append, max_batch_rows=2) as scheduler:
            in_step = [asyncio.create_task(scheduler.submit(request([10, 4 + i]))) for i in range(2)]
            queued = asyncio.create_task(scheduler.submit(request([5, 9])))  # no rows left for it yet
            outcomes = await asyncio.gather(*in_step, queued, return_exceptions=True)
            later = await scheduler.submit(request([7, 8]))
            return outcomes, later

    outcomes, later = run(main())
    assert all(isinstance(o, EngineFailure) for o in outcomes[:2])
    assert "decoder step" in str(outcomes[0])
    assert isinstance(outcomes[2], TranslationResult)
    assert outcomes[2].target_ids == greedy_oracle([5, 9, 3])
    assert later.target_ids == greedy_oracle([7, 8, 3])
    assert sum(s.failed for s in stats) == 2


def test_a_failing_encoder_call_fails_only_the_admitted_requests(failing_model_class, greedy_oracle) -> None:
    model = failing_model_class(fail_encode=1)

    async def main() -> tuple[Any, TranslationResult]:
        async with running(model) as scheduler:
            first = await asyncio.gather(scheduler.submit(request([5, 6])), return_exceptions=True)
            return first[0], await scheduler.submit(request([5, 6]))

    failed, ok = run(main())
    assert isinstance(failed, EngineFailure)
    assert ok.target_ids == greedy_oracle([5, 6, 3])


def test_newcomers_are_encoded_while_the_running_batch_steps(fake_model_class, greedy_oracle) -> None:
    """Continuous mode overlaps the encoder call of new requests with the running decoder step."""
    model = fake_model_class(step_delay_s=0.02, encode_delay_s=0.02)
    long_source, short_source = [30, 5, 6, 7], [4, 8, 9]

    async def main() -> tuple[TranslationResult, TranslationResult]:
        async with running(model) as scheduler:
            long_task = asyncio.create_task(scheduler.submit(request(long_source, max_length=60)))
            await wait_until(lambda: len(model.step_spans) >= 2)
            short = await scheduler.submit(request(short_source))
            return await long_task, short

    long_result, short_result = run(main())
    assert long_result.target_ids == greedy_oracle([*long_source, 3])
    assert short_result.target_ids == greedy_oracle([*short_source, 3])
    newcomer_start, newcomer_end = model.encode_spans[1]
    assert any(start < newcomer_end and newcomer_start < end for start, end in model.step_spans), (
        "the newcomer's encoder call did not overlap any decoder step"
    )


def test_the_batch_keeps_stepping_while_a_slow_encoder_call_runs(fake_model_class, greedy_oracle) -> None:
    """A slow encoder call (a long source through a bidirectional RNN) must not stall the running rows."""
    model = fake_model_class(step_delay_s=0.005, encode_delay_s=0.15)
    model.encode_delay_s = 0.0  # the first request is encoded at once ...

    async def main() -> tuple[TranslationResult, TranslationResult]:
        async with running(model) as scheduler:
            long_task = asyncio.create_task(scheduler.submit(request([40, 5, 6], max_length=60)))
            await wait_until(lambda: len(model.step_spans) >= 2)
            model.encode_delay_s = 0.15  # ... the newcomer's encoding is slow
            newcomer = await scheduler.submit(request([4, 7]))
            return await long_task, newcomer

    long_result, newcomer = run(main())
    assert long_result.target_ids == greedy_oracle([40, 5, 6, 3])
    assert newcomer.target_ids == greedy_oracle([4, 7, 3])
    start, end = model.encode_spans[1]
    steps_during = [s for s in model.step_spans if start <= s[0] and s[1] <= end]
    assert len(steps_during) >= 5, f"only {len(steps_during)} decoder steps ran during a 150 ms encoder call"


def test_stop_while_newcomers_are_encoded_fails_them_instead_of_losing_them(fake_model_class) -> None:
    model = fake_model_class(step_delay_s=0.01, encode_delay_s=0.3)

    async def main() -> list[Any]:
        scheduler = Scheduler(model, SPECIAL, SchedulerConfig())
        await scheduler.start()
        first = asyncio.create_task(scheduler.submit(request([50, 5])))
        await wait_until(lambda: len(model.step_spans) >= 1)
        newcomer = asyncio.create_task(scheduler.submit(request([4, 6])))
        await wait_until(lambda: len(model.encode_rows) >= 2)  # being encoded, in neither queue nor batch
        await scheduler.stop()
        return list(await asyncio.gather(first, newcomer, return_exceptions=True))

    outcomes = run(main(), timeout_s=10.0)
    assert all(isinstance(o, Draining) for o in outcomes), outcomes


def test_a_failing_step_spares_the_newcomers_encoded_during_it(fake_model_class, greedy_oracle) -> None:
    """The step that fails holds only the running request; the one being encoded meanwhile is not in it."""

    class FailsWhileEncoding(fake_model_class):  # type: ignore[misc,valid-type]
        newcomer_encoding = False

        def encode(self, source_ids, source_lengths):  # type: ignore[no-untyped-def]
            self.newcomer_encoding = bool(self.encode_rows)  # the second call is the newcomer's
            return super().encode(source_ids, source_lengths)

        def decode_step(self, previous_tokens, state, memory):  # type: ignore[no-untyped-def]
            out = super().decode_step(previous_tokens, state, memory)
            if self.newcomer_encoding and not getattr(self, "failed", False):
                self.failed = True  # the step that ran while the newcomer was encoded
                raise RuntimeError("injected decoder failure")
            return out

    model = FailsWhileEncoding(step_delay_s=0.01, encode_delay_s=0.05)

    async def main() -> list[Any]:
        async with running(model) as scheduler:
            first = asyncio.create_task(scheduler.submit(request([50, 5], max_length=60)))
            await wait_until(lambda: len(model.step_spans) >= 1)
            newcomer = asyncio.create_task(scheduler.submit(request([4, 6])))
            return list(await asyncio.gather(first, newcomer, return_exceptions=True))

    failed, newcomer = run(main())
    assert isinstance(failed, EngineFailure), failed
    assert isinstance(newcomer, TranslationResult), newcomer
    assert newcomer.target_ids == greedy_oracle([4, 6, 3])


def _mixed_workload() -> list[TranslationRequest]:
    rng = random.Random(11)
    requests = []
    for i in range(24):
        source = [rng.randint(4, 25)] + [rng.randint(4, 63) for _ in range(rng.randint(0, 10))]
        requests.append(
            request(source, beam_size=(1, 1, 2, 4)[i % 4], want_attention=i % 3 == 0, length_penalty=0.6)
        )
    return requests


@pytest.mark.parametrize("mode", ["static", "off"])
def test_batching_modes_give_identical_translations(mode: str, fake_model_class, greedy_oracle) -> None:
    requests = _mixed_workload()

    async def translate_all(batching: str) -> list[TranslationResult]:
        async with running(fake_model_class(), mode=batching, max_batch_rows=12) as scheduler:
            tasks = []
            for i, req in enumerate(requests):
                tasks.append(asyncio.create_task(scheduler.submit(req)))
                if i % 5 == 0:
                    await asyncio.sleep(0.003)
            return await asyncio.gather(*tasks)

    continuous = run(translate_all("continuous"))
    other = run(translate_all(mode))
    for req, a, b in zip(requests, continuous, other, strict=True):
        assert a.target_ids == b.target_ids
        assert a.score == pytest.approx(b.score, abs=1e-9)
        if req.want_attention:
            assert a.attention is not None and b.attention is not None
            np.testing.assert_allclose(a.attention, b.attention, atol=1e-6)
        else:
            assert a.attention is None and b.attention is None
        if req.beam_size == 1:
            assert a.target_ids == greedy_oracle(req.source_ids)[: 2 * len(req.source_ids) + 10]


def test_static_mode_decodes_a_batch_to_completion_before_admitting(fake_model) -> None:
    async def main() -> None:
        async with running(fake_model, mode="static", static_max_wait_ms=30, max_batch_rows=8) as scheduler:
            first = [
                asyncio.create_task(scheduler.submit(request([20, 4 + i], max_length=60))) for i in range(3)
            ]
            await wait_until(lambda: len(fake_model.step_rows) >= 2)
            late = asyncio.create_task(scheduler.submit(request([4, 9])))
            await asyncio.gather(*first, late)

    run(main())
    assert fake_model.encode_rows == [3, 1]
    assert fake_model.step_rows == [3] * 21 + [1] * 5


@pytest.mark.parametrize("mode", ["static", "continuous"])
def test_static_mode_answers_a_batch_together_continuous_each_request_as_it_ends(
    mode: str, fake_model_class, greedy_oracle
) -> None:
    model = fake_model_class(step_delay_s=0.002)
    short_source, long_source = [3, 4, 3], [30, 5, 3]  # 3 tokens + eos: 4 steps; 31 steps

    async def main() -> tuple[bool, list[TranslationResult]]:
        async with running(model, mode=mode, static_max_wait_ms=50, max_batch_rows=8) as scheduler:
            short = asyncio.create_task(scheduler.submit(TranslationRequest(short_source)))
            long = asyncio.create_task(scheduler.submit(TranslationRequest(long_source, max_length=40)))
            await wait_until(lambda: len(model.step_rows) >= 12)  # the short row ended 8 steps ago
            await asyncio.sleep(0)  # a finished answer's future resolves on this loop's next turn
            short_answered_early = short.done()
            return short_answered_early, list(await asyncio.gather(short, long))

    short_answered_early, (short, long) = run(main())
    assert short_answered_early == (mode == "continuous")
    assert short.target_ids == greedy_oracle(short_source)
    assert long.target_ids == greedy_oracle(long_source)
    # Either way the short row left the batch when it ended: no decoder work is spent on it.
    assert model.step_rows == [2] * 4 + [1] * 27


def test_stopping_a_static_batch_answers_its_finished_requests(fake_model_class, greedy_oracle) -> None:
    model = fake_model_class(step_delay_s=0.002)
    short_source = [3, 4, 3]

    async def main() -> list[TranslationResult | BaseException]:
        scheduler = Scheduler(model, SPECIAL, SchedulerConfig(mode="static", static_max_wait_ms=50))
        await scheduler.start()
        short = asyncio.create_task(scheduler.submit(TranslationRequest(short_source)))
        long = asyncio.create_task(scheduler.submit(TranslationRequest([30, 5, 3], max_length=40)))
        await wait_until(lambda: len(model.step_rows) >= 8)
        assert not short.done()  # held for the batch
        await scheduler.stop()
        return list(await asyncio.gather(short, long, return_exceptions=True))

    short, long = run(main())
    assert isinstance(short, TranslationResult) and short.target_ids == greedy_oracle(short_source)
    assert isinstance(long, Draining), long


def test_static_mode_starts_when_the_batch_is_full(fake_model) -> None:
    async def main() -> float:
        config = {"mode": "static", "static_max_wait_ms": 10_000, "max_batch_rows": 4}
        async with running(fake_model, **config) as scheduler:
            started = time.monotonic()
            await asyncio.gather(*(scheduler.submit(request([5, 4 + i])) for i in range(4)))
            return time.monotonic() - started

    assert run(main()) < 5.0
    assert fake_model.encode_rows == [4]


def test_off_mode_runs_one_request_at_a_time(fake_model) -> None:
    async def main() -> None:
        async with running(fake_model, mode="off") as scheduler:
            requests = [request([6, 4 + i], beam_size=1 + i % 2) for i in range(5)]
            await asyncio.gather(*(scheduler.submit(r) for r in requests))

    run(main())
    assert fake_model.encode_rows == [1] * 5
    assert set(fake_model.step_rows) <= {1, 2}


def test_beam_requests_occupy_beam_size_rows_and_return_consistent_attention(fake_model) -> None:
    source = [9, 14, 21, 33, 3]

    async def main() -> list[TranslationResult]:
        async with running(fake_model) as scheduler:
            return await asyncio.gather(
                scheduler.submit(TranslationRequest(source, beam_size=4, want_attention=True)),
                scheduler.submit(TranslationRequest(source, beam_size=3)),
            )

    beam4, beam3 = run(main())
    assert fake_model.step_rows[0] == 7
    assert beam4.attention is not None and beam3.attention is None
    assert beam4.attention.shape == (len(beam4.target_ids) + 1, len(source))
    np.testing.assert_allclose(beam4.attention.sum(1), 1.0, rtol=1e-5)
    # each attention row belongs to the chosen hypothesis: it peaks where that hypothesis's
    # previous token sent it (backpointers were followed correctly)
    previous = [SPECIAL.bos_id, *beam4.target_ids]
    peaks = [(t + previous[t]) % len(source) for t in range(len(previous))]
    assert beam4.attention.argmax(1).tolist() == peaks


def test_stats_cover_every_step_and_request_and_the_idle_engine_emits_none(fake_model) -> None:
    stats: list[StepStats] = []

    async def main() -> int:
        async with running(fake_model, on_stats=stats.append) as scheduler:
            await asyncio.gather(*(scheduler.submit(request([4 + i, 5, 6])) for i in range(3)))
            emitted = len(stats)
            await asyncio.sleep(0.1)  # idle: no steps, no stats
            assert len(stats) == emitted
            assert scheduler.snapshot().running
        return emitted

    run(main())
    first = stats[0]  # emitted when the encoding was handed to the decoder
    assert (first.encoder_calls, first.requests_admitted, first.rows_admitted) == (1, 3, 3)
    assert (first.total_source_positions, first.padded_source_positions) == (12, 0)
    assert sum(s.encoder_calls for s in stats) == 1
    step_rows = [rows for s in stats for rows in s.step_rows]
    assert step_rows == fake_model.step_rows  # every step once, live rows (no holes here)
    # the decoder's thread reports when requests end (3 endings here), not after every step
    assert len(stats) < len(fake_model.step_rows)
    finished = [f for s in stats for f in s.finished]
    assert sorted(f.generated_tokens for f in finished) == [5, 6, 7]
    assert sum(s.generated_tokens for s in stats) == 5 + 6 + 7
    assert stats[-1].active_rows == 0 and stats[-1].queue_depth == 0


def test_event_loop_stays_responsive_during_slow_steps(fake_model_class) -> None:
    model = fake_model_class(step_delay_s=0.05)

    async def main() -> float:
        async with running(model) as scheduler:
            task = asyncio.create_task(scheduler.submit(request([6, 5])))
            worst, last = 0.0, time.monotonic()
            while not task.done():
                await asyncio.sleep(0.005)
                now = time.monotonic()
                worst, last = max(worst, now - last), now
            await task
            return worst

    # a 50 ms step on the event loop would show up as a >= 50 ms gap
    assert run(main()) < 0.045


def test_submit_before_start_and_after_stop_raises_draining(fake_model) -> None:
    async def main() -> None:
        scheduler = Scheduler(fake_model, SPECIAL, SchedulerConfig())
        with pytest.raises(Draining):
            await scheduler.submit(request([5]))
        await scheduler.start()
        assert (await scheduler.submit(request([5]))).target_ids
        await scheduler.stop()
        with pytest.raises(Draining):
            await scheduler.submit(request([5]))

    run(main())


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        SchedulerConfig(mode="dynamic")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SchedulerConfig(max_batch_rows=0)
    assert SchedulerConfig(max_output_tokens=100).default_max_length(20) == 50
    assert SchedulerConfig(max_output_tokens=40).default_max_length(20) == 40


def test_a_lone_small_request_is_encoded_on_the_event_loop_thread_when_inlining_is_on(
    fake_model, greedy_oracle
) -> None:
    """inline_max_rows: with nothing to overlap, a small encoder call skips the thread hand-off; the
    default (0) always uses the encoder's thread. Decoder steps always run on the decoder's thread."""
    import threading

    loop_thread = threading.current_thread().name  # asyncio.run runs the loop on this thread

    async def translate(**config: Any) -> list[int]:
        async with running(fake_model, **config) as scheduler:
            return (await scheduler.submit(request([6, 5, 4]))).target_ids

    assert run(translate()) == greedy_oracle([6, 5, 4, 3])
    assert fake_model.encode_threads == ["engine-encoder_0"]
    assert run(translate(inline_max_rows=4)) == greedy_oracle([6, 5, 4, 3])
    assert fake_model.encode_threads == ["engine-encoder_0", loop_thread]
    assert set(fake_model.step_threads) == {"engine-decoder"}


def test_inlining_leaves_big_batches_and_long_sources_on_the_encoder_thread(fake_model_class, greedy_oracle) -> None:
    import threading

    loop_thread = threading.current_thread().name
    model = fake_model_class(step_delay_s=0.002)
    sources = [[4 + i, 5, 6] for i in range(8)]
    long_source = [7] * 80  # 81 positions with eos: above INLINE_MAX_SOURCE_POSITIONS

    async def main() -> list[TranslationResult]:
        async with running(model, inline_max_rows=2) as scheduler:
            together = await asyncio.gather(*(scheduler.submit(request(s)) for s in sources))
            await scheduler.submit(request(long_source, max_length=1))
            await scheduler.submit(request([5, 6]))
            return together

    together = run(main())
    assert [r.target_ids for r in together] == [greedy_oracle([*s, 3]) for s in sources]
    assert model.encode_rows == [8, 1, 1]
    # 8 rows > 2: the encoder's thread; the long source too; the lone short one: inline
    assert model.encode_threads == ["engine-encoder_0", "engine-encoder_0", loop_thread]


def test_finished_rows_stay_as_holes_so_the_memory_is_not_copied(fake_model_class, greedy_oracle) -> None:
    """When one request of many ends, its slot stays in the stepped range (outputs ignored) and the
    decoder keeps getting the same memory arrays: no copy of the batch's memory per ending."""
    model = fake_model_class()
    calls: list[tuple[Any, int]] = []
    decode_step = model.decode_step

    def recording(tokens: np.ndarray, state: Any, memory: Any) -> Any:
        calls.append((memory, int(tokens.shape[0])))
        return decode_step(tokens, state, memory)

    model.decode_step = recording
    sources = [[4 + i, 7, 8 + i] for i in range(8)]  # the k-th ends after 5 + k steps
    stats: list[StepStats] = []

    async def main() -> list[TranslationResult]:
        async with running(model, on_stats=stats.append) as scheduler:
            return await asyncio.gather(*(scheduler.submit(request(s)) for s in sources))

    results = run(main())
    assert [r.target_ids for r in results] == [greedy_oracle([*s, 3]) for s in sources]
    rows = [n for _, n in calls]
    assert rows[:7] == [8] * 7  # the first two endings leave 1 and 2 holes in 8 rows: kept
    assert all(memory is calls[0][0] for memory, _ in calls[:7])  # the same arrays, never copied
    assert rows[7] == 5  # a third ending would make 3 holes in 8 (> 1/4): the last 3 rows move into them
    live = [rows for s in stats for rows in s.step_rows]
    assert live[5:9] == [7, 6, 5, 4], live  # what is reported is the live rows, not the holes


def test_sources_of_very_different_lengths_are_encoded_in_separate_calls(fake_model, greedy_oracle) -> None:
    """One long source must not make the short ones admitted with it pay for its length."""
    long_source = [6, *range(4, 64)]  # 61 tokens + eos
    sources = [[5 + i, 7, 8] for i in range(5)] + [long_source]
    stats: list[StepStats] = []

    async def main() -> list[TranslationResult]:
        async with running(fake_model, on_stats=stats.append) as scheduler:
            return await asyncio.gather(*(scheduler.submit(request(s)) for s in sources))

    results = run(main())
    assert [r.target_ids for r in results] == [greedy_oracle([*s, 3]) for s in sources]
    assert sorted(fake_model.encode_rows) == [1, 5]  # admitted together, encoded in two calls
    assert sum(s.encoder_calls for s in stats) == 2
    assert sum(s.padded_source_positions for s in stats) == 0  # not 5 x 58 padding positions


def test_a_big_request_lets_a_newcomer_in_once_it_holds_half_the_batch(slow_model) -> None:
    """12 sentences of one request (one group) on a batch of 4 rows, then a one-sentence request: it
    is admitted at the first free row, not after all 12 (first come, first served made it wait)."""
    finished: list[str] = []

    async def main() -> None:
        async with running(slow_model, max_batch_rows=4) as scheduler:

            async def translate(name: str, source: list[int], group: int | None) -> None:
                await scheduler.submit(request(source, max_length=6, group=group))
                finished.append(name)

            big = [asyncio.create_task(translate(f"big{i}", [5 + i, 6, 7], group=7)) for i in range(12)]
            await wait_until(lambda: len(slow_model.step_rows) >= 2)
            assert slow_model.step_rows[-1] == 4  # alone, the big request fills the whole batch
            await translate("lone", [9, 10, 11], group=None)
            await asyncio.gather(*big)

    run(main())
    assert len(finished) == 13
    assert finished.index("lone") < 8, finished  # in the second wave of rows, not after all 12


def test_fair_admission_keeps_first_come_first_served_among_single_requests(slow_model) -> None:
    order: list[int] = []

    async def main() -> None:
        async with running(slow_model, max_batch_rows=2) as scheduler:

            async def translate(index: int) -> None:
                await scheduler.submit(request([5, 6, 7], max_length=4))
                order.append(index)

            tasks = []
            for index in range(8):
                tasks.append(asyncio.create_task(translate(index)))
                await asyncio.sleep(0)  # queued in this order
            await asyncio.gather(*tasks)
            assert scheduler.snapshot().active_rows == 0

    run(main())
    # same length, so admitted two at a time in queue order and finished in that order (pairwise)
    assert [sorted(order[i:i + 2]) for i in range(0, 8, 2)] == [[0, 1], [2, 3], [4, 5], [6, 7]]


def test_a_request_that_first_asked_earlier_is_queued_where_it_would_have_been(slow_model) -> None:
    """queued_since: a sentence asked again after waiting on another request's failed decode goes
    ahead of what arrived meanwhile, and its queue wait counts from when it first asked."""
    order: list[str] = []

    async def main() -> None:
        async with running(slow_model, max_batch_rows=1) as scheduler:
            first_asked = time.monotonic()

            async def translate(name: str, max_length: int = 3, **kwargs: Any) -> None:
                await scheduler.submit(request([5, 6, 7], max_length=max_length, **kwargs))
                order.append(name)

            tasks = [asyncio.create_task(translate("running", max_length=30))]  # holds the only row
            await wait_until(lambda: scheduler.snapshot().active_rows == 1)
            for name in ("later 1", "later 2"):
                tasks.append(asyncio.create_task(translate(name)))
                await asyncio.sleep(0.005)
            tasks.append(asyncio.create_task(translate("again", queued_since=first_asked)))
            await wait_until(lambda: len(scheduler._waiting) == 3)
            assert scheduler._waiting[0].submitted_at == first_asked  # its queue wait counts from then
            await asyncio.gather(*tasks)

    run(main())
    assert order == ["running", "again", "later 1", "later 2"]
