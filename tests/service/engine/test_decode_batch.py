"""DecodeBatch as a value: expansion of beam rows, padding on concatenate, shrinking on filter,
and keeping the Memory object while the batch's requests do not change."""

from __future__ import annotations

import numpy as np

from service.engine import DecodeBatch, DecoderState, EncoderOutput


def encoded(lengths: list[int], layers: int = 2, hidden: int = 3) -> EncoderOutput:
    batch, src_len = len(lengths), max(lengths)
    # memory[b, s, 0] = 100 * b + s identifies the encoder row and position
    memory = (100.0 * np.arange(batch)[:, None] + np.arange(src_len)[None, :])[..., None].repeat(2, -1)
    state = np.arange(layers * batch * hidden, dtype=np.float32).reshape(layers, batch, hidden)
    keys = memory[..., :1].repeat(hidden, -1).astype(np.float32)
    return EncoderOutput(memory.astype(np.float32), keys, state, -state)


def test_from_encoder_expands_beam_rows_and_masks_padding() -> None:
    batch = DecodeBatch.from_encoder([7, 8], [3, 1], np.array([2, 4]), encoded([2, 4]), bos_id=2)
    assert batch.rows == 4 and batch.src_len == 4
    assert batch.request_keys.tolist() == [7, 7, 7, 8]
    assert batch.previous_tokens.tolist() == [2, 2, 2, 2]
    assert batch.memory.source_mask.sum(1).tolist() == [2, 2, 2, 4]
    assert batch.memory.memory[:, 0, 0].tolist() == [0, 0, 0, 100]
    np.testing.assert_array_equal(batch.state.hidden[:, 0], batch.state.hidden[:, 2])
    assert batch.padded_positions == 4 * 4 - (2 + 2 + 2 + 4)


def test_concatenate_pads_to_the_longest_source() -> None:
    short = DecodeBatch.from_encoder([1], [1], np.array([2]), encoded([2]), bos_id=2)
    long = DecodeBatch.from_encoder([2], [2], np.array([5]), encoded([5]), bos_id=2)
    both = DecodeBatch.concatenate([None, short, long])
    assert both is not None
    assert both.rows == 3 and both.src_len == 5
    assert both.memory.memory.shape == (3, 5, 2) and both.memory.memory_keys.shape == (3, 5, 3)
    assert both.memory.source_mask.tolist()[0] == [True, True, False, False, False]
    assert both.memory.memory[0, 2:].sum() == 0  # padding is zeros, masked out
    assert both.state.hidden.shape == (2, 3, 3)
    assert DecodeBatch.concatenate([None]) is None


def test_filter_shrinks_memory_when_the_long_rows_leave() -> None:
    both = DecodeBatch.concatenate(
        [
            DecodeBatch.from_encoder([1], [1], np.array([2]), encoded([2]), bos_id=2),
            DecodeBatch.from_encoder([2], [1], np.array([6]), encoded([6]), bos_id=2),
        ]
    )
    assert both is not None
    left = both.filter(np.array([0]), previous_tokens=np.array([9]))
    assert left is not None
    assert left.src_len == 2 and left.rows == 1
    assert left.previous_tokens.tolist() == [9]
    assert left.request_keys.tolist() == [1]
    assert both.filter(np.array([], dtype=np.int64)) is None


def test_reordering_rows_within_requests_keeps_the_memory_object() -> None:
    batch = DecodeBatch.from_encoder([1, 2], [3, 2], np.array([3, 3]), encoded([3, 3]), bos_id=2)
    reordered = batch.filter(np.array([2, 2, 0, 4, 3]), previous_tokens=np.arange(5))
    assert reordered is not None
    assert reordered.memory is batch.memory  # a runtime may keep its device copy
    np.testing.assert_array_equal(reordered.state.hidden, batch.state.hidden[:, [2, 2, 0, 4, 3]])
    dropped = batch.filter(np.array([0, 1, 2]))
    assert dropped is not None and dropped.memory is not batch.memory


def test_keeping_every_row_in_order_keeps_the_state_unread() -> None:
    """A runtime may hold the state on its device: rows continuing in place must not read it."""

    class Unreadable(DecoderState):
        @property
        def hidden(self) -> np.ndarray:
            raise AssertionError("state read although no row moved")

        @property
        def cell(self) -> np.ndarray:
            raise AssertionError("state read although no row moved")

    batch = DecodeBatch.from_encoder([7, 8], [1, 1], np.array([2, 4]), encoded([2, 4]), bos_id=2)
    unread = Unreadable(batch.state.hidden, batch.state.cell)
    kept = batch.with_state(unread).filter(np.arange(2), np.array([5, 6]))
    assert kept is not None and kept.state is unread and kept.memory is batch.memory
    assert kept.previous_tokens.tolist() == [5, 6]
    reordered = batch.filter(np.array([1, 0]))
    assert reordered is not None
    np.testing.assert_array_equal(reordered.state.hidden, batch.state.hidden[:, [1, 0]])
    shrunk = batch.filter(np.array([0]))
    assert shrunk is not None
    np.testing.assert_array_equal(shrunk.state.cell, batch.state.cell[:, [0]])
