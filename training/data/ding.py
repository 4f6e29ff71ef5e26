"""Parser for the Ding dictionary (Debian `trans-de-en`, /usr/share/trans/de-en): sentences and phrases.

Stdlib only. Each line is `GERMAN :: ENGLISH`; rules follow /work/shared/DATA.md and training/DATA_CARD.md.

Two rule sets. `RULES_V1` is the extraction the corpus of en-de/1-3 was built with ({..} and [..]
annotations removed, nothing else); it is kept so that the build can reproduce that corpus's split
and keep every source those models were trained on out of the held-out sets (corpus.split_corpus).
`RULES_V2` (the default) also removes `<..>` keywords and `~` cross-references, and gives example
sentences with slash alternatives or parenthesised optional words their first/shortest reading for
training while marking them unfit for the held-out sets.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from training.data.corpus import Pair

DING_PATH = Path("/usr/share/trans/de-en")
RULES_V1, RULES_V2 = 1, 2

SUB_ENTRY_SEPARATOR = " | "
# v1: grammar and usage labels, `{f}`, `{pl}`, `[ugs.]`, `[Br.]`.
ANNOTATION_V1 = re.compile(r"\s*(\{[^}]*\}|\[[^\]]*\])")
# v2 adds Ding's `<..>` search keywords and spelling variants (`Verfilmungsrechte <Romanrechte>`,
# `Worauf wartest du? <warten>`), which can nest (`<name--dropping <namedrop>>`), and the empty `<>` of
# phrasal verbs (`to pay down <> sth.`). A `<` or `>` next to a space inside is a comparison
# (`Dicke: > 0,25 mm`, `< 14 µm`), not a keyword.
ANNOTATION = re.compile(r"\s*(\{[^}]*\}|\[[^\]]*\]|<(?!\s)[^<>]*(?<!\s)>)")
# `~Word` / `~ Word`: a "see also" cross-reference to a related entry (`Morgenmensch {m} ~Frühaufsteher`,
# `anomisch {adj} ~ Anomie`), always one word; it is not part of the translation.
CROSS_REFERENCE = re.compile(r"\s*~\s?[^\s~;|]+")
# Dictionary shorthand for "something/somebody": such entries are templates, not translatable text.
PLACEHOLDER = re.compile(r"(?<![\w'])(etw|jdm|jdn|jds|jd|sth|sb|sb's)(?![\w])|…|\.\.\.| / ", re.IGNORECASE)
# `ich/er/sie stieß`: slash-joined word alternatives are conjugation tables, not phrases.
SLASH_ALTERNATIVES = re.compile(r"\w/\w")
# Dictionary notation in a sentence: a slash next to a letter (`Haus/da`, `the biscuit/ the cake`,
# `km/h`) or parentheses. ` / ` (spaced on both sides) is a placeholder and never gets this far.
ALTERNATIVE_NOTATION = re.compile(r"[^\W\d_]\s?/|/\s?[^\W\d_]|[()]")
# Slash-joined words (letters, inner `'` or `-`) reduced to the first (`Haus/da`, `I/we`, `a/the`);
# not when a later one is a single letter: `km/h`, `n/a` are abbreviations, not alternatives.
_WORD = r"[^\W\d_]+(?:['’-][^\W\d_]+)*"
WORD_ALTERNATIVES = re.compile(rf"(?<![\w/'’-]){_WORD}(?:/{_WORD})+(?![\w/])")
# A slash with a space on one side joins alternatives of several words (`the biscuit/ the cake`,
# `understand /recognise/grasp`), whose extent cannot be told: such sentences are dropped.
SPACED_SLASH = re.compile(r"\S/\s|\s/\S")
# Innermost parentheses: optional words `Das waren (noch) Zeiten!`, word parts `(auf)geklärt`, glosses.
# A part glued to a word (`(auf)geklärt`, `pummel(l)ed`) goes alone, any other with the space before it.
PARENTHESES = re.compile(r"\([^()]*\)(?=\w)|\s*\([^()]*\)(?!\w)")
SENTENCE_END = (".", "?", "!", "…")
MIN_PHRASE_TOKENS, MAX_PHRASE_TOKENS = 2, 12
MIN_SENTENCE_GERMAN_TOKENS = 3


def _remove_repeatedly(pattern: re.Pattern[str], text: str) -> str:
    while True:
        shorter = pattern.sub("", text)
        if shorter == text:
            return text
        text = shorter


def strip_annotations(text: str, rules: int = RULES_V2) -> str:
    """Remove `{n}`, `[ugs.]` (and in v2 `<Keyword>`, `~Crossref`) and collapse the whitespace left."""
    if rules == RULES_V1:
        return " ".join(ANNOTATION_V1.sub("", text).split())
    text = _remove_repeatedly(ANNOTATION, text)
    return " ".join(CROSS_REFERENCE.sub("", text).split())


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


def has_alternatives(text: str) -> bool:
    """Slash-joined alternatives or parentheses: dictionary notation, not running text."""
    return ALTERNATIVE_NOTATION.search(text) is not None


def _first_word(match: re.Match[str]) -> str:
    words = match.group(0).split("/")
    return words[0] if all(len(word) >= 2 for word in words[1:]) else match.group(0)


def simplest_reading(text: str) -> str:
    """A sentence with its parenthesised parts removed and each slash alternative reduced to its first
    word: `Hast du Bier im Haus/da?` -> `Hast du Bier im Haus?`, `Das waren (noch) Zeiten!` -> `Das
    waren Zeiten!`, `(All) hell broke loose.` -> `Hell broke loose.` (the capital restored).
    Right for single-word alternatives; alternatives of several words (`verändern/neu orientieren`)
    come out wrong, which is why such sentences are kept out of the held-out sets."""
    starts_with_parenthesis = text.lstrip().startswith("(")
    text = _remove_repeatedly(PARENTHESES, text)
    text = WORD_ALTERNATIVES.sub(_first_word, text)
    text = " ".join(text.split())
    if starts_with_parenthesis and text:
        text = text[0].upper() + text[1:]
    return text


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


def _entry_pair(german_entry: str, english_entry: str, rules: int) -> Pair | None:
    german = first_alternative(strip_annotations(german_entry, rules))
    english = first_alternative(strip_annotations(english_entry, rules))
    if not german or not english or has_placeholder(german) or has_placeholder(english):
        return None
    if rules != RULES_V1 and (has_alternatives(german) or has_alternatives(english)):
        # A sentence in its simplest reading, for training only; phrases keep their own rules below.
        simple_german, simple_english = simplest_reading(german), simplest_reading(english)
        if is_sentence(simple_german, simple_english):
            if SPACED_SLASH.search(simple_german) or SPACED_SLASH.search(simple_english):
                return None
            return Pair(english=simple_english, german=simple_german, origin="ding_sentence", may_hold_out=False)
        if is_sentence(german, english):
            return None
    elif is_sentence(german, english):
        return Pair(english=english, german=german, origin="ding_sentence")
    if is_phrase(german, english):
        return Pair(english=english, german=german, origin="ding_phrase")
    return None


def parse_line(line: str, rules: int = RULES_V2) -> list[Pair]:
    """All usable pairs of one dictionary line: example sentences and multi-word phrases.

    With RULES_V2 each pair's `split_source` is the English the v1 rules extract from the same
    sub-entry (when the two differ), so the split can be looked up under the source's previous key."""
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
        pair = _entry_pair(german_entry, english_entry, rules)
        if pair is None:
            continue
        if rules != RULES_V1:
            before = first_alternative(strip_annotations(english_entry, RULES_V1))
            if before != pair.english:
                pair = Pair(pair.english, pair.german, pair.origin, may_hold_out=pair.may_hold_out, split_source=before)
        pairs.append(pair)
    return pairs


def parse_lines(lines: Iterable[str], rules: int = RULES_V2) -> Iterator[Pair]:
    for line in lines:
        yield from parse_line(line, rules)


def read_ding(path: Path = DING_PATH, rules: int = RULES_V2) -> Iterator[Pair]:
    with path.open(encoding="utf-8") as handle:
        yield from parse_lines(handle, rules)
