"""The corpus rules: text normalisation, filtering, deduplication and the deterministic split.

Stdlib only. A pair's split depends only on its normalised English source (a hash), never on row order,
so the held-out test sets stay stable when the Debian packages change.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
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


def clean_pairs(pairs: Iterable[Pair]) -> list[Pair]:
    """Normalised, filtered pairs, one per normalised English source, independent of input order.

    Among duplicates the origin earlier in ORIGINS wins (a sentence beats a phrase), then the
    alphabetically first German text, so the choice never depends on the order rows arrive in.
    """
    best: dict[str, Pair] = {}
    rank = {origin: position for position, origin in enumerate(ORIGINS)}
    for raw in pairs:
        pair = Pair(normalise_text(raw.english), normalise_text(raw.german), raw.origin)
        if not keep_pair(pair):
            continue
        key = dedup_key(pair.english)
        current = best.get(key)
        if current is None or (rank[pair.origin], pair.german) < (rank[current.origin], current.german):
            best[key] = pair
    return sorted(best.values(), key=lambda pair: (split_bucket(pair.english), pair))


def split_corpus(pairs: Iterable[Pair]) -> dict[str, list[Pair]]:
    """Cleaned pairs split by source hash; train/valid lose any pair whose German target is held out.

    Rows keep the order of clean_pairs (by hash), a fixed pseudo-random shuffle.
    """
    splits: dict[str, list[Pair]] = {split: [] for split in SPLITS}
    for pair in clean_pairs(pairs):
        splits[assign_split(pair)].append(pair)
    held_out = {
        dedup_key(pair.german) for split in ("test_everyday", "test_technical") for pair in splits[split]
    }
    splits["valid"] = [pair for pair in splits["valid"] if dedup_key(pair.german) not in held_out]
    held_out |= {dedup_key(pair.german) for pair in splits["valid"]}
    splits["train"] = [pair for pair in splits["train"] if dedup_key(pair.german) not in held_out]
    return splits


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
        return [Pair(*line.rstrip("\n").split("\t")) for line in handle if line.strip()]
