"""The corpus rules: text normalisation, filtering, deduplication and the deterministic split.

Stdlib only. A pair's split depends only on its normalised English source (a hash), never on row order,
so the held-out test sets stay stable when the Debian packages change. When the extraction rules change,
`split_corpus(..., previous=...)` keeps every source where the previous corpus had it (a model trained
on that corpus must not meet its training sentences in the new test sets).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

ORIGINS = ("ding_sentence", "libreoffice_help", "ding_phrase", "libreoffice_ui")  # dedup priority order
SPLITS = ("train", "valid", "test_everyday", "test_technical")

MAX_WORDS = 60
# A pair whose longer side has more than LENGTH_RATIO * shorter + LENGTH_SLACK_WORDS words is misaligned.
LENGTH_RATIO, LENGTH_SLACK_WORDS = 3, 2
HASH_BUCKETS = 10_000
# (origin, first bucket, end bucket, split): buckets are fractions of that origin's pairs, in 1/10,000.
SPLIT_RULES = (
    ("ding_sentence", 0, 700, "test_everyday"),
    ("ding_sentence", 700, 1_000, "valid"),
    ("libreoffice_help", 0, 450, "test_technical"),
    ("libreoffice_help", 450, 650, "valid"),
)
MIN_TEST_PAIRS = 1_000

WORD = re.compile(r"\w+")
LETTER = re.compile(r"[^\W\d_]")


@dataclass(frozen=True, order=True)
class Pair:
    english: str
    german: str
    origin: str
    # How the split treats the pair; not part of its identity (equality, order, the TSV files):
    # may_hold_out False: the text was edited by the parser (training only, never a valid/test reference);
    # split_source: the English as an earlier rule set extracted it, when different (its key is looked up
    # in `previous` too).
    may_hold_out: bool = field(default=True, compare=False)
    split_source: str = field(default="", compare=False)


def normalise_text(text: str) -> str:
    """NFC; every kind of space, tab or newline becomes one space; invisible format characters go."""
    characters = []
    for char in unicodedata.normalize("NFC", text):
        category = unicodedata.category(char)
        if char.isspace() or category == "Zs":
            characters.append(" ")
        elif category not in ("Cc", "Cf"):  # controls, zero-width spaces, soft hyphens
            characters.append(char)
    return " ".join("".join(characters).split())


def dedup_key(text: str) -> str:
    """Case- and punctuation-insensitive form: `I'm broke.` and `i'm broke!` are the same source."""
    return " ".join(WORD.findall(text.casefold()))


HELD_OUT_ORIGINS = {split: {origin for origin, _, _, rule in SPLIT_RULES if rule == split}
                    for split in SPLITS if split != "train"}


def split_bucket(english: str) -> int:
    digest = hashlib.sha256(dedup_key(english).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % HASH_BUCKETS


def assign_split(pair: Pair) -> str:
    bucket = split_bucket(pair.english)
    for origin, first, end, split in SPLIT_RULES:
        if pair.origin == origin and first <= bucket < end:
            return split
    return "train"


def keep_pair(pair: Pair) -> bool:
    english_words, german_words = len(pair.english.split()), len(pair.german.split())
    shorter, longer = sorted((english_words, german_words))
    return (
        shorter > 0
        and longer <= MAX_WORDS
        and longer <= LENGTH_RATIO * shorter + LENGTH_SLACK_WORDS
        and LETTER.search(pair.english) is not None
        and LETTER.search(pair.german) is not None
        and dedup_key(pair.english) != dedup_key(pair.german)
    )


def _preference(pair: Pair, rank: dict[str, int]) -> tuple[int, bool, str]:
    """Among pairs with one source: the higher-priority origin, then text as found over text the parser
    edited, then the alphabetically first German text."""
    return rank[pair.origin], not pair.may_hold_out, pair.german


def _clean(pairs: Iterable[Pair]) -> tuple[list[Pair], dict[str, set[str]]]:
    """-> (clean_pairs, {dedup key: the keys of every pair deduplicated into it, split_source included})."""
    best: dict[str, Pair] = {}
    keys: dict[str, set[str]] = {}
    rank = {origin: position for position, origin in enumerate(ORIGINS)}
    for raw in pairs:
        pair = Pair(normalise_text(raw.english), normalise_text(raw.german), raw.origin, raw.may_hold_out,
                    normalise_text(raw.split_source))
        if not keep_pair(pair):
            continue
        key = dedup_key(pair.english)
        keys.setdefault(key, {key}).add(dedup_key(pair.split_source or pair.english))
        current = best.get(key)
        if current is None or _preference(pair, rank) < _preference(current, rank):
            best[key] = pair
    return sorted(best.values(), key=lambda pair: (split_bucket(pair.english), pair)), keys


def clean_pairs(pairs: Iterable[Pair]) -> list[Pair]:
    """Normalised, filtered pairs, one per normalised English source, independent of input order.

    Among duplicates the origin earlier in ORIGINS wins (a sentence beats a phrase), then a pair the
    parser did not edit (may_hold_out), then the alphabetically first German text, so the choice never
    depends on the order rows arrive in.
    """
    return _clean(pairs)[0]


def split_assignments(splits: Mapping[str, Iterable[Pair]]) -> dict[str, str]:
    """{dedup key of the English source: split} of a split corpus, for split_corpus(previous=...)."""
    return {dedup_key(pair.english): split for split, pairs in splits.items() for pair in pairs}


def _assign(pair: Pair, keys: set[str], previous: Mapping[str, str], notes: Counter[str]) -> str | None:
    """The pair's split, or None to leave it out of the corpus; counts every exception to the hash rule."""
    earlier = {previous[key] for key in keys if key in previous}
    hashed = assign_split(pair)
    if len(earlier) > 1:  # e.g. its text was trained on under one key and held out under another
        notes[f"dropped: source keys in {' and '.join(sorted(earlier))} of the previous corpus"] += 1
        return None
    split = next(iter(earlier)) if earlier else hashed
    where = f"{split} of the previous corpus" if earlier else f"{split} bucket"
    if split != "train" and pair.origin not in HELD_OUT_ORIGINS[split]:
        notes[f"dropped: {where}, now {pair.origin}"] += 1
        return None
    if split != "train" and not pair.may_hold_out:
        notes[f"dropped: {where}, text edited by the parser"] += 1
        return None
    if split != hashed:
        notes[f"{split} as in the previous corpus (hash bucket: {hashed})"] += 1
    return split


