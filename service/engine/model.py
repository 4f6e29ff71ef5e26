"""The engine's view of a seq2seq model: a Protocol plus the plain arrays that cross it.

Implemented by `service.runtime.OnnxSeq2SeqModel` and by test fakes. Numpy only; must not import
onnxruntime, fastapi or prometheus_client. Names and shapes follow model_store.manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


class DecoderState:
    """The decoder's recurrent state between steps: hidden and cell, [layers, batch, hidden] float32.

    Read-only properties rather than fields, so a runtime may return a subclass that keeps the
    arrays on its device and copies them to the host only when read (OnnxSeq2SeqModel with IO
    binding). The engine therefore reads them only when rows are reordered, leave or join
    (DecodeBatch.filter/concatenate) and passes an unchanged batch's state on untouched.
    """

    __slots__ = ("_cell", "_hidden")

    def __init__(self, hidden: np.ndarray, cell: np.ndarray) -> None:
        self._hidden = hidden
        self._cell = cell

    @property
    def hidden(self) -> np.ndarray:
        return self._hidden

    @property
    def cell(self) -> np.ndarray:
        return self._cell


@dataclass(frozen=True, eq=False)
class Memory:
    """What every decoder step attends over. Kept as one object while the batch's set of requests
    does not change, so a runtime may cache a device copy keyed by identity (`is`)."""

    memory: np.ndarray  # [batch, src_len, memory] float32
    memory_keys: np.ndarray  # [batch, src_len, hidden] float32
    source_mask: np.ndarray  # [batch, src_len] bool, True on real source tokens


@dataclass(frozen=True)
class EncoderOutput:
    memory: np.ndarray  # [batch, src_len, memory] float32
    memory_keys: np.ndarray  # [batch, src_len, hidden] float32
    hidden: np.ndarray  # [layers, batch, hidden] float32, initial decoder state
    cell: np.ndarray  # [layers, batch, hidden] float32


@dataclass(frozen=True)
class StepOutput:
    log_probs: np.ndarray  # [batch, vocab] float32
    state: DecoderState
    attention: np.ndarray  # [batch, src_len] float32, rows sum to 1 over real tokens


@runtime_checkable
class Seq2SeqModel(Protocol):
    """Blocking model calls, made from the scheduler's worker threads: the encoder's, and one
    decoder thread per lane, so calls may run at the same time (ONNX Runtime sessions allow it)."""

    num_layers: int
    hidden_size: int
    vocab_size: int

    def encode(self, source_ids: np.ndarray, source_lengths: np.ndarray) -> EncoderOutput:
        """source_ids int64 [batch, src_len] padded with pad_id; source_lengths int64 [batch]."""
        ...

    def decode_step(self, previous_tokens: np.ndarray, state: DecoderState, memory: Memory) -> StepOutput:
        """previous_tokens int64 [batch]: bos on a row's first step, then its last output token."""
        ...
