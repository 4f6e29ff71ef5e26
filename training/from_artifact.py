"""Rebuild the PyTorch Seq2Seq from a model_store artifact's fp32 ONNX graphs, weight for weight, so torch
code (the naive benchmark baseline) can run a shipped model without the checkpoint it was exported from.

Imports torch, onnx, onnxruntime (the parity check) and model_store; never service.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

from model_store import Manifest, verify_artifact
from model_store.codec import Codec
from training.config import ModelConfig, model_config_from_dict
from training.export import PARITY_TOLERANCE, ParityReport, check_parity
from training.model import Seq2Seq

# ONNX gate blocks in the order torch stacks them: ONNX LSTM is i,o,f,c and torch i,f,g(=c),o;
# ONNX GRU is z,r,h and torch r,z,n (torch exports GRU with linear_before_reset=1).
TORCH_GATE_BLOCKS = {"LSTM": (0, 2, 3, 1), "GRU": (1, 0, 2)}
# The recurrent module each graph holds: its recurrent nodes are that module's layers, in order.
RECURRENT_MODULE = {"encoder": "encoder_rnn", "decoder_step": "decoder_rnn"}
TIED_WEIGHTS = ("source_embedding.weight", "target_embedding.weight", "output_projection.weight")
# Parity shapes unlike the export's example (batch 2, length 5) and its own check (3, 11).
PARITY_BATCH, PARITY_SRC_LEN, PARITY_STEPS = 5, 13, 6


class ArtifactWeightsError(Exception):
    """The artifact's graphs do not hold exactly the weights of the Seq2Seq its manifest describes,
    or the rebuilt torch model does not compute what ONNX Runtime computes on those graphs."""


def graph_constants(graph: onnx.GraphProto) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """-> (value name -> array, value name -> the initializer it comes from) for the initializers and
    every Cast of one: export stores large weights as fp16 initializers each followed by a Cast to
    float32, and the value the graph computes with is that Cast's output."""
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    origin = {name: name for name in values}
    stored = set()  # the fp16 copies: the graph never computes with them directly
    for node in graph.node:
        if node.op_type == "Cast" and node.input[0] in origin:
            to = next(attribute.i for attribute in node.attribute if attribute.name == "to")
            values[node.output[0]] = values[node.input[0]].astype(helper.tensor_dtype_to_np_dtype(to))
            origin[node.output[0]] = origin[node.input[0]]
            stored.add(node.input[0])
    return {name: value for name, value in values.items() if name not in stored}, origin


def _linear_order(role: str, config: ModelConfig) -> list[str]:
    """The nn.Linear layers in the order training/model.py calls linear() in that graph."""
    if role == "encoder":
        keys = ["key_projection"] if config.attention in ("luong_general", "bahdanau") else []
        return ["bridge_hidden", "bridge_cell", *keys]
    query = ["query_projection", "score_vector"] if config.attention == "bahdanau" else []
    return [*query, "attentional_projection", "output_projection"]


def _recurrent_weights(node: onnx.NodeProto, values: dict[str, np.ndarray], module: str,
                       layer: int) -> dict[str, np.ndarray]:
    """A constant-folded ONNX LSTM/GRU node's W [dirs, G*H, in], R [dirs, G*H, H], B [dirs, 2*G*H] ->
    torch's weight_ih/weight_hh [G*H, ...] and bias_ih/bias_hh [G*H] per direction, gates reordered."""
    if node.op_type == "GRU" and not any(a.name == "linear_before_reset" and a.i == 1 for a in node.attribute):
        raise ArtifactWeightsError(f"{node.name}: GRU without linear_before_reset=1 is not torch's GRU")
    blocks = TORCH_GATE_BLOCKS[node.op_type]

    def reorder(matrix: np.ndarray) -> np.ndarray:  # [G*H, ...] in ONNX gate order -> torch order
        gates = np.split(matrix, len(blocks), axis=0)
        return np.concatenate([gates[block] for block in blocks], axis=0)

    w, r = values[node.input[1]], values[node.input[2]]
    has_bias = len(node.input) > 3 and node.input[3] in values
    b = values[node.input[3]] if has_bias else None
    state = {}
    for direction in range(w.shape[0]):
        suffix = f"l{layer}" + ("_reverse" if direction == 1 else "")
        state[f"{module}.weight_ih_{suffix}"] = reorder(w[direction])
        state[f"{module}.weight_hh_{suffix}"] = reorder(r[direction])
        if b is not None:
            input_bias, hidden_bias = np.split(b[direction], 2)
            state[f"{module}.bias_ih_{suffix}"] = reorder(input_bias)
            state[f"{module}.bias_hh_{suffix}"] = reorder(hidden_bias)
    return state


