"""Export a trained Seq2Seq to model_store's two ONNX graphs, check parity, quantize to int8,
and write a versioned artifact (the single writer of model_store artifacts).

Publishing never replaces a version: an artifact is built in a hidden staging directory next to its
version (`<store>/<name>/.<version>.partial/<version>`, which model_store never lists: no manifest.json
at its top), checked there, and renamed into place as the last step, so that readers see a complete
version or none; a failure removes the staging directory and leaves the store as it was.

Imports torch, onnx(runtime) and model_store; never service.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from model_store import (
    DECODER_STEP_INPUTS,
    DECODER_STEP_OUTPUTS,
    ENCODER_INPUTS,
    ENCODER_OUTPUTS,
    GraphSpec,
    Manifest,
    SpecialTokens,
    write_manifest,
)
from model_store.codec import Codec
from training.model import Seq2Seq, source_mask_from_lengths
from training.onnx_decode import cpu_session

OPSET = 17
ENCODER_FILE, DECODER_FILE = "encoder.onnx", "decoder_step.onnx"
INT8_ENCODER_FILE, INT8_DECODER_FILE = "encoder.int8.onnx", "decoder_step.int8.onnx"
TOKENIZER_FILE = "tokenizer.model"
# fp32 ORT vs torch on CPU agree to ~1e-6; anything near this bound means a broken export.
PARITY_TOLERANCE = 1e-3
# With weights stored as fp16 (rounded to 11 significant bits) log-probs move by ~1e-3.
FP16_STORAGE_TOLERANCE = 5e-2
FP16_STORAGE_MIN_ELEMENTS = 1024  # smaller tensors (biases, scalars) stay fp32: no size to save

_DYNAMIC_AXES = {
    "source_ids": {0: "batch", 1: "src_len"},
    "source_lengths": {0: "batch"},
    "memory": {0: "batch", 1: "src_len"},
    "memory_keys": {0: "batch", 1: "src_len"},
    "hidden": {1: "batch"},
    "cell": {1: "batch"},
    "previous_tokens": {0: "batch"},
    "source_mask": {0: "batch", 1: "src_len"},
    "log_probs": {0: "batch"},
    "next_hidden": {1: "batch"},
    "next_cell": {1: "batch"},
    "attention": {0: "batch", 1: "src_len"},
}


class _EncoderGraph(nn.Module):
    def __init__(self, model: Seq2Seq) -> None:
        super().__init__()
        self.model = model

    def forward(self, source_ids: torch.Tensor, source_lengths: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.model.encode(source_ids, source_lengths)


class _DecoderStepGraph(nn.Module):
    def __init__(self, model: Seq2Seq) -> None:
        super().__init__()
        self.model = model

    def forward(self, previous_tokens: torch.Tensor, hidden: torch.Tensor, cell: torch.Tensor,
                memory: torch.Tensor, memory_keys: torch.Tensor, source_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.model.decode_step(previous_tokens, hidden, cell, memory, memory_keys, source_mask)


def _example_inputs(model: Seq2Seq, batch: int, src_len: int, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    c = model.config
    lengths = torch.randint(1, src_len + 1, (batch,), generator=generator)
    lengths[0] = src_len  # the longest row fills the padded width, as in a real batch
    source_ids = torch.randint(4, c.vocab_size, (batch, src_len), generator=generator)
    source_ids = source_ids.masked_fill(~source_mask_from_lengths(lengths, src_len), c.pad_id)
    return {"source_ids": source_ids, "source_lengths": lengths}


def _graph_spec(session: ort.InferenceSession, file: str, inputs: dict[str, list[str]],
                outputs: dict[str, list[str]]) -> GraphSpec:
    """The contract's names restricted to what the exported graph really declares."""
    declared_inputs = [i.name for i in session.get_inputs()]
    declared_outputs = [o.name for o in session.get_outputs()]
    unknown = set(declared_inputs) - inputs.keys() | set(declared_outputs) - outputs.keys()
    missing_outputs = outputs.keys() - set(declared_outputs)
    if unknown or missing_outputs:
        raise RuntimeError(f"{file}: graph does not match the contract (unknown {unknown}, "
                           f"missing outputs {missing_outputs})")
    return GraphSpec(file=file, inputs={n: inputs[n] for n in declared_inputs},
                     outputs={n: outputs[n] for n in declared_outputs})


