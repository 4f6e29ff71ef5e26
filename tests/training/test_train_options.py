"""Training options that shape the data and the model: oversampling a corpus origin, CLI parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.cli import PRESETS, TRAIN_PRESETS, _origin_counts
from training.config import ModelConfig
from training.train import read_pairs


def test_oversampling_repeats_only_the_named_origin(tmp_path: Path) -> None:
    corpus = tmp_path / "train.tsv"
    corpus.write_text("I am broke.\tIch bin pleite.\tding_sentence\n"
                      "Save the file.\tSpeichern Sie die Datei.\tlibreoffice_help\n"
                      "no origin\tkein Ursprung\n", encoding="utf-8")
    plain = read_pairs(corpus)
    assert len(plain) == 3
    weighted = read_pairs(corpus, {"ding_sentence": 3})
    assert weighted.count(("I am broke.", "Ich bin pleite.")) == 3
    assert weighted.count(("Save the file.", "Speichern Sie die Datei.")) == 1
    assert len(weighted) == 5


def test_oversample_arguments_parse_or_fail_clearly() -> None:
    assert _origin_counts(None) is None
    assert _origin_counts(["ding_sentence=3", "libreoffice_ui=2"]) == {"ding_sentence": 3, "libreoffice_ui": 2}
    for bad in ("ding_sentence", "=3", "ding_sentence=0", "ding_sentence=x"):
        with pytest.raises(SystemExit, match="ORIGIN=COPIES"):
            _origin_counts([bad])


def test_the_shipped_gpu_preset_fits_the_size_budget_by_tying() -> None:
    """The `gpu` preset is the shipped shape: tied embeddings and one decoder layer keep en-de near
    30 MB; its training preset is the recipe that trained it (everyday sentences oversampled)."""
    config = ModelConfig(vocab_size=8000, **PRESETS["gpu"])  # type: ignore[arg-type]
    assert config.tie_embeddings and config.decoder_layers == 1
    assert TRAIN_PRESETS["gpu"]["oversample"] == {"ding_sentence": 3}
