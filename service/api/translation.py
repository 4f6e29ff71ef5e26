"""A translation request's path through the HTTP layer: limits, model choice, encode, submit, decode.

Shared by /v1/translate, /v1/attention, the LibreTranslate route and its HTML
(service.api.html_translation). Every limit is checked before any work; each text is cut into its
sentences and each sentence into pieces (service.api.source_text), and every sentence of every text
goes to the scheduler concurrently, as its own row (or comes from the model version's cache, or from
an equal sentence in the engine for another request at that moment); a sentence that left out text
it had to copy is translated again; the results become text again in service.api.target_text. A
client that goes away cancels its submissions. HTTP edge only: must not import onnxruntime.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np
from starlette.requests import Request

from model_store.sentences import Sentence
from service.api.deps import ServiceState
from service.api.errors import (
    AttentionUnavailable,
    ClientDisconnected,
    InvalidInput,
    PayloadTooLarge,
    UnsupportedLanguagePair,
)
from service.api.middleware import SERVER_TIMING_STATE
from service.api.source_text import Options, Piece, client_terms, normalised, source_pieces, split_texts, text_name
from service.api.target_text import (
    EOS_TOKEN,
    Attended,
    alternatives_of,
    attended,
    translated,
)
from service.engine import EngineError, TranslationRequest, TranslationResult, confidence
from service.engine.result_cache import cache_key
from service.models import LoadedModel

log = logging.getLogger("service.api.translation")
T = TypeVar("T")
# A sentence that skipped text it can only copy is translated again by a beam this wide (the
# width the shipped models' beam scores were measured with).
COPY_RETRY_BEAM_SIZE = 5
# One engine group per HTTP request: its sentences share it, so the scheduler can let other requests'
# sentences go first once a big request holds half the batch.
_request_groups = itertools.count()


@dataclass(frozen=True)
class TextTranslation:
    text: str
    truncated: bool  # a sentence of it stopped at its length limit, not at an end the model chose
    confidence: float | None  # service.engine.confidence over its sentences; None: nothing to translate
    alternatives: list[str]  # other translations, best first, when asked for (Options.alternatives)


def check_limits(state: ServiceState, texts: list[str], options: Options) -> LoadedModel:
    """Everything that can be refused before encoding; returns the model for the language pair."""
    settings = state.settings
    if len(texts) > settings.max_texts_per_request:
        raise PayloadTooLarge(f"{len(texts)} texts in one request; at most {settings.max_texts_per_request}")
    for position, text in enumerate(texts):
        if len(text) > settings.max_text_chars:
            raise PayloadTooLarge(f"text {position} has {len(text)} characters; at most {settings.max_text_chars}")
    if options.max_length is not None and options.max_length > settings.max_output_tokens:
        raise InvalidInput(f"max_length must be at most {settings.max_output_tokens}")
    loaded = state.registry.for_pair(options.source, options.target)
    if loaded is None:
        pairs = ", ".join(f"{m.source_language}->{m.target_language}" for m in state.registry.models)
        raise UnsupportedLanguagePair(
            f"no loaded model translates {options.source or '*'}->{options.target or '*'} (loaded: {pairs})"
        )
    return loaded


def _request(model: LoadedModel, options: Options, piece: Piece, deadline: float,
             want_attention: bool, group: int) -> TranslationRequest:
    return TranslationRequest(
        source_ids=piece.ids,
        beam_size=options.beam_rows,
        alternatives=options.alternatives,
        max_length=options.max_length,
        length_penalty=model.length_penalty_alpha,
        want_attention=want_attention,
        deadline=deadline,
        group=group,
    )


async def _translate_rows(state: ServiceState, http_request: Request, model: LoadedModel, pieces: list[Piece],
                          requests: list[TranslationRequest]) -> list[TranslationResult]:
    """The engine's results for `requests` (one per piece, in order), and the engine's timing noted
    for the response's Server-Timing header.

    Each <unk> of a source (a span kept verbatim, characters the vocabulary lacks) is text its
    translation can only have by copying it, by attention. A sentence whose translation wrote fewer
    <unk> than its source has (the model skipped a URL: "Please send the form to <unk> by Friday." ->
    "Sag das Formular an Freitag.") and was not cut at its length limit is translated again by a
    beam that may not end before it has written them all (TranslationRequest.min_unknown_tokens; a
    single greedy row made to go on only rambled); that translation is kept when it has them all and
    ended by itself. Those beams may bring at most TRANSLATOR_MAX_ROWS_PER_REQUEST rows. A sentence
    that still lacks a span it kept verbatim (no room for its beam, the engine refused it, the beam
    left it out too) is translated once more as written, spans and all given to the model as text,
    as with TRANSLATOR_KEEP_VERBATIM empty: an address the model may garble, rather than none.
    Outcomes in translator_copy_retries_total: copied, as_written, lost (answered without it)."""
    results = await _submit_all(state, http_request, model, requests)
    unk = model.codec.unk_id
    lacking = [position for position, (request, result) in enumerate(zip(requests, results, strict=True))
               if result.target_ids.count(unk) < request.source_ids.count(unk) and not result.cut_at_max_length]
    if model.manifest.attention == "none" or not lacking:
        return _answered(state, http_request, model, results)
    beam = max([COPY_RETRY_BEAM_SIZE, *(requests[position].beam_size for position in lacking)])
    room = state.settings.max_rows_per_request // beam
    retried, unplaced = lacking[:room], lacking[room:]
    retries = [replace(requests[position], beam_size=beam, min_unknown_tokens=requests[position].source_ids.count(unk))
               for position in retried]
    for position, result in zip(retried, await _submit_or_nothing(state, http_request, model, retries), strict=True):
        if result is not None and result.target_ids.count(unk) >= requests[position].source_ids.count(unk) \
                and not result.cut_at_max_length:
            results[position] = _after(results[position], result)
            state.metrics.observe_copy_retry("copied")
        else:
            if result is not None:  # the first answer, with the time the retry took too
                results[position] = _after(result, results[position])
            unplaced.append(position)
    # Text kept verbatim and still missing: the sentence as written. A sentence whose only <unk> are
    # characters the vocabulary lacks would be the same request again: answered as it is.
    plain = {position: model.codec.source_ids(pieces[position].sentence.text) for position in unplaced
             if pieces[position].kept_verbatim}
    for position in unplaced:
        if position not in plain:
            state.metrics.observe_copy_retry("lost")
    again = [replace(requests[position], source_ids=ids) for position, ids in plain.items()]  # attention as asked
    for position, result in zip(plain, await _submit_or_nothing(state, http_request, model, again), strict=True):
        if result is None or result.cut_at_max_length:  # refused, or cut short where the first ended
            if result is not None:
                results[position] = _after(result, results[position])
            state.metrics.observe_copy_retry("lost")
            continue
        pieces[position].as_written(plain[position])
        results[position] = _after(results[position], result)
        state.metrics.observe_copy_retry("as_written")
    return _answered(state, http_request, model, results)


def _answered(state: ServiceState, http_request: Request, model: LoadedModel,
              results: list[TranslationResult]) -> list[TranslationResult]:
    """`results`, the answers' sentences counted in the confidence histogram and their timing noted."""
    for result in results:
        sentence_confidence = confidence([result])
        if sentence_confidence is not None:
            state.metrics.observe_confidence(model.name, sentence_confidence)
    _note_server_timing(http_request, results)
    return results


