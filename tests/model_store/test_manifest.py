"""The artifact contract: manifest round trip, checksum verification, version resolution."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from model_store import (
    FORMAT_VERSION,
    ArtifactIntegrityError,
    GraphSpec,
    Manifest,
    ManifestError,
    SpecialTokens,
    list_models,
    list_versions,
    read_manifest,
    resolve_artifact,
    verify_artifact,
    write_manifest,
)


def _fake_artifact(directory: Path, version: str = "1") -> Manifest:
    artifact = directory / "en-de" / version
    artifact.mkdir(parents=True)
    (artifact / "encoder.onnx").write_bytes(b"encoder-bytes")
    (artifact / "decoder_step.onnx").write_bytes(b"decoder-bytes")
    (artifact / "tokenizer.model").write_bytes(b"tokenizer-bytes")
    graphs = {"encoder": GraphSpec("encoder.onnx", {"source_ids": ["batch", "src_len"]}, {"memory": ["batch"]}),
              "decoder_step": GraphSpec("decoder_step.onnx", {"previous_tokens": ["batch"]},
                                        {"log_probs": ["batch", "vocab"]})}
    manifest = Manifest(
        name="en-de", version=version, source_language="en", target_language="de", attention="luong_general",
        special_tokens=SpecialTokens(0, 1, 2, 3), tokenizer_file="tokenizer.model", vocab_size=8000,
        max_source_tokens=100, opset=17, variants={"fp32": graphs},
        evaluation={"fp32": {"everyday": {"bleu": 10.5}}},
    )
    return write_manifest(artifact, manifest)


def test_round_trip_and_checksums(tmp_path: Path) -> None:
    written = _fake_artifact(tmp_path)
    assert set(written.files) == {"encoder.onnx", "decoder_step.onnx", "tokenizer.model"}
    read = verify_artifact(tmp_path / "en-de" / "1")
    assert read == written
    assert read.format_version == FORMAT_VERSION
    assert read.variants["fp32"]["encoder"].inputs == {"source_ids": ["batch", "src_len"]}


@pytest.mark.parametrize("damage", ["modify", "truncate", "delete"])
def test_damaged_file_is_refused_naming_it(tmp_path: Path, damage: str) -> None:
    _fake_artifact(tmp_path)
    target = tmp_path / "en-de" / "1" / "decoder_step.onnx"
    if damage == "modify":
        target.write_bytes(b"decoder-bytez")
    elif damage == "truncate":
        target.write_bytes(b"deco")
    else:
        target.unlink()
    with pytest.raises(ArtifactIntegrityError, match=r"decoder_step\.onnx") as caught:
        verify_artifact(tmp_path / "en-de" / "1")
    assert caught.value.path == target


def test_unknown_format_version_and_bad_json_are_refused(tmp_path: Path) -> None:
    _fake_artifact(tmp_path)
    manifest_path = tmp_path / "en-de" / "1" / "manifest.json"
    raw = json.loads(manifest_path.read_text())
    raw["format_version"] = FORMAT_VERSION + 1
    manifest_path.write_text(json.dumps(raw))
    with pytest.raises(ManifestError, match="format_version"):
        read_manifest(manifest_path.parent)
    manifest_path.write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        read_manifest(manifest_path.parent)


def test_manifest_must_reference_existing_files(tmp_path: Path) -> None:
    manifest = _fake_artifact(tmp_path)
    other = tmp_path / "other"
    shutil.copytree(tmp_path / "en-de" / "1", other)
    (other / "tokenizer.model").unlink()
    with pytest.raises(ManifestError, match=r"tokenizer\.model"):
        write_manifest(other, manifest)


def test_versions_sort_numerically_and_newest_is_default(tmp_path: Path) -> None:
    for version in ["2", "10", "9"]:
        _fake_artifact(tmp_path, version)
    assert list_versions(tmp_path, "en-de") == ["2", "9", "10"]
    assert list_models(tmp_path) == ["en-de"]
    assert resolve_artifact(tmp_path, "en-de") == tmp_path / "en-de" / "10"
    assert resolve_artifact(tmp_path, "en-de", "9") == tmp_path / "en-de" / "9"
    with pytest.raises(ManifestError, match="no version '3'"):
        resolve_artifact(tmp_path, "en-de", "3")
    with pytest.raises(ManifestError, match="no model named 'fr-en'"):
        resolve_artifact(tmp_path, "fr-en")
