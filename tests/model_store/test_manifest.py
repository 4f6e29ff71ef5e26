"""The artifact contract: manifest round trip, checksum verification, version resolution."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
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
    sha256_file,
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


# ---- review findings: every referenced file verified, paths confined, malformed manifests, versions ----
Raw = dict


def _artifact(tmp_path: Path) -> Path:
    _fake_artifact(tmp_path)
    return tmp_path / "en-de" / "1"


def _edit(artifact: Path, change: Callable[[Raw], object]) -> None:
    path = artifact / "manifest.json"
    raw = json.loads(path.read_text())
    change(raw)
    path.write_text(json.dumps(raw))


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[0] ^= 1
    path.write_bytes(bytes(data))


def _add_int8_variant(artifact: Path) -> Callable[[Raw], object]:
    (artifact / "encoder.int8.onnx").write_bytes(b"int8 encoder")
    graph = {"file": "encoder.int8.onnx", "inputs": {}, "outputs": {}}
    return lambda raw: raw["variants"].__setitem__("int8", {"encoder": graph})


@pytest.mark.parametrize(("unlisted", "change"), [
    ("encoder.onnx", lambda raw: raw["files"].pop("encoder.onnx")),
    ("decoder_step.onnx", lambda raw: raw["files"].pop("decoder_step.onnx")),
    ("tokenizer.model", lambda raw: raw["files"].pop("tokenizer.model")),
    ("tokenizer.model", lambda raw: raw.__setitem__("files", {})),
    ("tokenizer.model", lambda raw: raw.pop("files")),
], ids=["encoder", "decoder_step", "tokenizer", "files-empty", "files-absent"])
def test_every_referenced_file_must_be_listed_with_a_sha256(
    tmp_path: Path, unlisted: str, change: Callable[[Raw], object]
) -> None:
    artifact = _artifact(tmp_path)
    _edit(artifact, change)
    _flip_a_byte(artifact / unlisted)  # a tampered file that the manifest no longer vouches for
    with pytest.raises(ManifestError, match=rf"'{unlisted}', which is not listed in files"):
        verify_artifact(artifact)
    with pytest.raises(ManifestError, match="not listed in files"):
        read_manifest(artifact)


def test_every_graph_of_every_variant_must_be_listed(tmp_path: Path) -> None:
    artifact = _artifact(tmp_path)
    _edit(artifact, _add_int8_variant(artifact))
    with pytest.raises(ManifestError, match=r"variants\['int8'\]\['encoder'\]\.file names 'encoder\.int8\.onnx'"):
        verify_artifact(artifact)


def _outside(tmp_path: Path) -> tuple[Path, str]:
    """A file outside the artifact (tmp/en-de/1) and its sha256."""
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"secret")
    return outside, sha256_file(outside)


@pytest.mark.parametrize(("field", "change"), [
    ("tokenizer_file", lambda raw, rel, _abs, sha: (raw.__setitem__("tokenizer_file", rel),
                                                    raw["files"].__setitem__(rel, sha))),
    ("tokenizer_file", lambda raw, _rel, abs_, sha: (raw.__setitem__("tokenizer_file", abs_),
                                                     raw["files"].__setitem__(abs_, sha))),
    (r"variants\['fp32'\]\['encoder'\]\.file",
     lambda raw, rel, _abs, sha: (raw["variants"]["fp32"]["encoder"].__setitem__("file", rel),
                                  raw["files"].__setitem__(rel, sha))),
    (r"files\['\.\./\.\./outside\.bin'\]", lambda raw, rel, _abs, sha: raw["files"].__setitem__(rel, sha)),
    (r"files\['/.*outside\.bin'\]", lambda raw, _rel, abs_, sha: raw["files"].__setitem__(abs_, sha)),
    (r"files\['\./encoder\.onnx'\]", lambda raw, _rel, _abs, _sha: raw["files"].__setitem__(
        "./encoder.onnx", raw["files"]["encoder.onnx"])),
], ids=["tokenizer-dotdot", "tokenizer-absolute", "graph-dotdot", "files-dotdot", "files-absolute", "files-dot"])
def test_paths_must_stay_inside_the_artifact(
    tmp_path: Path, field: str, change: Callable[[Raw, str, str, str], object]
) -> None:
    artifact = _artifact(tmp_path)
    outside, sha = _outside(tmp_path)
    _edit(artifact, lambda raw: change(raw, "../../outside.bin", str(outside), sha))
    with pytest.raises(ManifestError, match=rf"manifest\.json: field {field} is '.*': a file of the artifact must be"):
        verify_artifact(artifact)


def test_a_symlink_out_of_the_artifact_is_refused(tmp_path: Path) -> None:
    artifact = _artifact(tmp_path)
    outside = tmp_path / "encoder-copy.onnx"
    shutil.copy(artifact / "encoder.onnx", outside)  # same bytes: the sha256 alone would pass
    (artifact / "encoder.onnx").unlink()
    (artifact / "encoder.onnx").symlink_to(outside)
    with pytest.raises(ManifestError, match=r"files\['encoder\.onnx'\].*outside the artifact directory"):
        verify_artifact(artifact)
    with pytest.raises(ManifestError, match="outside the artifact directory"):
        write_manifest(artifact, read_manifest(artifact))


def test_a_symlink_within_the_artifact_is_fine(tmp_path: Path) -> None:
    artifact = _artifact(tmp_path)
    (artifact / "blobs").mkdir()
    (artifact / "encoder.onnx").rename(artifact / "blobs" / "encoder.onnx")
    (artifact / "encoder.onnx").symlink_to(Path("blobs") / "encoder.onnx")
    verify_artifact(artifact)


def _set(*keys: str, value: object) -> Callable[[Raw], object]:
    def change(raw: Raw) -> None:
        for key in keys[:-1]:
            raw = raw[key]
        raw[keys[-1]] = value
    return change


@pytest.mark.parametrize(("content", "message"), [
    (b"[]", "must hold a JSON object, got a list"),
    (b"null", "must hold a JSON object, got null"),
    (b"\xff{}", "not UTF-8 text"),
    (b"[" * 100_000, "not valid JSON"),
    (None, "is a directory"),
], ids=["list", "null", "not-utf8", "deeply-nested", "directory"])
def test_a_manifest_that_is_no_json_object_is_a_manifest_error(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    artifact = _artifact(tmp_path)
    path = artifact / "manifest.json"
    path.unlink()
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    for read in (read_manifest, verify_artifact):
        with pytest.raises(ManifestError, match=rf"{path}: {message}"):
            read(artifact)


@pytest.mark.parametrize(("change", "message"), [
    (_set("variants", value=[]), "field variants must be an object, got a list"),
    (_set("variants", value=None), "field variants must be an object, got null"),
    (_set("variants", "fp32", value="x"), r"field variants\['fp32'\] must be an object, got a string \('x'\)"),
    (_set("variants", "fp32", "encoder", "inputs", value=[]),
     r"field variants\['fp32'\]\['encoder'\]\.inputs must be an object, got a list"),
    (_set("variants", "fp32", "encoder", "inputs", "source_ids", value=["batch", 3]),
     r"field variants\['fp32'\]\['encoder'\]\.inputs\['source_ids'\]\[1\] must be a string, got an integer"),
    (_set("variants", "fp32", "encoder", "file", value=None),
     r"field variants\['fp32'\]\['encoder'\]\.file must be a string, got null"),
    (_set("files", value=["encoder.onnx"]), "field files must be an object, got a list"),
    (_set("files", value=None), "field files must be an object, got null"),
    (_set("files", value="encoder.onnx"), "field files must be an object, got a string"),
    (_set("files", "encoder.onnx", value=None), r"field files\['encoder\.onnx'\] must be a string, got null"),
    (_set("files", "encoder.onnx", value="0" * 12), r"field files\['encoder\.onnx'\] must be a sha256"),
    (_set("special_tokens", value=[0, 1, 2, 3]), "field special_tokens must be an object, got a list"),
    (_set("special_tokens", "eos_id", value="3"), "field special_tokens.eos_id must be an integer, got a string"),
    (_set("vocab_size", value="8000"), r"field vocab_size must be an integer, got a string \('8000'\)"),
    (_set("vocab_size", value=8000.0), "field vocab_size must be an integer, got a number with a decimal point"),
    (_set("vocab_size", value=True), r"field vocab_size must be an integer, got a boolean \(true\)"),
    (_set("max_source_tokens", value=None), "field max_source_tokens must be an integer, got null"),
    (_set("opset", value="17"), "field opset must be an integer"),
    (_set("format_version", value=True), "field format_version must be an integer, got a boolean"),
    (_set("format_version", value=1.0), "field format_version must be an integer, got a number with a decimal"),
    (_set("name", value=7), "field name must be a string, got an integer"),
    (_set("tokenizer_file", value=None), "field tokenizer_file must be a string, got null"),
    (_set("model_config", value=[]), "field model_config must be an object, got a list"),
    (_set("evaluation", "fp32", "everyday", "bleu", value="10.5"),
     r"field evaluation\['fp32'\]\['everyday'\]\['bleu'\] must be a number, got a string"),
], ids=lambda value: value.split(" must")[0].replace("\\", "") if isinstance(value, str) else "")
def test_a_field_of_the_wrong_type_is_a_manifest_error_naming_it(
    tmp_path: Path, change: Callable[[Raw], object], message: str
) -> None:
    artifact = _artifact(tmp_path)
    _edit(artifact, change)
    for read in (read_manifest, verify_artifact):
        with pytest.raises(ManifestError, match=rf"{artifact / 'manifest.json'}: {message}"):
            read(artifact)


@pytest.mark.parametrize(("change", "message"), [
    (_set("vocab_size", value=0), "field vocab_size is 0: the vocabulary must hold"),
    (_set("vocab_size", value=-5), "field vocab_size is -5"),
    (_set("special_tokens", "eos_id", value=99_999), r"field special_tokens\.eos_id is 99999, outside the vocabulary"),
    (_set("special_tokens", "pad_id", value=-1), r"field special_tokens\.pad_id is -1, outside"),
    (_set("special_tokens", "bos_id", value=3), "field special_tokens gives two tokens one id"),
    (_set("max_source_tokens", value=1), "field max_source_tokens is 1, too small"),
    (_set("opset", value=0), "field opset is 0, too small"),
])
def test_a_value_out_of_range_is_a_manifest_error_naming_it(
    tmp_path: Path, change: Callable[[Raw], object], message: str
) -> None:
    """Well typed but unusable: the engine would index outside the vocabulary or refuse every request."""
    artifact = _artifact(tmp_path)
    _edit(artifact, change)
    with pytest.raises(ManifestError, match=rf"{artifact / 'manifest.json'}: {message}"):
        read_manifest(artifact)


def test_the_writer_refuses_what_the_readers_would_refuse(tmp_path: Path) -> None:
    artifact = _artifact(tmp_path)
    manifest = read_manifest(artifact)
    with pytest.raises(ManifestError, match="field vocab_size must be an integer"):
        write_manifest(artifact, dataclasses.replace(manifest, vocab_size="8000"))  # type: ignore[arg-type]
    assert read_manifest(artifact) == manifest  # nothing written


@pytest.mark.parametrize("odd", ["²", "3-backup", "١٢", "99a", "v100"])
def test_only_numbered_versions_are_releases(tmp_path: Path, odd: str) -> None:
    """A directory not named with ASCII digits alone is never the newest, never crashes the sort
    ('²'.isdigit() is true but int('²') fails), and loads only when named exactly."""
    for version in ["2", "10", odd]:
        _fake_artifact(tmp_path, version)
    assert list_versions(tmp_path, "en-de") == [odd, "2", "10"]
    assert resolve_artifact(tmp_path, "en-de") == tmp_path / "en-de" / "10"
    assert resolve_artifact(tmp_path, "en-de", odd) == tmp_path / "en-de" / odd
    assert list_models(tmp_path) == ["en-de"]


def test_without_a_numbered_version_the_version_must_be_named(tmp_path: Path) -> None:
    _fake_artifact(tmp_path, "3-backup")
    with pytest.raises(ManifestError, match="no numbered version"):
        resolve_artifact(tmp_path, "en-de")
    assert resolve_artifact(tmp_path, "en-de", "3-backup") == tmp_path / "en-de" / "3-backup"


@pytest.mark.parametrize("name", ["..", "../en-de", "en-de/..", ".", ""])
def test_a_model_name_is_one_directory_of_the_store(tmp_path: Path, name: str) -> None:
    _fake_artifact(tmp_path)  # tmp/en-de/1, outside the store
    store = tmp_path / "store"
    _fake_artifact(store)
    with pytest.raises(ManifestError, match="is not the name of a directory"):
        resolve_artifact(store, name)