def _after(first: TranslationResult, result: TranslationResult) -> TranslationResult:
    """`result`, with the time `first` took added (Server-Timing counts every attempt)."""
    return replace(result, queue_wait_seconds=first.queue_wait_seconds + result.queue_wait_seconds,
                   encode_seconds=first.encode_seconds + result.encode_seconds,
                   decode_seconds=first.decode_seconds + result.decode_seconds)


async def _submit_or_nothing(state: ServiceState, http_request: Request, model: LoadedModel,
                             requests: list[TranslationRequest]) -> list[TranslationResult | None]:
    """Extra work for a request that already has an answer: None for each when the engine refuses it
    (queue full, deadline, draining), and the answer stands."""
    if not requests:
        return []
    try:
        return list(await _submit_all(state, http_request, model, requests, counted=False))
    except EngineError as error:
        log.warning("%d sentences not translated again to copy what they left out: %s", len(requests), error)
        return [None] * len(requests)


async def _submit_all(state: ServiceState, http_request: Request, loaded: LoadedModel,
                      requests: list[TranslationRequest], counted: bool = True) -> list[TranslationResult]:
    """The results of `requests`, in order: from the model version's cache where it holds an equal
    request's (TRANSLATOR_CACHE_MB); else, while an equal request is in the engine for another
    request, that one's answer (the cache's flights); else from the engine, each distinct request
    once (a sentence repeated in a text is decoded once), and then kept in the cache. `counted`: in
    translator_cache_lookups_total (not a sentence's second attempt)."""
    keys = [cache_key(request) for request in requests]
    cached = [loaded.cache.get(key) for key in keys]
    missing: dict[Hashable, TranslationRequest] = {}
    for key, request, result in zip(keys, requests, cached, strict=True):
        if result is None:
            missing.setdefault(key, request)
    # Only a request the scheduler never holds back (under half the batch's rows: its fair
    # admission lets others go first past that) lends its sentences to others: a one-line request
    # must not wait behind a document's turn, or fail at its deadline.
    lend = 2 * sum(request.beam_size for request in missing.values()) < state.settings.max_batch_rows
    computed, decoded = await _decode_or_join(state, loaded, missing, lend)
    hits = sum(result is not None for result in cached)
    if counted:
        state.metrics.observe_cache(hits=hits, shared=len(keys) - hits - len(decoded), misses=len(decoded))
    return [computed[key] if result is None else result for key, result in zip(keys, cached, strict=True)]


