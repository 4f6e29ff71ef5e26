"""The decoder's own thread: decoder steps back to back, each followed by every request's search.

The event loop admits and encodes requests and hands their encoder outputs over (`DecodeLoop.join`);
from then on this thread owns them: it writes them into the batch's free slots, runs a decoder step
for every row, advances each request's search, frees the slots of requests that ended and goes
straight on to the next step. What ended (results, failures, abandoned requests) and the step
counters go back to the event loop in a `DecoderReport`, which resolves the futures there.

Why a thread of its own rather than a step per event-loop turn: between two steps the event loop
also parses and answers HTTP requests, so a step's output waited behind that work before the next
step could start (under load the decoder idled ~40% of the time between steps), and a lone request
paid an event-loop turn per generated token. ONNX Runtime releases the GIL during a step, so the
event loop works while this thread waits for the model.

Shared state, and why it is safe: the `Ticket`s' futures belong to the event loop; this thread only
reads `future.done()` (a single attribute read) to notice expired or cancelled requests, and never
resolves a future. Numpy only; must not import onnxruntime, fastapi or prometheus_client.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from service.engine.batch import DecodeBatch
from service.engine.decoding import GreedySearch, Search, make_search
from service.engine.errors import EngineFailure
from service.engine.model import EncoderOutput, Seq2SeqModel, StepOutput
from service.engine.types import Alternative, SpecialIds, TranslationRequest, TranslationResult

logger = logging.getLogger(__name__)

# Slots of finished requests stay in the stepped range (stepped, outputs ignored) until newcomers
# take them or they are more than this share of it; then the last rows move into them (a copy of
# the moved rows only). On the GPU the move also re-uploads the memory, so a few holes are cheaper.
MAX_HOLE_SHARE = 0.25
# While nothing ends (long outputs), the step counters still reach the metrics this often.
REPORT_INTERVAL_S = 0.1


@dataclass(eq=False)
class Ticket:
    """One accepted request. The event loop owns the future and the timer; once handed to the
    decode loop, that thread owns `search`."""

    key: int
    request: TranslationRequest
    future: asyncio.Future[TranslationResult]
    submitted_at: float  # time.monotonic()
    max_length: int  # generated-token cap, eos excluded
    timer: asyncio.TimerHandle | None = None
    admitted_at: float = 0.0  # its encoding began
    encoded_at: float = 0.0  # handed to its decoder lane
    search: Search | None = None

    @property
    def rows(self) -> int:
        """Decoder rows the request may hold (its beam size)."""
        return self.request.beam_size

    @property
    def group(self) -> int:
        """Its request's group for fair admission; a ticket without one is a group of its own."""
        return self.request.group if self.request.group is not None else -1 - self.key


@dataclass(frozen=True, eq=False)
class Encoded:
    """One encoder call's result for the requests it encoded, ready to join the batch."""

    tickets: list[Ticket]
    lengths: np.ndarray  # [requests] source tokens
    output: EncoderOutput


@dataclass
class DecoderReport:
    """What the decode loop did since its last report; handed to the event loop."""

    finished: list[tuple[Ticket, TranslationResult]] = field(default_factory=list)
    failed: list[tuple[Ticket, Exception]] = field(default_factory=list)
    abandoned: list[Ticket] = field(default_factory=list)  # expired or cancelled: slots freed
    step_rows: list[int] = field(default_factory=list)  # live rows of each decoder step of this loop
    padded_source_positions: int = 0  # attended positions that were padding or holes
    total_source_positions: int = 0
    generated_tokens: int = 0

    def ended(self) -> bool:
        return bool(self.finished or self.failed or self.abandoned)


