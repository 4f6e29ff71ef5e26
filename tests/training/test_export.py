"""ONNX export of the tiny real model: parity with PyTorch at new shapes, fp16 weight storage, int8
variant, manifest."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import torch

from model_store import DECODER_STEP_OUTPUTS, ENCODER_OUTPUTS, verify_artifact
from training.config import model_config_from_dict
from training.export import (
    DECODER_FILE,
    ENCODER_FILE,
    FP16_STORAGE_TOLERANCE,
    PARITY_TOLERANCE,
    check_parity,
    export_onnx,
    store_weights_as_fp16,
)
from training.model import Seq2Seq


def _load(number_model) -> Seq2Seq:  # type: ignore[no-untyped-def]
    checkpoint = torch.load(number_model.checkpoint, map_location="cpu", weights_only=False)
    model = Seq2Seq(model_config_from_dict(checkpoint["model_config"]))
    model.load_state_dict(checkpoint["model_state"])
    return model.eval()


def test_parity_at_shapes_unlike_the_export_example(number_model, tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = _load(number_model)
    export_onnx(model, tmp_path)  # fp32 weights as exported, before fp16 storage
    for batch, src_len in [(1, 1), (5, 23), (17, 4)]:
        report = check_parity(model, tmp_path / ENCODER_FILE, tmp_path / DECODER_FILE,
                              batch=batch, src_len=src_len, steps=8)
        assert report.max_abs_log_prob_diff < PARITY_TOLERANCE
        assert report.max_abs_attention_diff < 1e-4
        assert report.greedy_identical


def test_fp16_weight_storage_halves_the_files_and_keeps_parity(number_model, tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = _load(number_model)
    export_onnx(model, tmp_path)
    sizes = {file: (tmp_path / file).stat().st_size for file in (ENCODER_FILE, DECODER_FILE)}
    for file in sizes:
        assert store_weights_as_fp16(tmp_path / file) > 0
        assert (tmp_path / file).stat().st_size < 0.6 * sizes[file]
    for batch, src_len in [(1, 1), (5, 23)]:
        report = check_parity(model, tmp_path / ENCODER_FILE, tmp_path / DECODER_FILE,
                              batch=batch, src_len=src_len, steps=8)
        assert 0 < report.max_abs_log_prob_diff < FP16_STORAGE_TOLERANCE  # rounded weights, but close
        assert report.greedy_identical
    # ONNX Runtime folds the casts at load: the graph it runs has fp32 weights and no Cast left of them.
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    ort.InferenceSession(str(tmp_path / DECODER_FILE), options, providers=["CPUExecutionProvider"])
    optimized = onnx.load(str(tmp_path / "optimized.onnx"))
    assert not [node.name for node in optimized.graph.node if node.name.endswith("__to_fp32")]


def test_the_shipped_artifact_records_its_weight_storage(tiny_artifact) -> None:  # type: ignore[no-untyped-def]
    training = verify_artifact(tiny_artifact).training
    assert training["fp32_weight_storage"].startswith("fp16")
    assert training["parity_fp16_storage"]["max_abs_log_prob_diff"] < FP16_STORAGE_TOLERANCE


def test_graphs_declare_the_contract_names(tiny_artifact) -> None:  # type: ignore[no-untyped-def]
    manifest = verify_artifact(tiny_artifact)
    assert set(manifest.variants) == {"fp32", "int8"}
    for variant in manifest.variants.values():
        encoder = ort.InferenceSession(str(tiny_artifact / variant["encoder"].file))
        decoder = ort.InferenceSession(str(tiny_artifact / variant["decoder_step"].file))
        assert {o.name for o in encoder.get_outputs()} == set(ENCODER_OUTPUTS)
        assert {o.name for o in decoder.get_outputs()} == set(DECODER_STEP_OUTPUTS)
        assert [i.name for i in decoder.get_inputs()] == list(variant["decoder_step"].inputs)


def test_int8_is_smaller_and_close(tiny_artifact) -> None:  # type: ignore[no-untyped-def]
    manifest = verify_artifact(tiny_artifact)
    fp32 = tiny_artifact / manifest.variants["fp32"]["decoder_step"].file
    int8 = tiny_artifact / manifest.variants["int8"]["decoder_step"].file
    assert int8.stat().st_size < fp32.stat().st_size
    graph_ops = {node.op_type for node in __import__("onnx").load(str(int8)).graph.node}
    assert graph_ops & {"DynamicQuantizeMatMul", "MatMulInteger", "DynamicQuantizeLSTM"}, graph_ops
    encoder = ort.InferenceSession(str(tiny_artifact / "encoder.onnx"))
    ids = np.array([[5, 6, 7, 3]], dtype=np.int64)
    outputs = dict(zip([o.name for o in encoder.get_outputs()],
                       encoder.run(None, {"source_ids": ids, "source_lengths": np.array([4])}), strict=True))
    feeds = {"previous_tokens": np.array([2]), "hidden": outputs["hidden"], "cell": outputs["cell"],
             "memory": outputs["memory"], "memory_keys": outputs["memory_keys"], "source_mask": ids > 0}
    results = []
    for path in (fp32, int8):
        session = ort.InferenceSession(str(path))
        results.append(session.run(["log_probs"], {i.name: feeds[i.name] for i in session.get_inputs()})[0])
    assert float(np.abs(np.exp(results[0]) - np.exp(results[1])).max()) < 0.1


def test_tied_weights_are_stored_once_in_the_shipped_graph(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A tied embedding / output projection: the fp32 decoder graph keeps one [vocab, dim] matrix
    (its transpose is folded by ONNX Runtime at load), and parity holds after export either way."""
    from training.config import ModelConfig

    torch.manual_seed(0)
    vocab, dim = 300, 16
    model = Seq2Seq(ModelConfig(vocab_size=vocab, embedding_dim=dim, encoder_hidden=8, decoder_hidden=24,
                                tie_embeddings=True)).eval()

    def vocab_matrices(path) -> int:  # type: ignore[no-untyped-def]
        graph = onnx.load(str(path)).graph
        return sum(1 for init in graph.initializer if sorted(init.dims) == sorted([vocab, dim]))

    folded, unfolded = tmp_path / "folded", tmp_path / "unfolded"
    export_onnx(model, folded)
    export_onnx(model, unfolded, fold_constants=False)
    assert vocab_matrices(folded / DECODER_FILE) == 2  # the table and its folded transpose
    assert vocab_matrices(unfolded / DECODER_FILE) == 1
    assert (unfolded / DECODER_FILE).stat().st_size < (folded / DECODER_FILE).stat().st_size
    for directory in (folded, unfolded):
        report = check_parity(model, directory / ENCODER_FILE, directory / DECODER_FILE, batch=4, src_len=9)
        assert report.max_abs_log_prob_diff < PARITY_TOLERANCE and report.greedy_identical
