"""training.checkpoint: the checkpoint dict round-trips into an identical model and its codec."""

from __future__ import annotations

import shutil

import pytest
import torch

from model_store.codec import Codec
from training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from training.config import ModelConfig, TrainConfig
from training.data.corpus import Pair, write_tsv
from training.model import Seq2Seq


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from training.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("tokenizer")
    pairs = [Pair(f"I have {word} apples today.", f"Ich habe heute {word} Äpfel.", "ding_sentence")
             for word in ("two", "three", "four", "many", "no", "green", "red", "fresh")]
    write_tsv(pairs, root / "train.tsv")
    return train_tokenizer(root / "train.tsv", root / "spm", vocab_size=60, num_threads=1)


def tiny_model(vocab_size: int) -> Seq2Seq:
    torch.manual_seed(0)
    return Seq2Seq(ModelConfig(vocab_size=vocab_size, embedding_dim=8, encoder_hidden=8, encoder_layers=1,
                               decoder_hidden=16, decoder_layers=1, attention="bahdanau"))


def test_round_trip_gives_the_same_model_codec_and_info(tokenizer, tmp_path):
    model = tiny_model(Codec(tokenizer).vocab_size)
    path = tmp_path / "run" / "best.pt"
    save_checkpoint(path, model, TrainConfig(epochs=3), tokenizer, optimizer_state={"lr": 1.0},
                    train_state={"epoch": 2})
    loaded, codec, info = load_checkpoint(path, "cpu")
    assert not loaded.training
    assert loaded.config == model.config
    assert codec.vocab_size == model.config.vocab_size
    assert info["train_config"]["epochs"] == 3 and info["train_state"] == {"epoch": 2}
    assert "model_state" not in info and "optimizer_state" not in info
    source_ids = torch.tensor([codec.source_ids("I have two apples today.")])
    model.eval()
    with torch.inference_mode():
        expected = model.encode(source_ids, torch.tensor([source_ids.shape[1]]))
        actual = loaded.encode(source_ids, torch.tensor([source_ids.shape[1]]))
    for a, b in zip(expected, actual, strict=True):
        torch.testing.assert_close(a, b)
    assert not list(path.parent.glob("*.partial"))


def test_moved_run_finds_the_tokenizer_next_to_the_checkpoint(tokenizer, tmp_path):
    moved_tokenizer = tmp_path / "spm.model"
    shutil.copy(tokenizer, moved_tokenizer)
    save_checkpoint(tmp_path / "best.pt", tiny_model(Codec(tokenizer).vocab_size), TrainConfig(),
                    "gone/elsewhere/spm.model")
    _, codec, _ = load_checkpoint(tmp_path / "best.pt")
    assert codec.encode("apples") == Codec(tokenizer).encode("apples")
    moved_tokenizer.unlink()
    with pytest.raises(CheckpointError, match="tokenizer"):
        load_checkpoint(tmp_path / "best.pt")


def test_broken_checkpoints_are_refused_clearly(tokenizer, tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"model_state": {}}, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="missing keys"):
        load_checkpoint(tmp_path / "partial.pt")
    save_checkpoint(tmp_path / "wrong_vocab.pt", tiny_model(Codec(tokenizer).vocab_size + 5), TrainConfig(),
                    tokenizer)
    with pytest.raises(CheckpointError, match="pieces"):
        load_checkpoint(tmp_path / "wrong_vocab.pt")
