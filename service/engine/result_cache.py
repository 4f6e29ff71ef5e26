"""Finished translations kept by what decided them, so a sentence asked again is not decoded again.

Translation traffic repeats itself (menu labels, boilerplate, a document sent twice); an fp32
answer depends only on the sentence's source ids and the search's settings (batching does not change
it: the benchmark checks that every answer under load equals the one asked alone), so a repeat can
be answered from here. Least recently used entries go first once the cache holds its budget of
bytes (estimated: a result may keep attention matrices, one per alternative, and a long sentence's
weigh tens of KB); one cache per loaded model version, so a reload starts empty. int8 answers may
differ with the batch (dynamic quantization): a cached one is the answer one batch gave.

It also knows the sentences being decoded ("flights", as a loading cache holds futures): a request
that misses the cache while an equal one is in the engine for another request waits for that answer
instead of decoding it again, so a burst of the same text (a page many clients translate at once)
costs one decode, not one per client until the first ends. A flight belongs to the request that
started it: if that one fails, is refused or is cancelled (its client left), the flight lands
without an answer and the requests that waited on it look again (service.api.translation: one
decodes it anew, keeping its place in the queue, and the others wait on that).
Pure Python + asyncio; must not import fastapi, onnxruntime or prometheus_client.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import replace

from service.engine.types import Alternative, TranslationRequest, TranslationResult

# What a kept entry costs besides its arrays, estimated with sys.getsizeof on CPython 3.11: each
# token id an int object and a list or tuple slot (ids above 256 are not shared), and per entry the
# result, its lists, the key tuple and the map's slot.
BYTES_PER_TOKEN_ID = 36
BYTES_PER_ENTRY = 800


def cache_key(request: TranslationRequest) -> Hashable:
    """Everything that decides a request's result: not its deadline or its group (scheduling only)."""
    return (tuple(request.source_ids), request.beam_size, request.max_length, request.length_penalty,
            request.want_attention, request.min_unknown_tokens, request.alternatives)


def entry_bytes(request: TranslationRequest, result: TranslationResult) -> int:
    """Estimated memory of keeping `result` for `request`: its attention matrices and token ids."""
    hypotheses: list[TranslationResult | Alternative] = [result, *result.alternatives]
    arrays = sum(h.attention.nbytes for h in hypotheses if h.attention is not None)
    ids = len(request.source_ids) + sum(len(h.target_ids) for h in hypotheses)
    return BYTES_PER_ENTRY + BYTES_PER_TOKEN_ID * ids + arrays


Flight = asyncio.Future[TranslationResult | None]  # None: landed without an answer


class ResultCache:
    """An LRU map from cache_key(request) to its result, within `max_bytes` (entry_bytes); 0 keeps nothing."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self._max_bytes = max_bytes
        self._results: OrderedDict[Hashable, tuple[TranslationResult, int]] = OrderedDict()
        self._bytes = 0
        self._flights: dict[Hashable, Flight] = {}

    def __len__(self) -> int:
        return len(self._results)

    @property
    def bytes(self) -> int:
        """Estimated bytes of what it keeps (entry_bytes), at most max_bytes."""
        return self._bytes

    def get(self, key: Hashable) -> TranslationResult | None:
        """The result kept for a request of this cache_key, with no time in the engine (it spent none),
        or None. Keys are the caller's, made once per request (the service also uses them to decode a
        request's repeated sentence once)."""
        entry = self._results.get(key)
        if entry is None:
            return None
        self._results.move_to_end(key)
        return replace(entry[0], queue_wait_seconds=0.0, encode_seconds=0.0, decode_seconds=0.0)

    def put(self, key: Hashable, request: TranslationRequest, result: TranslationResult) -> None:
        """Keep `result` for `request` (its cache_key `key`), dropping the least recently used entries
        to make room; one larger than the whole budget is not kept."""
        size = entry_bytes(request, result)
        if size > self._max_bytes:
            return
        previous = self._results.pop(key, None)
        if previous is not None:
            self._bytes -= previous[1]
        while self._results and self._bytes + size > self._max_bytes:
            _, (_, dropped) = self._results.popitem(last=False)
            self._bytes -= dropped
        self._results[key] = (result, size)
        self._bytes += size

    def in_flight(self, key: Hashable) -> Flight | None:
        """The flight of an equal request another caller is having decoded, or None. Wait on it
        through asyncio.shield (a waiter's cancellation must not end it); None from it: do it yourself."""
        return self._flights.get(key)

    def take_off(self, key: Hashable) -> Flight | None:
        """A request of this key goes to the engine now: the flight others may wait on, or None when
        the cache keeps nothing (sharing is part of the cache: off with it) or one is already up."""
        if self._max_bytes == 0 or key in self._flights:
            return None
        flight: Flight = asyncio.get_running_loop().create_future()
        self._flights[key] = flight
        return flight

    def land(self, key: Hashable, flight: Flight | None, request: TranslationRequest,
             result: TranslationResult | None) -> None:
        """The end of a request's decode: `result` kept (put) and, when it flew as `flight` (take_off),
        given to whoever waits on it; None: no answer (failed, refused, cancelled), they look again.
        Landing a flight twice, or one already landed, changes nothing."""
        if result is not None:
            self.put(key, request, result)
        if flight is None:
            return
        if self._flights.get(key) is flight:
            del self._flights[key]
        if not flight.done():
            flight.set_result(result)
