"""The artifact contract: manifest dataclasses, read/write, sha256 verification, version lookup.

Imported by both `training` (the single writer) and `service` (readers). Stdlib + numpy only;
must not import torch, onnxruntime, training or service.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path, PurePosixPath
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
    version: str  # e.g. "1"; ASCII-digit versions sort numerically; others never default (resolve_artifact)
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
    def from_dict(cls, raw: Any, source: str = MANIFEST_FILE) -> Manifest:
        """Build a manifest from parsed JSON, checking the type of every field.

        Raises ManifestError naming `source` (the manifest's path) and the field. Every path the
        manifest references or lists must be relative and stay inside the artifact directory, and every
        referenced file (tokenizer, each graph of each variant) must be listed in `files` with a sha256.
        """
        return _parse_manifest(raw, source)


# ---- reading: every field fetched with its expected JSON type --------------------------------------
# Manifest field -> (JSON type, required). `int` means an integer exactly (not a boolean, not 1.0);
# `float` means any JSON number but a boolean. Nested objects are checked in _parse_manifest.
_MANIFEST_FIELDS: dict[str, tuple[type, bool]] = {
    "format_version": (int, True),
    "name": (str, True),
    "version": (str, True),
    "source_language": (str, True),
    "target_language": (str, True),
    "attention": (str, True),
    "special_tokens": (dict, True),
    "tokenizer_file": (str, True),
    "vocab_size": (int, True),
    "max_source_tokens": (int, True),
    "opset": (int, True),
    "variants": (dict, True),
    "files": (dict, False),
    "model_config": (dict, False),
    "training": (dict, False),
    "data": (dict, False),
    "evaluation": (dict, False),
}
_SPECIAL_TOKEN_FIELDS: dict[str, type] = {"pad_id": int, "unk_id": int, "bos_id": int, "eos_id": int}
_GRAPH_FIELDS: dict[str, type] = {"file": str, "inputs": dict, "outputs": dict}
_KIND_NAMES = {str: "a string", int: "an integer", float: "a number", dict: "an object", list: "a list"}
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({json.dumps(value)})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a number with a decimal point ({value!r})"
    if isinstance(value, str):
        return f"a string ({value if len(value) <= 60 else value[:57] + '...'!r})"
    if isinstance(value, list):
        return "a list"
    return "an object" if isinstance(value, dict) else type(value).__name__


def _is_kind(value: Any, kind: type) -> bool:
    if kind is int:
        return type(value) is int
    if kind is float:
        return type(value) in (int, float)
    return isinstance(value, kind)


def _typed(value: Any, kind: type, where: str, source: str) -> Any:
    if not _is_kind(value, kind):
        raise ManifestError(f"{source}: field {where} must be {_KIND_NAMES[kind]}, got {_describe(value)}")
    return value


def _field(raw: dict[str, Any], key: str, kind: type, where: str, source: str) -> Any:
    if key not in raw:
        raise ManifestError(f"{source}: field {where} is missing")
    return _typed(raw[key], kind, where, source)


def _object(raw: dict[str, Any], spec: dict[str, type], where: str, source: str) -> dict[str, Any]:
    """An object with exactly the fields of `spec`, each of its type."""
    unknown = sorted(raw.keys() - spec.keys())
    if unknown:
        raise ManifestError(f"{source}: field {where} has unknown fields {unknown} (expected {sorted(spec)})")
    return {key: _field(raw, key, kind, f"{where}.{key}", source) for key, kind in spec.items()}


def _entries(raw: dict[str, Any], kind: type, where: str, source: str) -> dict[str, Any]:
    """An object whose values (under any names) are all of type `kind`."""
    return {key: _typed(value, kind, f"{where}[{key!r}]", source) for key, value in raw.items()}


def _shapes(raw: dict[str, Any], where: str, source: str) -> dict[str, list[str]]:
    shapes = _entries(raw, list, where, source)
    for name, dims in shapes.items():
        for i, dim in enumerate(dims):
            _typed(dim, str, f"{where}[{name!r}][{i}]", source)
    return shapes


def _check_relative(relative: str, where: str, source: str) -> None:
    """Refuse a path that is empty, absolute, climbs with '..' or is not in normal form ('a/b')."""
    pure = PurePosixPath(relative)
    if (not pure.parts or pure.is_absolute() or ".." in pure.parts or pure.as_posix() != relative
            or "\0" in relative):
        raise ManifestError(
            f"{source}: field {where} is {relative!r}: a file of the artifact must be named by a relative path "
            "inside the artifact directory (no leading '/', no '..', no './', no empty parts)"
        )


def _check_ranges(fields: dict[str, Any], source: str) -> None:
    """Values the service computes with: a vocabulary holding the special tokens, distinct special ids
    inside it, room for a token and the end-of-sentence token per source (the engine would index out of
    the vocabulary or refuse every request)."""
    vocab_size, special = fields["vocab_size"], fields["special_tokens"]
    ids = {"pad_id": special.pad_id, "unk_id": special.unk_id, "bos_id": special.bos_id, "eos_id": special.eos_id}
    if vocab_size <= len(ids):
        raise ManifestError(f"{source}: field vocab_size is {vocab_size}: the vocabulary must hold the four "
                            "special tokens and at least one other")
    for name, token in ids.items():
        if not 0 <= token < vocab_size:
            raise ManifestError(f"{source}: field special_tokens.{name} is {token}, outside the vocabulary "
                                f"(0-{vocab_size - 1})")
    if len(set(ids.values())) != len(ids):
        raise ManifestError(f"{source}: field special_tokens gives two tokens one id: {ids}")
    for name in ("max_source_tokens", "opset"):
        if fields[name] < (2 if name == "max_source_tokens" else 1):
            raise ManifestError(f"{source}: field {name} is {fields[name]}, too small")


def _parse_manifest(raw: Any, source: str) -> Manifest:
    if not isinstance(raw, dict):
        raise ManifestError(f"{source}: must hold a JSON object, got {_describe(raw)}")
    format_version = _field(raw, "format_version", int, "format_version", source)
    if format_version != FORMAT_VERSION:
        raise ManifestError(
            f"{source}: manifest format_version {format_version} is not supported (this code reads {FORMAT_VERSION})"
        )
    unknown = sorted(raw.keys() - _MANIFEST_FIELDS.keys())
    if unknown:
        raise ManifestError(f"{source}: unknown fields {unknown}")
    fields = {
        key: _field(raw, key, kind, key, source)
        for key, (kind, required) in _MANIFEST_FIELDS.items()
        if required or key in raw
    }
    fields["special_tokens"] = SpecialTokens(
        **_object(fields["special_tokens"], _SPECIAL_TOKEN_FIELDS, "special_tokens", source)
    )
    _check_ranges(fields, source)
    variants: dict[str, dict[str, GraphSpec]] = {}
    for variant, graphs in _entries(fields["variants"], dict, "variants", source).items():
        variants[variant] = {}
        for role, spec in _entries(graphs, dict, f"variants[{variant!r}]", source).items():
            where = f"variants[{variant!r}][{role!r}]"
            graph = _object(spec, _GRAPH_FIELDS, where, source)
            variants[variant][role] = GraphSpec(
                file=graph["file"],
                inputs=_shapes(graph["inputs"], f"{where}.inputs", source),
                outputs=_shapes(graph["outputs"], f"{where}.outputs", source),
            )
    fields["variants"] = variants
    referenced = {"tokenizer_file": fields["tokenizer_file"]} | {
        f"variants[{variant!r}][{role!r}].file": spec.file
        for variant, graphs in variants.items()
        for role, spec in graphs.items()
    }
    for where, relative in referenced.items():
        _check_relative(relative, where, source)
    files = _entries(fields.get("files", {}), str, "files", source)
    for relative, digest in files.items():
        _check_relative(relative, f"files[{relative!r}]", source)
        if not _SHA256_HEX.fullmatch(digest):
            raise ManifestError(
                f"{source}: field files[{relative!r}] must be a sha256 written as 64 lowercase hex digits, "
                f"got {_describe(digest)}"
            )
    for test_sets_where, test_sets in _entries(fields.get("evaluation", {}), dict, "evaluation", source).items():
        where = f"evaluation[{test_sets_where!r}]"
        for test_set, metrics in _entries(test_sets, dict, where, source).items():
            _entries(metrics, float, f"{where}[{test_set!r}]", source)
    for where, relative in referenced.items():
        if relative not in files:
            raise ManifestError(
                f"{source}: field {where} names {relative!r}, which is not listed in files with a sha256, "
                "so it cannot be verified"
            )
    return Manifest(**fields)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _confined(artifact_dir: Path, root: Path, relative: str, where: str, source: str) -> Path:
    """`artifact_dir / relative`, refused unless it resolves (symlinks followed) inside `root`."""
    path = artifact_dir / relative
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python < 3.13)
        raise ManifestError(f"{source}: field {where}: {relative!r} cannot be resolved ({exc})") from exc
    if not resolved.is_relative_to(root):
        raise ManifestError(
            f"{source}: field {where}: {relative!r} resolves to {resolved}, outside the artifact directory "
            f"{root} (a symlink pointing out of it?)"
        )
    return path


_NOT_LISTED = {MANIFEST_FILE, MANIFEST_FILE + ".tmp"}


def write_manifest(artifact_dir: Path, manifest: Manifest) -> Manifest:
    """Checksum every file in `artifact_dir` (except the manifest) and write manifest.json.

    Returns the manifest with `files` filled in. The single writer is training's export. Refuses a
    file that is a symlink to somewhere outside `artifact_dir`, and a manifest that read_manifest would
    refuse.
    """
    artifact_dir = Path(artifact_dir)
    target = artifact_dir / MANIFEST_FILE
    root = artifact_dir.resolve()
    files = {}
    for path in sorted(artifact_dir.rglob("*")):
        if path.is_file() and path.name not in _NOT_LISTED:
            relative = path.relative_to(artifact_dir).as_posix()
            _confined(artifact_dir, root, relative, f"files[{relative!r}]", str(target))
            files[relative] = sha256_file(path)
    referenced = {manifest.tokenizer_file} | {
        spec.file for graphs in manifest.variants.values() for spec in graphs.values()
    }
    missing = sorted(referenced - files.keys())
    if missing:
        raise ManifestError(f"manifest references files not in {artifact_dir}: {missing}")
    complete = replace(manifest, files=files)
    text = complete.to_json()
    Manifest.from_dict(json.loads(text), str(target))  # never write what the readers would refuse
    tmp = artifact_dir / (MANIFEST_FILE + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)  # atomic: readers never see half a manifest
    return complete


def read_manifest(artifact_dir: Path) -> Manifest:
    """Parse and type-check manifest.json without checking file hashes (cheap; for listings).

    Any problem (missing, unreadable, not UTF-8, not JSON, a field missing or of the wrong type, a path
    leaving the artifact) is a ManifestError naming the manifest's path and the field.
    """
    path = Path(artifact_dir) / MANIFEST_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise ManifestError(f"{path}: no manifest") from exc
    except IsADirectoryError as exc:
        raise ManifestError(f"{path}: is a directory, not a manifest file") from exc
    except OSError as exc:
        raise ManifestError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path}: not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start})") from exc
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise ManifestError(f"{path}: not valid JSON ({exc})") from exc
    return Manifest.from_dict(raw, str(path))


def verify_artifact(artifact_dir: Path) -> Manifest:
    """Read the manifest and check every listed file's sha256; raise naming the first bad file.

    The manifest must list (with a sha256) every file it references: the tokenizer and each graph of
    each variant (read_manifest checks that). Every listed path must stay inside `artifact_dir` once
    symlinks are resolved, and be a readable regular file with the listed sha256. Files in the
    directory that the manifest does not list are ignored.
    """
    artifact_dir = Path(artifact_dir)
    manifest = read_manifest(artifact_dir)
    source = str(artifact_dir / MANIFEST_FILE)
    root = artifact_dir.resolve()
    for relative, expected in manifest.files.items():
        path = _confined(artifact_dir, root, relative, f"files[{relative!r}]", source)
        try:
            if not path.is_file():
                reason = "not a regular file" if path.exists() else "missing"
                raise ArtifactIntegrityError(path, f"listed in the manifest but {reason}")
            actual = sha256_file(path)
        except OSError as exc:
            reason = f"listed in the manifest but cannot be read ({exc.strerror or exc})"
            raise ArtifactIntegrityError(path, reason) from exc
        if actual != expected:
            raise ArtifactIntegrityError(
                path, f"sha256 mismatch (manifest {expected[:12]}..., file {actual[:12]}...): "
                "the file was modified or truncated"
            )
    return manifest


# ---- versions --------------------------------------------------------------------------------------
def _release_number(version: str) -> int | None:
    """The number of a version directory named with ASCII digits only ("3", "10"); None for any other
    name ("3-backup", "v2", "²": str.isdigit() accepts "²" but int() does not)."""
    return int(version) if version.isascii() and version.isdecimal() else None


def _version_key(version: str) -> tuple[int, int, str]:
    number = _release_number(version)
    return (0, 0, version) if number is None else (1, number, version)


def list_versions(store: Path, name: str) -> list[str]:
    """Versions of model `name` in the store (its subdirectories holding a manifest.json).

    Numbered versions (ASCII digits only) come last, oldest first, sorted by number ("2" < "9" < "10").
    Directories with any other name ("3-backup") have no place among the releases: they come first,
    sorted by name, so the last entry is the newest numbered version whenever there is one.
    Raises only ManifestError.
    """
    model_dir = Path(store) / name
    try:
        if not model_dir.is_dir():
            return []
        versions = [p.name for p in model_dir.iterdir() if (p / MANIFEST_FILE).is_file()]
    except OSError as exc:
        raise ManifestError(f"cannot list the versions in {model_dir}: {exc.strerror or exc}") from exc
    return sorted(versions, key=_version_key)


def list_models(store: Path) -> list[str]:
    """Model names that have at least one version with a manifest."""
    store = Path(store)
    try:
        if not store.is_dir():
            return []
        names = [p.name for p in store.iterdir() if p.is_dir()]
    except OSError as exc:
        raise ManifestError(f"cannot list the models in {store}: {exc.strerror or exc}") from exc
    return sorted(name for name in names if list_versions(store, name))


def resolve_artifact(store: Path, name: str, version: str | None = None) -> Path:
    """Directory of `name` at `version`; raises ManifestError (and nothing else) if there is none.

    `version` None means the newest numbered version: the highest number among the version directories
    named with ASCII digits only. A version directory with any other name ("3-backup", "²") is never
    the default; it is loaded only when asked for by its exact name.
    """
    if name in ("", ".", "..") or PurePosixPath(name).name != name:
        raise ManifestError(f"model name {name!r} is not the name of a directory in the store {store}")
    versions = list_versions(store, name)
    if not versions:
        raise ManifestError(f"no model named {name!r} in {store}")
    if version is None:
        numbered = [v for v in versions if _release_number(v) is not None]
        if not numbered:
            raise ManifestError(
                f"model {name!r} in {store} has no numbered version to default to (has {versions}); "
                "ask for one by name"
            )
        return Path(store) / name / numbered[-1]
    if version not in versions:
        raise ManifestError(f"model {name!r} has no version {version!r} in {store} (has {versions})")
    return Path(store) / name / version
