"""A translation request's path through the HTTP layer: limits, model choice, encode, submit, decode.

Shared by /v1/translate, /v1/attention and the LibreTranslate route. Every limit is checked before
any work; each text is cut into its sentences (model_store.sentences), and every sentence of every
text goes to the scheduler concurrently, as its own row; a client that goes away cancels its
submissions. HTTP edge only: must not import onnxruntime.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import time
import unicodedata
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np
from starlette.requests import Request

from model_store.codec import Codec, SourcePieces, word_index_of_pieces
from model_store.sentences import LINE_BREAK, Sentence, split_sentences
from model_store.verbatim import verbatim_spans
from service.api.deps import ServiceState
from service.api.errors import (
    AttentionUnavailable,
    ClientDisconnected,
    InvalidInput,
    PayloadTooLarge,
    UnsupportedLanguagePair,
)
from service.api.html_text import HtmlDocument
from service.api.middleware import SERVER_TIMING_STATE
from service.engine import (
    Alternative,
    EngineError,
    TranslationRequest,
    TranslationResult,
    confidence,
    moses_format,
    unk_replace,
    word_alignment,
)
from service.models import LoadedModel

log = logging.getLogger("service.api.translation")
# Control characters that are not whitespace (C0, DEL, C1), and invisible format marks that do not
# separate words (soft hyphen, direction marks, word joiner, byte order mark): dropped before
# anything else. SentencePiece's normalisation drops some and makes others <unk> or a word break,
# and the <unk> copy-through takes source text as sent, so a NUL inside a word came back in the
# translation ("a\x00b" -> "a a\x00b b"). Whitespace controls (tab, form feed, the separators
# U+001C-U+001F, U+0085) are layout: line breaks to the sentence splitter, spaces within a sentence.
# Noncharacters (U+FDD0-U+FDEF, U+FFFE, U+FFFF) are no text either, and the codec's VERBATIM_MARK is one.
_CONTROL_CHARACTERS = re.compile(
    r"[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\xad\u180e\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069"
    r"\ufdd0-\ufdef\ufeff\ufffe\uffff]")
# Within a sentence, any run of whitespace (and zero-width spaces) is one word break.
_SPACES = re.compile(r"[\s\u200b]+")
T = TypeVar("T")
EOS_TOKEN = "</s>"
# A sentence that skipped text it can only copy is translated again by a beam this wide (the
# width the shipped models' beam scores were measured with).
COPY_RETRY_BEAM_SIZE = 5
# One engine group per HTTP request: its sentences share it, so the scheduler can let other requests'
# sentences go first once a big request holds half the batch.
_request_groups = itertools.count()


@dataclass(frozen=True)
class Options:
    source: str | None = None
    target: str | None = None
    beam_size: int = 1
    max_length: int | None = None
    keep: tuple[str, ...] = ()  # words or phrases the client asked to keep as written
    # (source term, its translation) pairs the client fixed: each term given to the model as one <unk>
    # like a kept one, its translation written where the model copies it
    glossary: tuple[tuple[str, str], ...] = ()
    alternatives: int = 0  # other translations wanted per text, besides the best

    @property
    def beam_rows(self) -> int:
        """Decoder rows per sentence: the beam, widened to find the alternatives asked for."""
        return max(self.beam_size, self.alternatives + 1)

    @property
    def terms(self) -> tuple[str, ...]:
        """Every client term found in the sentences as one <unk>: kept ones and glossary ones."""
        return self.keep + tuple(term for term, _ in self.glossary)


@dataclass(frozen=True)
class TextTranslation:
    text: str
    truncated: bool  # a sentence of it stopped at its length limit, not at an end the model chose
    confidence: float | None  # service.engine.confidence over its sentences; None: nothing to translate
    alternatives: list[str]  # other translations, best first, when asked for (Options.alternatives)


@dataclass(frozen=True)
class Attended:
    model: LoadedModel
    translation: str
    truncated: bool  # as in TextTranslation
    confidence: float | None  # as in TextTranslation
    source_tokens: list[str]
    target_tokens: list[str]
    weights: np.ndarray  # [len(target_tokens), len(source_tokens)], rows sum to 1
    alignment: list[tuple[int, int]]
    moses: str


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


@dataclass
class _Piece:
    """One sentence of a text (or the whole text, when it is not split), its source ids and pieces
    (spans kept verbatim are one <unk> each)."""

    sentence: Sentence
    ids: list[int]  # with eos
    _split: SourcePieces | None  # None until needed: most sentences keep nothing and need only ids
    kept_verbatim: bool = False  # some of its text is one <unk> each (model_store.verbatim)

    def split(self, codec: Codec) -> SourcePieces:
        """The pieces with the text each covers (for <unk> copies and the attention view)."""
        if self._split is None:
            self._split = codec.split_source(self.sentence.text)
        return self._split

    def as_written(self, ids: list[int]) -> None:
        """It was translated again as written (`ids`: codec.source_ids), nothing kept verbatim."""
        self.ids, self._split, self.kept_verbatim = ids, None, False

    @property
    def empty(self) -> bool:
        """Only eos: normalisation removed every character (control characters, ...); translates to ""."""
        return len(self.ids) < 2


def split_texts(state: ServiceState, texts: list[str], options: Options,
                names: list[str] | None = None) -> list[list[Sentence]]:
    """Each text cut into its sentences and lines, each decoded as a row of its own (whole when
    TRANSLATOR_MAX_SENTENCES_PER_TEXT is 1). Never grouped to fit a limit (grouped lines lost their
    line breaks, and content): a text with more sentences than TRANSLATOR_MAX_SENTENCES_PER_TEXT, or
    a request with more decoder rows in all (sentences x beam_size, widened for alternatives) than
    TRANSLATOR_MAX_ROWS_PER_REQUEST, is refused (413) before any work. `names`: what a refusal calls
    each text (default "text <position>")."""
    settings = state.settings
    per_text = settings.max_sentences_per_text
    layout = []
    for position, text in enumerate(texts):
        sentences = [Sentence(_SPACES.sub(" ", sentence.text).strip(), sentence.gap)
                     for sentence in split_sentences(text, 1 if per_text == 1 else None)]
        if len(sentences) > per_text:
            raise PayloadTooLarge(f"{_name(names, position)} has {len(sentences)} sentences and lines; at most "
                                  f"{per_text} per text: send it in parts")
        layout.append(sentences)
    count = sum(len(sentences) for sentences in layout)
    rows = count * options.beam_rows
    if rows > settings.max_rows_per_request:
        beam = f"beam_size {options.beam_size}" if options.beam_rows == options.beam_size else \
            f"a beam of {options.beam_rows} (for {options.alternatives} alternatives)"
        raise PayloadTooLarge(f"{count} sentences and lines at {beam} need {rows} decoder rows; at "
                              f"most {settings.max_rows_per_request} per request: send fewer or shorter texts, "
                              + ("or fewer alternatives" if options.alternatives else "or a smaller beam"))
    return layout


def _name(names: list[str] | None, position: int) -> str:
    return f"text {position}" if names is None else names[position]


def _pieces(state: ServiceState, loaded: LoadedModel, name: str, sentences: list[Sentence],
            options: Options) -> list[_Piece]:
    """The sentences of a text (`name`: what a refusal calls it) with their pieces, web addresses,
    numbers and the like (TRANSLATOR_KEEP_VERBATIM, model_store.verbatim) and the client's `keep`
    and `glossary` terms one <unk> each (a glossary term copied as its translation), and ids;
    TRANSLATOR_MAX_SOURCE_TOKENS applies to each, since each is decoded as a row of its own."""
    terms, glossary = options.terms, dict(options.glossary)
    limit = state.settings.max_source_tokens
    # a model without attention cannot copy: what it cannot spell would come back as "⁇"
    kinds = state.settings.keep_verbatim if loaded.manifest.attention != "none" else []
    if terms and loaded.manifest.attention == "none":
        raise AttentionUnavailable(f"model {loaded.name} version {loaded.version} has no attention: it cannot "
                                   "keep text as written or place a glossary's translations ('keep', 'glossary')")
    codec = loaded.codec
    pieces = []
    for sentence in sentences:
        spans = verbatim_spans(sentence.text, kinds, terms)
        copies = [glossary.get(sentence.text[start:end], sentence.text[start:end]) for start, end in spans]
        # Without spans, the plain encoding: the same ids, a fifth of the time on the event loop.
        split = codec.split_source(sentence.text, spans, copies) if spans else None
        ids = [*split.ids, codec.eos_id] if split is not None else codec.source_ids(sentence.text)
        if len(ids) > limit:
            what = name if len(sentences) == 1 else f"a sentence of {name}"
            raise PayloadTooLarge(f"{what} is {len(ids)} tokens long; at most {limit}")
        pieces.append(_Piece(sentence, ids, split, kept_verbatim=split is not None))
    return pieces


def _request(model: LoadedModel, options: Options, piece: _Piece, deadline: float,
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


def _joined(translations: list[str], pieces: list[_Piece]) -> str:
    """A text's sentence translations in order, each followed by the whitespace that followed its
    sentence, as it was sent (line endings, indentation, blank lines). A sentence that translates to
    nothing (only invisible characters) keeps its line but not its spaces."""
    parts: list[str] = []
    for translation, piece in zip(translations, pieces, strict=True):
        gap = piece.sentence.gap
        if translation:
            parts.append(translation + gap)
        elif LINE_BREAK.search(gap):
            parts.append(gap)
    return "".join(parts).rstrip()


def _in_layout_of(text: str, translation: str) -> str:
    """`translation` with `text`'s own leading and trailing whitespace (an indent, a final line
    break), so that a document translated in chunks keeps its layout."""
    if not translation:
        return ""
    return text[: len(text) - len(text.lstrip())] + translation + text[len(text.rstrip()):]


async def _translate_rows(state: ServiceState, http_request: Request, model: LoadedModel, pieces: list[_Piece],
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
        return list(await _submit_all(state, http_request, model, requests))
    except EngineError as error:
        log.warning("%d sentences not translated again to copy what they left out: %s", len(requests), error)
        return [None] * len(requests)


async def _submit_all(state: ServiceState, http_request: Request, loaded: LoadedModel,
                      requests: list[TranslationRequest]) -> list[TranslationResult]:
    """The results of `requests`, in order: from the model version's cache where it holds an equal
    request's (TRANSLATOR_CACHE_ENTRIES), else from the engine, and then kept there."""
    cached = [loaded.cache.get(request) for request in requests]
    state.metrics.observe_cache(hits=sum(result is not None for result in cached),
                                misses=sum(result is None for result in cached))
    missing = [request for request, result in zip(requests, cached, strict=True) if result is None]
    computed = iter(await _submit_to_engine(state, loaded, missing) if missing else [])
    results = []
    for request, result in zip(requests, cached, strict=True):
        if result is None:
            result = next(computed)
            loaded.cache.put(request, result)
        results.append(result)
    return results


