"""training.length_gap: the paired bootstrap of the BLEU gap by length bucket and its growth."""

from __future__ import annotations

import random

import pytest
from sacrebleu.metrics import BLEU

from training.length_gap import MIN_SENTENCES_FOR_GROWTH, gap_by_length

ORDER = ("short", "long", "empty")
WORDS = [f"wort{i}" for i in range(200)]


def corpus(short: int, long: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """(bucket per segment, reference per segment): references of 4 and 16 random words."""
    rng = random.Random(seed)
    buckets = ["short"] * short + ["long"] * long
    references = [" ".join(rng.choices(WORDS, k=4 if bucket == "short" else 16)) for bucket in buckets]
    return buckets, references


def garbled(references: list[str], buckets: list[str], which: str, seed: int = 1) -> list[str]:
    """The references, with the words of every segment in bucket `which` shuffled (n-grams lost)."""
    rng = random.Random(seed)
    out = []
    for reference, bucket in zip(references, buckets, strict=True):
        words = reference.split()
        if bucket == which:
            rng.shuffle(words)
            words = words[: len(words) * 3 // 4]
        out.append(" ".join(words))
    return out


def test_a_buckets_gap_is_the_difference_of_sacrebleus_corpus_scores() -> None:
    buckets, references = corpus(40, 40)
    first = garbled(references, buckets, "short", seed=3)
    second = garbled(references, buckets, "long", seed=4)
    result = gap_by_length(buckets, ORDER, references, first, second, resamples=50)
    for label in ("short", "long"):
        rows = [i for i, bucket in enumerate(buckets) if bucket == label]
        expected = (BLEU().corpus_score([first[i] for i in rows], [[references[i] for i in rows]]).score
                    - BLEU().corpus_score([second[i] for i in rows], [[references[i] for i in rows]]).score)
        entry = result["buckets"][label]
        assert entry["gap"] == pytest.approx(expected, abs=0.01)
        assert entry["sentences"] == 40 and entry["low"] <= entry["gap"] <= entry["high"]
    assert result["buckets"]["empty"] is None


def test_growth_is_said_only_when_the_interval_excludes_zero() -> None:
    buckets, references = corpus(60, 60)
    perfect = list(references)
    loses_long = garbled(references, buckets, "long")  # the second model falls behind on long segments
    grows = gap_by_length(buckets, ORDER, references, perfect, loses_long, resamples=200)["growth"]
    assert (grows["from"], grows["to"], grows["verdict"]) == ("short", "long", "grows")
    assert grows["low"] > 0 and grows["gap"] > 50
    loses_short = garbled(references, buckets, "short")
    shrinks = gap_by_length(buckets, ORDER, references, perfect, loses_short, resamples=200)["growth"]
    assert shrinks["verdict"] == "shrinks" and shrinks["high"] < 0
    same = gap_by_length(buckets, ORDER, references, loses_long, loses_long, resamples=200)["growth"]
    assert same["verdict"] == "flat within noise" and same["low"] == same["high"] == same["gap"] == 0


def test_resampling_is_seeded_and_small_buckets_do_not_anchor_growth() -> None:
    buckets, references = corpus(50, MIN_SENTENCES_FOR_GROWTH - 1)
    second = garbled(references, buckets, "long")
    once = gap_by_length(buckets, ORDER, references, references, second, resamples=100, seed=7)
    again = gap_by_length(buckets, ORDER, references, references, second, resamples=100, seed=7)
    assert once == again
    assert once["growth"] is None  # only one bucket has enough segments
    assert once["buckets"]["long"]["sentences"] == MIN_SENTENCES_FOR_GROWTH - 1


def test_every_segment_needs_a_bucket_and_both_outputs() -> None:
    buckets, references = corpus(5, 5)
    with pytest.raises(ValueError, match="one entry per segment"):
        gap_by_length(buckets, ORDER, references, references, references[:-1])
