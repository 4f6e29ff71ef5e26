"""The training checkpoint file: a torch.save dict carrying its own architecture and tokenizer path.

Keys: "model_config", "model_state", "train_config", "tokenizer_model", plus whatever else the trainer
keeps ("optimizer_state", "train_state", "torch_version"). Imports torch, training and model_store.codec;
must not import service.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from model_store.codec import Codec
from training.config import ModelConfig, TrainConfig, config_to_dict, model_config_from_dict
from training.model import Seq2Seq

REQUIRED_KEYS = ("model_config", "model_state", "train_config", "tokenizer_model")
WEIGHT_KEYS = ("model_state", "optimizer_state")


class CheckpointError(Exception):
    """The checkpoint is missing, lacks a required key or names a tokenizer that cannot be found."""


def save_checkpoint(
    path: Path, model: Seq2Seq, train_config: TrainConfig, tokenizer_model: Path | str, **extra: Any
) -> None:
    """Write the checkpoint dict (atomically, so a crash mid-write never leaves a broken best.pt)."""
    payload = {
        "model_config": config_to_dict(model.config),
        "model_state": model.state_dict(),
        "train_config": config_to_dict(train_config),
        "tokenizer_model": str(tokenizer_model),
        **extra,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(payload, partial)
    partial.replace(path)


def slim_checkpoint(source: Path, target: Path) -> Path:
    """A copy of `source` to evaluate and export from, at under half its size: without the optimizer's
    state (no resuming from it) and with the weights in fp16, the precision the exported graphs store
    their large weights in anyway (`training/export.py`). What a GPU machine brings back within its per-file limit."""
    with torch.serialization.safe_globals([torch.torch_version.TorchVersion]):
        raw = torch.load(source, map_location="cpu", weights_only=True)
    raw.pop("optimizer_state", None)
    raw["model_state"] = {name: tensor.half() if tensor.is_floating_point() else tensor
                          for name, tensor in raw["model_state"].items()}
    raw["slimmed_from"] = str(source)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    torch.save(raw, partial)
    partial.replace(target)
    return target


def resolve_tokenizer(checkpoint_path: Path, tokenizer_model: str) -> Path:
    """The tokenizer as recorded (absolute or relative to the working directory), else the file of that
    name next to the checkpoint, so a run directory that was moved still loads."""
    recorded = Path(tokenizer_model)
    for candidate in (recorded, checkpoint_path.parent / recorded.name):
        if candidate.is_file():
            return candidate
    raise CheckpointError(
        f"{checkpoint_path}: tokenizer {tokenizer_model!r} not found (nor next to the checkpoint)"
    )


def load_checkpoint(
    path: Path | str, device: torch.device | str = "cpu"
) -> tuple[Seq2Seq, Codec, dict[str, Any]]:
    """-> (model in eval mode on `device`, codec, the raw checkpoint dict without the weights)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    # weights_only: the dict holds plain types and tensors only, so no pickle code runs on load.
    # TorchVersion is allow-listed for checkpoints written before torch_version was stored as str.
    with torch.serialization.safe_globals([torch.torch_version.TorchVersion]):
        raw = torch.load(path, map_location=device, weights_only=True)
    missing = [key for key in REQUIRED_KEYS if key not in raw]
    if missing:
        raise CheckpointError(f"{path}: missing keys {missing}")
    config: ModelConfig = model_config_from_dict(raw["model_config"])
    model = Seq2Seq(config)
    model.load_state_dict(raw["model_state"])
    model.to(device).eval()
    codec = Codec(resolve_tokenizer(path, raw["tokenizer_model"]))
    if codec.vocab_size != config.vocab_size:
        raise CheckpointError(
            f"{path}: tokenizer has {codec.vocab_size} pieces but the model was built for {config.vocab_size}"
        )
    # Weights stay out of the returned info: callers want the configs and counters (train_state).
    info = {key: value for key, value in raw.items() if key not in WEIGHT_KEYS}
    return model, codec, info