class DecodeLoop:
    """Owns the DecodeBatch and the searches of the requests in it, on one daemon thread. The
    scheduler runs one per lane (a range of source lengths), side by side."""

    def __init__(
        self,
        model: Seq2SeqModel,
        special: SpecialIds,
        report: Callable[[DecoderReport], None],
        name: str = "engine-decoder",
    ) -> None:
        self._model = model
        self._special = special
        self._report = report  # called on this thread; must hand the report over thread-safely
        self._inbox: queue.SimpleQueue[list[Encoded] | None] = queue.SimpleQueue()
        self._batch: DecodeBatch | None = None
        self._tickets: dict[int, Ticket] = {}  # requests holding slots in the batch
        self._pending = DecoderReport()
        self._last_report = time.monotonic()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        # Read by the event loop (snapshots, stats): plain ints this thread rebinds after each step.
        self.live_rows = 0

    def start(self) -> None:
        self._thread.start()

    def join(self, encoded: list[Encoded]) -> None:
        """Hand encoded requests over (thread-safe); they join the batch before the next step."""
        self._inbox.put(encoded)

    def stop(self) -> None:
        """Stop after the step in progress; whatever is in the batch is left to the caller to fail."""
        self._stopped = True
        self._inbox.put(None)

    # ----------------------------------------------------------------- the thread

    def _run(self) -> None:
        while not self._stopped:
            try:
                if not self._take_newcomers():
                    break
                if self._batch is not None:
                    self._step(self._batch)
                self._maybe_report()
            except Exception as exc:  # a bug here must not stop decoding for later requests
                logger.exception("decode loop iteration failed; failing its requests")
                self._fail_all(EngineFailure(f"internal engine error: {type(exc).__name__}"))
                self._maybe_report()
        # Stopped: the scheduler has failed every request; let go of the batch's memory.
        self._batch, self._tickets, self.live_rows = None, {}, 0

    def _take_newcomers(self) -> bool:
        """Join what the event loop handed over; with an empty batch, wait for it. False: stop."""
        while True:
            idle = self._batch is None
            if idle:
                self._maybe_report(force=True)  # nothing to step: hand over what is pending first
            try:
                item = self._inbox.get(block=idle)
            except queue.Empty:
                return True
            if item is None or self._stopped:
                return False
            for group in item:
                self._join(group)

    def _join(self, group: Encoded) -> None:
        """The group's requests take free slots of the batch (holes first); ones abandoned while
        they were being encoded are reported instead. A failure (a bug) fails the group and the
        batch it may have half-written; later groups start a new batch."""
        report = self._pending
        # done() is read once per ticket: the event loop may cancel one between two reads.
        live = [not ticket.future.done() for ticket in group.tickets]
        keep = [i for i, alive in enumerate(live) if alive]
        report.abandoned.extend(t for t, alive in zip(group.tickets, live, strict=True) if not alive)
        if not keep:
            return
        tickets = [group.tickets[i] for i in keep]
        try:
            output = group.output
            if len(keep) < len(group.tickets):
                index = np.array(keep, np.int64)
                output = EncoderOutput(output.memory[index], output.memory_keys[index],
                                       output.hidden[:, index], output.cell[:, index])
            searches = [make_search(t.request, self._special, t.max_length) for t in tickets]
            batch = self._batch if self._batch is not None else DecodeBatch()
            batch.join([t.key for t in tickets], [t.rows for t in tickets], group.lengths[keep], output,
                       self._special.bos_id)
        except Exception as exc:  # a bug: the batch may be half-written, so its requests fail too
            logger.exception("joining %d requests to the batch failed", len(tickets))
            error = EngineFailure(f"internal engine error: {type(exc).__name__}")
            report.failed.extend((ticket, error) for ticket in tickets)
            self._fail_all(error)
            return
        self._batch = batch
        for ticket, search in zip(tickets, searches, strict=True):
            ticket.search = search
            self._tickets[ticket.key] = ticket
        self.live_rows = batch.live_rows

    def _step(self, batch: DecodeBatch) -> None:
        report = self._pending
        self._drop_abandoned(batch)
        if self._batch is None:
            return
        report.step_rows.append(self.live_rows)
        report.total_source_positions += batch.rows * batch.src_len
        report.padded_source_positions += batch.padded_positions
        try:
            out: StepOutput = self._model.decode_step(batch.previous_tokens, batch.state, batch.memory)
            if out.log_probs.shape[0] != batch.rows or out.attention.shape[0] != batch.rows:
                raise ValueError(f"decoder returned {out.log_probs.shape[0]} rows for {batch.rows}")
        except Exception as exc:
            logger.exception("decoder step failed for %d requests", len(self._tickets))
            self._fail_all(EngineFailure(f"the model failed during a decoder step: {type(exc).__name__}"))
            return
        self._advance(batch, out)

    def _advance(self, batch: DecodeBatch, out: StepOutput) -> None:
        """Give each request its rows' outputs; the rows that continue get their next token, the
        requests that end are reported and free their slots (nothing is copied: see DecodeBatch)."""
        report = self._pending
        now = time.monotonic()
        batch.set_state(out.state)
        # Every row's best token and its log-probability in one numpy call each, so a greedy row
        # (the usual request) costs a few Python operations per step: this thread holds the GIL
        # meanwhile, which the event loop's HTTP work needs too.
        best = out.log_probs.argmax(axis=1)
        best_log_probs = out.log_probs[np.arange(best.size), best].tolist()
        argmax = best.tolist()
        greedy_slots: list[int] = []
        greedy_tokens: list[int] = []
        for key, ticket in list(self._tickets.items()):
            search = ticket.search
            request = ticket.request
            slots = batch.slots(key)
            first = int(slots[0])
            if isinstance(search, GreedySearch) and (token := search.next_token(argmax[first])) is not None:
                log_prob = best_log_probs[first] if token == argmax[first] else float(out.log_probs[first, token])
                attention_row = out.attention[first, : len(request.source_ids)] if request.want_attention else None
                report.generated_tokens += 1
                if search.take(token, log_prob, attention_row):
                    greedy_slots.append(first)
                    greedy_tokens.append(token)
                else:
                    self._finish(ticket, search, batch, now, report)
                continue
            assert search is not None
            # Beams, and the rare greedy row whose model prefers pad/bos: the search sees the rows.
            rows: slice | np.ndarray = slice(first, first + 1) if slots.size == 1 else slots
            attention = out.attention[rows, : len(request.source_ids)] if request.want_attention else None
            try:
                advance = search.advance(out.log_probs[rows], attention, argmax[first])
            except Exception as exc:
                logger.exception("search failed for one request")
                self._leave(ticket, batch)
                report.failed.append((ticket, EngineFailure(f"decoding failed: {type(exc).__name__}")))
                continue
            report.generated_tokens += advance.generated_tokens
            if advance.done:
                self._finish(ticket, search, batch, now, report)
                continue
            batch.continue_rows(key, advance.parents, advance.tokens)
        batch.continue_in_place(greedy_slots, greedy_tokens)
        self._settle(batch)

    def _finish(self, ticket: Ticket, search: Search, batch: DecodeBatch, now: float, report: DecoderReport) -> None:
        """The request ended: its rows leave the batch, and its result goes to the report, or, should
        building it fail, an EngineFailure (a ticket out of the batch but in no report was never
        answered, and its rows stayed held)."""
        self._leave(ticket, batch)
        try:
            report.finished.append((ticket, self._result(ticket, search, now)))
        except Exception as exc:
            logger.exception("building the result failed for one request")
            report.failed.append((ticket, EngineFailure(f"decoding failed: {type(exc).__name__}")))

    @staticmethod
    def _result(ticket: Ticket, search: Search, now: float) -> TranslationResult:
        ranked = search.ranked(ticket.request.alternatives + 1)
        best = ranked[0]
        return TranslationResult(
            target_ids=best.target_ids,
            attention=best.attention,
            score=best.score,
            scored_tokens=best.scored_tokens,
            queue_wait_seconds=ticket.admitted_at - ticket.submitted_at,
            encode_seconds=ticket.encoded_at - ticket.admitted_at,
            decode_seconds=now - ticket.encoded_at,
            cut_at_max_length=best.cut_short,
            alternatives=tuple(Alternative(other.target_ids, other.attention, other.score, other.scored_tokens)
                               for other in ranked[1:]),
        )

    def _drop_abandoned(self, batch: DecodeBatch) -> None:
        """Free the slots of requests whose deadline passed or whose caller went away."""
        abandoned = [ticket for ticket in self._tickets.values() if ticket.future.done()]
        if not abandoned:
            return
        for ticket in abandoned:
            self._leave(ticket, batch)
            self._pending.abandoned.append(ticket)
        self._settle(batch)

    def _leave(self, ticket: Ticket, batch: DecodeBatch) -> None:
        del self._tickets[ticket.key]
        batch.release(ticket.key)

    def _settle(self, batch: DecodeBatch) -> None:
        """Tidy the batch after requests continued or left; an empty batch is dropped."""
        batch.settle(MAX_HOLE_SHARE)
        if batch.rows == 0:
            self._batch = None
        self.live_rows = batch.live_rows if self._batch is not None else 0

    def _fail_all(self, error: EngineFailure) -> None:
        """Fail every request holding slots (not the ones still in the inbox)."""
        self._pending.failed.extend((ticket, error) for ticket in self._tickets.values())
        self._tickets.clear()
        self._batch = None
        self.live_rows = 0

    def _maybe_report(self, force: bool = False) -> None:
        """Report at once when a request ended (its caller is waiting); otherwise every
        REPORT_INTERVAL_S, so the metrics follow long decodes too. `force`: whatever is pending."""
        report = self._pending
        now = time.monotonic()
        if self._stopped or (not report.ended() and not report.step_rows):
            return
        if not (force or report.ended() or now - self._last_report >= REPORT_INTERVAL_S):
            return
        self._pending, self._last_report = DecoderReport(), now
        try:
            self._report(report)
        except Exception:  # e.g. the event loop closed under a stopping engine
            logger.exception("could not hand a decoder report to the event loop")
