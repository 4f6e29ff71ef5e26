"""DecodeBatch as row slots: joining writes only the newcomers' rows (into holes first), ending
copies nothing, beams reorder only the state, and `settle` trims, compacts and shrinks."""

from __future__ import annotations

import numpy as np

from service.engine import DecodeBatch, DecoderState, EncoderOutput
from service.engine.batch import SOURCE_ALIGN

BOS = 2


def encoded(lengths: list[int], first_row: int = 0, layers: int = 2, hidden: int = 3) -> EncoderOutput:
    """memory[b, s, 0] = 100 * (first_row + b) + s + 1 names the encoder row and position; the
    state of row b is filled with first_row + b + 1."""
    batch, src_len = len(lengths), max(lengths)
    rows = first_row + np.arange(batch)
    memory = (100.0 * rows[:, None] + np.arange(src_len)[None, :] + 1)[..., None].repeat(2, -1)
    state = np.broadcast_to((rows + 1.0)[None, :, None], (layers, batch, hidden)).astype(np.float32)
    keys = memory[..., :1].repeat(hidden, -1).astype(np.float32)
    return EncoderOutput(memory.astype(np.float32), keys, state.copy(), -state)


def joined(keys: list[int], beams: list[int], lengths: list[int], first_row: int = 0,
           batch: DecodeBatch | None = None) -> DecodeBatch:
    batch = DecodeBatch() if batch is None else batch
    batch.join(keys, beams, np.array(lengths), encoded(lengths, first_row), BOS)
    return batch


def step(batch: DecodeBatch) -> None:
    """What a decoder step does to the state: returns a new one (here: the old one plus 0.5)."""
    batch.set_state(DecoderState(batch.state.hidden + 0.5, batch.state.cell - 0.5))


class Unreadable(DecoderState):
    """A runtime's device-resident state: reading it would copy it to the host."""

    @property
    def hidden(self) -> np.ndarray:
        raise AssertionError("state read although no row moved")

    @property
    def cell(self) -> np.ndarray:
        raise AssertionError("state read although no row moved")


def test_join_expands_beam_rows_and_masks_padding() -> None:
    batch = joined([7, 8], [3, 1], [2, 4])
    assert batch.rows == batch.live_rows == 4
    assert batch.src_len == SOURCE_ALIGN  # 4 positions, rounded up
    assert batch.slots(7).tolist() == [0, 1, 2] and batch.slots(8).tolist() == [3]
    assert batch.previous_tokens.tolist() == [BOS] * 4
    memory = batch.memory
    assert memory.source_mask.sum(1).tolist() == [2, 2, 2, 4]
    assert memory.memory[:, 0, 0].tolist() == [1, 1, 1, 101]
    assert memory.memory[:, 4:].sum() == 0 and memory.memory_keys[:, 4:].sum() == 0  # beyond the encoder's: zeros
    assert batch.state.hidden[0, :, 0].tolist() == [1, 1, 1, 2]
    assert batch.padded_positions == 4 * SOURCE_ALIGN - (2 + 2 + 2 + 4)


def test_a_newcomer_takes_a_hole_and_only_its_row_is_written() -> None:
    batch = joined([1, 2, 3], [1, 1, 1], [3, 3, 3])
    step(batch)
    batch.release(1)  # the first request ends: its slot becomes a hole, the range stays
    batch.continue_rows(2, np.array([0]), np.array([11]))
    batch.continue_rows(3, np.array([0]), np.array([12]))
    before = batch.memory
    batch.settle(max_hole_share=0.5)
    assert batch.rows == 3 and batch.live_rows == 2 and batch.memory is before  # nothing copied
    joined([4], [1], [2], first_row=5, batch=batch)
    assert batch.slots(4).tolist() == [0] and batch.rows == 3
    after = batch.memory
    assert after is not before and np.shares_memory(after.memory, before.memory)  # written in place
    assert after.memory[:, 0, 0].tolist() == [501, 101, 201]
    assert after.source_mask[0].sum() == 2
    assert batch.previous_tokens.tolist() == [BOS, 11, 12]
    # the running rows keep the state their step returned; the newcomer starts from its encoder's
    assert batch.state.hidden[0, :, 0].tolist() == [6, 2.5, 3.5]


def test_greedy_rows_continuing_in_place_keep_the_state_unread() -> None:
    batch = joined([7, 8], [1, 1], [2, 4])
    memory = batch.memory
    unread = Unreadable(batch.state.hidden, batch.state.cell)
    batch.set_state(unread)
    batch.continue_rows(7, np.array([0]), np.array([5]))
    batch.continue_rows(8, np.array([0]), np.array([6]))
    batch.settle(max_hole_share=0.25)
    assert batch.state is unread and batch.memory is memory
    assert batch.previous_tokens.tolist() == [5, 6]


def test_beam_backpointers_reorder_the_state_and_a_shrinking_beam_frees_slots() -> None:
    batch = joined([1, 2], [3, 1], [3, 3])
    batch.set_state(DecoderState(np.arange(4.0)[None, :, None].repeat(2, -1), np.zeros((1, 4, 2))))
    memory = batch.memory
    batch.continue_rows(1, np.array([2, 0]), np.array([9, 8]))  # 3 beam rows -> 2, reordered
    batch.continue_rows(2, np.array([0]), np.array([7]))
    assert batch.slots(1).tolist() == [0, 1]
    batch.settle(max_hole_share=0.5)  # one hole of 4 rows: kept
    assert batch.rows == 4 and batch.live_rows == 3 and batch.memory is memory
    assert batch.state.hidden[0, :, 0].tolist()[:2] == [2, 0]  # rows follow their parents
    assert batch.state.hidden[0, 3, 0] == 3  # the other request's row did not move
    assert batch.previous_tokens.tolist()[:2] == [9, 8] and batch.previous_tokens[3] == 7


