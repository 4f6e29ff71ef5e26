"""OnnxSeq2SeqModel against the tiny real artifact: shapes and invariants, row independence under
padding, IO binding, fail-fast checks against the manifest, and the scheduler on top of it."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from model_store import GraphSpec, Manifest, verify_artifact
from model_store.codec import Codec
from service.engine import (
    BeamSearch,
    DecoderState,
    GreedySearch,
    Memory,
    Scheduler,
    SchedulerConfig,
    Seq2SeqModel,
    SpecialIds,
    TranslationRequest,
    TranslationResult,
)
from service.runtime import CUDA_UNAVAILABLE, ModelLoadError, OnnxSeq2SeqModel

SENTENCES = ["twenty-one", "one thousand, nine hundred and ninety-nine", "seven", "four hundred and twelve"]


@pytest.fixture(scope="module")
def manifest(tiny_artifact: Path) -> Manifest:
    return verify_artifact(tiny_artifact)


@pytest.fixture(scope="module")
def model(tiny_artifact: Path, manifest: Manifest) -> OnnxSeq2SeqModel:
    return OnnxSeq2SeqModel.load(tiny_artifact, manifest, intra_op_threads=1)


@pytest.fixture(scope="module")
def codec(tiny_artifact: Path, manifest: Manifest) -> Codec:
    return Codec(tiny_artifact / manifest.tokenizer_file)


def special_of(manifest: Manifest) -> SpecialIds:
    t = manifest.special_tokens
    return SpecialIds(pad_id=t.pad_id, unk_id=t.unk_id, bos_id=t.bos_id, eos_id=t.eos_id)


def padded(codec: Codec, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    rows = [codec.source_ids(text) for text in texts]
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    ids = np.zeros((len(rows), int(lengths.max())), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
    return ids, lengths


def first_step(model: OnnxSeq2SeqModel, ids: np.ndarray, lengths: np.ndarray, bos: int):  # type: ignore[no-untyped-def]
    encoded = model.encode(ids, lengths)
    mask = np.arange(ids.shape[1])[None, :] < lengths[:, None]
    memory = Memory(encoded.memory, encoded.memory_keys, mask)
    previous = np.full(len(ids), bos, dtype=np.int64)
    return encoded, memory, model.decode_step(previous, DecoderState(encoded.hidden, encoded.cell), memory)


def test_load_reads_dimensions_and_implements_the_protocol(
    model: OnnxSeq2SeqModel, manifest: Manifest
) -> None:
    assert isinstance(model, Seq2SeqModel)
    assert model.vocab_size == manifest.vocab_size
    assert model.num_layers == manifest.model_config["decoder_layers"]
    assert model.hidden_size == manifest.model_config["decoder_hidden"]
    assert model.providers == ["CPUExecutionProvider"]
    options = model._decoder.session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    model.warm_up()


def test_encode_and_step_shapes_and_invariants(
    model: OnnxSeq2SeqModel, codec: Codec, manifest: Manifest
) -> None:
    ids, lengths = padded(codec, SENTENCES)
    encoded, _, out = first_step(model, ids, lengths, manifest.special_tokens.bos_id)
    batch, src_len = ids.shape
    assert encoded.memory.shape[:2] == (batch, src_len) and encoded.memory.dtype == np.float32
    assert encoded.memory_keys.shape == (batch, src_len, model.hidden_size)
    assert encoded.hidden.shape == encoded.cell.shape == (model.num_layers, batch, model.hidden_size)
    assert out.log_probs.shape == (batch, model.vocab_size)
    np.testing.assert_allclose(np.logaddexp.reduce(out.log_probs, axis=1), 0.0, atol=1e-4)
    assert out.state.hidden.shape == encoded.hidden.shape
    assert out.attention.shape == (batch, src_len)
    np.testing.assert_allclose(out.attention.sum(1), 1.0, atol=1e-5)
    padding = np.arange(src_len)[None, :] >= lengths[:, None]
    assert np.all(out.attention[padding] == 0)


def test_a_row_does_not_depend_on_its_batch_or_padding(
    model: OnnxSeq2SeqModel, codec: Codec, manifest: Manifest
) -> None:
    bos = manifest.special_tokens.bos_id
    ids, lengths = padded(codec, SENTENCES)
    _, _, together = first_step(model, ids, lengths, bos)
    for row in range(len(SENTENCES)):
        alone_ids = ids[row : row + 1, : lengths[row]]
        _, _, alone = first_step(model, alone_ids, lengths[row : row + 1], bos)
        np.testing.assert_allclose(together.log_probs[row], alone.log_probs[0], atol=1e-4)
        np.testing.assert_allclose(together.attention[row, : lengths[row]], alone.attention[0], atol=1e-5)


def test_io_binding_path_matches_plain_run(
    tiny_artifact: Path, manifest: Manifest, model: OnnxSeq2SeqModel, codec: Codec
) -> None:
    bound = OnnxSeq2SeqModel.load(tiny_artifact, manifest, intra_op_threads=1, io_binding=True)
    ids, lengths = padded(codec, SENTENCES)
    bos = manifest.special_tokens.bos_id
    _, memory, plain = first_step(model, ids, lengths, bos)
    encoded = bound.encode(ids, lengths)
    state = DecoderState(encoded.hidden, encoded.cell)
    for _ in range(2):  # the second step reuses the cached device memory
        out = bound.decode_step(np.full(len(ids), bos, dtype=np.int64), state, memory)
        np.testing.assert_allclose(out.log_probs, plain.log_probs, atol=1e-5)
        np.testing.assert_allclose(out.attention, plain.attention, atol=1e-6)


def test_int8_variant_loads_and_runs(tiny_artifact: Path, manifest: Manifest, codec: Codec) -> None:
    if "int8" not in manifest.variants:
        pytest.skip("artifact has no int8 variant")
    int8 = OnnxSeq2SeqModel.load(tiny_artifact, manifest, variant="int8", intra_op_threads=1)
    ids, lengths = padded(codec, SENTENCES)
    _, _, out = first_step(int8, ids, lengths, manifest.special_tokens.bos_id)
    assert out.log_probs.shape == (len(SENTENCES), manifest.vocab_size)


def _with_graph(manifest: Manifest, role: str, **changes: object) -> Manifest:
    variants = {v: dict(graphs) for v, graphs in manifest.variants.items()}
    variants["fp32"][role] = dataclasses.replace(manifest.variants["fp32"][role], **changes)
    return dataclasses.replace(manifest, variants=variants)


def test_a_graph_output_missing_from_the_manifest_fails_fast(tiny_artifact: Path, manifest: Manifest) -> None:
    spec: GraphSpec = manifest.variants["fp32"]["decoder_step"]
    outputs = {k: v for k, v in spec.outputs.items() if k != "attention"}
    with pytest.raises(ModelLoadError, match=r"decoder_step graph .*attention"):
        OnnxSeq2SeqModel.load(tiny_artifact, _with_graph(manifest, "decoder_step", outputs=outputs))


def test_a_manifest_output_missing_from_the_graph_fails_fast(tiny_artifact: Path, manifest: Manifest) -> None:
    spec = manifest.variants["fp32"]["encoder"]
    outputs = {**spec.outputs, "encoder_extra": ["batch"]}
    with pytest.raises(ModelLoadError, match=r"encoder graph .*encoder_extra"):
        OnnxSeq2SeqModel.load(tiny_artifact, _with_graph(manifest, "encoder", outputs=outputs))


def test_a_graph_input_unknown_to_the_manifest_fails_fast(tiny_artifact: Path, manifest: Manifest) -> None:
    spec = manifest.variants["fp32"]["encoder"]
    inputs = {k: v for k, v in spec.inputs.items() if k != "source_lengths"}
    with pytest.raises(ModelLoadError, match=r"encoder graph .*source_lengths"):
        OnnxSeq2SeqModel.load(tiny_artifact, _with_graph(manifest, "encoder", inputs=inputs))


def test_swapped_graph_files_fail_fast(tiny_artifact: Path, manifest: Manifest) -> None:
    decoder_file = manifest.variants["fp32"]["decoder_step"].file
    with pytest.raises(ModelLoadError, match="encoder graph"):
        OnnxSeq2SeqModel.load(tiny_artifact, _with_graph(manifest, "encoder", file=decoder_file))


def test_unreadable_or_missing_files_and_unknown_variants(
    tiny_artifact: Path, manifest: Manifest, tmp_path: Path
) -> None:
    copy = tmp_path / "artifact"
    shutil.copytree(tiny_artifact, copy)
    decoder_file = manifest.variants["fp32"]["decoder_step"].file
    (copy / decoder_file).write_bytes((copy / decoder_file).read_bytes()[:100])
    with pytest.raises(ModelLoadError, match=rf"decoder_step graph .*{decoder_file}.*cannot load"):
        OnnxSeq2SeqModel.load(copy, manifest)
    (copy / decoder_file).unlink()
    with pytest.raises(ModelLoadError, match="not found"):
        OnnxSeq2SeqModel.load(copy, manifest)
    with pytest.raises(ModelLoadError, match="no variant 'fp16'"):
        OnnxSeq2SeqModel.load(tiny_artifact, manifest, variant="fp16")


def test_cuda_without_the_provider_is_a_clear_error(tiny_artifact: Path, manifest: Manifest) -> None:
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(ModelLoadError) as info:
        OnnxSeq2SeqModel.load(tiny_artifact, manifest, providers="cuda")
    assert str(info.value) == CUDA_UNAVAILABLE


def _drive(search: GreedySearch | BeamSearch, model: OnnxSeq2SeqModel, ids: list[int], bos: int) -> list[int]:
    encoded = model.encode(np.array([ids]), np.array([len(ids)]))
    rows = search.rows
    index = np.zeros(rows, dtype=np.int64)
    state = DecoderState(encoded.hidden[:, index], encoded.cell[:, index])
    memory = Memory(encoded.memory[index], encoded.memory_keys[index], np.ones((rows, len(ids)), bool))
    previous = np.full(rows, bos, dtype=np.int64)
    while True:
        out = model.decode_step(previous, state, memory)
        advance = search.advance(out.log_probs, out.attention)
        if advance.done:
            return search.best().target_ids
        previous = advance.tokens
        state = DecoderState(out.state.hidden[:, advance.parents], out.state.cell[:, advance.parents])


def test_beam_of_one_equals_greedy_on_the_real_model(
    model: OnnxSeq2SeqModel, codec: Codec, manifest: Manifest
) -> None:
    special = special_of(manifest)
    for text in SENTENCES:
        ids = codec.source_ids(text)
        greedy = _drive(GreedySearch(special, 40, False), model, ids, special.bos_id)
        beam = _drive(BeamSearch(special, 1, 40, 1.0, False), model, ids, special.bos_id)
        assert beam == greedy


def test_scheduler_modes_agree_on_the_real_model(
    model: OnnxSeq2SeqModel, codec: Codec, manifest: Manifest
) -> None:
    special = special_of(manifest)
    requests = [
        TranslationRequest(codec.source_ids(text), beam_size=beam, want_attention=True)
        for text in SENTENCES
        for beam in (1, 3)
    ]

    async def translate(mode: str) -> list[TranslationResult]:
        scheduler = Scheduler(model, special, SchedulerConfig(mode=mode, max_batch_rows=16))  # type: ignore[arg-type]
        await scheduler.start()
        try:
            return await asyncio.gather(*(scheduler.submit(r) for r in requests))
        finally:
            await scheduler.stop()

    results = {mode: asyncio.run(translate(mode)) for mode in ("continuous", "static", "off")}
    for mode in ("static", "off"):
        assert [r.target_ids for r in results[mode]] == [r.target_ids for r in results["continuous"]]
    for req, result in zip(requests, results["continuous"], strict=True):
        assert result.target_ids, "the tiny model translates every number to something"
        assert result.attention is not None
        assert result.attention.shape == (len(result.target_ids) + 1, len(req.source_ids))
        np.testing.assert_allclose(result.attention.sum(1), 1.0, atol=1e-4)
        assert codec.decode(result.target_ids)


def test_the_encoder_and_the_decoder_have_their_own_thread_pools(tiny_artifact: Path, manifest: Manifest) -> None:
    model = OnnxSeq2SeqModel.load(tiny_artifact, manifest, intra_op_threads=2, encoder_intra_op_threads=1)
    assert model._encoder.session.get_session_options().intra_op_num_threads == 1
    assert model._decoder.session.get_session_options().intra_op_num_threads == 2
    same = OnnxSeq2SeqModel.load(tiny_artifact, manifest, intra_op_threads=2)
    assert same._encoder.session.get_session_options().intra_op_num_threads == 2


@pytest.mark.parametrize("beam_size", [2, 4])
def test_served_beam_is_the_evaluations_beam(
    number_model, model: OnnxSeq2SeqModel, codec: Codec, manifest: Manifest, beam_size: int  # type: ignore[no-untyped-def]
) -> None:
    """The service's beam (ONNX Runtime, service.engine.BeamSearch) answers what the evaluation's beam
    (PyTorch, training.decode.beam_batch) scored: the same stop rule and length penalty, so the
    published beam scores are what a client gets."""
    import torch

    from training.config import model_config_from_dict
    from training.decode import beam_batch
    from training.model import Seq2Seq

    checkpoint = torch.load(number_model.checkpoint, map_location="cpu", weights_only=False)
    torch_model = Seq2Seq(model_config_from_dict(checkpoint["model_config"]))
    torch_model.load_state_dict(checkpoint["model_state"])
    torch_model.eval()
    special = special_of(manifest)
    texts = [*SENTENCES, "eighty-eight", "three hundred and thirty-three", "nine thousand and one", "sixty"]
    sources = [codec.source_ids(text) for text in texts]
    with torch.no_grad():
        evaluated = beam_batch(torch_model, sources, beam_size=beam_size, length_penalty_alpha=1.0)
    served = [_drive(BeamSearch(special, beam_size, 40, 1.0, False), model, ids, special.bos_id) for ids in sources]
    assert served == [hypothesis.token_ids for hypothesis in evaluated]
