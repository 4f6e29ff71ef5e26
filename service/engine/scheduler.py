"""The batching front: the bounded queue, admission, encoding, and the requests' futures.

Owns deadlines, cancellation, failure isolation and the three batching modes. A request's life:
`submit` queues it; the event loop admits it when the batch has room (continuous: at any step;
static/off: when the batch is empty), encodes it on the encoder's thread (small ones inline) and
hands the encoder output to the `DecodeLoop` of its lane (a range of source lengths), whose own
thread steps that lane's batch back to back and reports what ended; the report resolves the
futures here, on the event loop (static: all of a batch's answers at once, when its last row ends).
Pure Python + numpy;
must not import fastapi, onnxruntime, prometheus_client, service.api or service.runtime.
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

import numpy as np

from service.engine.decode_loop import DecodeLoop, DecoderReport, Encoded, Ticket
from service.engine.encoder_groups import lane_of, length_groups
from service.engine.errors import DeadlineExceeded, Draining, EngineFailure, InvalidRequest, Overloaded
from service.engine.model import EncoderOutput, Seq2SeqModel
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


@dataclass
class _Counters:
    """What happened since the last StepStats; reset when stats are emitted."""

    encoder_calls: int = 0
    rows_admitted: int = 0
    requests_admitted: int = 0
    padded_source_positions: int = 0
    total_source_positions: int = 0
    failed: int = 0
    expired: int = 0
    cancelled: int = 0
    finished: list[FinishedRequest] = field(default_factory=list)
    unadmitted_queue_waits: list[float] = field(default_factory=list)  # seconds, see StepStats


INLINE_MAX_SOURCE_POSITIONS = 64  # padded source tokens an inline encoder call may take (~a 40-word sentence)


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
        self._waiting: deque[Ticket] = deque()
        self._admitting: list[Ticket] = []  # left the queue, being encoded
        self._decoding: dict[int, Ticket] = {}  # handed to the decode loop, not yet reported ended
        # Rows of the admitted requests that have not been reported ended: what admission counts
        # against max_batch_rows (the decode loop's own count runs ahead of the reports).
        self._held_rows = 0
        self._group_rows: dict[int, int] = {}  # the held rows by request group (fair admission)
        # Static mode: answers of the batch being decoded, released together when it ends.
        self._batch_answers: list[tuple[Ticket, TranslationResult]] = []
        self._counters = _Counters()
        self._completions = RetryAfterEstimator()
        self._wakeup: asyncio.Event | None = None
        self._encoding: asyncio.Task[None] | None = None  # the encoder calls in flight
        self._task: asyncio.Task[None] | None = None
        self._lane_bounds = sorted(set(config.decoder_lane_bounds))
        self._decoders: list[DecodeLoop] = []  # one per lane, while running
        self._encoder_executor: ThreadPoolExecutor | None = None
        self._draining = False

    # ----------------------------------------------------------------- public interface

    async def start(self) -> None:
        if self._task is not None:
            return
        loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        self._encoder_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine-encoder")

        def hand_over(report: DecoderReport) -> None:  # on the decoder's thread
            loop.call_soon_threadsafe(self._deliver, report)

        # One decoder thread per lane: a lane's rows attend over its own longest source only, and
        # while one lane's step runs in ONNX Runtime (which releases the GIL) another lane's thread
        # does its Python bookkeeping (int8 on 2 cores, alternating runs: +21% sentences/s over both
        # lanes taking turns on one thread, +9% over a single lane; docs/benchmarks.md).
        self._decoders = [
            DecodeLoop(self._model, self._special, hand_over, name="engine-decoder" + (f"-{lane}" if lane else ""))
            for lane in range(len(self._lane_bounds) + 1)
        ]
        for decoder in self._decoders:
            decoder.start()
        self._task = loop.create_task(self._run(), name="translation-scheduler")

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
        queued_since = now if request.queued_since is None else min(now, request.queued_since)
        ticket = Ticket(next(self._keys), request, loop.create_future(), queued_since, max_length)
        if deadline is not None:
            ticket.timer = loop.call_later(deadline - now, self._expire, ticket)
        place = len(self._waiting)  # first come, first served by when each first asked
        while place > 0 and self._waiting[place - 1].submitted_at > queued_since:
            place -= 1
        self._waiting.insert(place, ticket)
        self._wake()
        try:
            return await ticket.future
        except asyncio.CancelledError:
            # The caller went away: leave the queue now; the decode loop frees its rows at its next step.
            if self._remove_waiting(ticket):
                self._counters.cancelled += 1
                self._counters.unadmitted_queue_waits.append(time.monotonic() - ticket.submitted_at)
            self._wake()
            raise
        finally:
            if ticket.timer is not None:
                ticket.timer.cancel()

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
        for decoder in self._decoders:
            decoder.stop()  # its thread ends after the step in progress; its report is ignored
        self._decoders = []
        if self._encoding is not None:
            self._encoding.cancel()
            self._encoding = None
        self._release_batch_answers()  # those requests did finish
        error = Draining("the translation engine stopped before this request finished")
        for ticket in [*self._waiting, *self._admitting, *self._decoding.values()]:
            self._fail(ticket, error)
        self._waiting.clear()
        self._admitting = []
        self._decoding.clear()
        self._held_rows = 0
        self._group_rows.clear()
        if self._encoder_executor is not None:
            self._encoder_executor.shutdown(wait=False, cancel_futures=True)

    def snapshot(self) -> SchedulerSnapshot:
        return SchedulerSnapshot(
            queue_depth=len(self._waiting),
            active_rows=self._live_rows(),
            active_requests=len(self._decoding),
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
        if not 0 <= request.alternatives < request.beam_size:
            raise InvalidRequest("alternatives must be fewer than beam_size")
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
        """Admit whenever the batch has room and no encoding is in flight; sleep otherwise (a
        submit, an encoding's end, a decoder report or a static batch's fill time wakes it)."""
        assert self._wakeup is not None
        while True:
            self._wakeup.clear()
            if self._draining and not (self._waiting or self._admitting or self._decoding):
                return
            wait_s: float | None = None
            if self._encoding is None:
                try:
                    wait_s = self._start_admission()
                except Exception as exc:  # a bug here must not kill the loop for later requests
                    logger.exception("admission failed; failing the admitted requests")
                    self._fail_admitting(EngineFailure(f"internal engine error: {type(exc).__name__}"))
            counters = self._counters
            if counters.expired or counters.cancelled:  # nothing else may report them soon
                self._emit_stats()
            if wait_s is None:
                await self._wakeup.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), wait_s)

    def _start_admission(self) -> float | None:
        """Admit what fits and start encoding it; in static mode, the seconds left to fill a batch."""
        mode = self._config.mode
        if mode != "continuous" and self._held_rows:
            return None  # static/off: the current batch runs to completion first
        if mode == "static" and self._waiting and not self._draining:
            fill_by = self._waiting[0].submitted_at + self._config.static_max_wait_ms / 1000.0
            remaining = fill_by - time.monotonic()
            waiting_rows = sum(t.rows for t in self._waiting)
            if waiting_rows < self._config.max_batch_rows and remaining > 0:
                return remaining
        if admitted := self._admit():
            inline = self._held_rows == 0 and self._inline(sum(t.rows for t in admitted))
            self._held_rows += sum(t.rows for t in admitted)  # (and _group_rows, counted by _admit)
            self._admitting = admitted  # until handed over: stop() and errors must fail them too
            self._encoding = asyncio.get_running_loop().create_task(self._encode(admitted, inline))
        return None

    def _admit(self) -> list[Ticket]:
        """First come, first served, except that the sentences of a request whose group already holds
        half the batch let other requests' sentences go first: a text of 64 lines or 32 texts must not
        keep a one-sentence request waiting until all of theirs are in (it waited seconds). Work-
        conserving: rows nobody else wants still go to the big request (the second pass)."""
        free_rows = self._config.max_batch_rows - self._held_rows
        max_requests = 1 if self._config.mode == "off" else self._config.max_queue_requests
        share = max(1, self._config.max_batch_rows // 2)
        group_rows = self._group_rows
        admitted: list[Ticket] = []
        for fair in (True, False):
            passed_over: list[Ticket] = []  # left in the queue by this pass, in queue order
            blocked = over_share = False
            while self._waiting and not blocked and free_rows > 0 and len(admitted) < max_requests:
                ticket = self._waiting.popleft()
                if ticket.future.done():  # expired (counted by _expire) or cancelled while queued
                    if ticket.future.cancelled():  # before its submit() could take it out and count it
                        self._counters.cancelled += 1
                        self._counters.unadmitted_queue_waits.append(time.monotonic() - ticket.submitted_at)
                    continue
                if fair and group_rows.get(ticket.group, 0) >= share:
                    passed_over.append(ticket)  # its group has its share: others first
                    over_share = True
                elif ticket.rows > free_rows:
                    passed_over.append(ticket)
                    blocked = True  # first come, first served: a wide beam request is not overtaken forever
                else:
                    admitted.append(ticket)
                    free_rows -= ticket.rows
                    group_rows[ticket.group] = group_rows.get(ticket.group, 0) + ticket.rows
            self._waiting.extendleft(reversed(passed_over))  # back at the front, in their order
            if blocked or not over_share:  # nothing a second pass could admit
                break
        return admitted

    def _release_rows(self, ticket: Ticket) -> None:
        self._held_rows -= ticket.rows
        left = self._group_rows.pop(ticket.group, 0) - ticket.rows
        if left > 0:
            self._group_rows[ticket.group] = left

    def _inline(self, rows: int) -> bool:
        """Whether an encoder call of `rows` rows runs on the event loop's own thread. On 2 vCPUs
        the hand-off to a worker thread and back costs 0.2-0.3 ms, and it buys nothing when there
        is nothing to overlap: nobody waiting and (the caller checks) nothing decoding. Such small
        calls block the loop for about a millisecond; bigger ones never do."""
        return rows <= self._config.inline_max_rows and not self._waiting

    async def _encode(self, admitted: list[Ticket], inline: bool) -> None:
        """Encode the admitted requests and hand them to the decode loop; on an error, fail them.
        Sources of very different lengths go in separate encoder calls (see encoder_groups), all
        run in one hand-off to the encoder's thread."""
        lengths = [len(t.request.source_ids) for t in admitted]
        calls: list[tuple[list[Ticket], np.ndarray, np.ndarray]] = []
        for group in length_groups(lengths, self._lane_bounds):
            members = [admitted[i] for i in group]
            group_lengths = np.array([lengths[i] for i in group], dtype=np.int64)
            source_ids = np.full((len(group), int(group_lengths.max())), self._special.pad_id, dtype=np.int64)
            for row, ticket in enumerate(members):
                source_ids[row, : group_lengths[row]] = ticket.request.source_ids
            calls.append((members, source_ids, group_lengths))
        now = time.monotonic()
        for ticket in admitted:
            ticket.admitted_at = now
        positions = sum(source_ids.size for _, source_ids, _ in calls)

        def encode_all() -> list[EncoderOutput]:
            return [self._model.encode(source_ids, group_lengths) for _, source_ids, group_lengths in calls]

        try:
            # The encoder's cost grows with the source length: only short sources are encoded inline.
            if inline and positions <= INLINE_MAX_SOURCE_POSITIONS:
                outputs = encode_all()
            else:
                outputs = await asyncio.get_running_loop().run_in_executor(self._encoder_executor, encode_all)
        except Exception as exc:
            logger.exception("encoder failed for %d requests", len(admitted))
            self._fail_admitting(EngineFailure(f"the model failed while encoding: {type(exc).__name__}"))
            return
        finally:
            self._encoding = None
            self._wake()
        counters = self._counters
        counters.encoder_calls += len(calls)
        counters.requests_admitted += len(admitted)
        counters.rows_admitted += sum(t.rows for t in admitted)
        counters.total_source_positions += positions
        counters.padded_source_positions += positions - sum(lengths)
        handed_over = time.monotonic()
        for ticket in admitted:
            ticket.encoded_at = handed_over  # before join(): the decoder's thread reads it when the request ends
        by_lane: dict[int, list[Encoded]] = {}
        for (members, _, group_lengths), output in zip(calls, outputs, strict=True):
            lane = lane_of(int(group_lengths.max()), self._lane_bounds)  # a group never mixes lanes
            by_lane.setdefault(lane, []).append(Encoded(members, group_lengths, output))
        for lane, groups in by_lane.items():
            self._decoders[lane].join(groups)
        self._decoding.update((t.key, t) for t in admitted)
        self._admitting = []
        self._emit_stats()

    def _live_rows(self) -> int:
        return sum(decoder.live_rows for decoder in self._decoders)

    # ----------------------------------------------------------------- resolving futures

    def _deliver(self, report: DecoderReport) -> None:
        """A decoder report, on the event loop: resolve what ended and give its rows back."""
        counters = self._counters
        now = time.monotonic()
        for ticket, result in report.finished:
            if self._forget(ticket):
                if self._config.mode == "static":
                    self._batch_answers.append((ticket, result))
                elif not ticket.future.done():
                    ticket.future.set_result(result)
                counters.finished.append(FinishedRequest(result.queue_wait_seconds, result.encode_seconds,
                                                         result.decode_seconds, len(result.target_ids) + 1,
                                                         result.cut_at_max_length))
                self._completions.record(now)
        for ticket, error in report.failed:
            if self._forget(ticket) and self._fail(ticket, error):
                counters.failed += 1
        for ticket in report.abandoned:
            if self._forget(ticket) and ticket.future.cancelled():
                counters.cancelled += 1  # expired requests were counted by _expire
        if not self._decoding:
            self._release_batch_answers()
        self._emit_stats(report)
        self._wake()

    def _release_batch_answers(self) -> None:
        """Static mode answers a batch as a whole, when its last row has ended: what a server that
        runs generate() over each batch does, and what Orca (Yu et al., OSDI 2022) calls
        request-level scheduling, the baseline that continuous batching is measured against. The
        finished rows have already left the decoder's batch (no compute is spent on them)."""
        answers, self._batch_answers = self._batch_answers, []
        for ticket, result in answers:
            if not ticket.future.done():  # its deadline may have passed or its caller left meanwhile
                ticket.future.set_result(result)

    def _forget(self, ticket: Ticket) -> bool:
        """The ticket ended: its rows are free again. False when stop() already failed it."""
        if self._decoding.pop(ticket.key, None) is None:
            return False
        self._release_rows(ticket)
        return True

    def _expire(self, ticket: Ticket) -> None:
        if ticket.future.done():
            return
        ticket.future.set_exception(DeadlineExceeded("the request's deadline passed before it finished"))
        self._counters.expired += 1
        if self._remove_waiting(ticket):  # its whole wait was queueing: what autoscaling must see
            self._counters.unadmitted_queue_waits.append(time.monotonic() - ticket.submitted_at)
        self._wake()

    def _remove_waiting(self, ticket: Ticket) -> bool:
        try:
            self._waiting.remove(ticket)
        except ValueError:
            return False
        return True

    @staticmethod
    def _fail(ticket: Ticket, error: Exception) -> bool:
        """Fail the request unless it already ended (expired, cancelled); True when it failed now."""
        if ticket.future.done():
            return False
        ticket.future.set_exception(error)
        return True

    def _fail_admitting(self, error: EngineFailure) -> None:
        """Fail the requests being admitted (not yet handed to the decode loop); their rows are free."""
        for ticket in self._admitting:
            if self._fail(ticket, error):
                self._counters.failed += 1
            self._release_rows(ticket)
        self._admitting = []
        self._emit_stats()

    def _emit_stats(self, report: DecoderReport | None = None) -> None:
        counters, self._counters = self._counters, _Counters()
        if self._on_stats is None:
            return
        stats = StepStats(
            encoder_calls=counters.encoder_calls,
            rows_admitted=counters.rows_admitted,
            requests_admitted=counters.requests_admitted,
            step_rows=tuple(report.step_rows) if report else (),
            padded_source_positions=counters.padded_source_positions,
            total_source_positions=counters.total_source_positions,
            decoder_padded_source_positions=report.padded_source_positions if report else 0,
            decoder_total_source_positions=report.total_source_positions if report else 0,
            generated_tokens=report.generated_tokens if report else 0,
            finished=tuple(counters.finished),
            unadmitted_queue_waits=tuple(counters.unadmitted_queue_waits),
            failed=counters.failed,
            expired=counters.expired,
            cancelled=counters.cancelled,
            queue_depth=len(self._waiting),
            active_rows=self._live_rows(),
        )
        try:
            self._on_stats(stats)
        except Exception:  # a metrics sink must never stop translation
            logger.exception("on_stats callback failed")
