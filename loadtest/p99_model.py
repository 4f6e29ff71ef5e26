"""A discrete-event queueing model of the service's batching on this machine's measured costs.

The question it answers: could ANY implementation of continuous (step-level) or static (per-batch)
batching reach the issue's target, continuous p99 <= 0.5 x static p99 at the same offered load
(open loop, Poisson arrivals, one test-set line per request), on this 2-core machine, and under
what conditions would it?

Inputs, all measured and read from files (nothing here is tuned to the measured latencies):
- lengths: every line of data/corpus/test_everyday.tsv + test_technical.tsv, cut into sentences
  as the service cuts them (model_store.sentences), each sentence's source tokens counted with the
  shipped model's SentencePiece codec (model_store.codec, pieces + </s>, as loadtest.engine_bench
  counts them); target (decoder steps) = the German reference's pieces + 1 for </s>, a proxy for the
  greedy output (no per-sentence greedy lengths are stored; the side-by-side's answers averaged
  16.9 target tokens per line against the proxy's 17.8). Where a line's German splits into another
  number of sentences, its target pieces are shared out in proportion to the source sentences.
- costs: loadtest/results/engine_bench.json (fp32, engine only): encoder ms per call and decoder
  step ms by batch 1..256 at the mean source length. Made monotone (pool adjacent violators) and
  interpolated linearly in rows; an encoder call of `rows` rows padded to `longest` tokens is scaled
  from the benchmark's length with the service's own measured call-cost shape
  (service/engine/encoder_groups.py: longest x (3 + rows) + 8 row-positions). The benchmark ran each
  graph with ONNX Runtime's default threads (both cores); the service gives each session one
  thread, so a call's single-thread CPU time is taken as THREAD_FACTOR (2.0, both threads busy) x
  the benchmark's wall time. The model prints its CPU per request beside the measured one.
- overheads (docs/benchmarks.md): the event loop's HTTP work 1.3 ms of CPU per request (static's
  event-loop thread at 165/s), the load generator ~0.8 ms per request (0.13 cores at 162/s), ~80 us
  of Python per decoder step on a lane's thread, small per-admission, per-hand-off and per-report
  costs on the event loop.

What is modelled: the CPU as `cores` processors shared equally among the runnable threads
(processor sharing), each thread a FIFO server of CPU work: the client, the event loop (HTTP in and
out, admission passes, encoder hand-offs, decoder reports, small encoder calls run inline), the
encoder thread (one hand-off of all the admitted requests' encoder calls, split by length as
encoder_groups does, never mixing lanes), and one thread per decoder lane (lanes split at 32 source
tokens; a step costs the cost curve at the lane's stepped rows, holes included as decode_loop keeps
them, plus Python; "rows/step" is reported as the service counts it, live rows).
Policies as implemented in service/engine/scheduler.py and decode_loop.py: continuous admits FCFS
whenever no encoding is in flight and rows are free (64 in all); newcomers join their lane at its
next step; each request is answered as its last sentence ends. Static admits only when nothing is
held, waits up to 5 ms (from the first waiter's submission) to fill 64 rows, and releases all of a
batch's answers when its last row (in either lane) ends. Idealized references: continuous with no
Python per step and no scheduler work on the event loop (the cost curve alone), and continuous
with at most 16 rows in flight (FCFS beyond).

What is not modelled: the GIL (Python parts of different threads serialize in reality), OS
scheduling quanta and thread wake-up latency, memory-bandwidth and cache contention between model
calls running side by side (the benchmark timed one call at a time; docs/benchmarks.md measured a
29-row step at 4.1 ms of CPU in the loaded server against ~3 ms alone), the VM's neighbours, the
attention's cost growing with the padded source length (fp32: within noise, docs/benchmarks.md),
source pieces kept verbatim (an address is one token in the service, its pieces here), a fair-share
rule for requests of many sentences (one line per request here), deadlines, client connection
limits. More cores are modelled with the same threads (one per model session), so beyond 5 cores
nothing changes; the service would give ONNX Runtime more threads per session there, which the
2-thread benchmark cannot price.

Runs: the closed loop (64 clients, as the side-by-side benchmark) gives each policy's saturated
rate; open-loop loads are fractions of static's; each load runs every policy on the same Poisson
schedules (one per seed), so the p99 ratios are paired by seed. A sanity check simulates the
benchmark's own offered rates and prints the measured numbers (loadtest/results/bench.json) beside
the model's. Sensitivity: 1.6 cores (capacity lost to neighbours), 4 and 8 cores, and 10% of the
requests 4x longer (on 2 and 4 cores).

`python -m loadtest.p99_model [--quick] [--seconds S] [--seeds N] [--rate-fractions F,F,F]` prints
markdown tables and writes loadtest/results/p99_model.json. Stdlib + numpy; model_store's codec to
count tokens only; nothing from service (its runtime is what is modelled, not what is run).
"""

from __future__ import annotations

import argparse
import bisect
import functools
import heapq
import json
import math
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from loadtest.machine import tool_command, write_report

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST_SETS = (REPO_ROOT / "data/corpus/test_everyday.tsv", REPO_ROOT / "data/corpus/test_technical.tsv")
ENGINE_BENCH = REPO_ROOT / "loadtest/results/engine_bench.json"
BENCH = REPO_ROOT / "loadtest/results/bench.json"
OUT_FILE = REPO_ROOT / "loadtest/results/p99_model.json"

THREAD_FACTOR = 2.0  # single-thread CPU s of a call per second of the benchmark's two-thread wall time
# encoder_groups' measured call-cost shape (row-positions): longest x (TIMESTEP + rows) + CALL
ENCODER_TIMESTEP_COST = 3.0
ENCODER_CALL_COST = 8.0
MAX_SOURCE_TOKENS = 256  # service defaults (service/settings.py)
MAX_OUTPUT_TOKENS = 256
MAX_HOLE_SHARE = 0.25  # decode_loop: holes stay stepped until they are more than this share of the rows
INLINE_MAX_SOURCE_POSITIONS = 64  # scheduler: padded positions an inline encoder call may take
CLOSED_CLIENTS = 64  # the side-by-side's closed loop

Mode = Literal["continuous", "static"]


# --------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Sentence:
    source: int  # source tokens, </s> included
    target: int  # decoder steps: output tokens, </s> included


Request = tuple[Sentence, ...]  # one line of a test set: its sentences, decoded side by side


def capped_target(source: int, target: int) -> int:
    """Decoder steps of a sentence under the service's default length cap (2 x source + 10, <= 256)
    plus the </s> step."""
    return max(1, min(target, min(2 * source + 10, MAX_OUTPUT_TOKENS) + 1))


