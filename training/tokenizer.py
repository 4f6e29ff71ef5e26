"""Trains the joint English+German SentencePiece model on the train split (`python -m training.tokenizer`).

sentencepiece only; the special ids must match model_store.codec (pad=0 unk=1 bos=2 eos=3).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import sentencepiece as spm

from training.data.corpus import read_tsv

MODEL_PREFIX = "spm"
# Caps training time (a few minutes at most on 2 cores); a shuffled sample of lines is enough.
MAX_TRAINING_LINES = 400_000
SEED = 1234  # fixes the line sample, so the same train.tsv gives the same model


def train_tokenizer(
    train_tsv: Path, out_dir: Path, vocab_size: int = 8000, model_type: str = "unigram", num_threads: int = 2
) -> Path:
    """Train one SentencePiece model on both sides of `train_tsv`; returns the path of spm.model."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pairs = read_tsv(train_tsv)
    spm.set_random_generator_seed(SEED)
    # A fixed input path inside out_dir: the model file records it, so the bytes stay reproducible.
    text_path = out_dir / "train_text.tmp"
    try:
        with text_path.open("w", encoding="utf-8") as handle:
            for pair in pairs:
                handle.write(pair.english + "\n" + pair.german + "\n")
        spm.SentencePieceTrainer.train(
            input=str(text_path),
            model_prefix=str(out_dir / MODEL_PREFIX),
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=0.9999,
            # The corpus is already normalised (training.data.corpus.normalise_text: NFC, one space);
            # SentencePiece's default nmt_nfkc would rewrite it further, and a model cannot write what
            # its tokenizer rewrote: "…" became "...", which 79 technical references (1,932 German
            # training targets) spell "…" (en-de/3: -0.8 BLEU on technical). Serving normalises the
            # same way before encoding (NFC, control characters, spaces).
            normalization_rule_name="identity",
            input_sentence_size=MAX_TRAINING_LINES,
            shuffle_input_sentence=True,
            seed_sentencepiece_size=200_000,
            pad_id=0,
            unk_id=1,
            bos_id=2,
            eos_id=3,
            pad_piece="<pad>",
            unk_piece="<unk>",
            bos_piece="<s>",
            eos_piece="</s>",
            # Tiny fixture corpora cannot fill a large vocabulary; accept fewer pieces instead of failing.
            hard_vocab_limit=False,
            num_threads=num_threads,
            minloglevel=2,
        )
    finally:
        text_path.unlink(missing_ok=True)
    return out_dir / f"{MODEL_PREFIX}.model"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train", type=Path, default=Path("data/corpus/train.tsv"))
    parser.add_argument("--out", type=Path, default=Path("data/tokenizer"))
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--model-type", choices=("unigram", "bpe"), default="unigram")
    args = parser.parse_args(argv)
    model_path = train_tokenizer(args.train, args.out, args.vocab_size, args.model_type)
    processor = spm.SentencePieceProcessor(model_file=str(model_path))
    print(f"wrote {model_path} ({processor.get_piece_size()} pieces)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
