"""training.from_artifact: the torch Seq2Seq rebuilt from an artifact's fp32 graphs holds the checkpoint's
weights (as export stored them) and decodes exactly like ONNX Runtime on those graphs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from model_store import resolve_artifact
from model_store.codec import Codec
from training import from_artifact
from training.config import ModelConfig
from training.decode import translate_ids
from training.export import DECODER_FILE, ENCODER_FILE, export_onnx, store_weights_as_fp16
from training.from_artifact import ArtifactWeightsError, graph_state, load_artifact
from training.model import Seq2Seq
from training.onnx_decode import make_onnx_translate_fn

REPO_ROOT = Path(__file__).resolve().parents[2]


def _as_stored(rebuilt: torch.Tensor, original: torch.Tensor) -> str | None:
    """How the rebuilt tensor relates to the original: exactly, rounded once to fp16, or not at all."""
    if torch.equal(rebuilt, original):
        return "exact"
    if torch.equal(rebuilt, original.half().float()):
        return "fp16"
    return None


def test_rebuilt_weights_are_the_checkpoints_as_export_stored_them(number_model, tiny_artifact) -> None:  # type: ignore[no-untyped-def]
    original = torch.load(number_model.checkpoint, map_location="cpu", weights_only=False)["model_state"]
    model, codec, info = load_artifact(tiny_artifact)
    rebuilt = model.state_dict()
    assert set(rebuilt) == set(original)
    storage = {key: _as_stored(rebuilt[key], original[key]) for key in original}
    assert None not in storage.values(), [key for key, how in storage.items() if how is None]
    # The large weights went through fp16 storage (the LSTM, embeddings and projections).
    assert storage["encoder_rnn.weight_ih_l0"] == storage["target_embedding.weight"] == "fp16"
    assert not model.training and codec.vocab_size == model.config.vocab_size
    assert info["source"] == "artifact" and (info["name"], info["version"]) == ("en-de", "1")
    # The same values on both sides: agreement is float32 rounding, far below export's 1e-3 tolerance.
    assert info["parity"]["max_abs_log_prob_diff"] < 1e-4 and info["parity"]["greedy_identical"]


def test_rebuilt_model_translates_like_onnx_runtime(number_model, tiny_artifact) -> None:  # type: ignore[no-untyped-def]
    model, codec, _ = load_artifact(tiny_artifact, check=False)
    lines = (Path(number_model.corpus_dir) / "test.tsv").read_text(encoding="utf-8").splitlines()
    sources = [line.split("\t")[0] for line in lines[:12]]
    # One sentence at a time: ONNX decoding caps a batch's steps by its longest source.
    onnx_translate = make_onnx_translate_fn(tiny_artifact / ENCODER_FILE, tiny_artifact / DECODER_FILE, codec,
                                            batch_sentences=1, threads=1)
    torch_ids = [h.token_ids for h in translate_ids(model, [codec.source_ids(s) for s in sources])]
    assert [codec.decode(ids) for ids in torch_ids] == onnx_translate(sources)
    assert all(torch_ids)


def test_a_weight_mapped_to_the_wrong_layer_fails_the_parity_check(tiny_artifact, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # bridge_hidden and bridge_cell have the same shape here: only the parity check can tell them apart.
    def swapped(role: str, config: ModelConfig) -> list[str]:
        layers = original(role, config)
        return [{"bridge_hidden": "bridge_cell", "bridge_cell": "bridge_hidden"}.get(x, x) for x in layers]

    original = from_artifact._linear_order
    monkeypatch.setattr(from_artifact, "_linear_order", swapped)
    with pytest.raises(ArtifactWeightsError, match="differs from ONNX Runtime"):
        load_artifact(tiny_artifact)


def test_an_initializer_that_maps_to_no_parameter_is_refused(tiny_artifact) -> None:  # type: ignore[no-untyped-def]
    graph = onnx.load(str(tiny_artifact / ENCODER_FILE)).graph
    config = load_artifact(tiny_artifact, check=False)[0].config
    graph.initializer.append(numpy_helper.from_array(np.zeros((3, 4), dtype=np.float32), "onnx::MatMul_999"))
    with pytest.raises(ArtifactWeightsError, match="map to no model parameter"):
        graph_state(graph, "encoder", config)


@pytest.mark.parametrize("config, fold_constants", [
    # what write_artifact ships for tied embeddings: unfolded, the tied matrix stored once
    (ModelConfig(vocab_size=64, embedding_dim=16, encoder_hidden=16, decoder_hidden=32, tie_embeddings=True), False),
    (ModelConfig(vocab_size=64, embedding_dim=16, encoder_hidden=16, decoder_hidden=32, tie_embeddings=True), True),
    (ModelConfig(vocab_size=64, embedding_dim=16, encoder_hidden=16, decoder_hidden=32, attention="bahdanau"), True),
    (ModelConfig(vocab_size=64, embedding_dim=16, encoder_hidden=16, decoder_hidden=32, encoder_cell="gru"), True),
    (ModelConfig(vocab_size=64, embedding_dim=16, encoder_hidden=16, decoder_hidden=32, attention="none"), True),
], ids=["tied-unfolded", "tied-folded", "bahdanau", "gru-encoder", "none"])
def test_every_export_form_maps_back_to_the_parameters(config: ModelConfig, fold_constants: bool,
                                                      tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Seq2Seq(config).eval()  # two layers each way (the defaults): layer order matters
    export_onnx(model, tmp_path, fold_constants=fold_constants)
    state: dict[str, np.ndarray] = {}
    for role, file in (("encoder", ENCODER_FILE), ("decoder_step", DECODER_FILE)):
        store_weights_as_fp16(tmp_path / file)
        state |= graph_state(onnx.load(str(tmp_path / file)).graph, role, config)
    for key, value in model.state_dict().items():
        if key in state:
            assert _as_stored(torch.from_numpy(np.array(state[key], dtype=np.float32)), value), key
        else:  # a tied alias the graphs hold under another name
            assert config.tie_embeddings and key in from_artifact.TIED_WEIGHTS, key
    assert set(state) <= set(model.state_dict())


@pytest.mark.slow
def test_the_shipped_model_rebuilds_with_onnx_parity() -> None:
    artifact = resolve_artifact(REPO_ROOT / "model_store", "en-de")
    model, codec, info = load_artifact(artifact)
    assert isinstance(codec, Codec) and model.config.tie_embeddings == info["model_config"]["tie_embeddings"]
    assert info["parity"]["max_abs_log_prob_diff"] < 1e-4 and info["parity"]["greedy_identical"]
