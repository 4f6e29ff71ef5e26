"""How to split the requests admitted together into encoder calls, so short sources are not padded
to the longest one.

ONNX Runtime's LSTM runs every row of a call to the call's longest source: seven sources of 5-20
tokens and one of 100 cost 36 ms in one fp32 call, 7 + 15 ms in two (int8: 28 vs 5 + 7 ms; en-de/3
on 2 cores). A call costs about longest_source x (TIMESTEP_COST + rows) row-tokens plus CALL_COST:
the recurrence's timesteps are paid once per call, the padded rows once per row. Pure Python; must
not import onnxruntime, fastapi or prometheus_client.
"""

from __future__ import annotations

from collections.abc import Sequence

# In units of one row's work at one source position (measured on en-de/3: a recurrence timestep of
# the whole call ~3 row-positions fp32, ~2 int8; the fixed cost of a call ~8).
TIMESTEP_COST = 3.0
CALL_COST = 8.0


def _call_cost(longest: int, rows: int) -> float:
    return longest * (TIMESTEP_COST + rows) + CALL_COST


def length_groups(lengths: Sequence[int]) -> list[list[int]]:
    """Indices into `lengths`, grouped into the encoder calls of least total cost under the model
    above (each group a run of the indices sorted by length; dynamic programming, O(n^2))."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    count = len(order)
    best = [0.0] + [float("inf")] * count  # best[j]: cost of encoding order[:j]
    start = [0] * (count + 1)  # start[j]: where the last group of best[j] begins
    for end in range(1, count + 1):
        longest = lengths[order[end - 1]]
        for first in range(end):
            cost = best[first] + _call_cost(longest, end - first)
            if cost < best[end]:
                best[end], start[end] = cost, first
    groups: list[list[int]] = []
    end = count
    while end > 0:
        groups.append(order[start[end] : end])
        end = start[end]
    groups.reverse()
    return groups
