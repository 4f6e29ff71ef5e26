"""A sentence in the engine for one request answers an equal one asked meanwhile by another (the cache's
flights, service.api.translation._submit_all), over a scripted scheduler: when the first request's
decode ends without an answer (its client left, the engine refused it), the second decodes it itself."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from service.api import translation
from service.engine import Overloaded, TranslationRequest, TranslationResult
from service.engine.result_cache import ResultCache
from service.metrics import ServiceMetrics


@dataclass
class ScriptedScheduler:
    """submit() waits until the test releases it, then answers with the source reversed (or raises
    `error`, once)."""

    submitted: list[list[int]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    error: Exception | None = None

    async def submit(self, request: TranslationRequest) -> TranslationResult:
        self.submitted.append(list(request.source_ids))
        await self.release.wait()
        error, self.error = self.error, None
        if error is not None:
            raise error
        return TranslationResult(target_ids=request.source_ids[::-1], attention=None, score=-1.0, scored_tokens=1,
                                 queue_wait_seconds=0.1, encode_seconds=0.2, decode_seconds=0.3,
                                 cut_at_max_length=False)


def _service(cache_mb: float = 1.0) -> tuple[Any, Any, ScriptedScheduler]:
    metrics = ServiceMetrics()
    state = SimpleNamespace(settings=SimpleNamespace(max_batch_rows=64, max_queue_requests=64), metrics=metrics)
    scheduler = ScriptedScheduler()
    loaded = SimpleNamespace(cache=ResultCache(int(cache_mb * 2**20)), scheduler=scheduler)
    return state, loaded, scheduler


def _lookups(state: Any) -> dict[str, float]:
    values = {result: state.metrics.registry.get_sample_value("translator_cache_lookups_total", {"result": result})
              for result in ("hit", "shared", "miss")}
    return {result: value or 0.0 for result, value in values.items()}


async def _until_submitted(scheduler: ScriptedScheduler, count: int) -> None:
    deadline = time.monotonic() + 5.0  # a request stuck waiting fails the test rather than hang it
    while len(scheduler.submitted) < count:
        assert time.monotonic() < deadline, f"{len(scheduler.submitted)} of {count} sentences submitted"
        await asyncio.sleep(0.001)


def _submit(state: Any, loaded: Any, *sources: list[int]) -> asyncio.Future[list[TranslationResult]]:
    requests = [TranslationRequest(source_ids=source) for source in sources]
    return asyncio.ensure_future(translation._submit_all(state, None, loaded, requests))  # type: ignore[arg-type]


async def _second_waiting_on_first() -> tuple[ScriptedScheduler, asyncio.Future[list[TranslationResult]],
                                             asyncio.Future[list[TranslationResult]]]:
    """Two requests of one sentence: the first in the engine, the second waiting on its flight."""
    state, loaded, scheduler = _service()
    first = _submit(state, loaded, [5, 6, 7])
    await _until_submitted(scheduler, 1)
    second = _submit(state, loaded, [5, 6, 7])
    await asyncio.sleep(0.01)
    assert len(scheduler.submitted) == 1  # waiting on the first one's flight
    return scheduler, first, second


def test_an_equal_sentence_in_the_engine_is_decoded_once() -> None:
    async def scenario() -> None:
        state, loaded, scheduler = _service()
        first = _submit(state, loaded, [5, 6, 7])
        await _until_submitted(scheduler, 1)
        second = _submit(state, loaded, [5, 6, 7], [8, 9])  # one equal sentence, one of its own
        await _until_submitted(scheduler, 2)
        await asyncio.sleep(0.01)
        assert scheduler.submitted == [[5, 6, 7], [8, 9]]
        scheduler.release.set()
        (mine,), (shared, own) = await first, await second
        assert shared.target_ids == mine.target_ids == [7, 6, 5] and own.target_ids == [9, 8]
        assert (shared.queue_wait_seconds, shared.encode_seconds) == (0.0, 0.0)  # it waited, as decode
        assert _lookups(state) == {"hit": 0, "shared": 1, "miss": 2}
        # once landed the answer is in the cache
        again = await _submit(state, loaded, [5, 6, 7])
        assert again[0].target_ids == [7, 6, 5] and len(scheduler.submitted) == 2
        assert _lookups(state)["hit"] == 1

    asyncio.run(scenario())


@pytest.mark.parametrize("ending", ["cancelled", "refused"])
def test_a_flight_that_ends_without_an_answer_is_decoded_by_who_waited(ending: str) -> None:
    async def scenario() -> None:
        scheduler, first, second = await _second_waiting_on_first()
        if ending == "cancelled":  # the first client left
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first
            await _until_submitted(scheduler, 2)
            scheduler.release.set()
        else:  # the engine refused the first one's sentence (queue full): the second asks again
            scheduler.error = Overloaded(retry_after_s=1.0)
            scheduler.release.set()
            with pytest.raises(Overloaded):
                await first
        (answer,) = await second
        assert answer.target_ids == [7, 6, 5] and scheduler.submitted == [[5, 6, 7], [5, 6, 7]]

    asyncio.run(scenario())


def test_a_waiter_that_leaves_does_not_end_the_flight() -> None:
    async def scenario() -> None:
        scheduler, first, second = await _second_waiting_on_first()
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        scheduler.release.set()
        (answer,) = await first
        assert answer.target_ids == [7, 6, 5] and len(scheduler.submitted) == 1

    asyncio.run(scenario())


def test_without_a_cache_every_request_decodes_its_own() -> None:
    async def scenario() -> None:
        state, loaded, scheduler = _service(cache_mb=0)
        first = _submit(state, loaded, [5, 6, 7])
        second = _submit(state, loaded, [5, 6, 7])
        await _until_submitted(scheduler, 2)
        scheduler.release.set()
        assert [r.target_ids for r in (*await first, *await second)] == [[7, 6, 5], [7, 6, 5]]
        assert _lookups(state) == {"hit": 0, "shared": 0, "miss": 2}

    asyncio.run(scenario())


def test_a_sentence_waiting_for_its_turn_in_a_document_is_not_shared() -> None:
    """A request's sentences enter the engine a window at a time (here one: the queue holds one): a
    one-line request asking one that still waits for its turn decodes it itself rather than wait
    behind the others."""
    async def scenario() -> None:
        state, loaded, scheduler = _service()
        state.settings.max_queue_requests = 1
        document = _submit(state, loaded, [1], [2], [3])
        await _until_submitted(scheduler, 1)
        line = _submit(state, loaded, [3])
        await _until_submitted(scheduler, 2)
        assert scheduler.submitted == [[1], [3]]
        scheduler.release.set()
        assert [r.target_ids for r in await document] == [[1], [2], [3]]
        assert (await line)[0].target_ids == [3]

    asyncio.run(scenario())



def test_a_text_asked_right_behind_an_equal_one_shares_all_its_sentences() -> None:
    """The first request's sentences are flights before any other request runs, not only once their
    tasks start: a burst of one multi-sentence text decodes each sentence once."""
    async def scenario() -> None:
        state, loaded, scheduler = _service()
        first = _submit(state, loaded, [1], [2])
        second = _submit(state, loaded, [1], [2])  # no await between: the second runs right after the first
        await _until_submitted(scheduler, 2)
        scheduler.release.set()
        assert [r.target_ids for r in (*await first, *await second)] == [[1], [2], [1], [2]]
        assert scheduler.submitted == [[1], [2]] and _lookups(state) == {"hit": 0, "shared": 2, "miss": 2}

    asyncio.run(scenario())


def test_when_a_flight_fails_one_waiter_decodes_again_and_the_others_wait_on_it() -> None:
    async def scenario() -> None:
        state, loaded, scheduler = _service()
        first = _submit(state, loaded, [5, 6, 7])
        await _until_submitted(scheduler, 1)
        waiters = [_submit(state, loaded, [5, 6, 7]) for _ in range(3)]
        await asyncio.sleep(0.01)
        first.cancel()  # its client left
        with pytest.raises(asyncio.CancelledError):
            await first
        await _until_submitted(scheduler, 2)
        await asyncio.sleep(0.01)
        assert len(scheduler.submitted) == 2  # one decodes it again, the other two wait on that
        scheduler.release.set()
        assert [answer.target_ids for (answer,) in await asyncio.gather(*waiters)] == [[7, 6, 5]] * 3
        assert _lookups(state) == {"hit": 0, "shared": 2, "miss": 1}  # the cancelled one counts nothing

    asyncio.run(scenario())


def test_a_request_the_scheduler_may_hold_back_lends_nothing() -> None:
    """Half the batch's rows or more: fair admission lets others go first, so an equal sentence
    asked by another request is decoded for it rather than wait for this one's turn."""
    async def scenario() -> None:
        state, loaded, scheduler = _service()
        state.settings.max_batch_rows = 4
        document = _submit(state, loaded, [1], [2])  # 2 rows of 4
        await _until_submitted(scheduler, 2)
        line = _submit(state, loaded, [2])
        await _until_submitted(scheduler, 3)
        scheduler.release.set()
        assert [r.target_ids for r in (*await document, *await line)] == [[1], [2], [2]]
        assert _lookups(state) == {"hit": 0, "shared": 0, "miss": 3}

    asyncio.run(scenario())


def test_a_refused_request_counts_no_lookup() -> None:
    async def scenario() -> None:
        state, loaded, scheduler = _service()
        scheduler.error = Overloaded(retry_after_s=1.0)
        scheduler.release.set()
        with pytest.raises(Overloaded):
            await _submit(state, loaded, [5, 6, 7], [5, 6, 7])
        assert _lookups(state) == {"hit": 0, "shared": 0, "miss": 0}

    asyncio.run(scenario())