def graph_state(graph: onnx.GraphProto, role: str, config: ModelConfig) -> dict[str, np.ndarray]:
    """The torch state_dict entries one graph holds. Three forms, as training/export.py writes them:
    initializers named after the parameter (`model.<key>`: embeddings, biases, and every weight of an
    unfolded export); constant-folded recurrent weights in ONNX layout; constant-folded transposes of
    the linear weights (MatMul's [in, out] operand). Raises if an initializer is left unexplained."""
    values, origin = graph_constants(graph)
    state = {name.removeprefix("model."): value for name, value in values.items() if name.startswith("model.")}
    used = {origin[name] for name in values if name.startswith("model.")}

    recurrent = [node for node in graph.node if node.op_type in TORCH_GATE_BLOCKS]
    for layer, node in enumerate(recurrent):
        if node.input[1] in values:  # folded; unfolded graphs slice the named weights instead
            state |= _recurrent_weights(node, values, RECURRENT_MODULE[role], layer)
            used |= {origin[name] for name in node.input[1:4] if name in values}

    folded = [node.input[1] for node in graph.node
              if node.op_type == "MatMul" and node.input[1] in values and not node.input[1].startswith("model.")]
    if folded:
        layers = _linear_order(role, config)
        if len(folded) != len(layers):
            raise ArtifactWeightsError(f"{role}: {len(folded)} folded linear weights, the model calls {layers}")
        for linear, name in zip(layers, folded, strict=True):
            state[f"{linear}.weight"] = values[name].T  # linear() multiplies by weight.t()
            used.add(origin[name])

    unexplained = sorted({init.name for init in graph.initializer} - used)
    if unexplained:
        raise ArtifactWeightsError(f"{role}: initializers that map to no model parameter: {unexplained}")
    return state


def _merge(state: dict[str, np.ndarray], more: dict[str, np.ndarray], what: str) -> None:
    """Add `more` to `state`; a parameter both graphs hold (a tied embedding) must agree exactly."""
    for key, value in more.items():
        if key in state and not np.array_equal(state[key], value):
            raise ArtifactWeightsError(f"{what}: {key} differs between the graphs")
        state[key] = value


def artifact_state_dict(artifact_dir: Path, manifest: Manifest, config: ModelConfig) -> dict[str, torch.Tensor]:
    """Every parameter of Seq2Seq(config) read from the artifact's fp32 graphs, as float32 (the int8
    graphs hold quantized weights: not the model's)."""
    state: dict[str, np.ndarray] = {}
    for role, spec in manifest.variants["fp32"].items():
        graph = onnx.load(str(artifact_dir / spec.file)).graph
        _merge(state, graph_state(graph, role, config), f"{artifact_dir}/{spec.file}")
    if config.tie_embeddings:
        # One matrix under three names; the graphs hold it once under whichever name export kept.
        present = [key for key in TIED_WEIGHTS if key in state]
        if not present:
            raise ArtifactWeightsError(f"{artifact_dir}: the tied embedding is in neither graph")
        _merge(state, dict.fromkeys(TIED_WEIGHTS, state[present[0]]), f"{artifact_dir} (tied embedding)")
    return {key: torch.from_numpy(np.array(value, dtype=np.float32)) for key, value in state.items()}


def load_artifact(artifact_dir: Path | str, check: bool = True) -> tuple[Seq2Seq, Codec, dict[str, Any]]:
    """-> (model in eval mode on the CPU, codec, info) like training.checkpoint.load_checkpoint, from a
    checksum-verified artifact. The weights ARE the graphs' values (fp16-stored ones included), so with
    `check` the torch model must match ONNX Runtime on the same graphs to float32 rounding, or it raises.
    info: name, version, model_config, source ("artifact"), artifact path and, if checked, parity."""
    artifact_dir = Path(artifact_dir)
    manifest = verify_artifact(artifact_dir)
    config = model_config_from_dict(manifest.model_config)
    model = Seq2Seq(config)
    state = artifact_state_dict(artifact_dir, manifest, config)
    expected = model.state_dict()
    wrong_shape = {key: (tuple(value.shape), tuple(expected[key].shape))
                   for key, value in state.items() if key in expected and value.shape != expected[key].shape}
    if wrong_shape:
        raise ArtifactWeightsError(f"{artifact_dir}: shapes (graph, model) differ: {wrong_shape}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # missing or unexpected keys
        raise ArtifactWeightsError(f"{artifact_dir}: {exc}") from exc
    model.eval()
    codec = Codec(artifact_dir / manifest.tokenizer_file)
    if codec.vocab_size != config.vocab_size:
        raise ArtifactWeightsError(
            f"{artifact_dir}: tokenizer has {codec.vocab_size} pieces, the model {config.vocab_size}")
    info: dict[str, Any] = {"source": "artifact", "artifact": str(artifact_dir), "name": manifest.name,
                            "version": manifest.version, "model_config": manifest.model_config}
    if check:
        info["parity"] = check_artifact_parity(model, artifact_dir, manifest).__dict__
    return model, codec, info


def check_artifact_parity(model: Seq2Seq, artifact_dir: Path, manifest: Manifest) -> ParityReport:
    """training.export.check_parity of the rebuilt model against ONNX Runtime on the artifact's fp32
    graphs; raises ArtifactWeightsError beyond export's own tolerance or when greedy tokens differ."""
    graphs = manifest.variants["fp32"]
    report = check_parity(model, artifact_dir / graphs["encoder"].file, artifact_dir / graphs["decoder_step"].file,
                          batch=PARITY_BATCH, src_len=PARITY_SRC_LEN, steps=PARITY_STEPS)
    if report.max_abs_log_prob_diff > PARITY_TOLERANCE or not report.greedy_identical:
        raise ArtifactWeightsError(f"{artifact_dir}: the rebuilt torch model differs from ONNX Runtime: {report}")
    return report
