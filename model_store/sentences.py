"""Where a text's sentences end: the service translates each sentence of a text as its own decoder row.

A recurrent decoder emits one token per step, so a paragraph of three sentences takes as many steps
as all of them together; decoded side by side as three rows of the batch it takes as many as the
longest. Rule-based, for English and German sources: a sentence ends at . ! ? (and closing quotes or
brackets after them) followed by whitespace and an upper-case letter, digit or opening quote, unless
the word before the full stop is a known abbreviation, a single letter, or the number that begins a
numbered item; a line break (any of LINE_BREAKS) always ends one. Linear in the text's length.
Stdlib only; must not import torch, onnxruntime, training or service.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Words that end with a full stop inside a sentence (compared without the stop, case-insensitively).
# Single letters ("J. Smith", German "z. B.") are caught by a rule of their own.
ABBREVIATIONS = frozenset({
    # English
    "mr", "mrs", "ms", "dr", "prof", "st", "mt", "gen", "col", "lt", "sgt", "gov", "rev", "vs", "etc",
    "e.g", "i.e", "cf", "al", "approx", "ca", "incl", "excl", "dept", "sec", "ch", "eq", "jan", "feb",
    "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "inc", "ltd", "co", "corp",
    "jr", "sr", "resp", "u.s", "u.k", "a.m", "p.m",
    # German
    "z.b", "d.h", "u.a", "usw", "bzw", "vgl", "ggf", "evtl", "inkl", "zzgl", "bspw", "sog", "hr", "fr",
    "abb", "tel", "str", "s.o", "s.u", "u.u", "o.ä",
})
# Abbreviations only before a number ("No. 5", "max. 10", "pp. 3-7"): elsewhere the same word ends a
# sentence ("I said no. Then he left.").
NUMBER_ABBREVIATIONS = frozenset({"no", "nos", "nr", "vol", "fig", "min", "max", "pp", "p", "art", "abs"})
_OPENING = "\"'\u201c\u201e\u2018\u201a\u00ab\u00bb\u2039\u203a(["
_CLOSING = "\"'\u201c\u201d\u2018\u2019\u00ab\u00bb\u2039\u203a)]"  # German closes with \u201c and \u00ab
_TERMINAL = ".!?\u2026"
# A candidate end: terminal punctuation (from the start of its run: a match may not begin inside one,
# which kept the search linear in a long run of dots), optional closing quotes/brackets, then
# whitespace (the gap).
_CANDIDATE = re.compile(rf"(?<![{_TERMINAL}])[{_TERMINAL}]+[{re.escape(_CLOSING)}]*(\s+)")
_OPENINGS = re.compile(rf"[{re.escape(_OPENING)}]*")
# Every character Python's str.splitlines breaks at (a form feed or U+2028 ends a line as \n does).
LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"
LINE_BREAK = re.compile(f"[{LINE_BREAKS}]")
# A line break (with the whitespace around it, from the start of a run of spaces), or a candidate end.
_BOUNDARY = re.compile(rf"(?<![^\S{LINE_BREAKS}])[^\S{LINE_BREAKS}]*[{LINE_BREAKS}]\s*|" + _CANDIDATE.pattern)
# Enough of the text before a full stop to hold any abbreviation: the word before it is looked up in
# this much, so the cost per candidate does not grow with the text (a 1,400-letter word took seconds).
_WORD_WINDOW = 32


@dataclass(frozen=True)
class Sentence:
    """A piece of the text and the whitespace that followed it ("" after the last)."""

    text: str
    gap: str


def _starts_sentence(text: str, position: int) -> bool:
    """Whether what begins at `position` may begin a sentence: opening quotes or brackets, then a
    capital letter (any script) or a digit."""
    start = _OPENINGS.match(text, position)
    first = start.end() if start else position
    return first < len(text) and (text[first].isupper() or text[first].isdigit())


def _ends_sentence(text: str, stop_end: int, sentence_start: int, next_start: int) -> bool:
    """Whether the terminal punctuation ending at `stop_end` closes the sentence that began at
    `sentence_start` (not an abbreviation, an initial or a list's number); `next_start`: where the
    next one would begin."""
    window = max(sentence_start, stop_end - _WORD_WINDOW)
    head = text[window:stop_end].rstrip(_CLOSING)
    if not head.endswith("."):
        return True  # ! ? and the ellipsis character always end one
    words = head[:-1].split()
    if not words or head[-2:-1].isspace():
        return True
    word = words[-1].lstrip(_OPENING).lower()
    if len(word) == 1 and word.isalpha():
        return False  # an initial or a one-letter abbreviation
    if word.isdigit() and len(words) == 1 and window == sentence_start:
        return False  # "1. Open the menu.": a numbered item's number, not a sentence of its own
    if next_start < len(text) and text[next_start].isdigit() and word in NUMBER_ABBREVIATIONS:
        return False
    return word not in ABBREVIATIONS and word.rstrip(".") not in ABBREVIATIONS


def split_sentences(text: str, max_sentences: int | None = None) -> list[Sentence]:
    """`text` cut into pieces at sentence ends and line breaks, every sentence a piece of its own
    (`max_sentences` None) or at most `max_sentences` pieces, adjacent sentences grouped into pieces
    of about equal length. Joining each piece's text and gap gives back the text without its leading
    and trailing whitespace."""
    body = text.strip()
    if (max_sentences is not None and max_sentences <= 1) or not body:
        return [Sentence(body, "")]
    cuts: list[tuple[int, int]] = []  # (end of a sentence, start of the next)
    for match in _BOUNDARY.finditer(body):
        gap_start, gap_end = match.start(), match.end()
        if match.group(1) is not None:  # after terminal punctuation: the gap is its whitespace
            gap_start = match.start(1)
            sentence_start = cuts[-1][1] if cuts else 0
            if not LINE_BREAK.search(match.group(1)) and not (
                    _starts_sentence(body, gap_end) and _ends_sentence(body, gap_start, sentence_start, gap_end)):
                continue
        if gap_end < len(body) and gap_start > (cuts[-1][1] if cuts else 0):
            cuts.append((gap_start, gap_end))
    if max_sentences is not None and len(cuts) >= max_sentences:
        cuts = _fewest_cuts(cuts, len(body), max_sentences - 1)
    pieces, start = [], 0
    for end, next_start in cuts:
        pieces.append(Sentence(body[start:end], body[end:next_start]))
        start = next_start
    pieces.append(Sentence(body[start:], ""))
    return pieces


def _fewest_cuts(cuts: list[tuple[int, int]], length: int, keep: int) -> list[tuple[int, int]]:
    """`keep` of `cuts`, each the one nearest an equal share of the text's length, in order."""
    chosen: list[tuple[int, int]] = []
    position = 0
    for share in range(1, keep + 1):
        target = length * share / (keep + 1)
        remaining = cuts[position: len(cuts) - (keep - share)]  # leave enough cuts for the later shares
        best = min(range(len(remaining)), key=lambda i: abs(remaining[i][0] - target))
        chosen.append(remaining[best])
        position += best + 1
    return chosen
