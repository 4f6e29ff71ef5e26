"""Where a text's sentences end: the service translates each sentence of a text as its own decoder row.

A recurrent decoder emits one token per step, so a paragraph of three sentences takes as many steps
as all of them together; decoded side by side as three rows of the batch it takes as many as the
longest. Rule-based, for English and German sources: a sentence ends at . ! ? (and closing quotes or
brackets after them) followed by whitespace and an upper-case letter, digit or opening quote, unless
the word before the full stop is a known abbreviation or a single letter; a line break (any of
LINE_BREAKS) always ends one. Stdlib only; must not import torch, onnxruntime, training or service.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Words that end with a full stop inside a sentence (compared without the stop, case-insensitively).
# Single letters ("J. Smith", German "z. B.") are caught by a rule of their own.
ABBREVIATIONS = frozenset({
    # English
    "mr", "mrs", "ms", "dr", "prof", "st", "vs", "etc", "e.g", "i.e", "cf", "fig", "no", "nos", "vol",
    "approx", "ca", "incl", "excl", "dept", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep",
    "sept", "oct", "nov", "dec", "inc", "ltd", "co", "corp", "jr", "sr", "min", "max", "resp", "u.s",
    "u.k",
    # German
    "z.b", "d.h", "u.a", "usw", "bzw", "nr", "vgl", "ggf", "evtl", "inkl", "zzgl", "bspw", "sog",
    "hr", "fr", "abs", "abb", "tel", "str", "s.o", "s.u", "u.u", "o.ä",
})
# A candidate end: terminal punctuation, optional closing quotes/brackets, then whitespace (the gap).
_CANDIDATE = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019\u00bb)\]]*(\s+)")
# What may begin the next sentence.
_STARTS_SENTENCE = re.compile(r"[\"'\u201c\u201e\u2018\u00ab(\[]*[A-Z\u00c0-\u00de0-9]")
_WORD_BEFORE_STOP = re.compile(r"(\S+)\.$")
# Every character Python's str.splitlines breaks at (a form feed or U+2028 ends a line as \n does).
LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"
LINE_BREAK = re.compile(f"[{LINE_BREAKS}]")
# A line break (with the whitespace around it), or a candidate end.
_BOUNDARY = re.compile(rf"[^\S{LINE_BREAKS}]*[{LINE_BREAKS}]\s*|" + _CANDIDATE.pattern)


@dataclass(frozen=True)
class Sentence:
    """A piece of the text and the whitespace that followed it ("" after the last)."""

    text: str
    gap: str


def _ends_sentence(text: str, stop_end: int) -> bool:
    """Whether the terminal punctuation ending at `stop_end` closes a sentence (not an abbreviation)."""
    head = text[:stop_end].rstrip("\"'\u201d\u2019\u00bb)]")
    if not head.endswith("."):
        return True  # ! ? and the ellipsis character always end one
    match = _WORD_BEFORE_STOP.search(head)
    if match is None:
        return True
    word = match.group(1).lstrip("\"'(\u201c\u201e\u2018\u00ab[").lower()
    if len(word) == 1 and word.isalpha():
        return False  # an initial or a one-letter abbreviation
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
            if not LINE_BREAK.search(match.group(1)) and not (
                    _STARTS_SENTENCE.match(body, gap_end) and _ends_sentence(body, gap_start)):
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
