"""<unk> replacement and word alignment from attention matrices."""

from __future__ import annotations

import numpy as np
import pytest

from model_store.codec import word_index_of_pieces
from service.engine import moses_format, unk_replace, word_alignment

UNK = 1


def test_unk_copies_the_most_attended_unknown_source_piece() -> None:
    source_ids = [40, UNK, 41, UNK, 42]  # "Hello" "☃" " 1999" "€" "!"
    surfaces = ["Hello", "\u2603", " 1999", "\u20ac", "!"]
    attention = np.array(
        [
            [0.9, 0.05, 0.03, 0.01, 0.01, 0.0],  # "Hallo"
            [0.05, 0.4, 0.5, 0.04, 0.01, 0.0],  # <unk>: "1999" is attended most, but it is no <unk>
            [0.0, 0.1, 0.05, 0.8, 0.04, 0.01],  # <unk> -> €
            [0.0, 0.0, 0.0, 0.0, 0.0, 1.0],  # eos row
        ]
    )
    assert unk_replace([17, UNK, UNK], attention, source_ids, surfaces, UNK) == [None, "\u2603", "\u20ac"]


def test_unk_without_unknown_source_text_becomes_nothing() -> None:
    assert unk_replace([UNK, 9], np.ones((2, 3)), [40, 41], ["Zol", "tan"], UNK) == ["", None]
    assert unk_replace([UNK], np.ones((2, 1)), [], [], UNK) == [""]


def test_each_source_unk_is_copied_once_strongest_pair_first() -> None:
    # Two URLs: both target <unk> attend most to the first, the second less so to the second.
    # Each takes its own best: the first URL twice, the second lost. Paired: each copied once.
    source_ids = [40, UNK, 41, UNK, 3]
    surfaces = ["See", " https://a.example", " and", " https://b.example"]
    attention = np.array(
        [
            [0.9, 0.05, 0.05, 0.0, 0.0],
            [0.1, 0.7, 0.0, 0.2, 0.0],  # <unk>: the first, surely
            [0.1, 0.5, 0.0, 0.4, 0.0],  # <unk>: the first again, a little more than the second
            [0.1, 0.6, 0.0, 0.3, 0.0],  # a third <unk>: both are copied already -> nothing
            [0.0, 0.0, 0.0, 0.0, 1.0],
        ]
    )
    assert unk_replace([17, UNK, UNK, UNK], attention, source_ids, surfaces, UNK) == [
        None, "https://a.example", "https://b.example", ""]


def test_word_alignment_merges_pieces_into_words() -> None:
    # source words: the(0) house(1: ▁hou se) is(2); target words: das(0) Haus(1: ▁Ha us) ist(2)
    source_words = word_index_of_pieces(["▁the", "▁hou", "se", "▁is"])
    target_words = word_index_of_pieces(["▁das", "▁Ha", "us", "▁ist"])
    attention = np.array(
        [
            [0.7, 0.1, 0.1, 0.05, 0.05],
            [0.3, 0.25, 0.2, 0.2, 0.05],  # piece-wise "the" wins; merged, "house" has 0.45
            [0.1, 0.3, 0.3, 0.25, 0.05],
            [0.05, 0.05, 0.05, 0.8, 0.05],
            [0.0, 0.0, 0.0, 0.0, 1.0],  # eos row, dropped
        ]
    )
    pairs = word_alignment(attention, source_words, target_words)
    assert pairs == [(0, 0), (1, 1), (2, 2)]
    assert moses_format(pairs) == "0-0 1-1 2-2"


def test_word_alignment_handles_reordering_and_empty_input() -> None:
    attention = np.array([[0.1, 0.8, 0.1], [0.9, 0.05, 0.05], [0.0, 0.0, 1.0]])
    assert word_alignment(attention, [0, 1], [0, 1]) == [(1, 0), (0, 1)]
    assert moses_format(word_alignment(attention, [0, 1], [0, 1])) == "1-0 0-1"
    assert word_alignment(attention, [], [0]) == []
    assert moses_format([]) == ""


@pytest.mark.parametrize("seed", range(5))
def test_alignment_covers_every_target_word_once(seed: int) -> None:
    rng = np.random.default_rng(seed)
    source_words = sorted(rng.integers(0, 4, size=7).tolist())
    source_words = [w - source_words[0] for w in source_words]
    target_words = [0, 0, 1, 2, 2, 2, 3]
    attention = rng.dirichlet(np.ones(8), size=8)
    pairs = word_alignment(attention, source_words, target_words)
    assert [t for _, t in pairs] == [0, 1, 2, 3]
    assert all(0 <= s <= max(source_words) for s, _ in pairs)
