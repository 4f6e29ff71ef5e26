"""Typed configuration of the model and of a training run; a checkpoint carries both.

Plain dataclasses, no torch import, so the CLI, tests and export can build them cheaply.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

AttentionKind = Literal["luong_general", "luong_dot", "bahdanau", "none"]
EncoderCell = Literal["lstm", "gru"]


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    embedding_dim: int = 256
    encoder_cell: EncoderCell = "lstm"
    encoder_hidden: int = 256  # per direction; encoder states (memory) are 2 * this wide
    encoder_layers: int = 2
    decoder_hidden: int = 512
    decoder_layers: int = 2
    attention: AttentionKind = "luong_general"
    dropout: float = 0.2
    pad_id: int = 0
    # One embedding matrix for source, target and the output projection (the vocabulary is joint):
    # two vocabulary-sized matrices fewer (about a third of en-de/3's parameters) and a known
    # regulariser for small corpora.
    # The attentional vector is then embedding_dim wide so it can be scored against that matrix.
    tie_embeddings: bool = False

    def __post_init__(self) -> None:
        if self.attention == "luong_dot" and 2 * self.encoder_hidden != self.decoder_hidden:
            raise ValueError("luong_dot attention needs decoder_hidden == 2 * encoder_hidden")
        if self.attention not in ("luong_general", "luong_dot", "bahdanau", "none"):
            raise ValueError(f"unknown attention {self.attention!r}")
        if self.encoder_cell not in ("lstm", "gru"):
            raise ValueError(f"unknown encoder cell {self.encoder_cell!r}")

    @property
    def memory_size(self) -> int:
        return 2 * self.encoder_hidden

    @property
    def attentional_size(self) -> int:
        return self.embedding_dim if self.tie_embeddings else self.decoder_hidden


@dataclass(frozen=True)
class TrainConfig:
    corpus_dir: str = "data/corpus"
    tokenizer_model: str = "data/tokenizer/spm.model"
    out_dir: str = "runs/en-de"
    max_source_tokens: int = 100  # pairs longer than this (in pieces) are left out of training
    max_target_tokens: int = 120
    batch_tokens: int = 6000  # target tokens per batch (batches are bucketed by length)
    epochs: int = 30
    time_budget_minutes: float = 0.0  # 0 = no limit; else stop (and keep the best) when reached
    learning_rate: float = 1e-3
    lr_decay: float = 0.5  # multiply the lr by this when validation loss stops improving
    lr_patience: int = 1
    min_learning_rate: float = 1e-5
    early_stopping_patience: int = 4  # validations without improvement before stopping
    clip_grad_norm: float = 1.0
    label_smoothing: float = 0.1
    weight_decay: float = 0.0
    seed: int = 1234
    device: str = "auto"  # auto -> cuda when available, else cpu
    amp: bool = True  # mixed precision on CUDA only
    threads: int = 0  # torch intra-op threads on CPU; 0 = torch default
    log_every_steps: int = 50
    validate_every_steps: int = 0  # 0 = once per epoch
    max_train_pairs: int = 0  # 0 = all; for quick runs and tests
    oversample: dict[str, int] = field(default_factory=dict)  # corpus origin -> copies per epoch
    extra: dict[str, Any] = field(default_factory=dict)


def config_to_dict(config: ModelConfig | TrainConfig) -> dict[str, Any]:
    return asdict(config)


def model_config_from_dict(raw: dict[str, Any]) -> ModelConfig:
    known = {f.name for f in fields(ModelConfig)}
    return ModelConfig(**{k: v for k, v in raw.items() if k in known})


def train_config_from_dict(raw: dict[str, Any]) -> TrainConfig:
    known = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in raw.items() if k in known})