def export_onnx(model: Seq2Seq, out_dir: Path, fold_constants: bool = True) -> dict[str, GraphSpec]:
    """Write encoder.onnx and decoder_step.onnx (dynamic batch and length axes) into out_dir.

    fold_constants=False keeps weight transposes as graph nodes: a tied embedding / output projection
    is then stored once instead of once plus a folded transposed copy (ONNX Runtime folds it at load)."""
    model = model.cpu().eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    example = _example_inputs(model, batch=2, src_len=5, seed=0)
    with torch.no_grad():
        memory, memory_keys, hidden, cell = model.encode(example["source_ids"], example["source_lengths"])
    source_mask = example["source_ids"] != model.config.pad_id
    previous = torch.full((2,), 2, dtype=torch.long)
    with warnings.catch_warnings():
        # The legacy exporter warns about LSTM batch sizes; parity below checks other shapes for real.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _EncoderGraph(model), (example["source_ids"], example["source_lengths"]), str(out_dir / ENCODER_FILE),
            input_names=list(ENCODER_INPUTS), output_names=list(ENCODER_OUTPUTS),
            dynamic_axes={k: v for k, v in _DYNAMIC_AXES.items() if k in ENCODER_INPUTS or k in ENCODER_OUTPUTS},
            opset_version=OPSET, dynamo=False, do_constant_folding=fold_constants,
        )
        torch.onnx.export(
            _DecoderStepGraph(model), (previous, hidden, cell, memory, memory_keys, source_mask),
            str(out_dir / DECODER_FILE),
            input_names=list(DECODER_STEP_INPUTS), output_names=list(DECODER_STEP_OUTPUTS),
            dynamic_axes={k: v for k, v in _DYNAMIC_AXES.items()
                          if k in DECODER_STEP_INPUTS or k in DECODER_STEP_OUTPUTS},
            opset_version=OPSET, dynamo=False, do_constant_folding=fold_constants,
        )
    return {
        "encoder": _graph_spec(cpu_session(out_dir / ENCODER_FILE), ENCODER_FILE, ENCODER_INPUTS, ENCODER_OUTPUTS),
        "decoder_step": _graph_spec(cpu_session(out_dir / DECODER_FILE), DECODER_FILE,
                                    DECODER_STEP_INPUTS, DECODER_STEP_OUTPUTS),
    }


