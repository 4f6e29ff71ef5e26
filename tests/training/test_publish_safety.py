"""Publishing never harms the store: a version that exists is refused and kept as it was, and an
export that fails (parity, the int8 gate, anything) leaves neither its version nor its staging
directory behind; readers never see a version before it is complete."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import torch

import training.export as export_module
import training.publish as publish_module
from model_store import list_versions, verify_artifact
from tests.conftest import TINY_MODEL_NAME, TINY_MODEL_VERSION
from training.config import model_config_from_dict
from training.export import ParityReport, VersionExistsError, write_artifact
from training.model import Seq2Seq
from training.publish import publish


def _load(number_model) -> Seq2Seq:  # type: ignore[no-untyped-def]
    checkpoint = torch.load(number_model.checkpoint, map_location="cpu", weights_only=False)
    model = Seq2Seq(model_config_from_dict(checkpoint["model_config"]))
    model.load_state_dict(checkpoint["model_state"])
    return model.eval()


def _write(model: Seq2Seq, tokenizer: Path, store: Path, version: str) -> Path:
    artifact_dir, _, _ = write_artifact(
        model, tokenizer, store, TINY_MODEL_NAME, version, source_language="en", target_language="de",
        max_source_tokens=64, training_info={"task": "synthetic numbers (tests only)"},
        data_info={"corpus": "num2words"}, evaluation={"fp32": {"numbers": {"exact_match": -1.0}}},
    )
    return artifact_dir


def _digests(directory: Path) -> dict[str, str]:
    return {p.relative_to(directory).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def _entries(store: Path) -> list[str]:
    """Everything in the model's directory, hidden entries included."""
    model_dir = store / TINY_MODEL_NAME
    return sorted(p.name for p in model_dir.iterdir()) if model_dir.exists() else []


@pytest.fixture
def store(tiny_artifact: Path, tmp_path: Path) -> Path:
    """A copy of the tiny artifact's store: en-de/1 shipped."""
    copy = tmp_path / "store"
    shutil.copytree(tiny_artifact.parent.parent, copy)
    return copy


def _corpus(number_model, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for test_set in ("test_everyday.tsv", "test_technical.tsv"):
        shutil.copyfile(number_model.corpus_dir / "test.tsv", corpus / test_set)
    shutil.copyfile(number_model.corpus_dir / "valid.tsv", corpus / "valid.tsv")
    return corpus


def test_a_fresh_version_is_the_only_thing_added(number_model, tiny_artifact: Path, store: Path) -> None:  # type: ignore[no-untyped-def]
    artifact = _write(_load(number_model), number_model.tokenizer, store, "2")
    assert artifact == store / TINY_MODEL_NAME / "2"
    assert _entries(store) == ["1", "2"]  # no staging directory left
    manifest = verify_artifact(artifact)
    assert manifest.version == "2" and set(manifest.variants) == {"fp32", "int8"}
    # The same model exported again gives the same files as the shipped version (export is deterministic).
    assert _digests(artifact).keys() == _digests(tiny_artifact).keys()
    assert manifest.files == verify_artifact(tiny_artifact).files


def test_publishing_over_an_existing_version_is_refused_and_keeps_it(number_model, store: Path) -> None:  # type: ignore[no-untyped-def]
    shipped = store / TINY_MODEL_NAME / TINY_MODEL_VERSION
    before = _digests(shipped)
    with pytest.raises(VersionExistsError, match=r"en-de/1 exists already.*version 2, the next free one"):
        _write(_load(number_model), number_model.tokenizer, store, TINY_MODEL_VERSION)
    assert _digests(shipped) == before
    verify_artifact(shipped)
    assert _entries(store) == ["1"]


def test_publish_refuses_an_existing_version_before_evaluating(number_model, store: Path, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_run(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("evaluated before refusing the version")

    monkeypatch.setattr(publish_module.evaluate, "main", must_not_run)
    monkeypatch.setattr(publish_module, "_tune_length_penalty", must_not_run)
    before = _digests(store / TINY_MODEL_NAME / TINY_MODEL_VERSION)
    with pytest.raises(VersionExistsError, match="next free one"):
        publish(number_model.checkpoint, None, tmp_path, store, TINY_MODEL_NAME, TINY_MODEL_VERSION)
    assert _digests(store / TINY_MODEL_NAME / TINY_MODEL_VERSION) == before


@pytest.mark.parametrize("existing", [True, False], ids=["store-with-a-version", "empty-store"])
def test_a_parity_failure_leaves_no_version_and_no_staging_directory(  # type: ignore[no-untyped-def]
    number_model, store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, existing: bool
) -> None:
    if not existing:
        store = tmp_path / "empty-store"
    monkeypatch.setattr(export_module, "check_parity", lambda *args, **kwargs: ParityReport(3, 11, 12, 1.0, 1.0, False))
    with pytest.raises(RuntimeError, match="parity failed"):
        _write(_load(number_model), number_model.tokenizer, store, "2")
    assert _entries(store) == (["1"] if existing else [])


def test_a_failing_int8_gate_leaves_nothing_and_nothing_is_visible_meanwhile(  # type: ignore[no-untyped-def]
    number_model, store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, object] = {}
    gate = publish_module._gate_int8

    def failing_gate(artifact_dir: Path, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen["manifest_written"] = (artifact_dir / "manifest.json").is_file()
        seen["version_exists"] = (store / TINY_MODEL_NAME / "2").exists()
        seen["listed"] = list_versions(store, TINY_MODEL_NAME)
        gate(artifact_dir, *args, **kwargs)  # scores and writes the final manifest, in the staging directory
        seen["final_manifest"] = (artifact_dir / "manifest.json").is_file()
        raise OSError("disk full")

    monkeypatch.setattr(publish_module, "_gate_int8", failing_gate)
    with pytest.raises(OSError, match="disk full"):
        publish(number_model.checkpoint, None, _corpus(number_model, tmp_path), store, TINY_MODEL_NAME, "2",
                beam_size=1, limit=20, threads=1, length_penalty_alpha=0.6)
    assert seen == {"manifest_written": True, "version_exists": False, "listed": ["1"], "final_manifest": True}
    assert _entries(store) == ["1"]
    verify_artifact(store / TINY_MODEL_NAME / TINY_MODEL_VERSION)


def test_a_leftover_staging_directory_is_reported_not_overwritten(number_model, store: Path) -> None:  # type: ignore[no-untyped-def]
    leftover = store / TINY_MODEL_NAME / ".2.partial"
    leftover.mkdir()
    with pytest.raises(VersionExistsError, match=r"\.2\.partial exists"):
        _write(_load(number_model), number_model.tokenizer, store, "2")
    assert leftover.is_dir() and _entries(store) == [".2.partial", "1"]


def test_versions_must_be_plain_directory_names(number_model, store: Path) -> None:  # type: ignore[no-untyped-def]
    for bad in ("", ".", "..", ".2", "../2", "2/x"):
        with pytest.raises(ValueError, match="plain directory name"):
            _write(_load(number_model), number_model.tokenizer, store, bad)
    assert _entries(store) == ["1"]


def test_the_cli_says_which_version_is_free(number_model, store: Path) -> None:  # type: ignore[no-untyped-def]
    from training.cli import main

    with pytest.raises(SystemExit, match=r"^export: .*en-de/1 exists already.*version 2, the next free one"):
        main(["export", "--checkpoint", str(number_model.checkpoint), "--store", str(store), "--version", "1"])
    assert _entries(store) == ["1"]