async def _submit_to_engine(state: ServiceState, loaded: LoadedModel,
                            requests: list[TranslationRequest]) -> list[TranslationResult]:
    """Submit concurrently; if one fails, cancel the others (their rows are freed) and raise. At most a batch's
    worth of a request's sentences (TRANSLATOR_MAX_BATCH_ROWS) are in the engine at once, the next
    submitted as one ends, so that a long document neither fills the engine's queue (other clients
    would be refused with 429) nor needs to fit in it."""
    if len(requests) == 1:  # the usual request: no task of its own
        results = [await loaded.scheduler.submit(requests[0])]
    else:
        window = asyncio.Semaphore(max(1, min(state.settings.max_batch_rows, state.settings.max_queue_requests)))

        async def submit(request: TranslationRequest) -> TranslationResult:
            arrived = time.monotonic()
            async with window:
                waited = time.monotonic() - arrived  # for its turn in the window: queueing too (Server-Timing)
                result = await loaded.scheduler.submit(request)
            return replace(result, queue_wait_seconds=result.queue_wait_seconds + waited)

        tasks = [asyncio.ensure_future(submit(request)) for request in requests]
        try:
            results = list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
    return results


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


def _decode(loaded: LoadedModel, piece: _Piece, result: TranslationResult | Alternative) -> str:
    """Target text, with each <unk> replaced by the unknown source text it attended to most (a
    glossary term: its translation, SourcePieces.copies)."""
    codec = loaded.codec
    if result.attention is None or codec.unk_id not in result.target_ids:
        return codec.decode(result.target_ids)
    split = piece.split(codec)
    copies = split.copies or split.surfaces
    replacements = unk_replace(result.target_ids, result.attention, split.ids, copies, codec.unk_id)
    kept = {copy.strip() for copy, whole in zip(copies, split.kept, strict=False) if whole}
    whole = [position for position, text in enumerate(replacements) if text and text in kept]
    return codec.decode_replacing(result.target_ids, replacements, whole)


