"""CLI: build the offline English -> German corpus (`python -m training.data.build --out data/corpus`).

Stdlib + lxml only. Writes train/valid/test_everyday/test_technical TSVs and stats.json; prints counts.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from training.data import corpus, ding, libreoffice

PACKAGES = ("trans-de-en", "libreoffice-help-en-us", "libreoffice-help-de", "libreoffice-l10n-de")


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for package in PACKAGES:
        result = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, check=False
        )
        versions[package] = result.stdout.strip() if result.returncode == 0 and result.stdout else None
    return versions


def mean_words(pairs: list[corpus.Pair], side: str) -> float:
    if not pairs:
        return 0.0
    return round(sum(len(getattr(pair, side).split()) for pair in pairs) / len(pairs), 2)


def build_stats(splits: dict[str, list[corpus.Pair]], exceptions: dict[str, int] | None = None,
                previous_split: str | None = None) -> dict[str, object]:
    return {
        "build_date_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "package_versions": package_versions(),
        "counts": {
            split: dict(sorted(Counter(p.origin for p in pairs).items())) for split, pairs in splits.items()
        },
        "totals": {split: len(pairs) for split, pairs in splits.items()},
        "mean_words": {
            split: {"english": mean_words(pairs, "english"), "german": mean_words(pairs, "german")}
            for split, pairs in splits.items()
        },
        "rules": {
            "max_words": corpus.MAX_WORDS,
            "length_ratio": corpus.LENGTH_RATIO,
            "length_slack_words": corpus.LENGTH_SLACK_WORDS,
            "split_rules": [list(rule) for rule in corpus.SPLIT_RULES],
            "hash_buckets": corpus.HASH_BUCKETS,
            "ding_rules": ding.RULES_V2,
            "previous_split": previous_split,
        },
        "split_exceptions": exceptions or {},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("data/corpus"))
    parser.add_argument(
        "--max-pairs", type=int, default=None, help="cap the train split (tests are kept whole)"
    )
    parser.add_argument("--ding", type=Path, default=ding.DING_PATH)
    parser.add_argument("--help-root", type=Path, default=libreoffice.HELP_ROOT)
    parser.add_argument("--ui-dir", type=Path, default=libreoffice.UI_CATALOG_DIR)
    parser.add_argument("--no-ui", action="store_true", help="leave out the LibreOffice UI strings")
    parser.add_argument("--no-previous-split", action="store_true",
                        help="split by hash alone, not keeping sources where the v1 corpus had them")
    parser.add_argument("--min-test-pairs", type=int, default=corpus.MIN_TEST_PAIRS, help="fail below this")
    args = parser.parse_args(argv)

    with args.ding.open(encoding="utf-8") as handle:
        ding_lines = list(handle)
    other: list[corpus.Pair] = list(libreoffice.read_help(args.help_root / "en-US", args.help_root / "de"))
    if not args.no_ui and args.ui_dir.is_dir():
        other += libreoffice.read_ui(args.ui_dir)
    elif not args.no_ui:
        print(f"note: {args.ui_dir} missing, building without libreoffice_ui", file=sys.stderr)
    raw = [*ding.parse_lines(ding_lines), *other]
    print(f"raw pairs: {dict(sorted(Counter(p.origin for p in raw).items()))}")

    previous, previous_split = None, None
    if not args.no_previous_split:
        # The corpus of en-de/1-3 (Ding rules v1): its sources keep their split, so no sentence those
        # models were trained on lands in the new held-out sets (and no old test sentence in train).
        v1_raw = [*ding.parse_lines(ding_lines, ding.RULES_V1), *other]
        previous = corpus.split_assignments(corpus.split_corpus(v1_raw))
        previous_split = f"sources keep their split in the corpus built with Ding rules v{ding.RULES_V1}"
    splits, exceptions = corpus.split_corpus_with_notes(raw, previous)
    for note, count in exceptions.items():
        print(f"split exception: {note}: {count}")
    if args.max_pairs is not None:
        splits["train"] = splits["train"][: args.max_pairs]
    for split in ("test_everyday", "test_technical"):
        if len(splits[split]) < args.min_test_pairs:
            raise SystemExit(f"{split} has only {len(splits[split])} pairs (< {args.min_test_pairs})")

    args.out.mkdir(parents=True, exist_ok=True)
    for split, pairs in splits.items():
        corpus.write_tsv(pairs, args.out / f"{split}.tsv")
    stats = build_stats(splits, exceptions, previous_split)
    (args.out / "stats.json").write_text(
        json.dumps(stats, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    for split in corpus.SPLITS:
        print(f"{split:15s} {len(splits[split]):7d}  {stats['counts'][split]}")  # type: ignore[index]
    return 0


if __name__ == "__main__":
    sys.exit(main())
