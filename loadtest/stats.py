"""Latency percentiles (from samples or Locust's rounded histograms) and median/min/max over repeats.

Stdlib only.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

PERCENTILES = (50, 95, 99)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); NaN when there are no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def histogram_percentile(counts: Mapping[float, int], q: float) -> float:
    """The smallest value with at least q% of the samples at or below it (Locust's own rule)."""
    total = sum(counts.values())
    if total == 0:
        return math.nan
    wanted = total * q / 100.0
    seen = 0
    for value in sorted(counts):
        seen += counts[value]
        if seen >= wanted:
            return float(value)
    return float(max(counts))


def latency_summary_ms(latencies_s: Sequence[float]) -> dict[str, float]:
    summary = {f"p{q}_ms": 1000.0 * percentile(latencies_s, q) for q in PERCENTILES}
    summary["mean_ms"] = 1000.0 * statistics.fmean(latencies_s) if latencies_s else math.nan
    return summary


def spread(values: Iterable[float]) -> dict[str, Any]:
    """Median with its min-max spread over repeats (NaNs dropped)."""
    kept = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not kept:
        return {"median": math.nan, "min": math.nan, "max": math.nan, "values": []}
    return {"median": statistics.median(kept), "min": min(kept), "max": max(kept), "values": kept}


def spread_of_runs(runs: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    return {key: spread(run[key] for run in runs if key in run) for key in keys}


def format_spread(entry: Mapping[str, Any], digits: int = 1) -> str:
    """'123.4 (120.1-130.2)' or '123.4' for a single repeat; 'n/a' when empty."""
    median = entry.get("median", math.nan)
    if median is None or (isinstance(median, float) and math.isnan(median)):
        return "n/a"
    if len(entry.get("values", [])) <= 1:
        return f"{median:.{digits}f}"
    return f"{median:.{digits}f} ({entry['min']:.{digits}f}-{entry['max']:.{digits}f})"


def json_safe(value: Any) -> Any:
    """NaN/inf -> None (strict JSON has no NaN), recursively; paths and other objects -> str."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


def average_ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks of `values`, ties sharing the mean of their ranks."""
    order = sorted(range(len(values)), key=lambda index: values[index])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            ranks[order[position]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def spearman(first: Sequence[float], second: Sequence[float]) -> float:
    """Spearman's rank correlation (Pearson's of the average ranks); NaN when either is constant."""
    if len(first) != len(second):
        raise ValueError(f"{len(first)} values against {len(second)}")
    a, b = average_ranks(first), average_ranks(second)
    mean_a, mean_b = statistics.fmean(a), statistics.fmean(b)
    covariance = sum((x - mean_a) * (y - mean_b) for x, y in zip(a, b, strict=True))
    scale = math.sqrt(sum((x - mean_a) ** 2 for x in a) * sum((y - mean_b) ** 2 for y in b))
    return covariance / scale if scale else math.nan