def _alternatives(model: LoadedModel, text: str, pieces: list[_Piece], results: list[TranslationResult | None],
                  sentences: list[str], count: int, seen: set[str]) -> list[str]:
    """Up to `count` other translations of a text: the k-th puts together each sentence's k-th
    alternative, or its own translation (`sentences`) where it has fewer; none twice, nor one in
    `seen` (the translation itself). A sentence's alternatives are the beam's other hypotheses that
    write every <unk> of its source, as its translation was made to (a kept address, a glossary
    term: the copy retry), and some text."""
    unk = model.codec.unk_id
    own: list[list[str]] = []
    for piece, result in zip(pieces, results, strict=True):
        needed = piece.ids.count(unk)
        candidates = [] if result is None else [
            _decode(model, piece, other) for other in result.alternatives if other.target_ids.count(unk) >= needed]
        own.append([candidate for candidate in candidates if candidate.strip()])
    found: list[str] = []
    for rank in range(count):
        parts = [others[rank] if rank < len(others) else sentence for others, sentence in zip(own, sentences,
                                                                                                strict=True)]
        alternative = _in_layout_of(text, _joined(parts, pieces))
        if alternative not in seen:
            seen.add(alternative)
            found.append(alternative)
    return found


def _attended(model: LoadedModel, text: str, pieces: list[_Piece], results: list[TranslationResult]) -> Attended:
    """One text's attention from its sentences' own: each sentence's block (its pieces and its eos,
    in both directions) on the diagonal, zeros elsewhere, since a sentence's rows attend only over
    its own source; word indices run over the whole text. The translation keeps the text's layout,
    as /v1/translate's does."""
    codec = model.codec
    source_tokens: list[str] = []
    target_tokens: list[str] = []
    blocks: list[np.ndarray] = []
    pairs: list[tuple[int, int]] = []
    source_words = target_words = 0  # words of the sentences before this one
    for piece, result in zip(pieces, results, strict=True):
        if result.attention is None:
            raise AttentionUnavailable("the engine returned no attention for this request")
        split = piece.split(codec)
        target_pieces = codec.pieces(result.target_ids)
        target_word_index = word_index_of_pieces(target_pieces)
        weights = np.asarray(result.attention, dtype=np.float64)[: len(target_pieces) + 1, : len(piece.ids)]
        weights = weights / np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
        pairs += [(source + source_words, target + target_words)
                  for source, target in word_alignment(weights, split.word_index, target_word_index)]
        source_words += max(split.word_index, default=-1) + 1
        target_words += max(target_word_index, default=-1) + 1
        source_tokens += [*split.pieces, EOS_TOKEN]
        target_tokens += [*target_pieces, EOS_TOKEN]
        blocks.append(weights)
    matrix = np.zeros((len(target_tokens), len(source_tokens)))
    row = column = 0
    for block in blocks:
        matrix[row: row + block.shape[0], column: column + block.shape[1]] = block
        row, column = row + block.shape[0], column + block.shape[1]
    translations = [_decode(model, piece, result) for piece, result in zip(pieces, results, strict=True)]
    return Attended(
        model=model,
        translation=_in_layout_of(text, _joined(translations, pieces)),
        truncated=any(result.cut_at_max_length for result in results),
        confidence=confidence(results),
        source_tokens=source_tokens,
        target_tokens=target_tokens,
        weights=matrix,
        alignment=pairs,
        moses=moses_format(pairs),
    )


