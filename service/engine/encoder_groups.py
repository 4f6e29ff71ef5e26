"""How to split the requests admitted together into encoder calls, so short sources are not padded
to the longest one, and which decoder lane (range of source lengths) a source belongs to.

ONNX Runtime's LSTM runs every row of a call to the call's longest source: seven sources of 5-20
tokens and one of 100 cost 36 ms in one fp32 call, 7 + 15 ms in two (int8: 28 vs 5 + 7 ms; en-de/3
on 2 cores). A call costs about longest_source x (TIMESTEP_COST + rows) row-tokens plus CALL_COST:
the recurrence's timesteps are paid once per call, the padded rows once per row. Pure Python; must
not import onnxruntime, fastapi or prometheus_client.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

# In units of one row's work at one source position (measured on en-de/3: a recurrence timestep of
# the whole call ~3 row-positions fp32, ~2 int8; the fixed cost of a call ~8).
TIMESTEP_COST = 3.0
CALL_COST = 8.0


def _call_cost(longest: int, rows: int) -> float:
    return longest * (TIMESTEP_COST + rows) + CALL_COST


def lane_of(source_length: int, lane_bounds: Sequence[int]) -> int:
    """The decoder lane of a source: the first whose bound (sorted, in tokens) it does not exceed;
    past every bound, the last lane (len(lane_bounds))."""
    return bisect.bisect_left(lane_bounds, source_length)


def length_groups(lengths: Sequence[int], lane_bounds: Sequence[int] = ()) -> list[list[int]]:
    """Indices into `lengths`, grouped into the encoder calls of least total cost under the model
    above; no group mixes decoder lanes (`lane_bounds` sorted), so each call's output goes to one
    lane. Groups come lane by lane, each a run of the lane's indices sorted by length."""
    lanes: dict[int, list[int]] = {}
    for index, length in enumerate(lengths):
        lanes.setdefault(lane_of(length, lane_bounds), []).append(index)
    return [group for lane in sorted(lanes) for group in _cheapest_split(lengths, lanes[lane])]


def _cheapest_split(lengths: Sequence[int], indices: list[int]) -> list[list[int]]:
    """`indices` sorted by length and cut into the runs of least total cost (dynamic programming).

    A cut between two sources of equal length is never cheaper than the cut after the last of them
    (those moved into the earlier call pay its longest, no more than the later call's), so the
    program runs over the distinct lengths only: O(distinct lengths^2), at most the longest source
    allowed squared, whatever the number of sources (O(n^2) over the sources held the event loop for a
    second when 4,096 were admitted at once)."""
    order = sorted(indices, key=lambda i: lengths[i])
    count = len(order)
    # cuts[k]: the end of the k-th run of equal lengths in `order` (cuts[0] = 0, the start)
    cuts = [0] + [end for end in range(1, count + 1) if end == count or lengths[order[end]] != lengths[order[end - 1]]]
    best = [0.0] + [float("inf")] * (len(cuts) - 1)  # best[k]: cost of encoding order[:cuts[k]]
    start = [0] * len(cuts)  # start[k]: the cut where the last group of best[k] begins
    for k in range(1, len(cuts)):
        end = cuts[k]
        longest = lengths[order[end - 1]]
        for j in range(k):
            cost = best[j] + _call_cost(longest, end - cuts[j])
            if cost < best[k]:
                best[k], start[k] = cost, j
    groups: list[list[int]] = []
    k = len(cuts) - 1
    while k > 0:
        groups.append(order[cuts[start[k]] : cuts[k]])
        k = start[k]
    groups.reverse()
    return groups
