"""IO binding on ONNX Runtime's CPU provider with the shipped model (real sessions, no mocks): the
decoder state stays where ORT left it between steps, and every number and every translation is
identical to the plain path, also when rows leave, join or are reordered by beam search."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from model_store import Manifest, resolve_artifact, verify_artifact
from model_store.codec import Codec
from service.engine import (
    BeamSearch,
    DecodeBatch,
    DecoderState,
    Scheduler,
    SchedulerConfig,
    SpecialIds,
    StepOutput,
    TranslationRequest,
    TranslationResult,
)
from service.runtime import OnnxSeq2SeqModel
from service.runtime.onnx_model import _DeviceState
from service.settings import DEFAULT_MODEL_STORE

TEXTS = ["Good morning.", "Open the file menu and save the document.", "Thank you.", "Where is the station?"]


@pytest.fixture(scope="module")
def shipped() -> tuple[Path, Manifest]:
    artifact = resolve_artifact(DEFAULT_MODEL_STORE, "en-de")
    return artifact, verify_artifact(artifact)


@pytest.fixture(scope="module")
def models(shipped: tuple[Path, Manifest]) -> dict[bool, OnnxSeq2SeqModel]:
    artifact, manifest = shipped
    return {
        binding: OnnxSeq2SeqModel.load(artifact, manifest, providers="cpu", intra_op_threads=1, io_binding=binding)
        for binding in (True, False)
    }


@pytest.fixture(scope="module")
def codec(shipped: tuple[Path, Manifest]) -> Codec:
    artifact, manifest = shipped
    return Codec(artifact / manifest.tokenizer_file)


def special_of(manifest: Manifest) -> SpecialIds:
    t = manifest.special_tokens
    return SpecialIds(pad_id=t.pad_id, unk_id=t.unk_id, bos_id=t.bos_id, eos_id=t.eos_id)


def join(
    batch: DecodeBatch, model: OnnxSeq2SeqModel, codec: Codec, texts: list[str], keys: list[int],
    beams: list[int], bos: int,
) -> DecodeBatch:
    rows = [codec.source_ids(text) for text in texts]
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    ids = np.zeros((len(rows), int(lengths.max())), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
    batch.join(keys, beams, lengths, model.encode(ids, lengths), bos)
    return batch


def assert_same_step(bound: StepOutput, plain: StepOutput) -> None:
    np.testing.assert_array_equal(bound.log_probs, plain.log_probs)
    np.testing.assert_array_equal(bound.attention, plain.attention)
    np.testing.assert_array_equal(bound.state.hidden, plain.state.hidden)
    np.testing.assert_array_equal(bound.state.cell, plain.state.cell)


def test_bound_steps_match_plain_ones_as_rows_continue_leave_join_and_reorder(
    models: dict[bool, OnnxSeq2SeqModel], codec: Codec, shipped: tuple[Path, Manifest]
) -> None:
    bos = shipped[1].special_tokens.bos_id
    assert models[True].io_binding and not models[False].io_binding
    batches = {b: join(DecodeBatch(), m, codec, TEXTS[:3], [0, 1, 2], [1, 1, 1], bos) for b, m in models.items()}

    def step(leaving: tuple[int, ...] = ()) -> StepOutput:
        """One decoder step on both batches, compared; then every request continues with its greedy
        token except those `leaving`, as the decode loop's _advance does."""
        outs = {b: models[b].decode_step(x.previous_tokens, x.state, x.memory) for b, x in batches.items()}
        tokens = outs[False].log_probs.argmax(1)
        for b, batch in batches.items():
            batch.set_state(outs[b].state)
            for key in list(batch.requests()):
                if key in leaving:
                    batch.release(key)
                else:
                    batch.continue_rows(key, np.array([0]), tokens[batch.slots(key)])
            batch.settle(max_hole_share=0.25)
        bound = outs[True]
        assert isinstance(bound.state, _DeviceState)
        unread = not bound.state._host  # before assert_same_step reads it
        assert_same_step(bound, outs[False])  # reading keeps the device values for the next step
        if not leaving:  # (when rows moved, settle had to read it)
            assert unread, "the state was copied to the host although no row moved"
        return bound

    # Rows continue in place: the state ORT returned goes back as it is, not via the host.
    for _ in range(4):
        out = step()
        assert batches[True].state is out.state
    step(leaving=(1,))  # the middle request leaves: the last row moves into its slot, via the host
    assert not isinstance(batches[True].state, _DeviceState)
    assert batches[True].rows == 2 and batches[True].slots(2).tolist() == [1]
    step()
    for b, model in models.items():  # a request joins (the new rows come from the host)
        join(batches[b], model, codec, TEXTS[3:], [3], [1], bos)
        assert batches[b].rows == 3
    for _ in range(3):
        step()


