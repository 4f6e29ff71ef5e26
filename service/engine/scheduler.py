"""The batching loop: admit waiting requests, run one decoder step for every active row, retire.

Owns the bounded queue, deadlines, cancellation, failure isolation and the three batching modes.
Model calls run on two worker threads (encoder, decoder); only small ones with nothing to overlap
run on the event loop (SchedulerConfig.inline_max_rows). Pure Python + numpy; must not import fastapi,
onnxruntime, prometheus_client, service.api or service.runtime.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.engine.batch import DecodeBatch
from service.engine.decoding import Search, make_search
from service.engine.encoder_groups import length_groups
from service.engine.errors import DeadlineExceeded, Draining, EngineFailure, InvalidRequest, Overloaded
from service.engine.model import EncoderOutput, Seq2SeqModel, StepOutput
from service.engine.retry_after import RetryAfterEstimator
from service.engine.types import (
    MAX_BEAM_SIZE,
    FinishedRequest,
    SchedulerConfig,
    SchedulerSnapshot,
    SpecialIds,
    StepStats,
    TranslationRequest,
    TranslationResult,
)

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class _Pending:
    key: int
    request: TranslationRequest
    future: asyncio.Future[TranslationResult]
    submitted_at: float
    max_length: int
    timer: asyncio.TimerHandle | None = None
    admitted_at: float = 0.0
    search: Search | None = None


@dataclass
class _Counters:
    """What happened since the last StepStats; reset when stats are emitted."""

    encoder_calls: int = 0
    rows_admitted: int = 0
    requests_admitted: int = 0
    decoder_step_rows: int = 0
    padded_source_positions: int = 0
    total_source_positions: int = 0
    decoder_padded_source_positions: int = 0
    decoder_total_source_positions: int = 0
    generated_tokens: int = 0
    finished: list[FinishedRequest] = field(default_factory=list)
    failed: int = 0
    expired: int = 0
    cancelled: int = 0


INLINE_MAX_SOURCE_POSITIONS = 64  # padded source tokens an inline encoder call may take (~a 40-word sentence)
# Slots of finished requests stay in the stepped range (stepped, outputs ignored) until newcomers
# take them or they are more than this share of it; then the last rows move into them (a copy of
# the moved rows only). On the GPU the move also re-uploads the memory, so a few holes are cheaper.
MAX_HOLE_SHARE = 0.25


@dataclass(frozen=True)
class _Encoded:
    """One encoder call's result for the requests it encoded, ready to join the batch."""

    keys: list[int]
    rows: list[int]  # decoder rows per request (beam size)
    lengths: np.ndarray  # [requests] source tokens
    output: EncoderOutput


