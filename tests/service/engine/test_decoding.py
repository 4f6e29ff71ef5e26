"""Search strategies driven directly by scripted log-probs: beam 1 == greedy, beam beats greedy
on a trap, length limits and penalties, forbidden tokens, attention via backpointers."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from service.engine import (
    BeamSearch,
    GreedySearch,
    Hypothesis,
    SpecialIds,
    TranslationRequest,
    length_penalty,
)
from service.engine.decoding import make_search

SPECIAL = SpecialIds(pad_id=0, unk_id=1, bos_id=2, eos_id=3)
SRC_LEN = 5

# (step, previous token per row [rows]) -> log-probs [rows, vocab]
Script = Callable[[int, np.ndarray], np.ndarray]


def drive(search: GreedySearch | BeamSearch, script: Script, max_steps: int = 200) -> Hypothesis:
    """Run a strategy as the scheduler would, with attention peaked on (previous token % SRC_LEN)."""
    previous = np.full(search.rows, SPECIAL.bos_id, dtype=np.int64)
    for step in range(max_steps):
        attention = np.eye(SRC_LEN, dtype=np.float32)[previous % SRC_LEN]
        advance = search.advance(script(step, previous), attention)
        if advance.done:
            return search.best()
        previous = advance.tokens
        assert len(advance.parents) == search.rows == len(previous)
    raise AssertionError("search never finished")


def random_script(seed: int, vocab: int = 30, eos_boost: float = 0.0) -> Script:
    """Log-probs that depend on the step and each row's previous token, like a real decoder."""

    def script(step: int, previous: np.ndarray) -> np.ndarray:
        rows = []
        for token in previous.tolist():
            rng = np.random.default_rng(seed * 1_000_003 + step * 1009 + token)
            logits = rng.normal(size=vocab) * 3
            logits[SPECIAL.eos_id] += eos_boost * step
            rows.append(logits - np.logaddexp.reduce(logits))
        return np.asarray(rows, dtype=np.float32)

    return script


@pytest.mark.parametrize("seed", range(40))
def test_beam_of_one_equals_greedy(seed: int) -> None:
    script = random_script(seed, eos_boost=0.4)
    greedy = drive(GreedySearch(SPECIAL, max_length=25, want_attention=True), script)
    beam = drive(BeamSearch(SPECIAL, 1, max_length=25, alpha=1.0, want_attention=True), script)
    assert beam.target_ids == greedy.target_ids
    assert beam.score == greedy.score
    assert beam.attention is not None and greedy.attention is not None
    np.testing.assert_array_equal(beam.attention, greedy.attention)


def test_beam_finds_the_better_sentence_greedy_misses() -> None:
    a, b = 10, 11

    def script(step: int, previous: np.ndarray) -> np.ndarray:
        rows = np.full((len(previous), 20), np.log(0.01 / 17), dtype=np.float64)
        for row, token in enumerate(previous.tolist()):
            if token == SPECIAL.bos_id:  # first word: a looks best, b is close
                rows[row, a], rows[row, b] = np.log(0.5), np.log(0.49)
            elif token == b:  # after b the sentence ends confidently
                rows[row, SPECIAL.eos_id] = np.log(0.99)
            else:  # after a (and anything else) the model is lost
                rows[row, 4:] = np.log(0.99 / 16)
        return rows.astype(np.float32)

    greedy = drive(GreedySearch(SPECIAL, 6, False), script)
    beam = drive(BeamSearch(SPECIAL, 2, 6, alpha=0.0, want_attention=False), script)
    assert greedy.target_ids[0] == a
    assert beam.target_ids == [b]
    assert beam.score == pytest.approx(np.log(0.49) + np.log(0.99), abs=1e-5)
    assert beam.score > greedy.score


@pytest.mark.parametrize("seed", range(10))
def test_beam_score_is_at_least_greedy_without_penalty_on_peaked_models(seed: int) -> None:
    script = random_script(seed, eos_boost=0.8)
    greedy = drive(GreedySearch(SPECIAL, 30, False), script)
    beam = drive(BeamSearch(SPECIAL, 8, 30, alpha=0.0, want_attention=False), script)
    assert beam.score >= greedy.score - 1e-9


