"""How sure the BLEU gap between two models is, per source-length bucket, and whether it grows with length.

A bucket of a few hundred segments moves its BLEU by several points from one sample to the next, so
"the attention model's lead grows with sentence length" is read off bootstrap intervals, not off
point estimates: the test segments are resampled within each bucket (paired: both models' outputs
of the same segments), BLEU is recomputed from sacreBLEU's own n-gram statistics per segment, and
the 2.5th and 97.5th percentiles of the gap over the resamples give its 95% interval (Koehn 2004,
"Statistical significance tests for machine translation evaluation"). Growth is the gap in the
longest well-populated bucket minus the gap in the shortest one, with its interval from the same
resamples. Must not import torch, service or onnxruntime.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sacrebleu.metrics import BLEU

RESAMPLES = 1000
MIN_SENTENCES_FOR_GROWTH = 30  # buckets smaller than this are too noisy to anchor the growth estimate


def _segment_statistics(bleu: BLEU, hypotheses: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """[segments, 10] n-gram statistics (hypothesis and reference length, matches and totals for
    n = 1..4): summed over any set of segments they give that set's corpus BLEU."""
    return np.asarray(bleu._extract_corpus_statistics(list(hypotheses), [list(references)]), dtype=np.int64)


def _bleu(bleu: BLEU, statistics: np.ndarray) -> float:
    return float(bleu._compute_score_from_stats([int(value) for value in statistics]).score)


def gap_by_length(
    buckets: Sequence[str], bucket_order: Sequence[str], references: Sequence[str],
    first: Sequence[str], second: Sequence[str], *, resamples: int = RESAMPLES, seed: int = 0,
) -> dict[str, Any]:
    """BLEU(first) - BLEU(second) per bucket with its 95% bootstrap interval, and the growth of the gap
    from the shortest to the longest bucket with at least MIN_SENTENCES_FOR_GROWTH segments.

    buckets[i]: the length bucket of segment i; first, second: the two models' outputs, in order.
    -> {"buckets": {label: {gap, low, high, sentences} | None}, "growth": {from, to, gap, low, high,
    verdict} | None}; verdict "grows", "shrinks" or "flat within noise" (the interval holds 0)."""
    if not len(buckets) == len(references) == len(first) == len(second):
        raise ValueError("buckets, references and both models' outputs must have one entry per segment")
    bleu = BLEU()
    first_stats = _segment_statistics(bleu, first, references)
    second_stats = _segment_statistics(bleu, second, references)
    rng = np.random.default_rng(seed)
    by_bucket: dict[str, dict[str, float] | None] = {}
    samples: dict[str, np.ndarray] = {}
    for label in bucket_order:
        rows = np.flatnonzero(np.asarray(buckets) == label)
        if rows.size == 0:
            by_bucket[label] = None
            continue
        # How often each segment is drawn in each resample: [resamples, segments] counts, so a
        # resample's statistics are one matrix product rather than a copy of its segments.
        draws = rng.integers(0, rows.size, size=(resamples, rows.size))
        counts = np.zeros((resamples, rows.size), dtype=np.int64)
        np.add.at(counts, (np.arange(resamples)[:, None], draws), 1)
        first_sums, second_sums = counts @ first_stats[rows], counts @ second_stats[rows]
        gaps = np.array([_bleu(bleu, a) - _bleu(bleu, b) for a, b in zip(first_sums, second_sums, strict=True)])
        samples[label] = gaps
        low, high = np.percentile(gaps, [2.5, 97.5])
        by_bucket[label] = {
            "gap": round(_bleu(bleu, first_stats[rows].sum(axis=0)) - _bleu(bleu, second_stats[rows].sum(axis=0)), 2),
            "low": round(float(low), 2), "high": round(float(high), 2), "sentences": int(rows.size),
        }
    anchors = [label for label in bucket_order
               if (entry := by_bucket[label]) is not None and entry["sentences"] >= MIN_SENTENCES_FOR_GROWTH]
    growth = None
    if len(anchors) >= 2:
        shortest, longest = anchors[0], anchors[-1]
        differences = samples[longest] - samples[shortest]  # the buckets were resampled independently
        low, high = np.percentile(differences, [2.5, 97.5])
        gap_short, gap_long = by_bucket[shortest], by_bucket[longest]
        assert gap_short is not None and gap_long is not None
        growth = {
            "from": shortest, "to": longest, "gap": round(gap_long["gap"] - gap_short["gap"], 2),
            "low": round(float(low), 2), "high": round(float(high), 2),
            "verdict": "grows" if low > 0 else "shrinks" if high < 0 else "flat within noise",
        }
    return {"buckets": by_bucket, "growth": growth, "resamples": resamples}
