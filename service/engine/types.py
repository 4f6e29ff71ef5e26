"""Plain values crossing the engine's boundary: requests, results, configuration and stats.

Pure Python + numpy; must not import fastapi, onnxruntime or prometheus_client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np

BatchingMode = Literal["continuous", "static", "off"]
BATCHING_MODES: tuple[str, ...] = ("continuous", "static", "off")
MAX_BEAM_SIZE = 8


@dataclass(frozen=True)
class SpecialIds:
    """The token ids the searches treat apart, and which tokens hold a word (for the loop rule)."""

    pad_id: int
    unk_id: int
    bos_id: int
    eos_id: int
    # Per token id: whether its piece starts a word and holds a letter (model_store.codec.word_marks).
    # A group of tokens holding a word may not come a third time in a row; empty: no such rule.
    word_marks: tuple[int, ...] = ()


DEFAULT_LENGTH_PENALTY = 1.0  # for artifacts that do not record the alpha they were evaluated with


@dataclass(frozen=True)
class TranslationRequest:
    source_ids: list[int]  # pieces + [eos], already length-checked by the API
    beam_size: int = 1  # 1..MAX_BEAM_SIZE; a beam request occupies beam_size decoder rows
    max_length: int | None = None  # cap on generated tokens (eos excluded); None: from source length
    length_penalty: float = DEFAULT_LENGTH_PENALTY  # GNMT alpha: score / ((5 + len) / 6) ** alpha
    want_attention: bool = False
    deadline: float | None = None  # time.monotonic() seconds; None: the scheduler's default timeout
    # The sentences of one HTTP request share a group: admission lets other groups go first once a
    # group holds half the batch. None: a group of its own.
    group: int | None = None
    # The translation may not end before it has written this many <unk> tokens: the source's <unk>
    # (text kept verbatim, characters the vocabulary lacks) are copied into it by attention, and a
    # translation that skipped one lost that text (a URL, a phone number). Beam search only (a greedy
    # row that may not end rambles on, so a beam of beam_size rows is searched even for 1); the API
    # asks for it only to retry a sentence that lost one. 0: no constraint.
    min_unknown_tokens: int = 0
    # Other translations wanted besides the best, the next best the beam finished (fewer when it
    # finished fewer); less than beam_size.
    alternatives: int = 0
    # When it first asked the engine (time.monotonic()); None: now. A sentence asked again after
    # waiting on an equal one decoded for another request, which failed, keeps its place in the
    # queue (ahead of what arrived meanwhile) and counts that wait as queueing.
    queued_since: float | None = None


@dataclass(frozen=True)
class TranslationResult:
    target_ids: list[int]  # without bos/eos
    # [decoder steps, len(source_ids)] float32, one row per generated token including the final eos
    # (so len(target_ids) + 1 rows); rows sum to 1. Only when the request wanted attention.
    attention: np.ndarray | None
    score: float  # total log-probability of target_ids + eos (beam: of the chosen hypothesis)
    scored_tokens: int  # how many tokens `score` sums over (decoding.Hypothesis.scored_tokens)
    queue_wait_seconds: float  # submitted -> admitted (its encoding began)
    encode_seconds: float  # admitted -> handed to its decoder lane (its encoder call and any before it in the hand-off)
    decode_seconds: float  # handed to its decoder lane -> its last row ended
    # The translation stopped at its length limit (request.max_length, or the default from the
    # source's length) where the model would have gone on: cut short, or a model looping.
    cut_at_max_length: bool
    alternatives: tuple[Alternative, ...] = ()  # when the request asked for them, best first


@dataclass(frozen=True)
class Alternative:
    """Another translation the beam finished, ranked after the result's own (TranslationResult's fields)."""

    target_ids: list[int]
    attention: np.ndarray | None
    score: float
    scored_tokens: int


@dataclass(frozen=True)
class SchedulerConfig:
    mode: BatchingMode = "continuous"
    max_batch_rows: int = 64  # decoder rows active at once (a beam request uses beam_size rows)
    max_queue_requests: int = 256  # waiting requests; beyond -> Overloaded
    static_max_wait_ms: float = 5.0  # static mode: wait this long to fill a batch
    default_timeout_s: float = 30.0  # deadline for requests without one; <= 0: none
    max_output_tokens: int = 256  # hard cap on generated tokens per request (eos excluded)
    # Encoder calls of at most this many rows run on the event loop's thread when there is nothing
    # to overlap them with (see Scheduler._inline); 0: always on the encoder's thread.
    inline_max_rows: int = 0
    # Source-length bounds (tokens) splitting the decoder's rows into lanes, each stepped by its own
    # DecodeLoop thread; (): one lane.
    decoder_lane_bounds: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in BATCHING_MODES:
            raise ValueError(f"batching mode must be one of {BATCHING_MODES}, got {self.mode!r}")
        if self.max_batch_rows < 1:
            raise ValueError(f"max_batch_rows must be >= 1, got {self.max_batch_rows}")
        if self.max_queue_requests < 1:
            raise ValueError(f"max_queue_requests must be >= 1, got {self.max_queue_requests}")
        if self.static_max_wait_ms < 0:
            raise ValueError(f"static_max_wait_ms must be >= 0, got {self.static_max_wait_ms}")
        if self.inline_max_rows < 0:
            raise ValueError(f"inline_max_rows must be >= 0, got {self.inline_max_rows}")
        if self.max_output_tokens < 1:
            raise ValueError(f"max_output_tokens must be >= 1, got {self.max_output_tokens}")
        if any(bound < 1 for bound in self.decoder_lane_bounds):
            raise ValueError(f"decoder_lane_bounds must be >= 1, got {self.decoder_lane_bounds}")

    def default_max_length(self, source_length: int) -> int:
        """Generated-token cap for a source of `source_length` tokens (eos included)."""
        return min(2 * source_length + 10, self.max_output_tokens)


class FinishedRequest(NamedTuple):
    queue_wait_seconds: float
    encode_seconds: float
    decode_seconds: float
    generated_tokens: int  # of the returned translation, eos included
    cut_at_max_length: bool  # see TranslationResult


@dataclass(frozen=True)
class StepStats:
    """What the engine did since the last StepStats (emitted after each encoding and each decoder
    report); the metrics sink turns these into counters/histograms."""

    encoder_calls: int  # encoder calls handed to the decoder (one per length group)
    rows_admitted: int  # decoder rows they bring (a beam request brings beam_size)
    requests_admitted: int
    step_rows: tuple[int, ...]  # live rows of each decoder step (holes excluded; each lane steps on its own)
    # Encoder padding: positions computed for padding vs all positions (batch * padded src_len).
    padded_source_positions: int
    total_source_positions: int
    # The same for the decoder step's attention over memory (rows * padded src_len).
    decoder_padded_source_positions: int
    decoder_total_source_positions: int
    generated_tokens: int  # tokens chosen by those steps over all live hypotheses
    finished: tuple[FinishedRequest, ...]
    # Seconds in the queue of requests that left it without being encoded (deadline passed, caller
    # gone): queueing too, and under overload most of it (the HPA scales on the mean queue wait).
    unadmitted_queue_waits: tuple[float, ...]
    failed: int  # requests failed with EngineFailure
    expired: int  # requests failed with DeadlineExceeded
    cancelled: int  # requests whose caller went away
    queue_depth: int  # now
    active_rows: int


@dataclass(frozen=True)
class SchedulerSnapshot:
    queue_depth: int
    active_rows: int
    active_requests: int
    mode: BatchingMode
    running: bool
    draining: bool
    max_batch_rows: int
