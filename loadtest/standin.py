"""A stand-in artifact for benchmarking before the real model exists: a randomly initialised
Seq2Seq of the shipped shape, exported through training.export (fp32 + int8) plus its torch checkpoint.

Benchmark tooling only (imports torch and training); a random model emits random tokens, so runs
against it should force output lengths (`bench.py --lengths reference`).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

DEFAULT_TOKENIZER = Path("data/tokenizer/spm.model")
STANDIN_NAME, STANDIN_VERSION = "en-de", "1"
# training/cli.py's preset of the shipped en-de/3: 2 encoder layers, a 512-wide decoder, tied embeddings
# (its manifest's model_config). The `cpu` preset is smaller (one encoder layer, 256-wide decoder) and
# would time a different model.
SHIPPED_PRESET = "gpu"


def write_standin(out_dir: Path, tokenizer: Path, preset: str = SHIPPED_PRESET, seed: int = 0) -> tuple[Path, Path]:
    """-> (artifact dir `<out_dir>/store/en-de/1`, checkpoint `<out_dir>/standin.pt`)."""
    import torch

    from model_store.codec import Codec
    from training.checkpoint import save_checkpoint
    from training.cli import PRESETS
    from training.config import ModelConfig, TrainConfig
    from training.export import write_artifact
    from training.model import Seq2Seq

    torch.manual_seed(seed)
    config = ModelConfig(vocab_size=Codec(tokenizer).vocab_size, **PRESETS[preset])  # type: ignore[arg-type]
    model = Seq2Seq(config).eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = out_dir / "standin.pt"
    save_checkpoint(checkpoint, model, TrainConfig(tokenizer_model=str(tokenizer.resolve())), tokenizer.resolve())
    # A scratch artifact, made again on every run (export refuses to overwrite a published version).
    shutil.rmtree(out_dir / "store" / STANDIN_NAME / STANDIN_VERSION, ignore_errors=True)
    artifact_dir, _, _ = write_artifact(
        model, tokenizer, out_dir / "store", STANDIN_NAME, STANDIN_VERSION,
        source_language="en", target_language="de", max_source_tokens=100,
        training_info={"task": f"STAND-IN: random weights, preset {preset}, seed {seed} (benchmarking only)"},
        data_info={"corpus": "none (untrained)"},
    )
    return artifact_dir, checkpoint


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m loadtest.standin", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("loadtest/results/raw/standin"))
    parser.add_argument("--tokenizer", type=Path, default=DEFAULT_TOKENIZER)
    parser.add_argument("--preset", default=SHIPPED_PRESET,
                        help=f"training/cli.py preset (default {SHIPPED_PRESET}: the shipped model's shape)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    artifact_dir, checkpoint = write_standin(args.out, args.tokenizer, args.preset)
    print(f"artifact   {artifact_dir}\ncheckpoint {checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