def test_settle_trims_free_slots_at_the_end_and_compacts_when_holes_are_many() -> None:
    batch = joined([1, 2, 3, 4], [1, 1, 1, 1], [2, 2, 2, 2])
    step(batch)
    batch.release(4)  # the last slot: trimmed, a view of the same arrays
    for key in (1, 2, 3):
        batch.continue_rows(key, np.array([0]), np.array([10 + key]))
    batch.settle(max_hole_share=0.25)
    assert batch.rows == 3 and batch.state.hidden.shape[1] == 3
    step(batch)
    batch.release(1)  # a hole at the front: 1 of 3 rows is more than a quarter -> compacted
    for key in (2, 3):
        batch.continue_rows(key, np.array([0]), np.array([20 + key]))
    batch.settle(max_hole_share=0.25)
    assert batch.rows == 2 and sorted(batch.slots(2).tolist() + batch.slots(3).tolist()) == [0, 1]
    slot3 = int(batch.slots(3)[0])
    assert slot3 == 0  # the last row moved into the hole
    assert batch.memory.memory[slot3, 0, 0] == 201  # with its memory,
    assert batch.state.hidden[0, slot3, 0] == 4  # its state (3 + two steps of 0.5)
    assert batch.previous_tokens[slot3] == 23  # and its next token


def test_the_source_axis_grows_for_a_long_newcomer_and_halves_when_it_leaves() -> None:
    batch = joined([1], [1], [3])
    assert batch.src_len == SOURCE_ALIGN
    joined([2], [1], [3 * SOURCE_ALIGN], first_row=1, batch=batch)
    assert batch.src_len == 3 * SOURCE_ALIGN
    assert batch.memory.memory[0, :4, 0].tolist() == [1, 2, 3, 0]  # the running row kept its memory
    assert batch.memory.source_mask.sum(1).tolist() == [3, 3 * SOURCE_ALIGN]
    step(batch)
    batch.continue_rows(1, np.array([0]), np.array([5]))
    batch.release(2)
    batch.settle(max_hole_share=0.25)
    assert batch.rows == 1 and batch.src_len == SOURCE_ALIGN
    assert batch.memory.memory[0, :4, 0].tolist() == [1, 2, 3, 0]


def test_the_last_request_leaving_empties_the_batch() -> None:
    batch = joined([1, 2], [2, 1], [2, 5])
    batch.release(1)
    batch.release(2)
    batch.settle(max_hole_share=0.25)
    assert batch.rows == batch.live_rows == 0
    assert list(batch.requests()) == []


def test_random_joins_steps_and_endings_keep_every_row_with_its_own_memory_and_state() -> None:
    """Against a plain model of the rows: each request's rows always see its own source and carry
    the state its beam backpointers say, whatever holes, moves, growth and shrinking happened."""
    rng = np.random.default_rng(5)
    batch = DecodeBatch()
    expected: dict[int, tuple[int, np.ndarray]] = {}  # key -> (encoder id, state value per row)
    next_key = 0
    for _ in range(300):
        if batch.rows:  # a decoder step: every row's state becomes unique
            values = rng.random(batch.rows).astype(np.float32)
            batch.set_state(DecoderState(values[None, :, None].repeat(2, 0), np.zeros((2, batch.rows, 1))))
            for key in list(batch.requests()):
                slots = batch.slots(key)
                if rng.random() < 0.15:
                    batch.release(key)
                    del expected[key]
                    continue
                kept = int(rng.integers(1, slots.size + 1))
                parents = rng.integers(0, slots.size, kept)
                batch.continue_rows(key, parents, rng.integers(4, 60, kept))
                expected[key] = (expected[key][0], values[slots[parents]])
            batch.settle(max_hole_share=float(rng.choice([0.0, 0.25, 0.6])))
        if rng.random() < 0.5 and batch.live_rows < 24:  # newcomers, some with longer sources
            count = int(rng.integers(1, 4))
            keys = list(range(next_key, next_key + count))
            beams = rng.integers(1, 4, count).tolist()
            lengths = rng.integers(1, 30, count).tolist()
            output = encoded(lengths, first_row=next_key, hidden=1)
            batch.join(keys, beams, np.array(lengths), output, BOS)
            for i, key in enumerate(keys):
                expected[key] = (key, np.full(beams[i], key + 1.0, np.float32))
            next_key += count
        assert set(batch.requests()) == set(expected)
        memory, state = batch.memory, batch.state if batch.rows else None
        for key, (encoder_id, values) in expected.items():
            slots = batch.slots(key)
            assert slots.size == values.size and slots.max() < batch.rows
            assert (memory.memory[slots, 0, 0] == 100 * encoder_id + 1).all()
            lengths = memory.source_mask[slots].sum(1)
            assert (lengths == lengths[0]).all() and lengths[0] <= batch.src_len
            assert state is not None
            np.testing.assert_array_equal(state.hidden[0, slots, 0], values)
        assert batch.live_rows == sum(v.size for _, v in expected.values())
