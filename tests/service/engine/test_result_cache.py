"""ResultCache: what decides a result is its key, least recently used entries go first, hits cost no
engine time."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import numpy as np
import pytest

from service.engine import Alternative, TranslationRequest, TranslationResult
from service.engine.result_cache import ResultCache, cache_key, entry_bytes


def result(tokens: list[int]) -> TranslationResult:
    return TranslationResult(target_ids=tokens, attention=np.ones((len(tokens) + 1, 3), np.float32), score=-1.5,
                             scored_tokens=len(tokens) + 1, queue_wait_seconds=0.25, encode_seconds=0.5,
                             decode_seconds=0.75, cut_at_max_length=False)


def test_a_repeat_is_answered_with_the_result_and_no_engine_time() -> None:
    cache = ResultCache(10_000)
    request = TranslationRequest(source_ids=[5, 6, 3], deadline=1.0, group=7)
    assert cache.get(cache_key(request)) is None
    cache.put(cache_key(request), request, result([9, 8]))
    hit = cache.get(cache_key(replace(request, deadline=99.0, group=8)))  # scheduling fields decide nothing
    assert hit is not None and hit.target_ids == [9, 8] and hit.score == -1.5
    assert (hit.queue_wait_seconds, hit.encode_seconds, hit.decode_seconds) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("change", [
    {"source_ids": [5, 7, 3]}, {"beam_size": 4}, {"max_length": 3}, {"length_penalty": 1.8},
    {"want_attention": True}, {"min_unknown_tokens": 1, "beam_size": 5}, {"alternatives": 1, "beam_size": 2},
])
def test_what_decides_a_result_is_in_its_key(change: dict[str, object]) -> None:
    request = TranslationRequest(source_ids=[5, 6, 3])
    other = replace(request, **change)  # type: ignore[arg-type]
    assert cache_key(other) != cache_key(request)
    cache = ResultCache(10_000)
    cache.put(cache_key(request), request, result([1]))
    assert cache.get(cache_key(other)) is None


def test_the_least_recently_used_entries_go_first_to_stay_within_the_bytes() -> None:
    first, second, third = (TranslationRequest(source_ids=[token, 3]) for token in (10, 11, 12))
    size = entry_bytes(first, result([1]))
    cache = ResultCache(2 * size)
    cache.put(cache_key(first), first, result([1]))
    cache.put(cache_key(second), second, result([2]))
    assert cache.get(cache_key(first)) is not None  # now the most recently used
    cache.put(cache_key(third), third, result([3]))
    assert len(cache) == 2 and cache.bytes == 2 * size
    assert cache.get(cache_key(second)) is None
    assert cache.get(cache_key(first)) is not None and cache.get(cache_key(third)) is not None
    cache.put(cache_key(third), third, result([3]))  # kept again: counted once
    assert cache.bytes == 2 * size


def test_an_entry_weighs_its_attention_and_ids() -> None:
    request = TranslationRequest(source_ids=list(range(40)))
    small = result([1, 2])
    matrix = np.ones((60, 41), np.float32)
    others = tuple(Alternative([7] * 59, matrix, -3.0, 60) for _ in range(7))
    heavy = replace(small, attention=matrix, alternatives=others)
    assert entry_bytes(request, heavy) - entry_bytes(request, small) >= 8 * 60 * 41 * 4  # the matrices
    cache = ResultCache(entry_bytes(request, heavy) - 1)
    cache.put(cache_key(request), request, heavy)  # larger than the whole budget: not kept
    assert len(cache) == 0 and cache.bytes == 0
    cache.put(cache_key(request), request, small)
    assert cache.get(cache_key(request)) is not None


def test_no_bytes_keeps_nothing() -> None:
    cache = ResultCache(0)
    request = TranslationRequest(source_ids=[5, 3])
    cache.put(cache_key(request), request, result([1]))
    assert cache.get(cache_key(request)) is None and len(cache) == 0
    with pytest.raises(ValueError):
        ResultCache(-1)


def test_a_flight_gives_its_answer_to_whoever_waits_and_keeps_it() -> None:
    async def scenario() -> None:
        cache = ResultCache(10_000)
        request = TranslationRequest(source_ids=[5, 6, 3])
        key = cache_key(request)
        assert cache.in_flight(key) is None
        flight = cache.take_off(key)
        assert flight is not None and cache.in_flight(key) is flight
        assert cache.take_off(key) is None  # one flight per key: a second caller decodes without one
        waiter = asyncio.ensure_future(asyncio.shield(flight))
        cache.land(key, flight, request, result([9, 8]))
        answer = await waiter
        assert answer is not None and answer.target_ids == [9, 8]
        assert cache.in_flight(key) is None
        kept = cache.get(key)
        assert kept is not None and kept.target_ids == [9, 8]

    asyncio.run(scenario())


def test_a_flight_that_ends_without_an_answer_says_so_and_keeps_nothing() -> None:
    async def scenario() -> None:
        cache = ResultCache(10_000)
        request = TranslationRequest(source_ids=[5, 6, 3])
        key = cache_key(request)
        first = cache.take_off(key)
        assert first is not None
        cache.land(key, first, request, None)
        assert await asyncio.shield(first) is None and cache.in_flight(key) is None and cache.get(key) is None
        # a later flight of the same key is not ended by landing the earlier one again
        second = cache.take_off(key)
        assert second is not None
        cache.land(key, first, request, None)
        assert cache.in_flight(key) is second and not second.done()
        cache.land(key, second, request, result([4]))
        assert second.result() is not None and cache.in_flight(key) is None

    asyncio.run(scenario())


def test_no_flights_without_a_cache() -> None:
    async def scenario() -> None:
        cache = ResultCache(0)
        request = TranslationRequest(source_ids=[5, 6, 3])
        assert cache.take_off(cache_key(request)) is None
        assert cache.in_flight(cache_key(request)) is None
        cache.land(cache_key(request), None, request, result([1]))  # nothing kept, nothing raised
        assert len(cache) == 0

    asyncio.run(scenario())
