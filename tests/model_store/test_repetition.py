"""The loop rule (model_store.repetition): a group of words may not come a third time in a row."""

from __future__ import annotations

from model_store.codec import word_marks
from model_store.repetition import HAS_LETTER, STARTS_WORD, WORDY, looping_tokens

# ids: 0 "▁neu", 1 "▁durch", 2 "▁den", 3 "▁Ursprung", 4 ",", 5 "X", 6 "000", 7 "▁", 8 "EUR", 9 "▁1"
PIECES = ["\u2581neu", "\u2581durch", "\u2581den", "\u2581Ursprung", ",", "X", "000", "\u2581", "EUR", "\u25811"]
MARKS = word_marks(PIECES)


def test_marks_say_which_pieces_start_a_word_and_hold_a_letter() -> None:
    assert MARKS[0] == WORDY and MARKS[4] == 0 and MARKS[5] == HAS_LETTER
    assert MARKS[7] == STARTS_WORD and MARKS[9] == STARTS_WORD and MARKS[8] == HAS_LETTER


def test_a_word_or_a_group_of_words_may_not_come_a_third_time() -> None:
    assert looping_tokens([0, 0], MARKS) == [0]  # "neu neu" + "neu"
    assert looping_tokens([1, 2, 3, 1, 2, 3, 1, 2], MARKS) == [3]  # "durch den Ursprung" x 3
    assert looping_tokens([0, 4, 0, 4, 0], MARKS) == [4]  # "neu, neu, neu,"
    assert looping_tokens([7, 8, 7, 8, 7], MARKS) == [8]  # a bare word start before "EUR" counts as its start


def test_twice_and_groups_without_a_word_are_allowed() -> None:
    assert looping_tokens([0], MARKS) == []  # "neu neu" is allowed
    assert looping_tokens([1, 2, 3, 1, 2], MARKS) == []  # the second copy is not finished yet
    assert looping_tokens([5, 5, 5, 5], MARKS) == []  # "XXXX": letters inside a word
    assert looping_tokens([9, 6, 6], MARKS) == []  # "1000000000": digits
    assert looping_tokens([4, 4], MARKS) == []  # punctuation
    assert looping_tokens([0, 1, 0, 2], MARKS) == []  # no period fits


def test_copied_addresses_may_follow_each_other() -> None:
    # "▁ <unk> ▁ <unk> ▁ <unk>": three URLs in a row. "<unk>" is spelt with letters, but it is special.
    pieces = [*PIECES, "<unk>"]
    unk = len(PIECES)
    assert looping_tokens([7, unk, 7, unk, 7], word_marks(pieces)) == [unk]  # as any word would be
    assert looping_tokens([7, unk, 7, unk, 7], word_marks(pieces, special_ids={unk})) == []
    assert looping_tokens([7, unk, 4, 7, unk, 4, 7, unk], word_marks(pieces, special_ids={unk})) == []


def test_several_periods_can_ban_several_tokens() -> None:
    # "neu neu durch neu neu durch neu neu": a third "neu" (period 1) and a third "neu neu durch" (period 3)
    assert looping_tokens([0, 0, 1, 0, 0, 1, 0, 0], MARKS) == [0, 1]
    assert looping_tokens([2, 0, 2, 0, 2], MARKS) == [0]  # each banned token once
