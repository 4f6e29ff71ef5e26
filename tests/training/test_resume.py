"""Resuming from last.pt: an interrupted and resumed run trains on exactly the batches (and dropout
masks) of an uninterrupted one and ends with the same weights; the time budget bounds each run."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import torch

import training.train as train_module
from model_store.codec import Codec
from training.config import ModelConfig, TrainConfig
from training.synthetic import write_number_corpus
from training.tokenizer import train_tokenizer
from training.train import CHECKPOINT_LAST, train

BATCH_LOSS = train_module.batch_loss


@dataclass(frozen=True)
class Setup:
    model_config: ModelConfig
    train_config: TrainConfig


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    root = tmp_path_factory.mktemp("resume")
    write_number_corpus(root / "corpus", train_size=240, valid_size=40, test_size=10, max_number=999)
    tokenizer = train_tokenizer(root / "corpus" / "train.tsv", root / "tokenizer", vocab_size=120, num_threads=1)
    model_config = ModelConfig(vocab_size=Codec(tokenizer).vocab_size, embedding_dim=16, encoder_hidden=16,
                               encoder_layers=1, decoder_hidden=32, decoder_layers=1, dropout=0.3)
    # Two epochs of ~10 batches, a checkpoint every 3 steps; patience high so that nothing but the
    # data and the random state could make two runs differ.
    train_config = TrainConfig(
        corpus_dir=str(root / "corpus"), tokenizer_model=str(tokenizer), out_dir="", batch_tokens=300,
        epochs=2, learning_rate=3e-3, label_smoothing=0.0, log_every_steps=0, threads=1,
        validate_every_steps=3, lr_patience=100, early_stopping_patience=100,
    )
    return Setup(model_config, train_config)


class Interrupted(Exception):
    pass


class Recorder:
    """Wraps train.batch_loss: records each training batch (its token ids) and its loss, the loss
    depending on the weights and the dropout masks; raises Interrupted before training batch `crash_at`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, crash_at: int | None = None) -> None:
        self.batches: list[tuple[str, float]] = []
        self.crash_at = crash_at
        original = BATCH_LOSS  # not a Recorder installed before in the same test

        def recording(model, batch, label_smoothing, pad_id):  # type: ignore[no-untyped-def]
            if not model.training:  # validation
                return original(model, batch, label_smoothing, pad_id)
            if self.crash_at is not None and len(self.batches) + 1 == self.crash_at:
                raise Interrupted
            digest = hashlib.sha256(batch["source_ids"].numpy().tobytes()
                                    + batch["target_out"].numpy().tobytes()).hexdigest()[:16]
            loss, tokens = original(model, batch, label_smoothing, pad_id)
            self.batches.append((digest, loss.item()))
            return loss, tokens

        monkeypatch.setattr(train_module, "batch_loss", recording)


