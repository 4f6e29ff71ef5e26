"""The artifact contract: manifest dataclasses, read/write, sha256 verification, version lookup.

Imported by both `training` (the single writer) and `service` (readers). Stdlib + numpy only;
must not import torch, onnxruntime, training or service.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"

# The two ONNX graphs every artifact has, and their named inputs/outputs. Shapes use symbolic
# names: batch = rows in the batch, src_len = source tokens, layers = decoder layers,
# hidden = decoder hidden size, memory = encoder output size (2 * encoder hidden), vocab = vocabulary.
# A graph may declare a subset of these inputs (the exporter drops inputs a model never reads, e.g.
# the `none` model's memory): runtimes feed the inputs the graph declares, by name.
ENCODER_INPUTS = {
    "source_ids": ["batch", "src_len"],  # int64, padded with pad_id
    "source_lengths": ["batch"],  # int64, number of real tokens per row (>= 1)
}
ENCODER_OUTPUTS = {
    "memory": ["batch", "src_len", "memory"],  # float32 encoder states (attention values)
    "memory_keys": ["batch", "src_len", "hidden"],  # float32 precomputed attention keys
    "hidden": ["layers", "batch", "hidden"],  # float32 initial decoder hidden state
    "cell": ["layers", "batch", "hidden"],  # float32 initial decoder cell state
}
DECODER_STEP_INPUTS = {
    "previous_tokens": ["batch"],  # int64, bos_id on the first step
    "hidden": ["layers", "batch", "hidden"],
    "cell": ["layers", "batch", "hidden"],
    "memory": ["batch", "src_len", "memory"],
    "memory_keys": ["batch", "src_len", "hidden"],
    "source_mask": ["batch", "src_len"],  # bool, True where a real source token is
}
DECODER_STEP_OUTPUTS = {
    "log_probs": ["batch", "vocab"],  # float32 log-softmax over the vocabulary
    "next_hidden": ["layers", "batch", "hidden"],
    "next_cell": ["layers", "batch", "hidden"],
    "attention": ["batch", "src_len"],  # float32, rows sum to 1 over real tokens, 0 on padding
}


class ManifestError(Exception):
    """The artifact is missing, malformed, of an unknown format or fails its checksums."""


class ArtifactIntegrityError(ManifestError):
    """A file of the artifact is missing or its sha256 differs from the manifest's."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path


@dataclass(frozen=True)
class GraphSpec:
    """One ONNX graph: its file and named inputs/outputs with symbolic shapes."""

    file: str
    inputs: dict[str, list[str]]
    outputs: dict[str, list[str]]


@dataclass(frozen=True)
class SpecialTokens:
    pad_id: int
    unk_id: int
    bos_id: int
    eos_id: int


@dataclass(frozen=True)
class Manifest:
    """Everything serving needs to know about a model version, and how it was made."""

    name: str  # e.g. "en-de"
    version: str  # e.g. "1"; versions sort numerically when they are integers
    source_language: str  # ISO 639-1
    target_language: str
    attention: str  # "luong_general" | "luong_dot" | "bahdanau" | "none"
    special_tokens: SpecialTokens
    tokenizer_file: str  # SentencePiece model, shared by source and target
    vocab_size: int
    max_source_tokens: int  # longest source (in tokens, incl. eos) the model was trained on
    opset: int
    # variant name ("fp32", "int8") -> graph role ("encoder", "decoder_step") -> spec
    variants: dict[str, dict[str, GraphSpec]]
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256 hex
    model_config: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)  # how/where/how long it was trained
    data: dict[str, Any] = field(default_factory=dict)  # data card summary
    # variant -> test set ("everyday", "technical") -> metric ("bleu", "chrf", ...) -> value
    evaluation: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Manifest:
        if raw.get("format_version") != FORMAT_VERSION:
            raise ManifestError(
                f"manifest format_version {raw.get('format_version')!r} is not supported "
                f"(this code reads {FORMAT_VERSION})"
            )
        try:
            variants = {
                variant: {role: GraphSpec(**spec) for role, spec in graphs.items()}
                for variant, graphs in raw["variants"].items()
            }
            fields = dict(raw)
            fields["variants"] = variants
            fields["special_tokens"] = SpecialTokens(**raw["special_tokens"])
            return cls(**fields)
        except (KeyError, TypeError) as exc:
            raise ManifestError(f"malformed manifest: {exc}") from exc


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(artifact_dir: Path, manifest: Manifest) -> Manifest:
    """Checksum every file in `artifact_dir` (except the manifest) and write manifest.json.

    Returns the manifest with `files` filled in. The single writer is training's export.
    """
    artifact_dir = Path(artifact_dir)
    files = {
        str(path.relative_to(artifact_dir)): sha256_file(path)
        for path in sorted(artifact_dir.rglob("*"))
        if path.is_file() and path.name != MANIFEST_FILE
    }
    referenced = {manifest.tokenizer_file} | {
        spec.file for graphs in manifest.variants.values() for spec in graphs.values()
    }
    missing = sorted(referenced - files.keys())
    if missing:
        raise ManifestError(f"manifest references files not in {artifact_dir}: {missing}")
    complete = Manifest(**{**manifest.__dict__, "files": files})
    tmp = artifact_dir / (MANIFEST_FILE + ".tmp")
    tmp.write_text(complete.to_json(), encoding="utf-8")
    os.replace(tmp, artifact_dir / MANIFEST_FILE)  # atomic: readers never see half a manifest
    return complete


def read_manifest(artifact_dir: Path) -> Manifest:
    """Parse manifest.json without checking file hashes (cheap; for listings)."""
    path = Path(artifact_dir) / MANIFEST_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ManifestError(f"{path}: no manifest") from exc
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path}: not valid JSON ({exc})") from exc
    return Manifest.from_dict(raw)


def verify_artifact(artifact_dir: Path) -> Manifest:
    """Read the manifest and check every listed file's sha256; raise naming the first bad file."""
    artifact_dir = Path(artifact_dir)
    manifest = read_manifest(artifact_dir)
    for relative, expected in manifest.files.items():
        path = artifact_dir / relative
        if not path.is_file():
            raise ArtifactIntegrityError(path, "listed in the manifest but missing")
        actual = sha256_file(path)
        if actual != expected:
            raise ArtifactIntegrityError(
                path, f"sha256 mismatch (manifest {expected[:12]}..., file {actual[:12]}...): "
                "the file was modified or truncated"
            )
    return manifest


def _version_key(version: str) -> tuple[int, int | str]:
    return (0, int(version)) if version.isdigit() else (1, version)


def list_versions(store: Path, name: str) -> list[str]:
    """Versions of model `name` in the store, oldest first (numeric versions sort numerically)."""
    model_dir = Path(store) / name
    if not model_dir.is_dir():
        return []
    versions = [p.name for p in model_dir.iterdir() if (p / MANIFEST_FILE).is_file()]
    return sorted(versions, key=_version_key)


def list_models(store: Path) -> list[str]:
    """Model names that have at least one version with a manifest."""
    store = Path(store)
    if not store.is_dir():
        return []
    return sorted(p.name for p in store.iterdir() if p.is_dir() and list_versions(store, p.name))


def resolve_artifact(store: Path, name: str, version: str | None = None) -> Path:
    """Directory of `name` at `version` (newest when None); ManifestError if absent."""
    versions = list_versions(store, name)
    if not versions:
        raise ManifestError(f"no model named {name!r} in {store}")
    chosen = versions[-1] if version is None else version
    if chosen not in versions:
        raise ManifestError(f"model {name!r} has no version {chosen!r} in {store} (has {versions})")
    return Path(store) / name / chosen