class Scheduler:
    """Continuous (step-level) batching over a Seq2SeqModel; `static` and `off` modes for comparison."""

    def __init__(
        self,
        model: Seq2SeqModel,
        special: SpecialIds,
        config: SchedulerConfig,
        on_stats: Callable[[StepStats], None] | None = None,
    ) -> None:
        self._model = model
        self._special = special
        self._config = config
        self._on_stats = on_stats
        self._keys = itertools.count()
        self._waiting: deque[_Pending] = deque()
        self._active: dict[int, _Pending] = {}  # requests holding rows (slots) in self._batch
        self._batch: DecodeBatch | None = None
        self._counters = _Counters()
        self._completions = RetryAfterEstimator()
        self._wakeup: asyncio.Event | None = None
        self._admitting: list[_Pending] = []  # left the queue, being encoded, not yet in _active
        self._encoding: asyncio.Future[list[_Encoded] | None] | None = None  # the encoder calls in flight
        self._task: asyncio.Task[None] | None = None
        # One thread per graph, so a decoder step and the encoding of newcomers run at the same time.
        self._decoder_executor: ThreadPoolExecutor | None = None
        self._encoder_executor: ThreadPoolExecutor | None = None
        self._draining = False

    # ----------------------------------------------------------------- public interface

    async def start(self) -> None:
        if self._task is not None:
            return
        self._wakeup = asyncio.Event()
        self._decoder_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine-decoder")
        self._encoder_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine-encoder")
        self._task = asyncio.get_running_loop().create_task(self._run(), name="translation-scheduler")

    async def submit(self, request: TranslationRequest) -> TranslationResult:
        if self._draining or not self._running():
            raise Draining("the translation engine is not accepting requests")
        max_length = self._validate(request)
        if len(self._waiting) >= self._config.max_queue_requests:
            raise Overloaded(self._completions.retry_after_s(len(self._waiting), time.monotonic()))
        now = time.monotonic()
        deadline = request.deadline
        if deadline is None and self._config.default_timeout_s > 0:
            deadline = now + self._config.default_timeout_s
        if deadline is not None and deadline <= now:
            raise DeadlineExceeded("the request's deadline passed before it was queued")
        loop = asyncio.get_running_loop()
        pending = _Pending(next(self._keys), request, loop.create_future(), now, max_length)
        if deadline is not None:
            pending.timer = loop.call_later(deadline - now, self._expire, pending)
        self._waiting.append(pending)
        self._wake()
        try:
            return await pending.future
        except asyncio.CancelledError:
            # The caller went away: leave the queue now; active rows are dropped at the next step.
            if self._remove_waiting(pending):
                self._counters.cancelled += 1
            self._wake()
            raise
        finally:
            if pending.timer is not None:
                pending.timer.cancel()

    async def drain(self, timeout_s: float) -> None:
        """Refuse new work, finish everything accepted (queued and active), then stop the loop."""
        self._draining = True
        self._wake()
        if self._task is not None and not self._task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
        await self.stop()

    async def stop(self) -> None:
        """Stop at once: whatever is still queued or active fails with Draining."""
        self._draining = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        error = Draining("the translation engine stopped before this request finished")
        if self._encoding is not None:
            self._encoding.cancel()
            self._encoding = None
        for pending in [*self._waiting, *self._admitting, *self._active.values()]:
            self._fail(pending, error)
        self._waiting.clear()
        self._admitting = []
        self._active.clear()
        self._batch = None
        for executor in (self._decoder_executor, self._encoder_executor):
            if executor is not None:
                executor.shutdown(wait=False, cancel_futures=True)

    def snapshot(self) -> SchedulerSnapshot:
        return SchedulerSnapshot(
            queue_depth=len(self._waiting),
            active_rows=self._live_rows(),
            active_requests=len(self._active),
            mode=self._config.mode,
            running=self._running(),
            draining=self._draining,
            max_batch_rows=self._config.max_batch_rows,
        )

    # ----------------------------------------------------------------- admission checks

    def _validate(self, request: TranslationRequest) -> int:
        """Reject requests that can never be served; return the request's generated-token cap."""
        source = request.source_ids
        if not source:
            raise InvalidRequest("source_ids is empty")
        vocab = self._model.vocab_size
        if min(source) < 0 or max(source) >= vocab:
            raise InvalidRequest(f"source ids must lie in [0, {vocab})")
        if not 1 <= request.beam_size <= MAX_BEAM_SIZE:
            raise InvalidRequest(f"beam_size must be between 1 and {MAX_BEAM_SIZE}")
        if request.beam_size > self._config.max_batch_rows:
            raise InvalidRequest(f"beam_size exceeds max_batch_rows ({self._config.max_batch_rows})")
        if not math.isfinite(request.length_penalty):
            raise InvalidRequest("length_penalty must be finite")
        cap = self._config.max_output_tokens
        if request.max_length is None:
            return self._config.default_max_length(len(source))
        if not 1 <= request.max_length <= cap:
            raise InvalidRequest(f"max_length must be between 1 and {cap}")
        return request.max_length

    # ----------------------------------------------------------------- the loop

    def _running(self) -> bool:
        return self._task is not None and not self._task.done()

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    async def _run(self) -> None:
        assert self._wakeup is not None
        while True:
            if not self._active and not self._waiting and self._encoding is None:
                if self._draining:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()  # idle: no polling until a submit wakes us
                continue
            started = time.monotonic()
            try:
                if self._config.mode == "static" and self._batch is None and self._encoding is None:
                    await self._wait_to_fill()
                await self._iterate()
            except Exception as exc:  # a bug here must not kill the loop for later requests
                logger.exception("scheduler iteration failed; failing its active requests")
                self._fail_active(EngineFailure(f"internal engine error: {type(exc).__name__}"), admitting_too=True)
            self._emit_stats(time.monotonic() - started)

    async def _wait_to_fill(self) -> None:
        """Static mode: wait until the queue holds a full batch or the oldest request waited long enough."""
        assert self._wakeup is not None
        while self._waiting and not self._draining:
            fill_by = self._waiting[0].submitted_at + self._config.static_max_wait_ms / 1000.0
            remaining = fill_by - time.monotonic()
            waiting_rows = sum(p.request.beam_size for p in self._waiting)
            if waiting_rows >= self._config.max_batch_rows or remaining <= 0:
                return
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), remaining)

    async def _iterate(self) -> None:
        """One decoder step for the running batch, with admission off the critical path: newcomers
        are encoded on the encoder's thread while the decoder's thread keeps stepping, and join the
        batch at the first step after their encoding finished. The bidirectional encoder runs over
        the whole source (several decoder steps' worth of time), so waiting for it would idle the
        decoder; only an empty batch waits."""
        self._drop_abandoned()
        if self._encoding is not None and self._encoding.done():
            self._join_encoded()
        if self._encoding is None and (admitted := self._admit()):
            self._admitting = admitted  # until they join: stop() and loop errors must fail them too
            self._encoding = asyncio.ensure_future(self._encode(admitted))
        if self._batch is None and self._encoding is not None:
            await asyncio.wait({self._encoding})  # nothing else to step: the newcomers start at once
            self._join_encoded()
        if self._batch is not None:
            await self._step(self._batch)

    def _admit(self) -> list[_Pending]:
        mode = self._config.mode
        if mode != "continuous" and self._batch is not None:
            return []  # static/off: the current batch runs to completion first
        free_rows = self._config.max_batch_rows - self._live_rows()  # newcomers may take the holes
        max_requests = 1 if mode == "off" else self._config.max_queue_requests
        admitted: list[_Pending] = []
        while self._waiting and len(admitted) < max_requests:
            head = self._waiting[0]
            if head.future.done():  # expired or cancelled while queued
                self._waiting.popleft()
                continue
            if head.request.beam_size > free_rows:
                break  # first come, first served: a wide beam request is not overtaken forever
            self._waiting.popleft()
            admitted.append(head)
            free_rows -= head.request.beam_size
        return admitted

    async def _call_model(
        self, executor: ThreadPoolExecutor | None, inline: bool, function: Callable[..., Any], *args: Any
    ) -> Any:
        if inline:
            result = function(*args)
            # Yield once, so timers (deadlines) and HTTP I/O run between inline calls: without it a
            # lone request would hold the event loop from its first step to its last.
            await asyncio.sleep(0)
            return result
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, function, *args)

    def _inline(self, rows: int) -> bool:
        """Whether a model call of `rows` rows runs on the event loop's own thread. On 2 vCPUs the
        hand-off to a worker thread and back costs 0.2-0.3 ms, a third of a batch-1 decoder step, and
        it buys nothing when there is nothing to overlap: nobody waiting, and (the callers check) no
        other model call in flight. Such small calls block the loop for about a millisecond; bigger
        ones never do."""
        return rows <= self._config.inline_max_rows and not self._waiting

    async def _encode(self, admitted: list[_Pending]) -> list[_Encoded] | None:
        """The admitted requests' encoder outputs, ready to join the batch; None (requests failed)
        on an error. Sources of very different lengths go in separate encoder calls (see
        encoder_groups), all run in one hand-off to the encoder's thread."""
        lengths = [len(p.request.source_ids) for p in admitted]
        calls: list[tuple[list[_Pending], np.ndarray, np.ndarray]] = []
        for group in length_groups(lengths):
            members = [admitted[i] for i in group]
            group_lengths = np.array([lengths[i] for i in group], dtype=np.int64)
            source_ids = np.full((len(group), int(group_lengths.max())), self._special.pad_id, dtype=np.int64)
            for row, pending in enumerate(members):
                source_ids[row, : group_lengths[row]] = pending.request.source_ids
            calls.append((members, source_ids, group_lengths))
        now = time.monotonic()
        for pending in admitted:
            pending.admitted_at = now
        counters = self._counters
        positions = sum(source_ids.size for _, source_ids, _ in calls)
        counters.total_source_positions += positions
        counters.padded_source_positions += positions - sum(lengths)

        def encode_all() -> list[EncoderOutput]:
            return [self._model.encode(source_ids, group_lengths) for _, source_ids, group_lengths in calls]

        try:
            # The encoder's cost grows with the source length: only short sources are encoded inline.
            inline = (self._batch is None and positions <= INLINE_MAX_SOURCE_POSITIONS
                      and self._inline(sum(p.request.beam_size for p in admitted)))
            outputs: list[EncoderOutput] = await self._call_model(self._encoder_executor, inline, encode_all)
        except Exception as exc:
            logger.exception("encoder failed for %d requests", len(admitted))
            for pending in admitted:
                self._fail(pending, EngineFailure(f"the model failed while encoding: {type(exc).__name__}"))
            counters.failed += len(admitted)
            return None
        return [
            _Encoded([p.key for p in members], [p.request.beam_size for p in members], group_lengths, output)
            for (members, _, group_lengths), output in zip(calls, outputs, strict=True)
        ]

    def _join_encoded(self) -> None:
        """The finished encoding's requests take free slots of the running batch (holes first)."""
        assert self._encoding is not None
        new, self._encoding = self._encoding.result(), None
        admitted, self._admitting = self._admitting, []
        if new is None:  # the encoder failed: _encode already failed these requests
            return
        for pending in admitted:
            pending.search = make_search(pending.request, self._special, pending.max_length)
            self._active[pending.key] = pending
        if self._batch is None:
            self._batch = DecodeBatch()
        for group in new:
            self._batch.join(group.keys, group.rows, group.lengths, group.output, self._special.bos_id)
            self._counters.rows_admitted += sum(group.rows)
        # Counted here, with the rows they brought, so rows per call is the calls' own.
        self._counters.encoder_calls += len(new)
        self._counters.requests_admitted += len(admitted)

    async def _step(self, batch: DecodeBatch) -> None:
        counters = self._counters
        counters.decoder_step_rows += self._live_rows()
        counters.decoder_total_source_positions += batch.rows * batch.src_len
        counters.decoder_padded_source_positions += batch.padded_positions
        try:
            inline = self._encoding is None and self._inline(batch.rows)
            out: StepOutput = await self._call_model(
                self._decoder_executor, inline, self._model.decode_step, batch.previous_tokens, batch.state,
                batch.memory,
            )
            if out.log_probs.shape[0] != batch.rows or out.attention.shape[0] != batch.rows:
                raise ValueError(f"decoder returned {out.log_probs.shape[0]} rows for {batch.rows}")
        except Exception as exc:
            logger.exception("decoder step failed for %d requests", len(self._active))
            self._fail_active(EngineFailure(f"the model failed during a decoder step: {type(exc).__name__}"))
            return
        self._advance(batch, out)

    def _advance(self, batch: DecodeBatch, out: StepOutput) -> None:
        """Give each request its rows' outputs; the rows that continue get their next token, the
        requests that end are resolved and free their slots (nothing is copied: see DecodeBatch)."""
        now = time.monotonic()
        batch.set_state(out.state)
        # Every row's best token in one call rather than one per greedy request (beams ignore it).
        argmax = out.log_probs.argmax(axis=1).tolist()
        for key, pending in list(self._active.items()):
            if pending.future.done():  # expired or cancelled during the step
                self._retire_abandoned(pending, batch)
                continue
            assert pending.search is not None
            request = pending.request
            slots = batch.slots(key)
            first = int(slots[0])
            # A greedy request's one row as a view (no copy of its vocabulary-wide row).
            rows: slice | np.ndarray = slice(first, first + 1) if slots.size == 1 else slots
            attention = out.attention[rows, : len(request.source_ids)] if request.want_attention else None
            try:
                advance = pending.search.advance(out.log_probs[rows], attention, argmax[first])
            except Exception as exc:
                logger.exception("search failed for one request")
                self._fail(pending, EngineFailure(f"decoding failed: {type(exc).__name__}"))
                del self._active[key]
                batch.release(key)
                self._counters.failed += 1
                continue
            self._counters.generated_tokens += advance.generated_tokens
            if advance.done:
                self._resolve(pending, now)
                batch.release(key)
                continue
            batch.continue_rows(key, advance.parents, advance.tokens)
        self._settle(batch)

    def _drop_abandoned(self) -> None:
        """Free the slots of requests whose deadline passed or whose caller went away."""
        batch = self._batch
        if batch is None or not any(p.future.done() for p in self._active.values()):
            return
        for pending in list(self._active.values()):
            if pending.future.done():
                self._retire_abandoned(pending, batch)
        self._settle(batch)

    def _settle(self, batch: DecodeBatch) -> None:
        """Tidy the batch after requests continued or left; an empty batch is dropped."""
        batch.settle(MAX_HOLE_SHARE)
        if batch.rows == 0:
            self._batch = None

    def _live_rows(self) -> int:
        return self._batch.live_rows if self._batch is not None else 0

    # ----------------------------------------------------------------- resolving futures

    def _retire_abandoned(self, pending: _Pending, batch: DecodeBatch) -> None:
        del self._active[pending.key]
        batch.release(pending.key)
        if pending.future.cancelled():
            self._counters.cancelled += 1
        # expired requests were counted by _expire

    def _resolve(self, pending: _Pending, now: float) -> None:
        del self._active[pending.key]
        assert pending.search is not None
        best = pending.search.best()
        queue_wait = pending.admitted_at - pending.submitted_at
        decode = now - pending.admitted_at
        result = TranslationResult(
            target_ids=best.target_ids,
            attention=best.attention,
            score=best.score,
            queue_wait_seconds=queue_wait,
            decode_seconds=decode,
        )
        if not pending.future.done():
            pending.future.set_result(result)
        self._counters.finished.append(FinishedRequest(queue_wait, decode, len(best.target_ids) + 1))
        self._completions.record(now)

    def _expire(self, pending: _Pending) -> None:
        if pending.future.done():
            return
        pending.future.set_exception(DeadlineExceeded("the request's deadline passed before it finished"))
        self._counters.expired += 1
        self._remove_waiting(pending)
        self._wake()

    def _remove_waiting(self, pending: _Pending) -> bool:
        try:
            self._waiting.remove(pending)
        except ValueError:
            return False
        return True

    @staticmethod
    def _fail(pending: _Pending, error: Exception) -> None:
        if not pending.future.done():
            pending.future.set_exception(error)

    def _fail_active(self, error: EngineFailure, admitting_too: bool = False) -> None:
        """Fail every request holding rows (and, after a loop error, those being encoded to join)."""
        if admitting_too and self._encoding is not None:
            self._encoding.cancel()
            self._encoding = None
        failing = [*self._active.values(), *(self._admitting if admitting_too else ())]
        for pending in failing:
            if not pending.future.done():
                pending.future.set_exception(error)
                self._counters.failed += 1
        self._active.clear()
        if admitting_too:
            self._admitting = []
        self._batch = None

    def _emit_stats(self, step_seconds: float) -> None:
        counters, self._counters = self._counters, _Counters()
        if self._on_stats is None:
            return
        stats = StepStats(
            encoder_calls=counters.encoder_calls,
            rows_admitted=counters.rows_admitted,
            requests_admitted=counters.requests_admitted,
            decoder_step_rows=counters.decoder_step_rows,
            padded_source_positions=counters.padded_source_positions,
            total_source_positions=counters.total_source_positions,
            decoder_padded_source_positions=counters.decoder_padded_source_positions,
            decoder_total_source_positions=counters.decoder_total_source_positions,
            generated_tokens=counters.generated_tokens,
            finished=tuple(counters.finished),
            failed=counters.failed,
            expired=counters.expired,
            cancelled=counters.cancelled,
            queue_depth=len(self._waiting),
            active_rows=self._live_rows(),
            step_seconds=step_seconds,
        )
        try:
            self._on_stats(stats)
        except Exception:  # a metrics sink must never stop translation
            logger.exception("on_stats callback failed")