def test_beam_search_reorders_bound_states_like_plain_ones(
    models: dict[bool, OnnxSeq2SeqModel], codec: Codec, shipped: tuple[Path, Manifest]
) -> None:
    special = special_of(shipped[1])
    hypotheses = {}
    for binding, model in models.items():
        search = BeamSearch(special, 4, 40, 1.0, want_attention=True)
        batch = join(DecodeBatch(), model, codec, TEXTS[1:2], [0], [4], special.bos_id)
        steps = 0
        while batch.rows:
            out = model.decode_step(batch.previous_tokens, batch.state, batch.memory)
            advance = search.advance(out.log_probs, out.attention)
            steps += 1
            batch.set_state(out.state)
            if advance.done:
                batch.release(0)
            else:
                batch.continue_rows(0, advance.parents, advance.tokens)
            batch.settle(max_hole_share=0.25)
        assert steps > 3
        hypotheses[binding] = search.best()
    assert hypotheses[True].target_ids == hypotheses[False].target_ids
    assert hypotheses[True].score == hypotheses[False].score
    np.testing.assert_array_equal(hypotheses[True].attention, hypotheses[False].attention)


def test_a_host_state_and_another_models_state_are_read_not_bound(
    models: dict[bool, OnnxSeq2SeqModel], codec: Codec, shipped: tuple[Path, Manifest]
) -> None:
    artifact, manifest = shipped
    other = OnnxSeq2SeqModel.load(artifact, manifest, providers="cpu", intra_op_threads=1, io_binding=True)
    batch = join(DecodeBatch(), models[True], codec, TEXTS, [0, 1, 2, 3], [1, 1, 1, 1], manifest.special_tokens.bos_id)
    first = models[True].decode_step(batch.previous_tokens, batch.state, batch.memory)
    tokens = first.log_probs.argmax(1)
    from_other = other.decode_step(tokens, first.state, batch.memory)
    host = DecoderState(first.state.hidden.copy(), first.state.cell.copy())
    assert_same_step(from_other, models[False].decode_step(tokens, host, batch.memory))


def test_the_device_copy_of_each_lanes_memory_is_kept_while_the_lanes_take_turns(
    models: dict[bool, OnnxSeq2SeqModel], codec: Codec, shipped: tuple[Path, Manifest]
) -> None:
    """The decode loop steps one batch per lane in turn: each batch's memory is copied to the device
    once, not again on every step because the other lane's came in between."""
    bos = shipped[1].special_tokens.bos_id
    short = join(DecodeBatch(), models[True], codec, TEXTS[:1], [0], [1], bos)
    long = join(DecodeBatch(), models[True], codec, TEXTS[1:2], [1], [1], bos)
    device_memory = models[True]._device_memory
    assert device_memory is not None
    first = {lane: device_memory.values(lane.memory) for lane in (short, long)}
    for _ in range(3):
        for lane in (short, long):
            assert device_memory.values(lane.memory) is first[lane]


@pytest.mark.parametrize("lane_bounds", [(), (6,)])
def test_translations_through_the_scheduler_are_identical_with_binding_on_and_off(
    models: dict[bool, OnnxSeq2SeqModel], codec: Codec, shipped: tuple[Path, Manifest], lane_bounds: tuple[int, ...]
) -> None:
    special = special_of(shipped[1])
    requests = [
        TranslationRequest(codec.source_ids(text), beam_size=beam, want_attention=True)
        for text in TEXTS
        for beam in (1, 3)
    ]

    async def translate(model: OnnxSeq2SeqModel) -> list[TranslationResult]:
        # 6 rows for 16 wanted: requests wait, then join a running batch as others leave.
        # (6,): the short texts and the long one are stepped in separate decoder calls (lanes).
        config = SchedulerConfig(mode="continuous", max_batch_rows=6, decoder_lane_bounds=lane_bounds)
        scheduler = Scheduler(model, special, config)
        await scheduler.start()
        try:
            pending = []
            for request in requests:
                pending.append(asyncio.ensure_future(scheduler.submit(request)))
                await asyncio.sleep(0.002)  # staggered arrivals: joins happen mid-decode
            return await asyncio.gather(*pending)
        finally:
            await scheduler.stop()

    bound, plain = (asyncio.run(translate(models[binding])) for binding in (True, False))
    # When a request joins depends on thread timing, and a row's last bits may depend on its batch:
    # scores and attention are compared to a tolerance, the translations exactly.
    for b, p in zip(bound, plain, strict=True):
        assert b.target_ids and b.target_ids == p.target_ids
        assert b.score == pytest.approx(p.score, abs=1e-4)
        assert b.attention is not None and p.attention is not None
        np.testing.assert_allclose(b.attention, p.attention, atol=1e-5)
