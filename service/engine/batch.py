"""The decoder batch as an immutable value: per-row tokens, state and memory, with filter/concatenate.

Rows of one request are contiguous. Memory is padded to the longest source among the rows and
shrinks when long rows leave. Numpy only; must not import onnxruntime, fastapi or prometheus_client.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from service.engine.model import DecoderState, EncoderOutput, Memory


@dataclass(frozen=True, eq=False)
class DecodeBatch:
    request_keys: np.ndarray  # [rows] int64, which request each row belongs to
    previous_tokens: np.ndarray  # [rows] int64, fed to the next decoder step
    state: DecoderState  # [layers, rows, hidden]
    memory: Memory  # [rows, src_len, ...], src_len = max(source_lengths)
    source_lengths: np.ndarray  # [rows] int64

    @property
    def rows(self) -> int:
        return int(self.request_keys.shape[0])

    @property
    def src_len(self) -> int:
        return int(self.memory.source_mask.shape[1])

    @property
    def padded_positions(self) -> int:
        return self.rows * self.src_len - int(self.source_lengths.sum())

    @classmethod
    def from_encoder(
        cls,
        request_keys: Sequence[int],
        rows_per_request: Sequence[int],
        source_lengths: np.ndarray,
        encoded: EncoderOutput,
        bos_id: int,
    ) -> DecodeBatch:
        """Expand one encoder row per request into `rows_per_request` identical decoder rows."""
        repeat = np.asarray(rows_per_request, dtype=np.int64)
        index = np.repeat(np.arange(len(repeat)), repeat)  # [rows] -> encoder row
        lengths = np.asarray(source_lengths, dtype=np.int64)[index]
        src_len = int(lengths.max())
        positions = np.arange(src_len)
        memory = Memory(
            memory=np.ascontiguousarray(encoded.memory[index, :src_len], dtype=np.float32),
            memory_keys=np.ascontiguousarray(encoded.memory_keys[index, :src_len], dtype=np.float32),
            source_mask=positions[None, :] < lengths[:, None],
        )
        return cls(
            request_keys=np.repeat(np.asarray(request_keys, dtype=np.int64), repeat),
            previous_tokens=np.full(len(index), bos_id, dtype=np.int64),
            state=DecoderState(
                hidden=np.ascontiguousarray(encoded.hidden[:, index], dtype=np.float32),
                cell=np.ascontiguousarray(encoded.cell[:, index], dtype=np.float32),
            ),
            memory=memory,
            source_lengths=lengths,
        )

    def with_state(self, state: DecoderState) -> DecodeBatch:
        return DecodeBatch(self.request_keys, self.previous_tokens, state, self.memory, self.source_lengths)

    def filter(self, index: np.ndarray, previous_tokens: np.ndarray | None = None) -> DecodeBatch | None:
        """Rows `index` of this batch, in that order (None when empty), optionally with new tokens.

        Reordering rows inside a request (beam backpointers) keeps the Memory object, because
        all rows of a request share the same memory; only a change of requests rebuilds it. Keeping
        every row in order keeps the DecoderState object too (its arrays are not read).
        """
        index = np.asarray(index, dtype=np.int64)
        if index.size == 0:
            return None
        keys = self.request_keys[index]
        lengths = self.source_lengths[index]
        src_len = int(lengths.max())
        if np.array_equal(keys, self.request_keys) and src_len == self.src_len:
            memory = self.memory
        else:
            memory = Memory(
                memory=np.ascontiguousarray(self.memory.memory[index, :src_len]),
                memory_keys=np.ascontiguousarray(self.memory.memory_keys[index, :src_len]),
                source_mask=np.ascontiguousarray(self.memory.source_mask[index, :src_len]),
            )
        tokens = self.previous_tokens[index] if previous_tokens is None else previous_tokens
        if index.size == self.rows and np.array_equal(index, np.arange(self.rows)):
            # Every row continues in place (greedy rows between joins and leaves): keep the state
            # object unread, so a runtime holding it on its device feeds it back without a copy.
            state = self.state
        else:
            state = DecoderState(
                hidden=np.ascontiguousarray(self.state.hidden[:, index]),
                cell=np.ascontiguousarray(self.state.cell[:, index]),
            )
        return DecodeBatch(
            request_keys=keys,
            previous_tokens=np.asarray(tokens, dtype=np.int64),
            state=state,
            memory=memory,
            source_lengths=lengths,
        )

    @staticmethod
    def concatenate(batches: Sequence[DecodeBatch | None]) -> DecodeBatch | None:
        """One batch with the rows of `batches` in order; memory padded to the longest source."""
        present = [batch for batch in batches if batch is not None and batch.rows > 0]
        if not present:
            return None
        if len(present) == 1:
            return present[0]
        src_len = max(batch.src_len for batch in present)

        def stack(arrays: list[np.ndarray]) -> np.ndarray:
            """[rows_i, s_i, ...] -> [sum rows_i, src_len, ...], zero (False) padded; one copy."""
            out = np.zeros((sum(a.shape[0] for a in arrays), src_len, *arrays[0].shape[2:]), arrays[0].dtype)
            row = 0
            for array in arrays:
                out[row : row + array.shape[0], : array.shape[1]] = array
                row += array.shape[0]
            return out

        return DecodeBatch(
            request_keys=np.concatenate([b.request_keys for b in present]),
            previous_tokens=np.concatenate([b.previous_tokens for b in present]),
            state=DecoderState(
                hidden=np.concatenate([b.state.hidden for b in present], axis=1),
                cell=np.concatenate([b.state.cell for b in present], axis=1),
            ),
            memory=Memory(
                memory=stack([b.memory.memory for b in present]),
                memory_keys=stack([b.memory.memory_keys for b in present]),
                source_mask=stack([b.memory.source_mask for b in present]),
            ),
            source_lengths=np.concatenate([b.source_lengths for b in present]),
        )