def split_corpus_with_notes(
    pairs: Iterable[Pair], previous: Mapping[str, str] | None = None
) -> tuple[dict[str, list[Pair]], dict[str, int]]:
    """split_corpus, and how many pairs each exception to the hash rule touched."""
    splits: dict[str, list[Pair]] = {split: [] for split in SPLITS}
    notes: Counter[str] = Counter()
    cleaned, keys = _clean(pairs)
    for pair in cleaned:
        split = _assign(pair, keys[dedup_key(pair.english)], previous or {}, notes)
        if split is not None:
            splits[split].append(pair)
    held_out = {
        dedup_key(pair.german) for split in ("test_everyday", "test_technical") for pair in splits[split]
    }
    splits["valid"] = [pair for pair in splits["valid"] if dedup_key(pair.german) not in held_out]
    held_out |= {dedup_key(pair.german) for pair in splits["valid"]}
    splits["train"] = [pair for pair in splits["train"] if dedup_key(pair.german) not in held_out]
    return splits, dict(sorted(notes.items()))


def split_corpus(pairs: Iterable[Pair], previous: Mapping[str, str] | None = None) -> dict[str, list[Pair]]:
    """Cleaned pairs split by source hash; train/valid lose any pair whose German target is held out.

    Rows keep the order of clean_pairs (by hash), a fixed pseudo-random shuffle. Exceptions to the hash:
    - previous ({dedup key: split}, split_assignments of an earlier corpus): a pair whose key, or the key
      of any pair deduplicated into it (their split_source too), had a split there keeps that split; a
      pair whose keys were in two different splits is left out.
    - A pair that may not be held out (may_hold_out False), or whose origin does not belong in the
      held-out split it falls in, is left out, not trained on: held-out buckets never feed train.
    """
    return split_corpus_with_notes(pairs, previous)[0]


def write_tsv(pairs: Iterable[Pair], path: Path) -> int:
    """`english<TAB>german<TAB>origin` lines, UTF-8, no header; returns the number of rows."""
    count = 0
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        for pair in pairs:
            fields = (pair.english, pair.german, pair.origin)
            if any("\t" in field or "\n" in field or "\r" in field for field in fields):
                raise ValueError(f"tab or newline inside a field: {pair!r}")
            handle.write("\t".join(fields) + "\n")
            count += 1
    return count


def read_tsv(path: Path) -> list[Pair]:
    with path.open(encoding="utf-8") as handle:
        rows = [line.rstrip("\n").split("\t") for line in handle if line.strip()]
    return [Pair(english, german, origin) for english, german, origin in rows]
