"""A synthetic, exactly checkable translation task (English number words -> German number words)
for fast learning tests; never used for the shipped model. Imports num2words only.
"""

from __future__ import annotations

import random
from pathlib import Path

from num2words import num2words

# num2words is correct for 0..20,999 in both languages (see shared/DATA.md); stay inside that.
MAX_NUMBER = 20_999


def number_pair(number: int) -> tuple[str, str]:
    return num2words(number, lang="en"), num2words(number, lang="de")


def write_number_corpus(out_dir: Path, train_size: int = 4000, valid_size: int = 200, test_size: int = 200,
                        max_number: int = 999, seed: int = 0) -> dict[str, list[tuple[str, str]]]:
    """Disjoint train/valid/test splits of distinct numbers in [0, max_number], as corpus TSVs."""
    if max_number > MAX_NUMBER:
        raise ValueError(f"num2words is only reliable up to {MAX_NUMBER}")
    numbers = list(range(max_number + 1))
    random.Random(seed).shuffle(numbers)
    test, valid = numbers[:test_size], numbers[test_size : test_size + valid_size]
    rest = numbers[test_size + valid_size :]
    train = [rest[i % len(rest)] for i in range(train_size)]  # repeats when the range is small
    splits = {"train": train, "valid": valid, "test": test}
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {}
    for split, chosen in splits.items():
        pairs = [number_pair(n) for n in chosen]
        result[split] = pairs
        lines = [f"{en}\t{de}\tsynthetic_numbers\n" for en, de in pairs]
        (out_dir / f"{split}.tsv").write_text("".join(lines), encoding="utf-8")
    return result