MAX_JOINS = 3  # flights a sentence may wait on before it is decoded for its request whatever happens


async def _decode_or_join(state: ServiceState, loaded: LoadedModel, requests: dict[Hashable, TranslationRequest],
                          lend: bool) -> tuple[dict[Hashable, TranslationResult], set[Hashable]]:
    """The results of `requests` (by cache key), and the keys decoded for them here: each waits on
    an equal request's flight if one is up, else is decoded (`lend`: as a flight for others). A
    flight that lands without an answer sends its waiters back to look again (one of them takes off
    anew, the others wait on that), at most MAX_JOINS times, and is queued as if it had not waited
    (TranslationRequest.queued_since). Server-Timing: a shared answer's wait counts as decode, the
    wait on a flight that failed as queue."""
    results: dict[Hashable, TranslationResult] = {}
    decoded: set[Hashable] = set()
    started = time.monotonic()
    pending = dict(requests)
    for round_ in range(MAX_JOINS + 1):
        flights = {key: flight for key in pending if round_ < MAX_JOINS
                   and (flight := loaded.cache.in_flight(key)) is not None}
        # asked again after a flight failed: queued where it would have been, had it not waited
        own = {key: request if round_ == 0 else replace(request, queued_since=started)
               for key, request in pending.items() if key not in flights}
        results.update(await _decode(state, loaded, own, lend))
        decoded.update(own)
        pending = {}
        for key, flight in flights.items():
            answer = await asyncio.shield(flight)  # this request's cancellation must not end another's flight
            if answer is not None:
                results[key] = replace(answer, queue_wait_seconds=0.0, encode_seconds=0.0,
                                       decode_seconds=time.monotonic() - started)
            elif (kept := loaded.cache.get(key)) is not None:  # another waiter decoded it meanwhile
                results[key] = replace(kept, decode_seconds=time.monotonic() - started)
            else:  # its request failed or left: look again
                pending[key] = requests[key]
        if not pending:
            break
    return results, decoded


async def _decode(state: ServiceState, loaded: LoadedModel, requests: dict[Hashable, TranslationRequest],
                  lend: bool) -> dict[Hashable, TranslationResult]:
    """The engine's results for `requests` (by cache key), each kept in the cache as it ends. With
    `lend`, from the moment one enters the engine until it ends it is a flight other requests may
    wait on: those that enter at once from now, before any other request runs (an equal request
    right behind this one must find them); the rest as they get their turn in the window (a
    one-line request must not wait behind a document's other sentences)."""
    keys, pending = list(requests), list(requests.values())
    at_once = min(len(pending), _window_rows(state))
    flights = [loaded.cache.take_off(key) if lend and position < at_once else None
               for position, key in enumerate(keys)]

    async def decode(position: int) -> TranslationResult:
        key, request = keys[position], pending[position]
        if lend and position >= at_once:
            flights[position] = loaded.cache.take_off(key)
        result = None
        try:
            result = await loaded.scheduler.submit(request)
        finally:  # None: failed, refused or cancelled, and whoever waited looks again
            loaded.cache.land(key, flights[position], request, result)
        return result

    try:
        return dict(zip(keys, await _submit_to_engine(state, len(pending), decode), strict=True))
    finally:  # a flight taken off for a sentence whose task never ran (cancelled first) lands too
        for key, flight, request in zip(keys, flights, pending, strict=True):
            loaded.cache.land(key, flight, request, None)


