"""Command line for training: `translator-train train|export ...` (see `--help`).

Presets name the model sizes we actually use: `cpu` (what 2 CPU cores can train in about an hour),
`gpu` (the shipped shape: the calibrated prototype's 2-layer bi-LSTM encoder and 512-unit decoder with
tied embeddings and one decoder layer, so the artifact stays near 30 MB), `gpu-large` (two decoder
layers, for comparison), `tiny` (tests). Imports training modules only.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from model_store.codec import Codec
from training.config import ModelConfig, TrainConfig

PRESETS: dict[str, dict[str, object]] = {
    "tiny": dict(embedding_dim=64, encoder_hidden=64, encoder_layers=1, decoder_hidden=128, decoder_layers=1,
                 dropout=0.1),
    "cpu": dict(embedding_dim=256, encoder_hidden=256, encoder_layers=1, decoder_hidden=256, decoder_layers=1,
                dropout=0.1),
    "gpu": dict(embedding_dim=256, encoder_hidden=256, encoder_layers=2, decoder_hidden=512, decoder_layers=1,
                dropout=0.3, tie_embeddings=True),
    "gpu-large": dict(embedding_dim=256, encoder_hidden=256, encoder_layers=2, decoder_hidden=512,
                      decoder_layers=2, dropout=0.3, tie_embeddings=True),
}
TRAIN_PRESETS: dict[str, dict[str, object]] = {
    "tiny": dict(batch_tokens=1500, learning_rate=3e-3, label_smoothing=0.0),
    "cpu": dict(batch_tokens=3000, learning_rate=2e-3, validate_every_steps=300, early_stopping_patience=6),
    # The recipe of the shipped en-de/3 (10 min on an H100): the scarce everyday sentences weigh x3.
    "gpu": dict(batch_tokens=3000, learning_rate=2e-3, epochs=60, early_stopping_patience=5,
                oversample={"ding_sentence": 3}),
    "gpu-large": dict(batch_tokens=3000, learning_rate=2e-3, epochs=60, early_stopping_patience=5,
                      oversample={"ding_sentence": 3}),
}


def _origin_counts(specs: list[str] | None) -> dict[str, int] | None:
    """["ding_sentence=3", ...] -> {"ding_sentence": 3}; None when not given."""
    if not specs:
        return None
    counts = {}
    for spec in specs:
        origin, _, copies = spec.partition("=")
        if not origin or not copies.isdigit() or int(copies) < 1:
            raise SystemExit(f"--oversample wants ORIGIN=COPIES (COPIES >= 1), got {spec!r}")
        counts[origin] = int(copies)
    return counts


def _train(args: argparse.Namespace) -> int:
    from training.train import train

    codec = Codec(Path(args.tokenizer))
    model_config = ModelConfig(vocab_size=codec.vocab_size, attention=args.attention,
                               encoder_cell=args.encoder_cell, **PRESETS[args.preset])  # type: ignore[arg-type]
    train_config = TrainConfig(corpus_dir=args.corpus, tokenizer_model=args.tokenizer, out_dir=args.out,
                               **TRAIN_PRESETS[args.preset])  # type: ignore[arg-type]
    overrides = {k: v for k, v in {"epochs": args.epochs, "time_budget_minutes": args.minutes,
                                   "threads": args.threads, "device": args.device,
                                   "max_train_pairs": args.max_train_pairs,
                                   "amp": False if args.no_amp else None, "batch_tokens": args.batch_tokens,
                                   "learning_rate": args.learning_rate,
                                   "oversample": _origin_counts(args.oversample)}.items() if v is not None}
    train_config = replace(train_config, **overrides)
    best = train(model_config, train_config, resume=not args.restart)
    print(best)
    return 0


def _export(args: argparse.Namespace) -> int:
    from training.export import VersionExistsError
    from training.publish import publish

    try:
        artifact = publish(Path(args.checkpoint), Path(args.none_checkpoint) if args.none_checkpoint else None,
                           Path(args.corpus), Path(args.store), args.name, args.version, beam_size=args.beam,
                           limit=args.limit, threads=args.threads or 0, trained_on=args.trained_on,
                           length_penalty_alpha=args.alpha)
    except VersionExistsError as exc:  # a clear line, not a traceback
        raise SystemExit(f"export: {exc}") from exc
    print(artifact)
    return 0


def _slim(args: argparse.Namespace) -> int:
    from training.checkpoint import slim_checkpoint

    target = slim_checkpoint(Path(args.checkpoint), Path(args.out))
    print(f"{target} ({target.stat().st_size / 2**20:.1f} MiB)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="translator-train", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    train_parser = commands.add_parser("train", help="train (resumes from OUT/last.pt unless --restart)")
    train_parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    train_parser.add_argument("--attention", default="luong_general",
                              choices=["luong_general", "luong_dot", "bahdanau", "none"])
    train_parser.add_argument("--encoder-cell", default="lstm", choices=["lstm", "gru"])
    train_parser.add_argument("--corpus", default="data/corpus")
    train_parser.add_argument("--tokenizer", default="data/tokenizer/spm.model")
    train_parser.add_argument("--out", default="runs/en-de")
    train_parser.add_argument("--epochs", type=int)
    train_parser.add_argument("--minutes", type=float,
                              help="time budget of this run (a resumed run gets its own; last.pt keeps the "
                                   "total training time); the best checkpoint so far is kept")
    train_parser.add_argument("--threads", type=int, help="CPU threads for torch")
    train_parser.add_argument("--device", help="auto (default), cpu or cuda")
    train_parser.add_argument("--max-train-pairs", type=int)
    train_parser.add_argument("--batch-tokens", type=int, help="target tokens per batch (preset's otherwise)")
    train_parser.add_argument("--learning-rate", type=float, help="initial Adam learning rate (preset's otherwise)")
    train_parser.add_argument("--oversample", action="append", metavar="ORIGIN=COPIES",
                              help="repeat the training pairs of a corpus origin (e.g. ding_sentence=3)")
    train_parser.add_argument("--no-amp", action="store_true", help="fp32 on CUDA too (no bf16 autocast)")
    train_parser.add_argument("--restart", action="store_true", help="ignore an existing last.pt")
    train_parser.set_defaults(handler=_train)

    export_parser = commands.add_parser("export", help="evaluate, export to ONNX (+int8 gate), write the artifact")
    export_parser.add_argument("--checkpoint", required=True)
    export_parser.add_argument("--none-checkpoint", help="the attention-free twin, for the comparison")
    export_parser.add_argument("--corpus", default="data/corpus")
    export_parser.add_argument("--store", default="model_store")
    export_parser.add_argument("--name", default="en-de")
    export_parser.add_argument("--version", required=True,
                               help="a new version (a directory name, e.g. 4): an existing one is never replaced")
    export_parser.add_argument("--beam", type=int, default=5)
    export_parser.add_argument("--alpha", type=float,
                               help="GNMT length penalty for the beam scores (default: tuned on the valid split)")
    export_parser.add_argument("--limit", type=int, default=0, help="first N test sentences per set (0 = all)")
    export_parser.add_argument("--threads", type=int)
    export_parser.add_argument("--trained-on", help="where training ran, if not this machine")
    export_parser.set_defaults(handler=_export)

    slim_parser = commands.add_parser("slim", help="fp16 weights, no optimizer state: a checkpoint to export from")
    slim_parser.add_argument("checkpoint")
    slim_parser.add_argument("out")
    slim_parser.set_defaults(handler=_slim)
    args = parser.parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