def _feed(session: ort.InferenceSession, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {i.name: values[i.name] for i in session.get_inputs()}


@dataclass(frozen=True)
class ParityReport:
    batch: int
    src_len: int
    steps: int
    max_abs_log_prob_diff: float
    max_abs_attention_diff: float
    greedy_identical: bool


def check_parity(model: Seq2Seq, encoder_path: Path, decoder_path: Path, batch: int = 3, src_len: int = 11,
                 steps: int = 12, seed: int = 7) -> ParityReport:
    """ORT vs torch at a batch size and length unlike the export example: greedy-decode `steps`
    steps both ways, comparing log-probs and attention each step and the chosen tokens."""
    model = model.cpu().eval()
    example = _example_inputs(model, batch=batch, src_len=src_len, seed=seed)
    encoder, decoder = cpu_session(encoder_path), cpu_session(decoder_path)
    source_mask = example["source_ids"] != model.config.pad_id
    with torch.no_grad():
        memory, keys, hidden, cell = model.encode(example["source_ids"], example["source_lengths"])
    ort_out = encoder.run(None, _feed(encoder, {k: v.numpy() for k, v in example.items()}))
    ort_state = dict(zip([o.name for o in encoder.get_outputs()], ort_out, strict=True))
    max_lp, max_att, identical = 0.0, 0.0, True
    torch_tokens = np.full((batch,), 2, dtype=np.int64)
    ort_tokens = torch_tokens.copy()
    for _ in range(steps):
        with torch.no_grad():
            log_probs, hidden, cell, attention = model.decode_step(
                torch.from_numpy(torch_tokens), hidden, cell, memory, keys, source_mask)
        values = {"previous_tokens": ort_tokens, "hidden": ort_state["hidden"], "cell": ort_state["cell"],
                  "memory": ort_state["memory"], "memory_keys": ort_state["memory_keys"],
                  "source_mask": source_mask.numpy()}
        outputs = dict(zip([o.name for o in decoder.get_outputs()], decoder.run(None, _feed(decoder, values)),
                           strict=True))
        ort_state["hidden"], ort_state["cell"] = outputs["next_hidden"], outputs["next_cell"]
        max_lp = max(max_lp, float(np.abs(outputs["log_probs"] - log_probs.numpy()).max()))
        max_att = max(max_att, float(np.abs(outputs["attention"] - attention.numpy()).max()))
        torch_tokens = log_probs.argmax(-1).numpy()
        ort_tokens = outputs["log_probs"].argmax(-1)
        identical = identical and bool((torch_tokens == ort_tokens).all())
    return ParityReport(batch, src_len, steps, max_lp, max_att, identical)


def store_weights_as_fp16(path: Path) -> int:
    """Rewrite an fp32 graph so its large weights are stored as fp16, each followed by a Cast back
    to fp32: the file halves, and ONNX Runtime constant-folds the casts when it loads the graph, so
    inference still runs in fp32 on fp32 weights (rounded once to fp16). Returns the casts added."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    casts = []
    for initializer in list(graph.initializer):
        if initializer.data_type != TensorProto.FLOAT or np.prod(initializer.dims) < FP16_STORAGE_MIN_ELEMENTS:
            continue
        half = numpy_helper.from_array(numpy_helper.to_array(initializer).astype(np.float16),
                                       f"{initializer.name}__fp16")
        graph.initializer.remove(initializer)
        graph.initializer.append(half)
        casts.append(helper.make_node("Cast", [half.name], [initializer.name], to=TensorProto.FLOAT,
                                      name=f"{initializer.name}__to_fp32"))
    for cast in reversed(casts):
        graph.node.insert(0, cast)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return len(casts)


def quantize_int8(fp32_path: Path, int8_path: Path) -> None:
    """Dynamic int8 quantization of weights (MatMul, LSTM); activations stay float."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8)


class VersionExistsError(FileExistsError):
    """The version to publish exists already (or another export of it is under way): never replaced."""


def next_free_version(store: Path, name: str) -> str:
    """One more than the highest version of `name` named with ASCII digits ("1" when there is none)."""
    model_dir = Path(store) / name
    entries = [p.name for p in model_dir.iterdir()] if model_dir.is_dir() else []
    return str(max((int(e) for e in entries if e.isascii() and e.isdecimal()), default=0) + 1)


def _staging_root(artifact_dir: Path) -> Path:
    return artifact_dir.with_name(f".{artifact_dir.name}.partial")


def check_version_free(store: Path, name: str, version: str) -> Path:
    """The directory version `version` of `name` would have; raises VersionExistsError if it (or an
    export of it in progress) exists, ValueError if `version` is not a plain visible directory name."""
    if not version or version in (".", "..") or version.startswith(".") or "/" in version or "\\" in version:
        raise ValueError(f"version {version!r} is not a plain directory name (e.g. \"4\")")
    artifact_dir = Path(store) / name / version
    if os.path.lexists(artifact_dir):
        raise VersionExistsError(
            f"{artifact_dir} exists already: publishing never replaces a version; "
            f"publish as version {next_free_version(store, name)}, the next free one")
    staging_root = _staging_root(artifact_dir)
    if os.path.lexists(staging_root):
        raise VersionExistsError(
            f"{staging_root} exists: another export of version {version} is under way, or one was killed "
            "(then remove that directory)")
    return artifact_dir


@contextmanager
def staged_artifact(store: Path, name: str, version: str) -> Iterator[Path]:
    """An empty directory to build version `version` of `name` in, hidden from model_store's readers.
    When the with-block ends without an exception it is renamed to `<store>/<name>/<version>` (atomic,
    the last step); on any exception it is removed and nothing of the version is left."""
    artifact_dir = check_version_free(store, name, version)
    model_dir, staging_root = artifact_dir.parent, _staging_root(artifact_dir)
    created_model_dir = not model_dir.exists()
    model_dir.mkdir(parents=True, exist_ok=True)
    try:
        staging_root.mkdir()  # exclusive: a concurrent export of the same version stops here
    except FileExistsError as exc:
        raise VersionExistsError(
            f"{staging_root} exists: another export of version {version} is under way") from exc
    published = False
    try:
        staged = staging_root / version
        staged.mkdir()
        yield staged
        if os.path.lexists(artifact_dir):  # created while this export ran
            raise VersionExistsError(f"{artifact_dir} appeared while exporting: not replaced")
        os.rename(staged, artifact_dir)
        published = True
    finally:
        shutil.rmtree(staging_root, ignore_errors=True)
        if created_model_dir and not published:
            with suppress(OSError):
                model_dir.rmdir()  # only if still empty


def write_artifact(
    model: Seq2Seq, codec_model_path: Path, store: Path, name: str, version: str,
    source_language: str, target_language: str, max_source_tokens: int,
    training_info: dict[str, Any], data_info: dict[str, Any],
    evaluation: dict[str, dict[str, dict[str, float]]] | None = None,
    with_int8: bool = True, extra_files: dict[str, Path] | None = None, fp16_storage: bool = True,
) -> tuple[Path, Manifest, ParityReport]:
    """build_artifact into a staging directory, then move it into place as `<store>/<name>/<version>`;
    refuses (VersionExistsError) a version that exists. Returns the artifact directory."""
    with staged_artifact(store, name, version) as staged:
        manifest, parity = build_artifact(
            model, codec_model_path, staged, name, version, source_language, target_language,
            max_source_tokens, training_info, data_info, evaluation, with_int8, extra_files, fp16_storage)
    return Path(store) / name / version, manifest, parity


def build_artifact(
    model: Seq2Seq, codec_model_path: Path, artifact_dir: Path, name: str, version: str,
    source_language: str, target_language: str, max_source_tokens: int,
    training_info: dict[str, Any], data_info: dict[str, Any],
    evaluation: dict[str, dict[str, dict[str, float]]] | None = None,
    with_int8: bool = True, extra_files: dict[str, Path] | None = None, fp16_storage: bool = True,
) -> tuple[Manifest, ParityReport]:
    """Export into `artifact_dir` (an empty directory), check parity (raising on failure), optionally
    quantize, optionally store the fp32 graphs' weights as fp16 (parity checked again), copy the
    tokenizer and any report files, and write the checksummed manifest."""
    graphs = export_onnx(model, artifact_dir)
    parity = check_parity(model, artifact_dir / ENCODER_FILE, artifact_dir / DECODER_FILE)
    if parity.max_abs_log_prob_diff > PARITY_TOLERANCE or not parity.greedy_identical:
        raise RuntimeError(f"ONNX export parity failed: {parity}")
    variants = {"fp32": graphs}
    if with_int8:
        quantize_int8(artifact_dir / ENCODER_FILE, artifact_dir / INT8_ENCODER_FILE)
        quantize_int8(artifact_dir / DECODER_FILE, artifact_dir / INT8_DECODER_FILE)
        variants["int8"] = {
            "encoder": GraphSpec(INT8_ENCODER_FILE, graphs["encoder"].inputs, graphs["encoder"].outputs),
            "decoder_step": GraphSpec(INT8_DECODER_FILE, graphs["decoder_step"].inputs,
                                      graphs["decoder_step"].outputs),
        }
    storage: dict[str, Any] = {"fp32_weight_storage": "fp32"}
    if fp16_storage:  # after quantizing: int8 is computed from the exact fp32 weights
        if model.config.tie_embeddings:
            # int8 wants folded graphs (quantize_dynamic only quantizes MatMuls whose weight is an
            # initializer); the shipped fp32 graphs want the tied matrix stored once.
            export_onnx(model, artifact_dir, fold_constants=False)
        for file in (ENCODER_FILE, DECODER_FILE):
            store_weights_as_fp16(artifact_dir / file)
        stored = check_parity(model, artifact_dir / ENCODER_FILE, artifact_dir / DECODER_FILE)
        if stored.max_abs_log_prob_diff > FP16_STORAGE_TOLERANCE:
            raise RuntimeError(f"parity after storing weights as fp16 failed: {stored}")
        storage = {"fp32_weight_storage": "fp16 (cast to fp32 at load; computes in fp32)",
                   "parity_fp16_storage": stored.__dict__}
    shutil.copyfile(codec_model_path, artifact_dir / TOKENIZER_FILE)
    for relative, source in (extra_files or {}).items():
        target = artifact_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    codec = Codec(artifact_dir / TOKENIZER_FILE)
    c = model.config
    manifest = Manifest(
        name=name, version=version, source_language=source_language, target_language=target_language,
        attention=c.attention,
        special_tokens=SpecialTokens(pad_id=codec.pad_id, unk_id=codec.unk_id, bos_id=codec.bos_id,
                                     eos_id=codec.eos_id),
        tokenizer_file=TOKENIZER_FILE, vocab_size=codec.vocab_size, max_source_tokens=max_source_tokens,
        opset=OPSET, variants=variants,
        model_config={**c.__dict__, "parameters": sum(p.numel() for p in model.parameters())},
        training={**training_info, "parity": parity.__dict__, **storage},
        data=data_info, evaluation=evaluation or {},
    )
    return write_manifest(artifact_dir, manifest), parity