def _log_texts(state: ServiceState, texts: list[str]) -> None:
    if state.settings.log_request_text:
        log.info("request texts", extra={"texts": texts})


async def translate_texts(
    state: ServiceState, request: Request, texts: list[str], options: Options
) -> tuple[LoadedModel, list[TextTranslation]]:
    """Translations of `texts`, in order, and the model version that made them."""
    return await _translate(state, request, check_limits(state, texts, options), texts, options)


async def translate_html(
    state: ServiceState, request: Request, documents: list[str], options: Options
) -> tuple[LoadedModel, list[str]]:
    """Translations of HTML fragments (LibreTranslate's `"format": "html"`): the text nodes of all of
    them are translated together, as the texts of one request, and put back into their markup
    (html_text.HtmlDocument). The limits on texts apply to the fragments as sent; those on
    sentences and rows to their text nodes."""
    loaded = check_limits(state, documents, options)
    parsed = [HtmlDocument(document) for document in documents]
    nodes = [text for document in parsed for text in document.texts]
    names = [f"text {position}'s text node {node}" for position, document in enumerate(parsed)
             for node in range(len(document.texts))]  # a refusal names the text the client sent
    model, translations = await _translate(state, request, loaded, nodes, options, names)
    rendered, position = [], 0
    for document in parsed:
        count = len(document.texts)
        rendered.append(document.render([t.text for t in translations[position: position + count]]))
        position += count
    return model, rendered


