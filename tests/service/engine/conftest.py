"""A deterministic numpy stand-in for the ONNX model, for the engine's unit tests.

Rule (per row, independent of the other rows): with source ids `src` of `length` tokens (eos
included), the translation has `src[0]` tokens; at step t with previous token `prev`, attention
peaks on position p = (t + prev) % length and the best next token is
4 + (src[p] + 3 * t + prev) % (VOCAB - 4), then eos at step src[0]. A runner-up token keeps beam
search honest. Padded memory is filled with garbage, so a wrong source mask changes the output.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from service.engine import DecoderState, EncoderOutput, Memory, SpecialIds, StepOutput

VOCAB = 64
SPECIAL = SpecialIds(pad_id=0, unk_id=1, bos_id=2, eos_id=3)
_GARBAGE = 1e6


class FakeModel:
    num_layers = 1
    hidden_size = 4
    vocab_size = VOCAB

    def __init__(self, step_delay_s: float = 0.0, encode_delay_s: float = 0.0) -> None:
        self.step_delay_s = step_delay_s
        self.encode_delay_s = encode_delay_s
        self.encode_spans: list[tuple[float, float]] = []  # (start, end) perf_counter of each call
        self.step_spans: list[tuple[float, float]] = []
        self.encode_rows: list[int] = []  # rows per encoder call
        self.step_rows: list[int] = []  # rows per decoder step
        self.step_src_lens: list[int] = []  # padded src_len per decoder step
        self.threads: set[str] = set()
        self.encode_threads: list[str] = []  # the thread of each encoder call
        self.step_threads: list[str] = []  # the thread of each decoder step
        self._lock = threading.Lock()

    def encode(self, source_ids: np.ndarray, source_lengths: np.ndarray) -> EncoderOutput:
        started = time.perf_counter()
        self.threads.add(threading.current_thread().name)
        self.encode_threads.append(threading.current_thread().name)
        self.encode_rows.append(int(source_ids.shape[0]))
        if self.encode_delay_s:
            time.sleep(self.encode_delay_s)
        self.encode_spans.append((started, time.perf_counter()))
        batch, src_len = source_ids.shape
        real = np.arange(src_len)[None, :] < source_lengths[:, None]
        memory = np.where(real[..., None], np.stack([source_ids, np.zeros_like(source_ids)], -1), _GARBAGE)
        keys = np.where(real, np.arange(src_len)[None, :], -_GARBAGE)[..., None].repeat(4, -1)
        hidden = np.zeros((1, batch, 4), np.float32)
        hidden[0, :, 1] = source_lengths
        hidden[0, :, 2] = source_ids[:, 0]  # target length
        return EncoderOutput(memory.astype(np.float32), keys.astype(np.float32), hidden, hidden.copy())

    def decode_step(self, previous_tokens: np.ndarray, state: DecoderState, memory: Memory) -> StepOutput:
        started = time.perf_counter()
        self.threads.add(threading.current_thread().name)
        self.step_threads.append(threading.current_thread().name)
        if self.step_delay_s:
            time.sleep(self.step_delay_s)
        self.step_spans.append((started, time.perf_counter()))
        rows, src_len = memory.source_mask.shape
        self.step_rows.append(rows)
        self.step_src_lens.append(src_len)
        step = state.hidden[0, :, 0].astype(np.int64)
        length = state.hidden[0, :, 1].astype(np.int64)
        target_length = state.hidden[0, :, 2].astype(np.int64)
        if not np.array_equal(memory.source_mask.sum(1), length):
            raise AssertionError("source_mask does not match the row's source length")
        position = (step + previous_tokens) % length
        scores = -10.0 * np.abs(memory.memory_keys[:, :, 0] - position[:, None])
        scores = np.where(memory.source_mask, scores, -np.inf)
        attention = np.exp(scores - scores.max(1, keepdims=True))
        attention /= attention.sum(1, keepdims=True)
        source_at_position = np.rint((attention * memory.memory[:, :, 0]).sum(1)).astype(np.int64)
        best = 4 + (source_at_position + 3 * step + previous_tokens) % (VOCAB - 4)
        best = np.where(step >= target_length, SPECIAL.eos_id, best)
        runner_up = np.where(best == SPECIAL.eos_id, 4, 4 + (best - 3) % (VOCAB - 4))
        probs = np.full((rows, VOCAB), 0.1 / (VOCAB - 2), np.float64)
        probs[np.arange(rows), best] = 0.7
        probs[np.arange(rows), runner_up] = 0.2
        hidden = state.hidden.copy()
        hidden[0, :, 0] += 1
        return StepOutput(
            np.log(probs / probs.sum(1, keepdims=True)).astype(np.float32),
            DecoderState(hidden, state.cell.copy()),
            attention.astype(np.float32),
        )


def expected_greedy(source_ids: list[int]) -> list[int]:
    """The fake's greedy translation, computed without the engine."""
    length, tokens, previous = len(source_ids), [], SPECIAL.bos_id
    for step in range(source_ids[0]):
        token = 4 + (source_ids[(step + previous) % length] + 3 * step + previous) % (VOCAB - 4)
        tokens.append(token)
        previous = token
    return tokens


class FailingModel(FakeModel):
    """Raises in the `fail_on`-th decoder step (1-based) or encoder call, once."""

    def __init__(self, fail_step: int | None = None, fail_encode: int | None = None, **kwargs: float) -> None:
        super().__init__(**kwargs)
        self.fail_step, self.fail_encode = fail_step, fail_encode
        self.steps = self.encodes = 0

    def encode(self, source_ids: np.ndarray, source_lengths: np.ndarray) -> EncoderOutput:
        self.encodes += 1
        if self.encodes == self.fail_encode:
            raise RuntimeError("injected encoder failure")
        return super().encode(source_ids, source_lengths)

    def decode_step(self, previous_tokens: np.ndarray, state: DecoderState, memory: Memory) -> StepOutput:
        self.steps += 1
        if self.steps == self.fail_step:
            raise RuntimeError("injected decoder failure")
        return super().decode_step(previous_tokens, state, memory)


# Fixtures rather than imports, so the tests work under any pytest import mode.


@pytest.fixture
def fake_model() -> FakeModel:
    return FakeModel()


@pytest.fixture
def slow_model() -> FakeModel:
    """Each decoder step takes 10 ms (in the worker thread), so requests overlap."""
    return FakeModel(step_delay_s=0.01)


@pytest.fixture
def fake_model_class() -> type[FakeModel]:
    """For tests that need several fresh models or their own step delay."""
    return FakeModel


@pytest.fixture
def failing_model_class() -> type[FailingModel]:
    return FailingModel


@pytest.fixture
def greedy_oracle():  # type: ignore[no-untyped-def]
    return expected_greedy
