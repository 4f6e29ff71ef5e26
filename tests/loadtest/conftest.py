"""Fixtures of the load-test tests: the tiny artifact's store and sentences the tiny number model knows."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_store(tiny_artifact: Path) -> Path:
    return tiny_artifact.parent.parent


@pytest.fixture(scope="session")
def number_sentences(number_model) -> Path:  # type: ignore[no-untyped-def]
    """english<TAB>german number words: the held-out test split of the tiny model's corpus."""
    path = Path(number_model.corpus_dir) / "test.tsv"
    assert path.is_file()
    return path
