"""The sentences every load test and benchmark sends: the held-out test sets when data/ exists,
else the committed sample loadtest/sentences.txt (drawn from them with the same length distribution).

Stdlib only, so the Locust process and the benchmark client can import it cheaply.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST_SETS = (REPO_ROOT / "data/corpus/test_everyday.tsv", REPO_ROOT / "data/corpus/test_technical.tsv")
SAMPLE_FILE = Path(__file__).resolve().parent / "sentences.txt"
SAMPLE_SIZE = 300
# SentencePiece pieces per German word in the test sets (data/tokenizer/spm.model, measured 1.65).
PIECES_PER_WORD = 1.6
MAX_FORCED_TOKENS = 256
# About ten words, the unloaded-latency request; fixed so every run sends the same text
# (the side-by-side benchmark over HTTP, the engine benchmark for the model alone).
UNLOADED_SENTENCE = "Please save the document before you close the main window."


@dataclass(frozen=True)
class Sentence:
    english: str
    german: str | None  # the reference, when the test sets are there


def forced_length_tokens(sentence: Sentence) -> int:
    """Output tokens to force on an untrained stand-in model so it generates as much as the real one
    would: about the reference's length in pieces (the English length when there is no reference)."""
    words = len((sentence.german or sentence.english).split())
    return max(1, min(MAX_FORCED_TOKENS, math.ceil(PIECES_PER_WORD * words)))


def _read_test_sets(paths: tuple[Path, ...]) -> list[Sentence]:
    sentences: list[Sentence] = []
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            fields = line.split("\t")
            if len(fields) >= 2 and fields[0].strip():
                sentences.append(Sentence(fields[0].strip(), fields[1].strip() or None))
    return sentences


def load_sentences(path: Path | None = None) -> tuple[list[Sentence], str]:
    """-> (sentences, where they came from). `path`: a .tsv (english<TAB>german...) or a .txt
    (one English sentence a line); default: the test sets, else the committed sample."""
    if path is not None:
        if path.suffix == ".tsv":
            return _read_test_sets((path,)), str(path)
        lines = path.read_text(encoding="utf-8").splitlines()
        return [Sentence(line.strip(), None) for line in lines if line.strip()], str(path)
    if all(p.is_file() for p in TEST_SETS):
        return _read_test_sets(TEST_SETS), " + ".join(str(p.relative_to(REPO_ROOT)) for p in TEST_SETS)
    return load_sentences(SAMPLE_FILE)


def length_stratified_sample(sentences: list[Sentence], size: int) -> list[Sentence]:
    """Evenly spaced picks from the sentences sorted by word count: the sample's length quantiles
    match the full set's. The result is in a fixed shuffled order (not sorted by length)."""
    ordered = sorted(sentences, key=lambda s: (len(s.english.split()), s.english))
    if len(ordered) <= size:
        return ordered
    picks = [ordered[(2 * i + 1) * len(ordered) // (2 * size)] for i in range(size)]
    # Interleave short and long (a fixed permutation), so a prefix of the file is still mixed.
    stride = 7 if size % 7 else 11
    return [picks[(i * stride) % size] for i in range(size)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the committed sample of test sentences.")
    parser.add_argument("--size", type=int, default=SAMPLE_SIZE)
    parser.add_argument("--out", type=Path, default=SAMPLE_FILE)
    args = parser.parse_args(argv)
    if not all(p.is_file() for p in TEST_SETS):
        print(f"need {TEST_SETS} (make data)", file=sys.stderr)
        return 1
    sample = length_stratified_sample(_read_test_sets(TEST_SETS), args.size)
    args.out.write_text("".join(s.english.replace("\n", " ") + "\n" for s in sample), encoding="utf-8")
    print(f"wrote {len(sample)} sentences to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
