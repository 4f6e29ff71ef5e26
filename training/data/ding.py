"""Parser for the Ding dictionary (Debian `trans-de-en`, /usr/share/trans/de-en): sentences and phrases.

Stdlib only. Each line is `GERMAN :: ENGLISH`; rules follow /work/shared/DATA.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from training.data.corpus import Pair

DING_PATH = Path("/usr/share/trans/de-en")

SUB_ENTRY_SEPARATOR = " | "
ANNOTATION = re.compile(r"\s*(\{[^}]*\}|\[[^\]]*\])")
# Dictionary shorthand for "something/somebody": such entries are templates, not translatable text.
PLACEHOLDER = re.compile(r"(?<![\w'])(etw|jdm|jdn|jds|jd|sth|sb|sb's)(?![\w])|…|\.\.\.| / ", re.IGNORECASE)
# `ich/er/sie stieß`: slash-joined word alternatives are conjugation tables, not phrases.
SLASH_ALTERNATIVES = re.compile(r"\w/\w")
SENTENCE_END = (".", "?", "!", "…")
MIN_PHRASE_TOKENS, MAX_PHRASE_TOKENS = 2, 12
MIN_SENTENCE_GERMAN_TOKENS = 3


def strip_annotations(text: str) -> str:
    """Remove `{n}`, `[ugs.]`-style annotations and collapse the whitespace they leave behind."""
    return " ".join(ANNOTATION.sub("", text).split())


def first_alternative(text: str) -> str:
    """The text before the first `;` that is not inside parentheses (alternatives are `; `-separated)."""
    depth = 0
    for position, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(depth - 1, 0)
        elif char == ";" and depth == 0:
            return text[:position].strip()
    return text.strip()


def has_placeholder(text: str) -> bool:
    return PLACEHOLDER.search(text) is not None


def is_sentence(german: str, english: str) -> bool:
    return (
        german.endswith(SENTENCE_END)
        and english.endswith(SENTENCE_END)
        and len(german.split()) >= MIN_SENTENCE_GERMAN_TOKENS
        and german[:1].isupper()
    )


def is_phrase(german: str, english: str) -> bool:
    # Parenthesised notes ("(in order)") are usually untranslated glosses, so they are noise here.
    if "(" in german or "(" in english or ")" in german or ")" in english:
        return False
    if SLASH_ALTERNATIVES.search(german) or SLASH_ALTERNATIVES.search(english):
        return False
    return all(MIN_PHRASE_TOKENS <= len(side.split()) <= MAX_PHRASE_TOKENS for side in (german, english))


def parse_line(line: str) -> list[Pair]:
    """All usable pairs of one dictionary line: example sentences and multi-word phrases."""
    line = line.strip()
    if not line or line.startswith("#"):
        return []
    sides = line.split(" :: ")
    if len(sides) != 2:
        return []
    german_entries = sides[0].split(SUB_ENTRY_SEPARATOR)
    english_entries = sides[1].split(SUB_ENTRY_SEPARATOR)
    if len(german_entries) != len(english_entries):  # sub-entries line up by position only
        return []
    pairs = []
    for german_entry, english_entry in zip(german_entries, english_entries, strict=True):
        german = first_alternative(strip_annotations(german_entry))
        english = first_alternative(strip_annotations(english_entry))
        if not german or not english or has_placeholder(german) or has_placeholder(english):
            continue
        if is_sentence(german, english):
            pairs.append(Pair(english=english, german=german, origin="ding_sentence"))
        elif is_phrase(german, english):
            pairs.append(Pair(english=english, german=german, origin="ding_phrase"))
    return pairs


def parse_lines(lines: Iterable[str]) -> Iterator[Pair]:
    for line in lines:
        yield from parse_line(line)


def read_ding(path: Path = DING_PATH) -> Iterator[Pair]:
    with path.open(encoding="utf-8") as handle:
        yield from parse_lines(handle)
