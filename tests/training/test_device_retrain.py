"""training/device_retrain.sh, the one-call GPU retraining, run here on the CPU with the tiny preset so
that it cannot rot between the sessions that are lent a GPU; and the slimmed checkpoints it brings back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from training.checkpoint import load_checkpoint, slim_checkpoint

REPO = Path(__file__).resolve().parents[2]


def test_device_retrain_leaves_both_twins_slimmed_under_out(number_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    env = {**os.environ, "MINUTES": "0.02", "PRESET": "tiny", "CORPUS": str(number_model.corpus_dir),
           "TOKENIZER": str(number_model.tokenizer), "RUNS": str(tmp_path / "runs"), "OUT": str(out),
           "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(REPO / "training" / "device_retrain.sh")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    for label, attention in (("attention", "luong_general"), ("none", "none")):
        assert "time budget reached" in (out / f"train-{label}.log").read_text(encoding="utf-8")
        model, _, info = load_checkpoint(out / f"{label}.pt")
        assert model.config.attention == attention
        assert "optimizer_state" not in torch.load(out / f"{label}.pt", weights_only=True)
        assert info["train_state"]["step"] > 0
        assert (out / f"{label}.pt").stat().st_size < (tmp_path / "runs" / label / "best.pt").stat().st_size


def test_missing_data_is_said_before_any_training(tmp_path: Path) -> None:
    env = {**os.environ, "CORPUS": str(tmp_path / "nothing"), "OUT": str(tmp_path / "out"), "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(REPO / "training" / "device_retrain.sh")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "run make data" in done.stderr


def test_a_slim_checkpoint_holds_the_fp16_rounded_weights(number_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    slim = slim_checkpoint(number_model.checkpoint, tmp_path / "slim.pt")
    full, _, _ = load_checkpoint(number_model.checkpoint)
    rounded, _, info = load_checkpoint(slim)
    assert info["slimmed_from"] == str(number_model.checkpoint)
    for (name, weight), (_, again) in zip(full.state_dict().items(), rounded.state_dict().items(), strict=True):
        assert again.dtype == weight.dtype  # loaded back into the model's fp32 parameters
        assert torch.equal(again, weight.half().to(weight.dtype) if weight.is_floating_point() else weight), name
    assert slim.stat().st_size < 0.6 * number_model.checkpoint.stat().st_size