@pytest.mark.parametrize("beam_size", [1, 3, 8])
def test_attention_rows_follow_the_chosen_hypothesis(beam_size: int) -> None:
    search = BeamSearch(SPECIAL, beam_size, 20, alpha=0.6, want_attention=True)
    best = drive(search, random_script(5, eos_boost=0.5))
    assert best.attention is not None
    assert best.attention.shape == (len(best.target_ids) + 1, SRC_LEN)
    previous = [SPECIAL.bos_id, *best.target_ids]
    assert best.attention.argmax(1).tolist() == [token % SRC_LEN for token in previous]


def test_score_is_the_sum_of_the_chosen_tokens_log_probs() -> None:
    script = random_script(2, eos_boost=0.6)
    best = drive(BeamSearch(SPECIAL, 4, 20, alpha=0.0, want_attention=False), script)
    previous, total = SPECIAL.bos_id, 0.0
    for step, token in enumerate([*best.target_ids, SPECIAL.eos_id]):
        total += float(script(step, np.array([previous]))[0, token])
        previous = token
    assert best.score == pytest.approx(total, abs=1e-6)


@pytest.mark.parametrize("seed", range(20))
def test_alternatives_rank_after_the_best_which_they_do_not_change(seed: int) -> None:
    script = random_script(seed, eos_boost=0.3)
    alone = drive(BeamSearch(SPECIAL, 4, 40, alpha=1.0, want_attention=True), script)
    search = BeamSearch(SPECIAL, 4, 40, alpha=1.0, want_attention=True, hypotheses=3)
    best = drive(search, script)
    ranked = search.ranked(3)
    assert (best.target_ids, best.score) == (alone.target_ids, alone.score)  # going on finds nothing better
    assert ranked[0].target_ids == best.target_ids
    assert 1 <= len(ranked) <= 3
    assert len({tuple(h.target_ids) for h in ranked}) == len(ranked)  # different translations
    assert all(len(h.target_ids) < 40 for h in ranked)  # each ended itself, so ranked by its own score:
    normalized = [h.score / length_penalty(h.scored_tokens, 1.0) for h in ranked]
    assert normalized == sorted(normalized, reverse=True)
    for hypothesis in ranked:  # each with its own attention and score, as the best has
        assert hypothesis.attention is not None and hypothesis.attention.shape[0] == len(hypothesis.target_ids) + 1


def test_a_beam_asked_for_alternatives_goes_on_until_it_has_them() -> None:
    a, b = 10, 11

    def script(step: int, previous: np.ndarray) -> np.ndarray:
        # "b" ends at once and well; "a" goes on to "c" and ends a step later, worse
        c = 13
        rows = np.full((len(previous), 20), -30.0, dtype=np.float32)
        for row, token in enumerate(previous.tolist()):
            if token == SPECIAL.bos_id:
                rows[row, b], rows[row, a] = np.log(0.6), np.log(0.4)
            elif token == a:
                rows[row, c], rows[row, 12] = np.log(0.9), np.log(0.1)
            else:
                rows[row, SPECIAL.eos_id], rows[row, 12] = np.log(0.9), np.log(0.1)
        return rows

    best_only = BeamSearch(SPECIAL, 3, 10, alpha=0.0, want_attention=False)
    drive(best_only, script)
    assert [h.target_ids for h in best_only.ranked(2)] == [[b]]  # it stopped: nothing could beat "b"
    with_alternative = BeamSearch(SPECIAL, 3, 10, alpha=0.0, want_attention=False, hypotheses=2)
    drive(with_alternative, script)
    assert [h.target_ids for h in with_alternative.ranked(2)] == [[b], [a, 13]]
    with pytest.raises(ValueError, match="hypotheses"):
        BeamSearch(SPECIAL, 2, 10, alpha=0.0, want_attention=False, hypotheses=3)