def _normalised(text: str) -> str:
    """NFC (as the training corpus is: a tokenizer without NFKC normalisation would not know a
    decomposed "ü"), without control characters."""
    return unicodedata.normalize("NFC", _CONTROL_CHARACTERS.sub("", text))


def _client_terms(options: Options) -> Options:
    """`options` with its `keep` and `glossary` terms written as the sentences they are looked for in
    are (normalised, whitespace runs one space), the glossary's translations too. What the schema
    cannot rule out is settled, not refused: a term or translation with no text once normalised is
    dropped (its term goes to the model as written), of two entries that normalise to one term the
    later counts, and a term both kept and in the glossary is translated as the glossary says."""

    def clean(text: str) -> str:
        return _SPACES.sub(" ", _normalised(text)).strip()

    glossary: dict[str, str] = {}
    for raw_term, raw_translation in options.glossary:
        term, translation = clean(raw_term), clean(raw_translation)
        if term and translation:
            glossary[term] = translation
    keep = tuple(term for term in map(clean, options.keep) if term and term not in glossary)
    return replace(options, keep=keep, glossary=tuple(glossary.items()))


def _prepared(state: ServiceState, texts: list[str], options: Options,
              names: list[str] | None = None) -> tuple[list[str], list[list[Sentence]]]:
    """The texts normalised (_normalised), and their sentences (split_texts' limits apply)."""
    texts = [_normalised(text) for text in texts]
    sentences_by_text = split_texts(state, texts, options, names)
    _log_texts(state, texts)
    return texts, sentences_by_text


async def _translate(
    state: ServiceState, request: Request, loaded: LoadedModel, texts: list[str], options: Options,
    names: list[str] | None = None,
) -> tuple[LoadedModel, list[TextTranslation]]:
    texts, sentences_by_text = _prepared(state, texts, options, names)
    options = _client_terms(options)

    async def work(model: LoadedModel) -> tuple[LoadedModel, list[TextTranslation]]:
        deadline = time.monotonic() + state.settings.request_timeout_s
        layout = [_pieces(state, model, _name(names, position), sentences, options)
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
            sentences = ["" if result is None else _decode(model, piece, result)
                         for piece, result in zip(pieces, own, strict=True)]
            translation = _in_layout_of(text, _joined(sentences, pieces))
            translations.append(TextTranslation(
                text=translation,
                truncated=any(result is not None and result.cut_at_max_length for result in own),
                confidence=confidence(result for result in own if result is not None),
                alternatives=_alternatives(model, text, pieces, own, sentences, options.alternatives, {translation})))
        return model, translations

    return await cancel_on_disconnect(request, state.registry.run(loaded, work))


async def attend(state: ServiceState, request: Request, text: str, options: Options) -> Attended:
    """Translation of one text with its attention matrix and word alignment."""
    loaded = check_limits(state, [text], options)
    (text,), (sentences,) = _prepared(state, [text], options)
    options = _client_terms(options)

    async def work(model: LoadedModel) -> Attended:
        if model.manifest.attention == "none":
            raise AttentionUnavailable(f"model {model.name} version {model.version} has no attention")
        pieces = [piece for piece in _pieces(state, model, _name(None, 0), sentences, options) if not piece.empty]
        if not pieces:
            return Attended(model, "", False, None, [EOS_TOKEN], [EOS_TOKEN], np.ones((1, 1)), [], "")
        deadline = time.monotonic() + state.settings.request_timeout_s
        group = next(_request_groups)
        requests = [_request(model, options, piece, deadline, want_attention=True, group=group) for piece in pieces]
        results = await _translate_rows(state, request, model, pieces, requests)
        return _attended(model, text, pieces, results)

    if loaded.manifest.attention == "none":
        raise AttentionUnavailable(f"model {loaded.name} version {loaded.version} has no attention")
    return await cancel_on_disconnect(request, state.registry.run(loaded, work))