def _window_rows(state: ServiceState) -> int:
    """How many of one request's sentences may be in the engine at once (_submit_to_engine)."""
    return max(1, min(state.settings.max_batch_rows, state.settings.max_queue_requests))


async def _submit_to_engine(state: ServiceState, count: int,
                            decode: Callable[[int], Awaitable[TranslationResult]]) -> list[TranslationResult]:
    """decode(0) .. decode(count - 1), concurrently; if one fails, cancel the others (their rows are
    freed) and raise. At most a batch's worth of a request's sentences (TRANSLATOR_MAX_BATCH_ROWS) are
    in the engine at once, the next submitted as one ends, so that a long document neither fills the
    engine's queue (other clients would be refused with 429) nor needs to fit in it."""
    if count == 0:
        return []
    if count == 1:  # the usual request: no task of its own
        return [await decode(0)]
    window = asyncio.Semaphore(_window_rows(state))  # tasks start in order: the first ones at once

    async def submit(position: int) -> TranslationResult:
        arrived = time.monotonic()
        async with window:
            waited = time.monotonic() - arrived  # for its turn in the window: queueing too (Server-Timing)
            result = await decode(position)
        return replace(result, queue_wait_seconds=result.queue_wait_seconds + waited)

    tasks = [asyncio.ensure_future(submit(position)) for position in range(count)]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _note_server_timing(request: Request, results: list[TranslationResult]) -> None:
    """Where the engine's time went for the request's slowest sentence (its queue phase includes any
    wait for its turn in the request's window), for the response's Server-Timing header (the edge
    adds it)."""
    if results:  # empty when every text was empty
        slowest = max(results, key=lambda r: r.queue_wait_seconds + r.encode_seconds + r.decode_seconds)
        phases = (("queue", slowest.queue_wait_seconds), ("encode", slowest.encode_seconds),
                  ("decode", slowest.decode_seconds))
        timing = ", ".join(f"{name};dur={seconds * 1e3:.2f}" for name, seconds in phases)
        setattr(request.state, SERVER_TIMING_STATE, timing)


async def _until_disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await `work` in this task, cancelling it (and so its scheduler rows) if the client
    disconnects first. One watcher task per request and no asyncio.wait: this runs for every
    request on the event loop, the service's busiest thread under load."""
    current = asyncio.current_task()
    assert current is not None
    disconnected = False

    async def watch() -> None:
        nonlocal disconnected
        await _until_disconnected(request)
        disconnected = True
        current.cancel()

    watcher = asyncio.ensure_future(watch())
    try:
        return await work
    except asyncio.CancelledError:
        # Ours (the client left): a domain error; anyone else's cancellation propagates.
        if disconnected and current.uncancel() == 0:
            raise ClientDisconnected("the client disconnected; its translation was cancelled") from None
        raise
    finally:
        watcher.cancel()


def _log_texts(state: ServiceState, texts: list[str]) -> None:
    if state.settings.log_request_text:
        log.info("request texts", extra={"texts": texts})


async def translate_texts(
    state: ServiceState, request: Request, texts: list[str], options: Options
) -> tuple[LoadedModel, list[TextTranslation]]:
    """Translations of `texts`, in order, and the model version that made them."""
    return await _translate(state, request, check_limits(state, texts, options), texts, options)


def _prepared(state: ServiceState, texts: list[str], options: Options,
              names: list[str] | None = None) -> tuple[list[str], list[list[Sentence]]]:
    """The texts normalised (normalised), and their sentences (split_texts' limits apply)."""
    texts = [normalised(text) for text in texts]
    sentences_by_text = split_texts(state, texts, options, names)
    _log_texts(state, texts)
    return texts, sentences_by_text


