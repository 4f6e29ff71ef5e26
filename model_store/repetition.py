"""The decoding rule against loops: no group of words may come a third time in a row.

An LSTM translator sometimes falls into a loop and stays there until its length limit ("Drücken Sie
Strg+Umschalt+F5, um neu neu neu neu neu neu neu laden.", "100 Euro EUR EUR EUR EUR EUR"; en-de/3,
greedy: 18 of the 2,546 test sentences). Greedy and beam search, in training's evaluation and in the
service alike, give -inf to a token that would make the last 1 to MAX_PERIOD tokens come a third time
in a row, when that group begins a word with a letter in it (not letters inside a word, "XXXX", nor
digits, "1,000,000,000", nor copied symbols, <unk> three times). Twice is allowed ("die, die").
A loop that varies a word ("durch den Ursprung durch den Vorgang durch den Ursprung") is not
caught; beam search mostly leaves it. Stdlib only.
"""

from __future__ import annotations

from collections.abc import Sequence

MAX_PERIOD = 6  # tokens in the longest group checked ("durch den Ursprung" is 3-5 pieces)
RECENT_TOKENS = 3 * MAX_PERIOD - 1  # all of a row's tokens a check reads: the last ones
STARTS_WORD, HAS_LETTER = 1, 2  # a token's marks (model_store.codec.word_marks)
WORDY = STARTS_WORD | HAS_LETTER


def looping_tokens(tokens: Sequence[int], marks: Sequence[int], max_period: int = MAX_PERIOD) -> list[int]:
    """Tokens that, written next, would end `tokens` with a group of 1..max_period tokens holding a
    word (`marks`: model_store.codec.word_marks) three times in a row. Cheap when there is no loop:
    one comparison per period."""
    banned: list[int] = []
    length = len(tokens)
    for period in range(1, max_period + 1):
        window = 3 * period - 1  # the two copies so far and all but the last token of the third
        if window > length:
            break
        start = length - window
        # the next token would be tokens[-period]; the window must already repeat with this period
        if all(tokens[i] == tokens[i + period] for i in range(start, length - period)):
            candidate = tokens[length - period]
            group = 0
            for token in tokens[length - period:]:
                group |= marks[token]
            if group == WORDY and candidate not in banned:
                banned.append(candidate)
    return banned
