"""The decoder batch as row slots: requests take slots when they join and give them back when they
end, so the step-to-step bookkeeping copies only the rows that change.

Each request holds one slot per decoder row (a beam request several) in arrays preallocated with
spare capacity: source memory, keys and mask [capacity, src_len, ...], previous tokens, source
lengths. The decoder step runs over slots [0, rows); free slots inside that range (holes, left by
requests that ended) are stepped and their outputs ignored until a newcomer takes them or
`settle` moves the last rows into them. Joining writes only the newcomers' rows; ending writes
nothing. (An immutable batch rebuilt on every join and ending copied the whole batch's memory
each time: under load that was the largest Python cost on the event loop.)

Numpy only; must not import onnxruntime, fastapi or prometheus_client.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from service.engine.model import DecoderState, EncoderOutput, Memory

SOURCE_ALIGN = 8  # the source axis grows in steps of this many positions, so most joins fit in place
MIN_CAPACITY_ROWS = 8
FREE = -1  # owner of a free slot


def _aligned(length: int) -> int:
    return -(-length // SOURCE_ALIGN) * SOURCE_ALIGN


def _capacity_for(rows: int) -> int:
    return max(MIN_CAPACITY_ROWS, 1 << max(rows - 1, 0).bit_length())


class DecodeBatch:
    """Mutable; owned by the scheduler and touched only between decoder steps (never while a step
    runs, since the step reads these arrays from another thread)."""

    def __init__(self) -> None:
        self._slots: dict[int, np.ndarray] = {}  # request key -> its slots, in the request's row order
        self._owner = np.zeros(0, np.int64)  # [capacity] request key, FREE when free
        self._tokens = np.zeros(0, np.int64)  # [capacity] fed to the next decoder step
        self._lengths = np.zeros(0, np.int64)  # [capacity] source tokens, 0 when free
        self._memory = np.zeros((0, 0, 0), np.float32)  # [capacity, src_len, memory]
        self._keys = np.zeros((0, 0, 0), np.float32)  # [capacity, src_len, key]
        self._mask = np.zeros((0, 0), np.bool_)  # [capacity, src_len]
        self._rows = 0  # slots [0, rows) are stepped
        self._state: DecoderState | None = None  # exactly `rows` rows
        self._view: Memory | None = None  # [0, rows) of the memory arrays; rebuilt when they change
        self._state_index: np.ndarray | None = None  # pending reorder of the state (see continue_rows)
        self._freed = False  # a slot was freed since the last settle

    # ---- what the decoder step reads -------------------------------------------------------------
    @property
    def rows(self) -> int:
        """Rows the next decoder step runs over (live rows and holes)."""
        return self._rows

    @property
    def live_rows(self) -> int:
        return sum(len(slots) for slots in self._slots.values())

    @property
    def src_len(self) -> int:
        return int(self._mask.shape[1])

    @property
    def padded_positions(self) -> int:
        """Source positions the step attends over that are padding or belong to holes."""
        return self._rows * self.src_len - int(self._lengths[: self._rows].sum())

    @property
    def previous_tokens(self) -> np.ndarray:
        return self._tokens[: self._rows]

    @property
    def state(self) -> DecoderState:
        assert self._state is not None, "an empty batch has no state"
        return self._state

    @property
    def memory(self) -> Memory:
        """The same object while the memory arrays do not change, so a runtime may cache a device
        copy keyed by identity."""
        if self._view is None:
            rows = self._rows
            self._view = Memory(self._memory[:rows], self._keys[:rows], self._mask[:rows])
        return self._view

    def requests(self) -> Iterator[int]:
        return iter(self._slots)

    def slots(self, key: int) -> np.ndarray:
        return self._slots[key]

    # ---- joining ---------------------------------------------------------------------------------
    def join(
        self,
        request_keys: Sequence[int],
        rows_per_request: Sequence[int],
        source_lengths: np.ndarray,
        encoded: EncoderOutput,
        bos_id: int,
    ) -> None:
        """Give each request `rows_per_request` slots (free ones first), all starting from its
        encoder row with bos. Writes only the new rows, unless the arrays must grow."""
        repeat = np.asarray(rows_per_request, dtype=np.int64)
        encoder_row = np.repeat(np.arange(len(repeat)), repeat)  # [new rows] -> encoder row
        lengths = np.asarray(source_lengths, dtype=np.int64)[encoder_row]
        new_rows = int(repeat.sum())
        free = np.flatnonzero(self._owner == FREE)
        if free.size < new_rows or int(lengths.max()) > self.src_len:
            self._grow(self.live_rows + new_rows, int(lengths.max()), encoded)
            free = np.flatnonzero(self._owner == FREE)
        slots = free[:new_rows]  # the lowest: holes first, so the stepped range stays dense
        encoded_len = min(int(encoded.memory.shape[1]), self.src_len)
        self._memory[slots] = 0.0
        self._memory[slots, :encoded_len] = encoded.memory[encoder_row, :encoded_len]
        self._keys[slots] = 0.0
        self._keys[slots, :encoded_len] = encoded.memory_keys[encoder_row, :encoded_len]
        self._mask[slots] = np.arange(self.src_len)[None, :] < lengths[:, None]
        self._tokens[slots] = bos_id
        self._lengths[slots] = lengths
        self._owner[slots] = np.repeat(np.asarray(request_keys, dtype=np.int64), repeat)
        start = 0
        for key, count in zip(request_keys, repeat.tolist(), strict=True):
            self._slots[key] = slots[start : start + count]
            start += count
        # New rows take their encoder state; the rows already running keep theirs.
        rows = max(self._rows, int(slots.max()) + 1)
        hidden = np.zeros((encoded.hidden.shape[0], rows, encoded.hidden.shape[2]), np.float32)
        cell = np.zeros_like(hidden)
        if self._state is not None and self._rows:
            hidden[:, : self._rows] = self._state.hidden
            cell[:, : self._rows] = self._state.cell
        hidden[:, slots] = encoded.hidden[:, encoder_row]
        cell[:, slots] = encoded.cell[:, encoder_row]
        self._state = DecoderState(hidden, cell)
        self._rows = rows
        self._view = None

    def _grow(self, rows_needed: int, source_needed: int, encoded: EncoderOutput) -> None:
        """New arrays with room for `rows_needed` rows and `source_needed` positions; the occupied
        slots keep their numbers."""
        first_join = len(self._owner) == 0
        capacity = max(len(self._owner), _capacity_for(rows_needed))
        src_len = max(self.src_len, _aligned(source_needed))

        def resized(array: np.ndarray, shape: tuple[int, ...], fill: float | int | bool) -> np.ndarray:
            out = np.full(shape, fill, dtype=array.dtype)
            out[tuple(slice(0, n) for n in array.shape)] = array
            return out

        self._owner = resized(self._owner, (capacity,), FREE)
        self._tokens = resized(self._tokens, (capacity,), 0)
        self._lengths = resized(self._lengths, (capacity,), 0)
        memory_width, key_width = encoded.memory.shape[2], encoded.memory_keys.shape[2]
        if first_join:  # take the widths from the encoder
            self._memory = np.zeros((0, 0, memory_width), np.float32)
            self._keys = np.zeros((0, 0, key_width), np.float32)
        self._memory = resized(self._memory, (capacity, src_len, memory_width), 0.0)
        self._keys = resized(self._keys, (capacity, src_len, key_width), 0.0)
        self._mask = resized(self._mask, (capacity, src_len), False)
        self._view = None

    # ---- after a decoder step --------------------------------------------------------------------
    def set_state(self, state: DecoderState) -> None:
        """The state the last step returned, for all `rows` rows (before continue_rows/release)."""
        self._state = state
        self._state_index = None

    def continue_rows(self, key: int, parents: np.ndarray, tokens: np.ndarray) -> None:
        """Request `key` keeps len(parents) rows: row j continues its row parents[j] (beam
        backpointers) with tokens[j]; rows it no longer needs are freed."""
        previous = self._slots[key]
        kept = len(parents)
        if kept == 1 and previous.size == 1 and parents[0] == 0:
            self._tokens[previous[0]] = tokens[0]  # a greedy row continues in place: the usual case
            return
        slots = previous[:kept]
        if kept < previous.size:
            self._free(previous[kept:])
            self._slots[key] = slots
        self._tokens[slots] = tokens
        # All rows of a request share its source, so only the state follows the backpointers.
        sources = previous[parents]
        if not np.array_equal(sources, slots):
            if self._state_index is None:
                self._state_index = np.arange(self._rows)
            self._state_index[slots] = sources

    def continue_in_place(self, slots: list[int], tokens: list[int]) -> None:
        """Rows that continue in their own slot (greedy rows) with these next tokens, all at once:
        `continue_rows(key, [0], [token])` for each, in one write."""
        if slots:
            self._tokens[slots] = tokens

    def release(self, key: int) -> None:
        """Request `key` ended (or was abandoned): its slots become free; nothing is copied."""
        self._free(self._slots.pop(key))

    def _free(self, slots: np.ndarray) -> None:
        self._owner[slots] = FREE
        self._lengths[slots] = 0
        self._freed = True

    def settle(self, max_hole_share: float) -> None:
        """After continue_rows/release for the step: apply beam reorders to the state, drop free
        slots at the end of the stepped range, and move the last rows into the holes when holes
        are more than `max_hole_share` of the rows (copying only the moved rows)."""
        if not self._freed and self._state_index is None:
            return  # every row continued in place: the usual step
        self._freed = False
        occupied = np.flatnonzero(self._owner[: self._rows] != FREE)
        live = occupied.size
        rows = int(occupied[-1]) + 1 if live else 0
        index = self._state_index
        if live and rows - live > max_hole_share * rows:
            index = np.arange(self._rows) if index is None else index
            holes = np.flatnonzero(self._owner[:live] == FREE)
            movers = occupied[occupied >= live]
            self._move(movers, holes, index)
            rows = live
        if index is not None or rows != self._rows:
            state = self.state
            take = np.arange(rows) if index is None else index[:rows]
            self._state = DecoderState(
                np.ascontiguousarray(state.hidden[:, take]), np.ascontiguousarray(state.cell[:, take])
            ) if rows else None
        if rows != self._rows:
            self._rows = rows
            self._view = None
        self._state_index = None
        # Not while holes are stepped: a hole keeps its old row as it was (a model may check it).
        if live == rows > 0 and (needed := _aligned(int(self._lengths[:rows].max()))) <= self.src_len // 2:
            self._shrink_source(needed)

    def _shrink_source(self, src_len: int) -> None:
        """The long sources left: attend over fewer positions (a copy of every row, so only when
        the source axis halves; in between, the extra positions are masked padding)."""
        self._memory = np.ascontiguousarray(self._memory[:, :src_len])
        self._keys = np.ascontiguousarray(self._keys[:, :src_len])
        self._mask = np.ascontiguousarray(self._mask[:, :src_len])
        self._view = None

    def _move(self, sources: np.ndarray, targets: np.ndarray, state_index: np.ndarray) -> None:
        """Slot sources[i] -> targets[i] (each a free slot); `state_index` is updated to match."""
        for array in (self._memory, self._keys, self._mask, self._tokens, self._lengths, self._owner):
            array[targets] = array[sources]
        state_index[targets] = state_index[sources]
        self._owner[sources] = FREE
        self._lengths[sources] = 0
        moved = dict(zip(sources.tolist(), targets.tolist(), strict=True))
        for key, slots in self._slots.items():
            if any(slot in moved for slot in slots.tolist()):
                self._slots[key] = np.array([moved.get(slot, slot) for slot in slots.tolist()], np.int64)
        self._view = None