def _share_out(total: int, weights: Sequence[int]) -> list[int]:
    """`total` split in proportion to `weights` (largest remainders), each part at least 0."""
    whole = sum(weights)
    exact = [total * w / whole for w in weights]
    parts = [math.floor(x) for x in exact]
    for i in sorted(range(len(weights)), key=lambda i: parts[i] - exact[i])[: total - sum(parts)]:
        parts[i] += 1
    return parts


def load_requests(paths: Sequence[Path] = TEST_SETS, store: Path | None = None) -> list[Request]:
    """The test sets' lines as requests of (source, target) token counts, counted with the shipped
    model's codec (the newest en-de in model_store/)."""
    from model_store.codec import Codec
    from model_store.manifest import read_manifest, resolve_artifact
    from model_store.sentences import split_sentences

    artifact = resolve_artifact(store or REPO_ROOT / "model_store", "en-de", None)
    codec = Codec(artifact / read_manifest(artifact).tokenizer_file)
    requests: list[Request] = []
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            fields = line.split("\t")
            if len(fields) < 2 or not fields[0].strip():
                continue
            english = [s.text for s in split_sentences(fields[0].strip()) if s.text.strip()]
            german = [s.text for s in split_sentences(fields[1].strip()) if s.text.strip()]
            sources = [min(len(codec.encode(s)) + 1, MAX_SOURCE_TOKENS) for s in english]
            if len(german) == len(english):
                pieces = [len(codec.encode(g)) for g in german]
            else:
                pieces = _share_out(len(codec.encode(fields[1].strip())), sources)
            requests.append(tuple(Sentence(s, capped_target(s, p + 1)) for s, p in zip(sources, pieces, strict=True)))
    return requests


def lengthen(request: Request, factor: int) -> Request:
    """The request `factor` times as long (source and target), within the service's caps."""
    out = []
    for s in request:
        source = min(s.source * factor, MAX_SOURCE_TOKENS)
        out.append(Sentence(source, capped_target(source, s.target * factor)))
    return tuple(out)


