"""Finished translations kept by what decided them, so a sentence asked again is not decoded again.

Translation traffic repeats itself (menu labels, boilerplate, a document sent twice); an fp32
answer depends only on the sentence's source ids and the search's settings (batching does not change
it: the benchmark checks that every answer under load equals the one asked alone), so a repeat can
be answered from here. Least recently used entries go first; one cache per loaded model version, so
a reload starts empty. int8 answers may differ with the batch (dynamic quantization): a cached one is
the answer one batch gave. Pure Python; must not import fastapi, onnxruntime or prometheus_client.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import replace

from service.engine.types import TranslationRequest, TranslationResult


def cache_key(request: TranslationRequest) -> Hashable:
    """Everything that decides a request's result: not its deadline or its group (scheduling only)."""
    return (tuple(request.source_ids), request.beam_size, request.max_length, request.length_penalty,
            request.want_attention, request.min_unknown_tokens, request.alternatives)


class ResultCache:
    """An LRU map from cache_key(request) to its result; `entries` 0 keeps nothing."""

    def __init__(self, entries: int) -> None:
        if entries < 0:
            raise ValueError(f"entries must be >= 0, got {entries}")
        self._entries = entries
        self._results: OrderedDict[Hashable, TranslationResult] = OrderedDict()

    def __len__(self) -> int:
        return len(self._results)

    def get(self, request: TranslationRequest) -> TranslationResult | None:
        """The result kept for an equal request, with no time in the engine (it spent none), or None."""
        key = cache_key(request)
        result = self._results.get(key)
        if result is None:
            return None
        self._results.move_to_end(key)
        return replace(result, queue_wait_seconds=0.0, encode_seconds=0.0, decode_seconds=0.0)

    def put(self, request: TranslationRequest, result: TranslationResult) -> None:
        if self._entries == 0:
            return
        key = cache_key(request)
        self._results[key] = result
        self._results.move_to_end(key)
        while len(self._results) > self._entries:
            self._results.popitem(last=False)
