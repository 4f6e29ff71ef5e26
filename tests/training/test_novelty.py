"""training.data.novelty: the similarity measure, its candidate search and the novel mask, on small fixtures."""

from __future__ import annotations

import difflib
import random

import pytest

from training.data import novelty
from training.data.corpus import dedup_key

TEMPLATE = "Choose Format - Cells - {}, then click the {} tab and select the {} you want to apply."
TRAIN = [
    TEMPLATE.format("Numbers", "Numbers", "number format"),
    TEMPLATE.format("Borders", "Borders", "border style"),
    "Opens a dialog where you can define the page layout.",
    "I'm broke.",
    "Where is the station?",
]


def brute_force(query: str, train: list[str]) -> float:
    return max(novelty.similarity(query, source) for source in train)


def test_similarity_is_difflibs_ratio_of_the_dedup_keys():
    assert novelty.similarity("I'm broke.", "i'm  BROKE!") == 1.0  # one dedup key
    first, second = TEMPLATE.format("Numbers", "Numbers", "format"), TEMPLATE.format("Fonts", "Font", "font")
    expected = difflib.SequenceMatcher(None, dedup_key(second), dedup_key(first), autojunk=False).ratio()
    assert novelty.similarity(first, second) == pytest.approx(expected)
    assert novelty.similarity("abcd", "abce") == pytest.approx(2 * 3 / 8)
    assert novelty.similarity("Where is the station?", "The weather is nice.") < 0.6


def test_long_keys_are_not_junked():
    """difflib's autojunk would ignore frequent characters of keys of 200+ characters."""
    long_text = " ".join(["the quick brown fox jumps over the lazy dog"] * 6)
    changed = long_text.replace("lazy", "idle", 1)
    assert novelty.similarity(long_text, changed) > 0.98


def test_length_window_bounds_the_ratio():
    assert novelty.length_window(100, 0.9) == (82, 122)
    for length in range(1, 60):
        low, high = novelty.length_window(length, 0.9)
        assert 2 * low / (length + low) >= 0.9 and 2 * length / (length + high) >= 0.9
        assert 2 * (low - 1) / (length + low - 1) < 0.9 and 2 * length / (length + high + 1) < 0.9


def test_nearest_finds_the_templated_paragraph():
    index = novelty.TrainIndex(TRAIN)
    query = TEMPLATE.format("Numbers", "Numbers", "number formats")
    similarity, key = index.nearest(query)
    assert key == dedup_key(TRAIN[0])
    assert similarity == pytest.approx(novelty.similarity(query, TRAIN[0])) and similarity >= 0.9
    assert index.nearest("I'm broke!") == (1.0, "i m broke")
    assert index.nearest("Something entirely different is said here.") == (0.0, None)
    assert index.nearest("...") == (0.0, None)


def test_novel_mask():
    sources = [TEMPLATE.format("Borders", "Borders", "border styles"), "How late is it?", "Where is the station!"]
    assert novelty.novel_mask(sources, TRAIN) == [False, True, False]
    assert novelty.novel_mask(sources, TRAIN, threshold=1.0) == [True, True, False]
    index = novelty.TrainIndex(list(reversed(TRAIN)))  # the order of the train sources does not matter
    assert novelty.novel_mask(sources, index) == [False, True, False]


def test_common_words_alone_still_find_a_near_duplicate():
    """Words in more than MAX_WORD_SHARE of the train keys are skipped, but never a query's rarest ones."""
    train = [f"click the button and then click ok {n}" for n in range(300)] + ["click the button and then click ok"]
    index = novelty.TrainIndex(train)
    assert index.nearest("Click the button, and then click OK.")[0] == 1.0
    assert index.nearest("Click the button and then click OK now")[0] >= 0.9


def test_candidate_search_agrees_with_brute_force():
    rng = random.Random(0)
    vocabulary = [f"w{n}" for n in range(60)] + ["the", "a", "of", "to", "and"]

    def sentence() -> list[str]:
        return [rng.choice(vocabulary) for _ in range(rng.randint(3, 14))]

    train_words = [sentence() for _ in range(400)]
    queries = []
    for _ in range(150):  # edited copies of train sentences, and unrelated ones
        words = list(rng.choice(train_words)) if rng.random() < 0.7 else sentence()
        for _ in range(rng.randint(0, 2)):
            position = rng.randrange(len(words))
            words[position] = rng.choice(vocabulary)
        queries.append(" ".join(words))
    train = [" ".join(words) for words in train_words]
    index = novelty.TrainIndex(train)
    near = 0
    for query in queries:
        expected = brute_force(query, train)
        found, _ = index.nearest(query)
        assert (found >= 0.9) == (expected >= 0.9), query
        if expected >= 0.9:
            near += 1
            assert found == pytest.approx(expected)
    assert 20 < near < 140  # both kinds occur