def _weights(out_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(out_dir / CHECKPOINT_LAST, map_location="cpu", weights_only=False)["model_state"]


def _train_state(out_dir: Path) -> dict:  # type: ignore[type-arg]
    return torch.load(out_dir / CHECKPOINT_LAST, map_location="cpu", weights_only=False)["train_state"]


def _uninterrupted(setup: Setup, out_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder(monkeypatch)
    train(setup.model_config, replace(setup.train_config, out_dir=str(out_dir)))
    return recorder


@pytest.mark.parametrize("crash_at", [6, 15], ids=["first-epoch", "second-epoch"])
def test_interrupted_and_resumed_run_trains_what_an_uninterrupted_run_trains(
    setup: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash_at: int
) -> None:
    full = _uninterrupted(setup, tmp_path / "full", monkeypatch)
    batches_per_epoch = len(full.batches) // 2
    assert 8 <= batches_per_epoch < 14

    config = replace(setup.train_config, out_dir=str(tmp_path / "resumed"))
    first_run = Recorder(monkeypatch, crash_at=crash_at)
    with pytest.raises(Interrupted):
        train(setup.model_config, config)
    saved = _train_state(tmp_path / "resumed")
    done = saved["step"]  # the last checkpoint's, a few steps before the crash, mid-epoch
    assert done % batches_per_epoch and done < crash_at - 1
    assert (saved["epoch"], saved["batches_done"]) == divmod(done, batches_per_epoch)
    assert first_run.batches == full.batches[: crash_at - 1]

    resumed = Recorder(monkeypatch)
    train(setup.model_config, config)
    # The same batches in the same order, each with the same loss (same weights, same dropout masks).
    assert resumed.batches == full.batches[done:]
    assert _train_state(tmp_path / "resumed")["step"] == len(full.batches)
    full_weights, resumed_weights = _weights(tmp_path / "full"), _weights(tmp_path / "resumed")
    for name, weight in full_weights.items():
        assert torch.equal(weight, resumed_weights[name]), name


def test_a_checkpoint_without_the_epoch_position_restarts_its_epoch_with_a_warning(
    setup: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    full = _uninterrupted(setup, tmp_path / "full", monkeypatch)
    batches_per_epoch = len(full.batches) // 2
    config = replace(setup.train_config, out_dir=str(tmp_path / "old"))
    Recorder(monkeypatch, crash_at=batches_per_epoch + 6)
    with pytest.raises(Interrupted):
        train(setup.model_config, config)
    checkpoint = torch.load(tmp_path / "old" / CHECKPOINT_LAST, weights_only=False)
    assert checkpoint["train_state"]["epoch"] == 1 and checkpoint["train_state"]["step"] > batches_per_epoch
    for key in ("batches_done", "batches_in_epoch", "rng_states"):  # what an older trainer wrote
        checkpoint["train_state"].pop(key, None)
    torch.save(checkpoint, tmp_path / "old" / CHECKPOINT_LAST)
    capsys.readouterr()

    resumed = Recorder(monkeypatch)
    train(setup.model_config, config)
    assert "starts again from its first batch" in capsys.readouterr().err
    # The whole second epoch, from its first batch, in its order.
    assert [digest for digest, _ in resumed.batches] == [digest for digest, _ in full.batches[batches_per_epoch:]]


def test_the_time_budget_bounds_each_run_and_the_total_is_kept(
    setup: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = replace(setup.train_config, out_dir=str(tmp_path / "run"), epochs=1)
    first_run = Recorder(monkeypatch)
    train(setup.model_config, config)
    batches_per_epoch = len(first_run.batches)
    checkpoint = torch.load(tmp_path / "run" / CHECKPOINT_LAST, weights_only=False)
    checkpoint["train_state"]["elapsed_seconds"] = 3600.0  # earlier runs trained for an hour
    torch.save(checkpoint, tmp_path / "run" / CHECKPOINT_LAST)

    # A re-run with a 10-minute budget trains its whole epoch (some seconds), not one step.
    resumed = Recorder(monkeypatch)
    train(setup.model_config, replace(config, epochs=2, time_budget_minutes=10.0))
    assert len(resumed.batches) == batches_per_epoch
    state = _train_state(tmp_path / "run")
    assert state["step"] == 2 * batches_per_epoch
    assert 3600.0 < state["elapsed_seconds"] < 3600.0 + 600.0  # all runs' training time together
    assert state["history"][-1]["elapsed_seconds"] == round(state["elapsed_seconds"], 1)


def test_a_run_that_stopped_early_is_not_trained_further(
    setup: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = replace(setup.train_config, out_dir=str(tmp_path / "run"), epochs=1, early_stopping_patience=3)
    train(setup.model_config, config)
    checkpoint = torch.load(tmp_path / "run" / CHECKPOINT_LAST, weights_only=False)
    checkpoint["train_state"]["validations_without_improvement"] = 3  # as early stopping left it
    torch.save(checkpoint, tmp_path / "run" / CHECKPOINT_LAST)
    resumed = Recorder(monkeypatch)
    assert train(setup.model_config, replace(config, epochs=2)) == tmp_path / "run" / "best.pt"
    assert resumed.batches == []