async def _translate(
    state: ServiceState, request: Request, loaded: LoadedModel, texts: list[str], options: Options,
    names: list[str] | None = None,
) -> tuple[LoadedModel, list[TextTranslation]]:
    texts, sentences_by_text = _prepared(state, texts, options, names)
    options = client_terms(options)

    async def work(model: LoadedModel) -> tuple[LoadedModel, list[TextTranslation]]:
        deadline = time.monotonic() + state.settings.request_timeout_s
        layout = [source_pieces(state, model, text_name(names, position), sentences, options)
                  for position, sentences in enumerate(sentences_by_text)]
        group = next(_request_groups)
        requests = [
            # attention is only kept when an <unk> in the source may be copied into the output
            _request(model, options, piece, deadline,
                     want_attention=model.codec.unk_id in piece.ids and model.manifest.attention != "none",
                     group=group)
            for pieces in layout for piece in pieces if not piece.empty
        ]
        rows = [piece for pieces in layout for piece in pieces if not piece.empty]
        results = iter(await _translate_rows(state, request, model, rows, requests))
        translations = []
        for text, pieces in zip(texts, layout, strict=True):
            own = [None if piece.empty else next(results) for piece in pieces]
            translation, sentences = translated(model, text, pieces, own)
            translations.append(TextTranslation(
                text=translation,
                truncated=any(result is not None and result.cut_at_max_length for result in own),
                confidence=confidence(result for result in own if result is not None),
                alternatives=alternatives_of(model, text, pieces, own, sentences, options.alternatives, {translation})))
        return model, translations

    return await cancel_on_disconnect(request, state.registry.run(loaded, work))


async def attend(state: ServiceState, request: Request, text: str, options: Options) -> Attended:
    """Translation of one text with its attention matrix and word alignment."""
    loaded = check_limits(state, [text], options)
    if loaded.manifest.attention == "none":
        raise AttentionUnavailable(f"model {loaded.name} version {loaded.version} has no attention")
    _, (result,) = await attend_all(state, request, loaded, [text], options, need_attention=True)
    return result


async def attend_all(state: ServiceState, request: Request, loaded: LoadedModel, texts: list[str],
                      options: Options, names: list[str] | None = None,
                      need_attention: bool = False) -> tuple[LoadedModel, list[Attended]]:
    """Translations of `texts` (limits checked) with their attention and word alignment, in order,
    and the model version that made them; one without attention (a reload may have swapped it in)
    refuses them when `need_attention`, else translates them with none (an empty alignment)."""
    texts, sentences_by_text = _prepared(state, texts, options, names)
    options = client_terms(options)

    async def work(model: LoadedModel) -> tuple[LoadedModel, list[Attended]]:
        with_attention = model.manifest.attention != "none"
        if need_attention and not with_attention:
            raise AttentionUnavailable(f"model {model.name} version {model.version} has no attention")
        layout = [[piece for piece in source_pieces(state, model, text_name(names, position), sentences, options)
                   if not piece.empty] for position, sentences in enumerate(sentences_by_text)]
        deadline = time.monotonic() + state.settings.request_timeout_s
        group = next(_request_groups)
        rows = [piece for pieces in layout for piece in pieces]
        requests = [_request(model, options, piece, deadline, want_attention=with_attention, group=group)
                    for piece in rows]
        results = iter(await _translate_rows(state, request, model, rows, requests))
        answers = []
        for text, pieces in zip(texts, layout, strict=True):
            own = [next(results) for _ in pieces]
            if not pieces:
                answers.append(Attended(model, "", False, None, [EOS_TOKEN], [EOS_TOKEN], np.ones((1, 1)), [], ""))
            elif with_attention:
                answers.append(attended(model, text, pieces, own))
            else:
                answers.append(Attended(model, translated(model, text, pieces, own)[0],
                                        any(r.cut_at_max_length for r in own), confidence(own),
                                        [], [], np.zeros((0, 0)), [], ""))
        return model, answers

    return await cancel_on_disconnect(request, state.registry.run(loaded, work))