@pytest.mark.parametrize("beam_size", [1, 4])
@pytest.mark.parametrize(("seed", "max_length"), [(seed, max_length) for seed in range(6) for max_length in (3, 30)])
def test_scored_tokens_are_those_the_score_sums(beam_size: int, seed: int, max_length: int) -> None:
    # the service's confidence is exp(score / scored_tokens): both must describe the same tokens, the
    # eos included, also one forced at the limit (as the model rates it: a translation cut short is
    # one the model was unsure of, whichever the search; a beam ranks without it)
    script = random_script(seed, eos_boost=0.3)
    search = (BeamSearch(SPECIAL, beam_size, max_length, 1.0, False) if beam_size > 1
              else GreedySearch(SPECIAL, max_length, False))
    best = drive(search, script)
    tokens = [*best.target_ids, SPECIAL.eos_id]
    previous, total = SPECIAL.bos_id, 0.0
    for step, token in enumerate(tokens):
        total += float(script(step, np.array([previous]))[0, token])
        previous = token
    assert best.scored_tokens == len(tokens)
    assert best.score == pytest.approx(total, abs=1e-5)


@pytest.mark.parametrize("beam_size", [1, 4])
def test_max_length_forces_eos(beam_size: int) -> None:
    def never_ends(step: int, previous: np.ndarray) -> np.ndarray:
        rows = np.full((len(previous), 12), -20.0, dtype=np.float32)
        rows[:, 5 + step % 3] = -0.01
        rows[:, 4] = -5.0
        return rows

    search = BeamSearch(SPECIAL, beam_size, 4, 1.0, True) if beam_size > 1 else GreedySearch(SPECIAL, 4, True)
    best = drive(search, never_ends)
    assert len(best.target_ids) == 4
    assert best.attention is not None and best.attention.shape == (5, SRC_LEN)
    assert best.cut_short  # the model wanted to go on


@pytest.mark.parametrize("beam_size", [1, 4])
def test_a_sentence_the_model_ends_exactly_at_max_length_is_not_cut_short(beam_size: int) -> None:
    def ends_after_four(step: int, previous: np.ndarray) -> np.ndarray:
        # every token likelier than eos until step 4, so no hypothesis ends before then
        rows = np.full((len(previous), 12), -1.0, dtype=np.float32)
        rows[:, SPECIAL.eos_id] = -20.0
        rows[:, SPECIAL.eos_id if step >= 4 else 5 + step % 3] = -0.01
        return rows

    for max_length, cut in ((4, False), (3, True), (6, False)):
        search = (BeamSearch(SPECIAL, beam_size, max_length, 1.0, False) if beam_size > 1
                  else GreedySearch(SPECIAL, max_length, False))
        best = drive(search, ends_after_four)
        assert (len(best.target_ids), best.cut_short) == (min(4, max_length), cut), max_length


def test_pad_and_bos_are_never_generated() -> None:
    def loves_pad(step: int, previous: np.ndarray) -> np.ndarray:
        rows = np.full((len(previous), 8), -9.0, dtype=np.float32)
        rows[:, SPECIAL.pad_id] = rows[:, SPECIAL.bos_id] = 0.0
        rows[:, 4 + step % 2] = -1.0
        rows[:, SPECIAL.eos_id] = -0.5 if step == 3 else -30.0
        return rows

    for search in (GreedySearch(SPECIAL, 10, False), BeamSearch(SPECIAL, 3, 10, 1.0, False)):
        best = drive(search, loves_pad)
        assert best.target_ids == [4, 5, 4]


@pytest.mark.parametrize("beam_size", [2, 3])
def test_no_end_before_every_source_unk_is_written(beam_size: int) -> None:
    # The model would end after one token, skipping the source's two <unk> (say a URL and a number);
    # writing them is its second choice after eos, so with the constraint both come before eos.
    def skips_unknowns(step: int, previous: np.ndarray) -> np.ndarray:
        rows = np.full((len(previous), 8), -9.0, dtype=np.float32)
        rows[:, 4 if step == 0 else SPECIAL.eos_id] = -0.1
        rows[:, SPECIAL.unk_id] = -3.0
        return rows

    assert drive(BeamSearch(SPECIAL, beam_size, 10, 1.0, False), skips_unknowns).target_ids == [4]
    constrained = drive(BeamSearch(SPECIAL, beam_size, 10, 1.0, False, min_unknowns=2), skips_unknowns)
    assert constrained.target_ids.count(SPECIAL.unk_id) == 2
    assert constrained.target_ids[0] == 4 and not constrained.cut_short
    # max_length still ends it: eos is forced there whatever is missing
    assert len(drive(BeamSearch(SPECIAL, beam_size, 2, 1.0, False, min_unknowns=3), skips_unknowns).target_ids) == 2


