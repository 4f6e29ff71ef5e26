"""An exception inside ONNX Runtime during a decoder step, against a REAL server process: it fails the
requests in that step with a clear 500, and the scheduler goes on serving the next requests.

The fault is real, not mocked: the tiny artifact's decoder graph is rewritten so that its embedding
Gather receives an out-of-range index for every row whose source has FAULTY_LENGTH tokens; ONNX
Runtime then raises from `InferenceSession.run` on that step, as it would for a corrupt weight file
or an unsupported shape.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from model_store import read_manifest, write_manifest
from model_store.codec import Codec

pytestmark = pytest.mark.slow

TEXTS = ["twenty-one", "one hundred and five", "seven", "one thousand, nine hundred and ninety-nine"]
OUT_OF_RANGE_TOKEN = 10**9


def metric_value(text: str, sample: str) -> float:
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{sample} not in /metrics")


def inject_step_fault(decoder_path: Path, faulty_source_length: int) -> None:
    """previous_tokens -> Where(source length == N, 10**9, previous_tokens) for every node reading it
    (on its way to the target-embedding Gather)."""
    model = onnx.load(str(decoder_path))
    graph = model.graph
    consumers = [node for node in graph.node if "previous_tokens" in node.input]
    assert consumers, "the decoder graph does not read previous_tokens"
    graph.initializer.extend([
        numpy_helper.from_array(np.array([1], dtype=np.int64), "fault_axes"),
        numpy_helper.from_array(np.array(faulty_source_length, dtype=np.int64), "fault_length"),
        numpy_helper.from_array(np.array(OUT_OF_RANGE_TOKEN, dtype=np.int64), "fault_token"),
    ])
    nodes = [
        helper.make_node("Cast", ["source_mask"], ["fault_mask"], to=TensorProto.INT64),
        helper.make_node("ReduceSum", ["fault_mask", "fault_axes"], ["fault_lengths"], keepdims=0),
        helper.make_node("Equal", ["fault_lengths", "fault_length"], ["fault_rows"]),
        helper.make_node("Where", ["fault_rows", "fault_token", "previous_tokens"], ["faulty_tokens"]),
    ]
    for node in consumers:
        node.input[list(node.input).index("previous_tokens")] = "faulty_tokens"
    for offset, node in enumerate(nodes):
        graph.node.insert(offset, node)
    onnx.checker.check_model(model)
    onnx.save(model, str(decoder_path))


@pytest.fixture
def faulty_store(tiny_artifact: Path, tmp_path: Path) -> tuple[Path, str, list[str]]:
    """(store whose fp32 decoder fails on sources of one length, a text of that length, texts of others)."""
    store = tmp_path / "store"
    shutil.copytree(tiny_artifact.parent.parent, store)
    artifact = store / tiny_artifact.parent.name / tiny_artifact.name
    manifest = read_manifest(artifact)
    codec = Codec(artifact / manifest.tokenizer_file)
    lengths = {text: len(codec.source_ids(text)) for text in TEXTS}
    faulty = max(TEXTS, key=lambda text: lengths[text])
    healthy = [text for text in TEXTS if lengths[text] != lengths[faulty]]
    assert healthy, lengths
    inject_step_fault(artifact / manifest.variants["fp32"]["decoder_step"].file, lengths[faulty])
    write_manifest(artifact, dataclasses.replace(manifest, files={}))  # re-checksum the rewritten graph
    return store, faulty, healthy


async def _translate_all(base_url: str, texts: list[str]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=base_url, timeout=60.0) as client:
        return list(await asyncio.gather(*(client.post("/v1/translate", json={"text": t}) for t in texts)))


def test_a_failing_step_fails_its_requests_and_the_next_ones_are_served(
    faulty_store: tuple[Path, str, list[str]], live_server_factory: Callable[..., object]
) -> None:
    store, faulty, healthy = faulty_store
    server = live_server_factory(store)
    url = server.base_url  # type: ignore[attr-defined]
    expected = {text: httpx.post(url + "/v1/translate", json={"text": text}, timeout=60).json() for text in healthy}
    assert all("translations" in body for body in expected.values()), expected

    failed = httpx.post(url + "/v1/translate", json={"text": faulty}, timeout=60)
    assert failed.status_code == 500, failed.text
    assert failed.json()["error"]["code"] == "inference_failed"
    assert "decoder step" in failed.json()["error"]["message"]

    # A failing request among healthy ones: whatever shared its step fails with it (500, never a hang
    # or a wrong answer); everything else is answered correctly.
    mixed = asyncio.run(_translate_all(url, [*healthy, faulty, *healthy]))
    assert {r.status_code for r in mixed} <= {200, 500}
    assert mixed[len(healthy)].status_code == 500
    for text, response in zip([*healthy, faulty, *healthy], mixed, strict=True):
        if response.status_code == 200:
            assert response.json()["translations"] == expected[text]["translations"]

    # The scheduler goes on: the next requests are all served, and no rows are left behind.
    after = asyncio.run(_translate_all(url, healthy * 3))
    assert [r.status_code for r in after] == [200] * len(after)
    metrics = httpx.get(url + "/metrics", timeout=10).text
    failures = sum(1 for r in [failed, *mixed] if r.status_code == 500)
    assert metric_value(metrics, 'translator_requests_rejected_total{reason="failed"}') == failures
    assert metric_value(metrics, "translator_active_rows") == 0
    assert server.process.poll() is None  # type: ignore[attr-defined]
    assert "decoder step failed" in server.log_text()  # type: ignore[attr-defined]