def _monotone(values: Sequence[float]) -> list[float]:
    """Pool adjacent violators: the non-decreasing sequence nearest `values` (equal weights)."""
    blocks: list[list[float]] = []  # [mean, count]
    for v in values:
        blocks.append([v, 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            (m1, c1), (m2, c2) = blocks[-2], blocks[-1]
            blocks[-2:] = [[(m1 * c1 + m2 * c2) / (c1 + c2), c1 + c2]]
    return [m for m, c in blocks for _ in range(int(c))]


def _interpolate(x: float, xs: Sequence[int], ys: Sequence[float]) -> float:
    """Piecewise linear through (xs, ys), extended linearly past both ends."""
    i = min(max(bisect.bisect_left(xs, x), 1), len(xs) - 1)
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return max(0.0, y0 + (y1 - y0) * (x - x0) / (x1 - x0))


def _encoder_shape(longest: int, rows: int) -> float:
    return longest * (ENCODER_TIMESTEP_COST + rows) + ENCODER_CALL_COST


@dataclass(frozen=True)
class Costs:
    """Single-thread CPU seconds of one encoder call and one decoder step."""

    batches: tuple[int, ...]
    encoder_s: tuple[float, ...]  # one call of `batch` rows at `reference_source` tokens
    step_s: tuple[float, ...]  # one decoder step of `batch` rows
    reference_source: int

    def encoder(self, longest: int, rows: int) -> float:
        base = _interpolate(rows, self.batches, self.encoder_s)
        return base * _encoder_shape(longest, rows) / _encoder_shape(self.reference_source, rows)

    def step(self, rows: int) -> float:
        return _interpolate(rows, self.batches, self.step_s) if rows > 0 else 0.0

    @staticmethod
    def from_engine_bench(path: Path = ENGINE_BENCH, thread_factor: float = THREAD_FACTOR,
                          variant: str = "fp32") -> Costs:
        document = json.loads(path.read_text(encoding="utf-8"))
        rows = sorted(document["variants"][variant]["rows"], key=lambda r: r["batch"])
        encoder = _monotone([r["encoder_ms"] for r in rows])
        step = _monotone([r["decoder_step_ms"] for r in rows])
        return Costs(tuple(int(r["batch"]) for r in rows), tuple(thread_factor * e / 1000 for e in encoder),
                     tuple(thread_factor * s / 1000 for s in step), int(document["sentences"]["source_tokens"]))

    @staticmethod
    def linear(encoder_call_s: float, encoder_row_s: float, step_s: float, step_row_s: float,
               reference_source: int = 16) -> Costs:
        """Affine costs in rows (for tests and what-ifs); the encoder scales with length as above."""
        batches = (1, 2, 4, 8, 16, 32, 64, 128, 256)
        return Costs(batches, tuple(encoder_call_s + encoder_row_s * b for b in batches),
                     tuple(step_s + step_row_s * b for b in batches), reference_source)


@dataclass(frozen=True)
class Overheads:
    """CPU seconds of the work around the model (docs/benchmarks.md)."""

    client_send_s: float = 0.0004  # the load generator: ~0.8 ms per request, 0.13 cores at 162/s
    client_receive_s: float = 0.0004
    http_in_s: float = 0.0008  # the event loop's HTTP work: 1.3 ms per request in all
    http_out_s: float = 0.0005
    admission_s: float = 0.00005  # one pass of the scheduler's loop
    handoff_s: float = 0.00015  # an encoder call's result back on the event loop, joined to its lanes
    report_s: float = 0.0001  # a decoder report resolved on the event loop
    step_python_s: float = 0.00008  # Python on a lane's thread per decoder step

    @staticmethod
    def none() -> Overheads:
        return Overheads(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class Policy:
    name: str
    mode: Mode
    max_rows: int = 64
    static_wait_s: float = 0.005
    lane_bounds: tuple[int, ...] = (32,)
    inline_max_rows: int = 4
    overheads: Overheads = field(default_factory=Overheads)


def policies() -> dict[str, Policy]:
    """The two policies as implemented and the idealized references."""
    base = Overheads()
    ideal = replace(base, admission_s=0.0, handoff_s=0.0, report_s=0.0, step_python_s=0.0)
    return {
        "continuous": Policy("continuous", "continuous"),
        "static": Policy("static", "static"),
        "continuous-ideal": Policy("continuous-ideal", "continuous", overheads=ideal),
        "continuous-cap16": Policy("continuous-cap16", "continuous", max_rows=16),
    }


# --------------------------------------------------------------------------------------------- simulator


class _Thread:
    """A FIFO server of CPU work; runnable while it has a job."""

    __slots__ = ("callback", "cpu_s", "jobs", "name", "remaining")

    def __init__(self, name: str) -> None:
        self.name = name
        self.jobs: deque[tuple[float, Callable[[], None]]] = deque()
        self.remaining = 0.0
        self.callback: Callable[[], None] | None = None
        self.cpu_s = 0.0


class _RequestState:
    __slots__ = ("arrival", "client", "decode_s", "done_at", "encode_s", "index", "pending", "queue_s")

    def __init__(self, index: int, arrival: float, pending: int, client: int) -> None:
        self.index = index
        self.arrival = arrival
        self.pending = pending  # sentences not yet answered
        self.client = client  # closed loop: the client that sent it (-1 open loop)
        self.done_at = math.nan
        # the engine's phases for its last sentence to end, as the service's Server-Timing gives them
        self.queue_s = self.encode_s = self.decode_s = math.nan


class _Ticket:
    __slots__ = ("admitted_at", "encoded_at", "finished_at", "first_step_at", "lane", "request", "sentence",
                 "submitted_at")

    def __init__(self, request: _RequestState, sentence: Sentence, lane: int, now: float) -> None:
        self.request = request
        self.sentence = sentence
        self.lane = lane
        self.submitted_at = now
        self.admitted_at = math.nan
        self.encoded_at = math.nan
        self.first_step_at = math.nan
        self.finished_at = math.nan


class _Lane:
    __slots__ = ("holes", "inbox", "index", "live", "live_stepped", "rows", "running", "steps", "thread")

    def __init__(self, index: int) -> None:
        self.index = index
        self.thread = _Thread(f"decoder-lane-{index}")
        self.inbox: list[_Ticket] = []
        self.running: list[tuple[int, int, _Ticket]] = []  # heap of (finishing step, tie, ticket)
        self.steps = 0  # steps completed
        self.live = 0
        self.rows = 0  # stepped rows: live rows + holes
        self.holes = 0
        self.live_stepped = 0  # live rows summed over steps (the service's rows per decoder step)


@dataclass
class RunResult:
    latencies_s: list[float]  # requests arriving in the measured window, in arrival order
    throughput_per_s: float  # requests answered per second in the window
    cpu_s_per_request: dict[str, float]  # by thread, over the window
    utilization: float  # CPU used / cores available, over the window
    rows_per_step: float  # live rows per decoder step, every lane's steps
    rows_per_encoder_call: float
    requests: int
    slowest: dict[str, float]  # the slowest 1%: mean ms of latency, queue, encode, decode, other
    tickets: list[_Ticket] = field(default_factory=list, repr=False)

    def percentile_ms(self, q: float) -> float:
        return 1000 * float(np.percentile(self.latencies_s, q)) if self.latencies_s else math.nan

    def summary(self) -> dict[str, float]:
        return {
            "p50_ms": self.percentile_ms(50),
            "p95_ms": self.percentile_ms(95),
            "p99_ms": self.percentile_ms(99),
            "mean_ms": 1000 * statistics.fmean(self.latencies_s) if self.latencies_s else math.nan,
            "throughput_per_s": self.throughput_per_s,
            "utilization": self.utilization,
            "cpu_ms_per_request": 1000 * sum(self.cpu_s_per_request.values()),
            "server_cpu_ms_per_request": 1000 * sum(v for k, v in self.cpu_s_per_request.items() if k != "client"),
            "rows_per_step": self.rows_per_step,
            "rows_per_encoder_call": self.rows_per_encoder_call,
            "requests": float(self.requests),
        } | {f"slowest_1pct_{k}_ms": v for k, v in self.slowest.items()}


def _lane_of(source: int, bounds: Sequence[int]) -> int:
    return bisect.bisect_left(bounds, source)


def encoder_calls(lengths: Sequence[int], lane_bounds: Sequence[int]) -> list[list[int]]:
    """Indices into `lengths` grouped into encoder calls as the service groups them: by lane, then
    within a lane the runs of the sorted lengths of least total cost under the call-cost shape
    (a dynamic program over the distinct lengths)."""
    by_lane: dict[int, list[int]] = {}
    for i, length in enumerate(lengths):
        by_lane.setdefault(_lane_of(length, lane_bounds), []).append(i)
    calls: list[list[int]] = []
    for lane in sorted(by_lane):
        order = sorted(by_lane[lane], key=lambda i: lengths[i])
        ends = [k + 1 for k in range(len(order)) if k + 1 == len(order) or lengths[order[k + 1]] != lengths[order[k]]]
        cuts = [0, *ends]
        best = [0.0] + [math.inf] * len(ends)
        start = [0] * len(cuts)
        for k in range(1, len(cuts)):
            longest = lengths[order[cuts[k] - 1]]
            for j in range(k):
                cost = best[j] + _encoder_shape(longest, cuts[k] - cuts[j])
                if cost < best[k]:
                    best[k], start[k] = cost, j
        groups = []
        k = len(cuts) - 1
        while k > 0:
            groups.append(order[cuts[start[k]]: cuts[k]])
            k = start[k]
        calls.extend(reversed(groups))
    return calls


class Simulation:
    """One server (policy, costs, cores) under one arrival process; run once."""

    def __init__(self, policy: Policy, costs: Costs, cores: float = 2.0, keep_tickets: bool = False) -> None:
        if cores <= 0:
            raise ValueError("cores must be positive")
        self.policy = policy
        self.costs = costs
        self.cores = cores
        self.keep_tickets = keep_tickets
        self.now = 0.0
        self._seq = 0
        self._events: list[tuple[float, int, Callable[[], None]]] = []
        self.client = _Thread("client")
        self.loop = _Thread("event-loop")
        self.encoder = _Thread("encoder")
        self.lanes = [_Lane(i) for i in range(len(policy.lane_bounds) + 1)]
        self.threads = [self.client, self.loop, self.encoder, *(lane.thread for lane in self.lanes)]
        self._running: list[_Thread] = []
        self._step_costs: list[float] = []  # by stepped rows: the cost curve + Python
        self.work_submitted = 0.0
        # scheduler state
        self.waiting: deque[_Ticket] = deque()
        self.held_rows = 0
        self.decoding = 0  # tickets handed to lanes, not yet reported ended
        self.encoding = False
        self.wake_pending = False
        self.timer_generation = 0
        self.batch_answers: list[_Ticket] = []
        self.max_held_rows = 0
        self.encoder_calls = 0
        self.encoder_rows = 0
        self.lane_steps = 0
        self.tickets: list[_Ticket] = []
        self.finished: list[_RequestState] = []
        self.on_done: Callable[[_RequestState], None] | None = None

    # ------------------------------------------------------------------ the CPU

    def submit(self, thread: _Thread, work: float, callback: Callable[[], None]) -> None:
        """Queue `work` CPU seconds on `thread`; `callback` runs when it is done."""
        self.work_submitted += work
        if thread.callback is None:
            thread.remaining, thread.callback = work, callback
            self._running.append(thread)
        else:
            thread.jobs.append((work, callback))

    def at(self, when: float, callback: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._events, (when, self._seq, callback))

    def run(self, until: float = math.inf) -> None:
        """Advance until `until` or, with nothing left to do (no event, no runnable thread), stop.
        Processor sharing: the runnable threads progress at min(1, cores / runnable) each."""
        events, running, cores = self._events, self._running, self.cores
        pop = heapq.heappop
        while True:
            n = len(running)
            if n:
                share = 1.0 if n <= cores else cores / n
                least = math.inf
                for thread in running:
                    if thread.remaining < least:
                        least = thread.remaining
                t_done = self.now + least / share
            else:
                share, least, t_done = 0.0, 0.0, math.inf
            t_event = events[0][0] if events else math.inf
            t = t_done if t_done < t_event else t_event
            if t > until:
                t = until
            if t == math.inf:
                return
            done = (t - self.now) * share
            if done > 0:
                for thread in running:
                    thread.remaining -= done
                    thread.cpu_s += done
            self.now = t
            if t == until and t < t_done and t < t_event:
                return
            if t_event <= t_done:
                pop(events)[2]()
                continue
            # The thread(s) whose job set t_done end now (whatever rounding left of their work).
            limit = least - done + 1e-12
            for thread in [th for th in running if th.remaining <= limit]:
                callback = thread.callback
                assert callback is not None
                if thread.jobs:
                    thread.remaining, thread.callback = thread.jobs.popleft()
                else:
                    thread.remaining, thread.callback = 0.0, None
                    running.remove(thread)
                callback()

    # ------------------------------------------------------------------ a request's path

    def arrive(self, request: Request, index: int, client: int = -1) -> _RequestState:
        """A request is scheduled now: the client sends it, the event loop parses it and submits
        its sentences to the scheduler."""
        state = _RequestState(index, self.now, len(request), client)
        o = self.policy.overheads
        self.submit(self.client, o.client_send_s,
                     lambda: self.submit(self.loop, o.http_in_s, lambda: self._enqueue(state, request)))
        return state

    def _enqueue(self, state: _RequestState, request: Request) -> None:
        for sentence in request:
            ticket = _Ticket(state, sentence, _lane_of(sentence.source, self.policy.lane_bounds), self.now)
            self.waiting.append(ticket)
            if self.keep_tickets:
                self.tickets.append(ticket)
        self._wake()

    def _wake(self) -> None:
        if not self.wake_pending:
            self.wake_pending = True
            self.submit(self.loop, self.policy.overheads.admission_s, self._admission)

    def _timer(self, generation: int) -> None:
        if generation == self.timer_generation:
            self._wake()

    def _admission(self) -> None:
        """One pass of Scheduler._run: admit what fits and start encoding it."""
        self.wake_pending = False
        policy = self.policy
        if self.encoding or (policy.mode == "static" and self.held_rows):
            return
        waiting = self.waiting
        if not waiting:
            return
        if policy.mode == "static":
            fill_by = waiting[0].submitted_at + policy.static_wait_s
            if len(waiting) < policy.max_rows and fill_by - self.now > 1e-12:
                self.timer_generation += 1
                generation = self.timer_generation
                self.at(fill_by, lambda: self._timer(generation))
                return
        free = policy.max_rows - self.held_rows
        admitted = [waiting.popleft() for _ in range(min(free, len(waiting)))]
        if not admitted:
            return
        inline = self.held_rows == 0 and len(admitted) <= policy.inline_max_rows and not waiting
        self.held_rows += len(admitted)
        self.max_held_rows = max(self.max_held_rows, self.held_rows)
        self.encoding = True
        for ticket in admitted:
            ticket.admitted_at = self.now
        lengths = [t.sentence.source for t in admitted]
        calls = encoder_calls(lengths, policy.lane_bounds)
        work = 0.0
        positions = 0
        for call in calls:
            longest = max(lengths[i] for i in call)
            work += self.costs.encoder(longest, len(call))
            positions += longest * len(call)
        self.encoder_calls += len(calls)
        self.encoder_rows += len(admitted)
        o = policy.overheads
        if inline and positions <= INLINE_MAX_SOURCE_POSITIONS:
            self.submit(self.loop, work + o.handoff_s, lambda: self._encoded(admitted))
        else:
            self.submit(self.encoder, work,
                         lambda: self.submit(self.loop, o.handoff_s, lambda: self._encoded(admitted)))

    def _encoded(self, admitted: list[_Ticket]) -> None:
        """On the event loop: hand the encoded requests to their lanes."""
        self.encoding = False
        self.decoding += len(admitted)
        touched = set()
        for ticket in admitted:
            ticket.encoded_at = self.now
            lane = self.lanes[ticket.lane]
            lane.inbox.append(ticket)
            touched.add(ticket.lane)
        for index in sorted(touched):
            lane = self.lanes[index]
            if lane.thread.callback is None:
                self._start_step(lane)
        self._wake()

    def _start_step(self, lane: _Lane) -> None:
        """The lane's thread takes its newcomers and starts a step over its rows."""
        if lane.inbox:
            newcomers, lane.inbox = lane.inbox, []
            for ticket in newcomers:
                ticket.first_step_at = self.now
                self._seq += 1
                heapq.heappush(lane.running, (lane.steps + ticket.sentence.target, self._seq, ticket))
            filled = min(len(newcomers), lane.holes)
            lane.holes -= filled
            lane.rows += len(newcomers) - filled
            lane.live += len(newcomers)
        if lane.live == 0:
            return
        lane.live_stepped += lane.live
        self.lane_steps += 1
        rows = lane.rows
        step_costs = self._step_costs
        while rows >= len(step_costs):
            step_costs.append(self.costs.step(len(step_costs)) + self.policy.overheads.step_python_s)
        work = step_costs[rows]
        self.submit(lane.thread, work, lambda: self._step_done(lane))

    def _step_done(self, lane: _Lane) -> None:
        lane.steps += 1
        ended: list[_Ticket] = []
        running = lane.running
        while running and running[0][0] <= lane.steps:
            ticket = heapq.heappop(running)[2]
            ticket.finished_at = self.now
            ended.append(ticket)
        if ended:
            lane.live -= len(ended)
            lane.holes += len(ended)
            if lane.live == 0:
                lane.rows = lane.holes = 0
            elif lane.holes > MAX_HOLE_SHARE * lane.rows:
                lane.rows, lane.holes = lane.live, 0
            self.submit(self.loop, self.policy.overheads.report_s, lambda: self._deliver(ended))
        if lane.live or lane.inbox:
            self._start_step(lane)

    def _deliver(self, ended: list[_Ticket]) -> None:
        """A decoder report on the event loop: rows freed, answers resolved (static: held until the
        batch's last row has ended)."""
        self.held_rows -= len(ended)
        self.decoding -= len(ended)
        if self.policy.mode == "static":
            self.batch_answers.extend(ended)
            if not self.decoding:
                answers, self.batch_answers = self.batch_answers, []
                for ticket in answers:
                    self._answer(ticket)
        else:
            for ticket in ended:
                self._answer(ticket)
        self._wake()

    def _answer(self, ticket: _Ticket) -> None:
        state = ticket.request
        state.pending -= 1
        if state.pending:
            return
        state.queue_s = ticket.admitted_at - ticket.submitted_at
        state.encode_s = ticket.encoded_at - ticket.admitted_at
        state.decode_s = ticket.finished_at - ticket.encoded_at
        o = self.policy.overheads
        self.submit(self.loop, o.http_out_s,
                     lambda: self.submit(self.client, o.client_receive_s, lambda: self._done(state)))

    def _done(self, state: _RequestState) -> None:
        state.done_at = self.now
        self.finished.append(state)
        if self.on_done is not None:
            self.on_done(state)

    # ------------------------------------------------------------------ bookkeeping

    def cpu_snapshot(self) -> dict[str, float]:
        out = {"client": self.client.cpu_s, "event_loop": self.loop.cpu_s, "encoder": self.encoder.cpu_s,
               "decoder_lanes": 0.0}
        for lane in self.lanes:
            out["decoder_lanes"] += lane.thread.cpu_s
        return out

    def idle(self) -> bool:
        return not self._running and not self._events and not self.waiting


def _result(sim: Simulation, states: list[_RequestState], window: tuple[float, float],
            cpu: tuple[dict[str, float], dict[str, float]]) -> RunResult:
    start, end = window
    measured = [s for s in states if start <= s.arrival < end and not math.isnan(s.done_at)]
    answered = sum(1 for s in sim.finished if start <= s.done_at < end)
    span = end - start
    used = {k: cpu[1][k] - cpu[0][k] for k in cpu[0]}
    per_request = {k: v / answered if answered else math.nan for k, v in used.items()}
    steps = sum(lane.steps for lane in sim.lanes)
    slowest = {k: math.nan for k in ("latency", "queue", "encode", "decode", "other")}
    if measured:
        cut = np.percentile([s.done_at - s.arrival for s in measured], 99)
        tail = [s for s in measured if s.done_at - s.arrival >= cut]
        latency = statistics.fmean(s.done_at - s.arrival for s in tail)
        queue = statistics.fmean(s.queue_s for s in tail)
        encode = statistics.fmean(s.encode_s for s in tail)
        decode = statistics.fmean(s.decode_s for s in tail)
        slowest = {"latency": 1000 * latency, "queue": 1000 * queue, "encode": 1000 * encode,
                   "decode": 1000 * decode, "other": 1000 * (latency - queue - encode - decode)}
    return RunResult(
        latencies_s=[s.done_at - s.arrival for s in measured],
        throughput_per_s=answered / span,
        cpu_s_per_request=per_request,
        utilization=sum(used.values()) / (span * sim.cores),
        rows_per_step=sum(lane.live_stepped for lane in sim.lanes) / steps if steps else 0.0,
        slowest=slowest,
        rows_per_encoder_call=sim.encoder_rows / sim.encoder_calls if sim.encoder_calls else 0.0,
        requests=len(measured),
        tickets=sim.tickets,
    )


def run_schedule(policy: Policy, costs: Costs, cores: float, schedule: Sequence[tuple[float, Request]],
                 window: tuple[float, float] | None = None, keep_tickets: bool = False) -> RunResult:
    """Open loop: each (time, request) is sent at its time whatever the answers do; runs until every
    request is answered. `window`: the arrivals (and answers) measured; default all of them."""
    sim = Simulation(policy, costs, cores, keep_tickets=keep_tickets)
    ordered = sorted(schedule, key=lambda item: item[0])
    if window is None:
        window = (0.0, (ordered[-1][0] if ordered else 0.0) + 1e-9)
    states: list[_RequestState] = []
    snapshots: list[dict[str, float]] = []
    position = 0

    def send() -> None:  # one arrival event pending at a time: the heap stays small
        nonlocal position
        request = ordered[position][1]
        states.append(sim.arrive(request, position))
        position += 1
        if position < len(ordered):
            sim.at(ordered[position][0], send)

    if ordered:
        sim.at(ordered[0][0], send)
    sim.at(window[0], lambda: snapshots.append(sim.cpu_snapshot()))
    sim.at(window[1], lambda: snapshots.append(sim.cpu_snapshot()))
    sim.run()
    assert len(snapshots) == 2
    return _result(sim, states, window, (snapshots[0], snapshots[1]))


def run_closed(policy: Policy, costs: Costs, cores: float, draw: Callable[[], Request], clients: int,
               duration_s: float, warmup_s: float) -> RunResult:
    """Closed loop: `clients` clients, each sending its next request when its last answer arrives;
    measured over [warmup_s, duration_s]."""
    sim = Simulation(policy, costs, cores)
    states: list[_RequestState] = []
    snapshots: list[dict[str, float]] = []
    counter = 0

    def send(client: int) -> None:
        nonlocal counter
        states.append(sim.arrive(draw(), counter, client))
        counter += 1

    def done(state: _RequestState) -> None:
        send(state.client)

    sim.on_done = done
    for client in range(clients):
        sim.at(0.0, functools.partial(send, client))
    sim.at(warmup_s, lambda: snapshots.append(sim.cpu_snapshot()))
    sim.run(until=duration_s)
    snapshots.append(sim.cpu_snapshot())
    return _result(sim, states, (warmup_s, duration_s), (snapshots[0], snapshots[1]))


def poisson_schedule(requests: Sequence[Request], rate_per_s: float, duration_s: float, seed: int,
                     long_share: float = 0.0, long_factor: int = 4) -> list[tuple[float, Request]]:
    """Poisson arrivals at `rate_per_s` for `duration_s`, each a request drawn uniformly (with
    replacement); a `long_share` of them `long_factor` times as long."""
    rng = np.random.default_rng(seed)
    expected = int(rate_per_s * duration_s * 1.2 + 100)
    times = np.cumsum(rng.exponential(1.0 / rate_per_s, size=expected))
    while times[-1] < duration_s:
        times = np.concatenate([times, times[-1] + np.cumsum(rng.exponential(1.0 / rate_per_s, size=expected))])
    times = times[times < duration_s]
    picks = rng.integers(0, len(requests), size=times.size)
    longer = rng.random(times.size) < long_share
    return [(float(t), lengthen(requests[i], long_factor) if is_long else requests[i])
            for t, i, is_long in zip(times.tolist(), picks.tolist(), longer.tolist(), strict=True)]


def drawer(requests: Sequence[Request], seed: int, long_share: float = 0.0,
           long_factor: int = 4) -> Callable[[], Request]:
    rng = np.random.default_rng(seed)

    def draw() -> Request:
        request = requests[int(rng.integers(0, len(requests)))]
        return lengthen(request, long_factor) if long_share and rng.random() < long_share else request

    return draw


# --------------------------------------------------------------------------------------------- experiments


@dataclass(frozen=True)
class Scenario:
    name: str
    cores: float = 2.0
    long_share: float = 0.0  # share of requests made `long_factor` times as long
    long_factor: int = 4


BASE = Scenario("2 cores, test-set lengths (as measured)")
SENSITIVITY = (
    Scenario("1.6 cores (0.4 of a core lost, e.g. to the VM's neighbours)", cores=1.6),
    Scenario("4 cores", cores=4.0),
    Scenario("8 cores", cores=8.0),
    Scenario("10% of requests 4x longer, 2 cores", long_share=0.1),
    Scenario("10% of requests 4x longer, 4 cores", cores=4.0, long_share=0.1),
)
SENSITIVITY_POLICIES = ("continuous", "static", "continuous-ideal")
SLOWEST_PARTS = ("latency", "queue", "encode", "decode", "other")


PER_SEED_KEYS = ("p50_ms", "p99_ms", "mean_ms")  # kept seed by seed in the JSON; the rest as median (min-max)


def spread(values: Sequence[float], keep_values: bool = True) -> dict[str, Any]:
    finite = [v for v in values if not math.isnan(v)]
    out: dict[str, Any] = {"median": math.nan, "min": math.nan, "max": math.nan}
    if finite:
        out = {"median": statistics.median(finite), "min": min(finite), "max": max(finite)}
    return out | ({"values": list(values)} if keep_values else {})


def saturation(policy: Policy, costs: Costs, scenario: Scenario, requests: Sequence[Request], seconds: float,
               seed: int) -> dict[str, float]:
    """Closed loop, 64 clients (the side-by-side benchmark's saturation run)."""
    draw = drawer(requests, seed, scenario.long_share, scenario.long_factor)
    return run_closed(policy, costs, scenario.cores, draw, CLOSED_CLIENTS, seconds, min(5.0, seconds / 5)).summary()


def open_loop(policy_names: Sequence[str], costs: Costs, scenario: Scenario, requests: Sequence[Request],
              rate: float, seconds: float, seeds: Sequence[int]) -> dict[str, Any]:
    """Every policy on the same Poisson schedules (one per seed); ratios to static paired by seed."""
    table = policies()
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in policy_names}
    window = (min(10.0, seconds / 10), seconds)
    for seed in seeds:
        schedule = poisson_schedule(requests, rate, seconds, seed, scenario.long_share, scenario.long_factor)
        for name in policy_names:
            runs[name].append(run_schedule(table[name], costs, scenario.cores, schedule, window).summary())
    out: dict[str, Any] = {"offered_per_s": rate, "policies": {}, "p99_ratio_to_static": {},
                           "mean_ratio_to_static": {}}
    for name, summaries in runs.items():
        out["policies"][name] = {key: spread([s[key] for s in summaries], key in PER_SEED_KEYS)
                                 for key in summaries[0]}
    if "static" in runs:
        for name in policy_names:
            if name == "static":
                continue
            for key, ratios in (("p99_ms", out["p99_ratio_to_static"]), ("mean_ms", out["mean_ratio_to_static"])):
                ratios[name] = spread([mine[key] / static[key]
                                       for mine, static in zip(runs[name], runs["static"], strict=True)])
    return out


def measured_numbers(path: Path = BENCH) -> dict[str, Any] | None:
    """The side-by-side benchmark's numbers for static and continuous (bench.json): closed loop and
    each open-loop rate, medians (min-max) over its repeats."""
    if not path.is_file():
        return None
    document = json.loads(path.read_text(encoding="utf-8"))
    keys = ("sentences_per_s", "p50_ms", "p99_ms", "mean_ms", "server_cpu_ms_per_sentence", "rows_per_decoder_step")
    out: dict[str, Any] = {"file": str(path), "date_utc": document.get("machine", {}).get("date_utc"),
                           "closed": {}, "open": []}
    by_rate: dict[float, dict[str, Any]] = {}
    for name in ("static", "continuous"):
        config = document["configs"][name]
        out["closed"][name] = {k: config["closed"]["summary"][k] for k in keys if k in config["closed"]["summary"]}
        for block in [config["open"], *config.get("open_other", [])]:
            numbers = {k: block["summary"][k] for k in keys if k in block["summary"]}
            slow = [run["slowest_1pct_ms"] for run in block.get("runs", []) if run.get("slowest_1pct_ms")]
            if slow:
                numbers["slowest_1pct_ms"] = {k: statistics.median(run[k] for run in slow) for k in SLOWEST_PARTS}
            rate = float(block["offered_per_s"])
            by_rate.setdefault(round(rate, 3), {"offered_per_s": rate})[name] = numbers
    out["open"] = list(by_rate.values())
    return out


def experiment(seconds: float, seeds: Sequence[int], fractions: Sequence[float], thread_factor: float,
               sentences: Sequence[Path] = TEST_SETS, store: Path | None = None, sensitivity: bool = True,
               log: Callable[[str], None] = print) -> dict[str, Any]:
    started = time.perf_counter()
    requests = load_requests(sentences, store)
    costs = Costs.from_engine_bench(thread_factor=thread_factor)
    table = policies()
    closed_s = min(seconds, 200.0)
    all_sentences = [s for r in requests for s in r]
    document: dict[str, Any] = {
        "kind": "p99_model",
        "seconds": seconds, "seeds": list(seeds), "closed_loop_seconds": closed_s, "rate_fractions": list(fractions),
        "inputs": {
            "lengths": {
                "source": " + ".join(_shown(p) for p in sentences),
                "requests": len(requests), "sentences": len(all_sentences),
                "source_tokens_mean": statistics.fmean(s.source for s in all_sentences),
                "decoder_steps_mean_per_sentence": statistics.fmean(s.target for s in all_sentences),
                "decoder_steps_mean_per_request": statistics.fmean(sum(s.target for s in r) for r in requests),
                "target_proxy": "German reference pieces + 1 (</s>), per sentence as the service splits a line",
            },
            "costs": {
                "source": _shown(ENGINE_BENCH) + " (fp32; made monotone, interpolated in rows)",
                "thread_factor": thread_factor,
                "reference_source_tokens": costs.reference_source,
                "single_thread_ms": [{"batch": b, "encoder_ms": 1000 * e, "step_ms": 1000 * st}
                                     for b, e, st in zip(costs.batches, costs.encoder_s, costs.step_s, strict=True)],
            },
            "overheads_ms": {k: 1000 * v for k, v in vars(Overheads()).items()},
            "policies": {name: {"mode": p.mode, "max_rows": p.max_rows, "static_wait_ms": 1000 * p.static_wait_s,
                                "lane_bounds": list(p.lane_bounds), "inline_max_rows": p.inline_max_rows,
                                "overheads_ms": {k: 1000 * v for k, v in vars(p.overheads).items()}}
                         for name, p in table.items()},
        },
    }

    def by_fraction(scenario: Scenario, names: Sequence[str]) -> dict[str, Any]:
        log(f"[p99-model] {scenario.name}: saturation (closed loop, {CLOSED_CLIENTS} clients)")
        sat = {name: saturation(table[name], costs, scenario, requests, closed_s, seeds[0])
               for name in ("static", "continuous")}
        static_rate = sat["static"]["throughput_per_s"]
        loads = []
        for fraction in fractions:
            log(f"[p99-model] {scenario.name}: {fraction:g} x static's saturated {static_rate:.0f}/s")
            loads.append({"fraction": fraction} | open_loop(names, costs, scenario, requests, fraction * static_rate,
                                                             seconds, seeds))
        return {"scenario": vars(scenario), "saturated": sat,
                "continuous_over_static_saturated": sat["continuous"]["throughput_per_s"] / static_rate,
                "loads": loads}

    main = by_fraction(BASE, tuple(table))
    document["main"] = main
    # Sanity: the side-by-side benchmark's points beside the model at the same offered rates.
    measured = measured_numbers()
    sanity: dict[str, Any] = {"measured": measured, "closed": main["saturated"], "open": []}
    for point in measured["open"] if measured else []:
        log(f"[p99-model] sanity: the benchmark's {point['offered_per_s']:.1f}/s")
        sanity["open"].append(open_loop(("static", "continuous"), costs, BASE, requests, point["offered_per_s"],
                                        seconds, seeds))
    document["sanity"] = sanity
    document["sensitivity"] = [by_fraction(s, SENSITIVITY_POLICIES) for s in SENSITIVITY] if sensitivity else []
    document["verdict"] = verdict(document)
    document["runtime_s"] = time.perf_counter() - started
    return document


def verdict(document: dict[str, Any]) -> list[dict[str, Any]]:
    """For each scenario and continuous variant: the median p99 ratio at every load, and whether it
    is <= 0.5 at all of them (the issue's target)."""
    out = []
    for block in [document["main"], *document["sensitivity"]]:
        names = [n for n in block["loads"][0]["p99_ratio_to_static"]] if block["loads"] else []
        for name in names:
            medians = [load["p99_ratio_to_static"][name]["median"] for load in block["loads"]]
            out.append({"scenario": block["scenario"]["name"], "policy": name, "p99_ratio_medians": medians,
                        "target_met_at_every_load": all(m <= 0.5 for m in medians),
                        "throughput_not_lower": block["continuous_over_static_saturated"] >= 1.0})
    return out


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------------------------- report


def _cell(cell: dict[str, Any], digits: int = 0) -> str:
    return f"{cell['median']:.{digits}f} ({cell['min']:.{digits}f}-{cell['max']:.{digits}f})"


def _real(block: dict[str, Any] | None, key: str, digits: int = 0, spread_too: bool = True) -> str:
    if not block or key not in block:
        return "n/a"
    value = block[key]
    return _cell(value, digits) if spread_too else f"{value['median']:.{digits}f}"


def markdown(document: dict[str, Any]) -> str:
    inputs = document["inputs"]
    lengths, costs = inputs["lengths"], inputs["costs"]
    shown_costs = ", ".join(f"{c['batch']}: {c['encoder_ms']:.2f}/{c['step_ms']:.2f}"
                            for c in costs["single_thread_ms"] if c["batch"] <= 64)
    lines = [
        f"Lengths: {lengths['requests']} requests ({lengths['sentences']} sentences) from {lengths['source']}; "
        f"source tokens mean {lengths['source_tokens_mean']:.1f}; decoder steps mean "
        f"{lengths['decoder_steps_mean_per_request']:.1f} per request ({lengths['target_proxy']}).",
        f"Costs: {costs['source']} x {costs['thread_factor']:g} for one thread; single-thread ms, encoder call at "
        f"{costs['reference_source_tokens']} tokens / decoder step, by rows: {shown_costs}.",
        "Other CPU (ms): " + ", ".join(f"{k.removesuffix('_s')} {v:g}" for k, v in inputs["overheads_ms"].items())
        + ".",
        f"Open loop: {document['seconds']:g} simulated s per run, seeds {document['seeds']} (cells: median "
        f"(min-max) over seeds); closed loop: {CLOSED_CLIENTS} clients, {document['closed_loop_seconds']:g} s.",
        "",
    ]
    sanity, measured = document["sanity"], document["sanity"]["measured"]
    if measured:
        lines += [f"### Sanity check: the model beside the side-by-side benchmark ({measured['date_utc']})", "",
                  "| loop | config | offered/s | served/s model / measured | p50 ms model | measured | p99 ms model | "
                  "measured | server CPU ms/request model / measured | rows/step model / measured |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for name in ("static", "continuous"):
            m, real = sanity["closed"][name], measured["closed"].get(name)
            cpu = _real(real, "server_cpu_ms_per_sentence", 1, False)
            lines.append(f"| closed | {name} | - | {m['throughput_per_s']:.0f} / {_real(real, 'sentences_per_s')} | "
                         f"{m['p50_ms']:.0f} | {_real(real, 'p50_ms')} | {m['p99_ms']:.0f} | {_real(real, 'p99_ms')} | "
                         f"{m['server_cpu_ms_per_request']:.1f} / {cpu} | "
                         f"{m['rows_per_step']:.1f} / {_real(real, 'rows_per_decoder_step', 1, False)} |")
        for point, model in zip(measured["open"], sanity["open"], strict=True):
            for name in ("static", "continuous"):
                m, real = model["policies"][name], point.get(name)
                cpu = m["server_cpu_ms_per_request"]["median"]
                lines.append(
                    f"| open | {name} | {point['offered_per_s']:.1f} | {m['throughput_per_s']['median']:.0f} / "
                    f"{_real(real, 'sentences_per_s', 0, False)} | {_cell(m['p50_ms'])} | {_real(real, 'p50_ms')} | "
                    f"{_cell(m['p99_ms'])} | {_real(real, 'p99_ms')} | {cpu:.1f} / "
                    f"{_real(real, 'server_cpu_ms_per_sentence', 1, False)} | {m['rows_per_step']['median']:.1f} / "
                    f"{_real(real, 'rows_per_decoder_step', 1, False)} |")
        lines += ["", "| offered/s | continuous / static p99, model | measured | mean, model | measured |",
                  "|---|---|---|---|---|"]
        for point, model in zip(measured["open"], sanity["open"], strict=True):
            real_p99 = real_mean = "n/a"
            if "static" in point and "continuous" in point:
                real_p99 = f"{point['continuous']['p99_ms']['median'] / point['static']['p99_ms']['median']:.2f}"
                real_mean = f"{point['continuous']['mean_ms']['median'] / point['static']['mean_ms']['median']:.2f}"
            lines.append(f"| {point['offered_per_s']:.1f} | {_cell(model['p99_ratio_to_static']['continuous'], 2)} | "
                         f"{real_p99} | {_cell(model['mean_ratio_to_static']['continuous'], 2)} | {real_mean} |")
        lines += ["", "The slowest 1% (mean ms; queue, encode, decode: the engine's, for the request's last sentence; "
                  "other: the rest), model / measured:", "",
                  "| config | offered/s | " + " | ".join(SLOWEST_PARTS) + " |",
                  "|---|---|" + "---|" * len(SLOWEST_PARTS)]
        for point, model in zip(measured["open"], sanity["open"], strict=True):
            for name in ("static", "continuous"):
                m, real = model["policies"][name], (point.get(name) or {}).get("slowest_1pct_ms", {})
                cells = [f"{m[f'slowest_1pct_{k}_ms']['median']:.0f} / "
                         + (f"{real[k]:.0f}" if k in real else "n/a") for k in SLOWEST_PARTS]
                lines.append(f"| {name} | {point['offered_per_s']:.1f} | " + " | ".join(cells) + " |")
        lines.append("")
    main = document["main"]
    sat = main["saturated"]
    lines += [f"### {main['scenario']['name']}: loads as fractions of the model's static saturated rate", "",
              f"Saturated (closed loop): static {sat['static']['throughput_per_s']:.0f}/s, continuous "
              f"{sat['continuous']['throughput_per_s']:.0f}/s (continuous / static "
              f"{main['continuous_over_static_saturated']:.2f}).", "",
              "| load | offered/s | policy | p50 ms | p99 ms | p99 / static's | mean / static's | utilization | "
              "server CPU ms/request |", "|---|---|---|---|---|---|---|---|---|"]
    for load in main["loads"]:
        for name, cell in load["policies"].items():
            p99_ratio, mean_ratio = load["p99_ratio_to_static"].get(name), load["mean_ratio_to_static"].get(name)
            lines.append(f"| {load['fraction']:g} | {load['offered_per_s']:.0f} | {name} | {_cell(cell['p50_ms'])} | "
                         f"{_cell(cell['p99_ms'])} | {_cell(p99_ratio, 2) if p99_ratio else '-'} | "
                         f"{_cell(mean_ratio, 2) if mean_ratio else '-'} | {cell['utilization']['median']:.2f} | "
                         f"{cell['server_cpu_ms_per_request']['median']:.1f} |")
    if document["sensitivity"]:
        lines += ["", "### Sensitivity: continuous / static p99 (median (min-max) over seeds)", "",
                  "| scenario | saturated/s static, continuous | load | offered/s | static p99 ms | "
                  "continuous p99 ms | continuous / static | continuous-ideal / static |",
                  "|---|---|---|---|---|---|---|---|"]
        for block in [main, *document["sensitivity"]]:
            sat = block["saturated"]
            for load in block["loads"]:
                pol, ratio = load["policies"], load["p99_ratio_to_static"]
                lines.append(f"| {block['scenario']['name']} | {sat['static']['throughput_per_s']:.0f}, "
                             f"{sat['continuous']['throughput_per_s']:.0f} | {load['fraction']:g} | "
                             f"{load['offered_per_s']:.0f} | {_cell(pol['static']['p99_ms'])} | "
                             f"{_cell(pol['continuous']['p99_ms'])} | {_cell(ratio['continuous'], 2)} | "
                             f"{_cell(ratio['continuous-ideal'], 2)} |")
    lines += ["", "Target (continuous / static p99 <= 0.5 at every load, medians; and no lower saturated throughput):"]
    for row in document["verdict"]:
        medians = ", ".join(f"{m:.2f}" for m in row["p99_ratio_medians"])
        met = "met" if row["target_met_at_every_load"] and row["throughput_not_lower"] else "missed"
        lines.append(f"- {row['scenario']}, {row['policy']}: {medians}: {met}")
    return "\n".join(lines)


def _json_safe(value: Any) -> Any:
    """NaN and infinities as null, floats to 6 significant digits."""
    if isinstance(value, float):
        return float(f"{value:.6g}") if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate-fractions", default="0.35,0.7,0.84",
                        help="open-loop loads as fractions of the model's static saturated rate")
    parser.add_argument("--seconds", type=float,
                        help="simulated seconds per open-loop run (default 300, quick 8; at 300 s the seeds' p99 "
                             "ratios agree within ~0.03); the closed loop runs min(seconds, 200)")
    parser.add_argument("--seeds", type=int, help="repeats (Poisson schedules) per load (default 3, quick 1)")
    parser.add_argument("--thread-factor", type=float, default=THREAD_FACTOR,
                        help="single-thread CPU seconds per second of the engine benchmark's (two-thread) wall time")
    parser.add_argument("--sentences", type=Path, action="append",
                        help="a tab-separated English<TAB>German file (repeatable; default the two test sets)")
    parser.add_argument("--store", type=Path, help="model store with the tokenizer (default model_store/)")
    parser.add_argument("--no-sensitivity", action="store_true", help="skip the more-cores and mixed-length runs")
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke run")
    parser.add_argument("--out", type=Path, default=OUT_FILE, help="JSON results ('' to skip)")
    args = parser.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else (8.0 if args.quick else 300.0)
    seeds = list(range(args.seeds if args.seeds is not None else (1 if args.quick else 3)))
    if seconds <= 0 or not seeds:
        parser.error("--seconds and --seeds must be positive")
    fractions = [float(f) for f in args.rate_fractions.split(",") if f.strip()]
    if not fractions or min(fractions) <= 0:
        parser.error("--rate-fractions: positive numbers, comma-separated")
    sentences = tuple(args.sentences or TEST_SETS)
    missing = [str(p) for p in sentences if not p.is_file()]
    if missing:
        parser.error(f"missing {', '.join(missing)} (make data builds the test sets; or pass --sentences FILE.tsv)")
    document = experiment(seconds, seeds, fractions, args.thread_factor, sentences, args.store,
                          sensitivity=not args.no_sensitivity)
    document["quick"] = args.quick
    document["command"] = tool_command("loadtest.p99_model", argv)
    print(markdown(document))
    print(f"[p99-model] {document['runtime_s']:.1f} s")
    if str(args.out):
        write_report(args.out, _json_safe(document))
        print(f"[p99-model] wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