def test_the_constraint_comes_from_the_request_even_for_one_row() -> None:
    def ends_at_once(step: int, previous: np.ndarray) -> np.ndarray:
        rows = np.full((len(previous), 6), -9.0, dtype=np.float32)
        rows[:, SPECIAL.eos_id] = -0.1
        rows[:, SPECIAL.unk_id] = -2.0
        return rows

    for beam_size in (1, 2):
        search = make_search(TranslationRequest([1, 5, 3], beam_size=beam_size, min_unknown_tokens=1), SPECIAL, 10)
        assert isinstance(search, BeamSearch)
        assert drive(search, ends_at_once).target_ids == [SPECIAL.unk_id]


@pytest.mark.parametrize("beam_size", [1, 3])
def test_a_word_never_comes_a_third_time_in_a_row(beam_size: int) -> None:
    # The model loves token 5 (a word) and would write it until the length limit; 6 is its second
    # choice, eos its third after a few steps. Token 7 is a piece inside a word: it may repeat.
    marks = SpecialIds(0, 1, 2, 3, word_marks=(0, 0, 0, 0, 0, 3, 3, 2))

    def loops(step: int, previous: np.ndarray) -> np.ndarray:
        rows = np.full((len(previous), 8), -12.0, dtype=np.float32)
        rows[:, 5], rows[:, 6] = -0.1, -2.0
        rows[:, SPECIAL.eos_id] = -1.0 if step >= 4 else -30.0
        return rows

    def search(special: SpecialIds) -> GreedySearch | BeamSearch:
        return GreedySearch(special, 10, False) if beam_size == 1 else BeamSearch(special, beam_size, 10, 1.0, False)

    assert drive(search(SPECIAL), loops).target_ids[:3] == [5, 5, 5]  # no rule: a loop
    ruled = drive(search(marks), loops).target_ids
    assert ruled[:3] == [5, 5, 6] and all(ruled[i:i + 3] != [ruled[i]] * 3 for i in range(len(ruled) - 2)), ruled

    def inside_a_word(step: int, previous: np.ndarray) -> np.ndarray:
        rows = np.full((len(previous), 8), -12.0, dtype=np.float32)
        rows[:, 7] = -0.1
        rows[:, SPECIAL.eos_id] = -0.01 if step >= 4 else -30.0
        return rows

    assert drive(search(marks), inside_a_word).target_ids == [7, 7, 7, 7]  # "XXXX" is no loop


def test_length_penalty_prefers_longer_hypotheses_as_alpha_grows() -> None:
    assert length_penalty(1, 1.0) == 1.0
    assert length_penalty(7, 1.0) == 2.0
    assert length_penalty(10, 0.0) == 1.0

    def script(step: int, previous: np.ndarray) -> np.ndarray:
        # ending now costs a little; going on costs a little more per token but ends surely later
        # (nothing else can happen: beam search stops once beam_size hypotheses have finished)
        rows = np.full((len(previous), 10), -np.inf, dtype=np.float32)
        if step == 0:
            rows[:, SPECIAL.eos_id], rows[:, 4] = np.log(0.4), np.log(0.6)
        elif step < 4:
            rows[:, 4] = -0.3
        else:
            rows[:, SPECIAL.eos_id] = -0.01
        return rows

    short = drive(BeamSearch(SPECIAL, 4, 10, alpha=0.0, want_attention=False), script)
    long = drive(BeamSearch(SPECIAL, 4, 10, alpha=2.0, want_attention=False), script)
    assert short.target_ids == []
    assert long.target_ids == [4, 4, 4, 4]


def test_make_search_picks_greedy_for_one_beam() -> None:
    assert isinstance(make_search(TranslationRequest([5, 3]), SPECIAL, 10), GreedySearch)
    assert isinstance(make_search(TranslationRequest([5, 3], beam_size=2), SPECIAL, 10), BeamSearch)
