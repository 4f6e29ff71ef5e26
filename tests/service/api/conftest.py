"""Fast fixtures for the HTTP layer: a model store with a real tokenizer but fake graphs, and an echo model.

The echo model copies its source (attention one-hot on the copied position), so translations and
alignments are predictable without ONNX. End-to-end tests use the real artifact (tests/conftest.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sentencepiece as spm
from fastapi.testclient import TestClient

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
from model_store.codec import EOS_ID
from service.app import create_app
from service.engine import DecoderState, EncoderOutput, Memory, StepOutput
from service.settings import Settings

SENTENCES = [
    "the house is small",
    "the house is big",
    "good morning",
    "where is the station",
    "das haus ist klein",
    "das haus ist gross",
    "guten morgen",
    "wo ist der bahnhof",
    "hello world",
    "hallo welt",
    "one two three four five six seven eight nine ten",
] * 5
NOT_IN_VOCAB = "\u2603"  # a snowman: no such character in SENTENCES, so it encodes to <unk>


class EchoModel:
    """Copies the source: step t emits source token t (the source's eos ends the output)."""

    num_layers = 1
    hidden_size = 2

    def __init__(self, vocab_size: int, step_delay_s: float = 0.0) -> None:
        self.vocab_size = vocab_size
        self.step_delay_s = step_delay_s
        self.steps = 0
        self.fail_next_steps = 0  # > 0: the next decoder steps raise, like an ONNX Runtime error
        self._lock = threading.Lock()

    def encode(self, source_ids: np.ndarray, source_lengths: np.ndarray) -> EncoderOutput:
        batch, src_len = source_ids.shape
        memory = source_ids.astype(np.float32)[..., None]  # [batch, src_len, 1]
        keys = np.broadcast_to(np.arange(src_len, dtype=np.float32)[None, :, None], (batch, src_len, 2)).copy()
        hidden = np.zeros((1, batch, 2), np.float32)
        return EncoderOutput(memory, keys, hidden, hidden.copy())

    def decode_step(self, previous_tokens: np.ndarray, state: DecoderState, memory: Memory) -> StepOutput:
        if self.step_delay_s:
            time.sleep(self.step_delay_s)
        with self._lock:
            self.steps += 1
            if self.fail_next_steps > 0:
                self.fail_next_steps -= 1
                raise RuntimeError("injected ONNX Runtime failure")
        rows, src_len = memory.source_mask.shape
        step = state.hidden[0, :, 0].astype(np.int64)
        position = np.minimum(step, memory.source_mask.sum(1) - 1)  # [rows]
        token = np.rint(memory.memory[np.arange(rows), position, 0]).astype(np.int64)
        probs = np.full((rows, self.vocab_size), 0.1 / self.vocab_size, np.float64)
        # Like a trained model, the end is unlikely until the source is copied: a beam finishes the
        # copy rather than an early eos among the tokens that tie for second place.
        probs[:, EOS_ID] = np.where(token == EOS_ID, 0.9, 1e-9)
        probs[np.arange(rows), token] = 0.9
        attention = np.zeros((rows, src_len), np.float32)
        attention[np.arange(rows), position] = 1.0
        hidden = state.hidden.copy()
        hidden[0, :, 0] += 1
        log_probs = np.log(probs / probs.sum(1, keepdims=True)).astype(np.float32)
        return StepOutput(log_probs, DecoderState(hidden, state.cell.copy()), attention)


def _write_version(
    store: Path,
    tokenizer: Path,
    name: str,
    version: str,
    source: str,
    target: str,
    attention: str = "luong_general",
) -> Path:
    artifact = store / name / version
    artifact.mkdir(parents=True)
    (artifact / "spm.model").write_bytes(tokenizer.read_bytes())
    (artifact / "encoder.onnx").write_bytes(b"fake encoder " + version.encode())
    (artifact / "decoder_step.onnx").write_bytes(b"fake decoder " + version.encode())
    graphs = {
        "encoder": GraphSpec("encoder.onnx", ENCODER_INPUTS, ENCODER_OUTPUTS),
        "decoder_step": GraphSpec("decoder_step.onnx", DECODER_STEP_INPUTS, DECODER_STEP_OUTPUTS),
    }
    processor = spm.SentencePieceProcessor(model_file=str(tokenizer))
    write_manifest(
        artifact,
        Manifest(
            name=name,
            version=version,
            source_language=source,
            target_language=target,
            attention=attention,
            special_tokens=SpecialTokens(0, 1, 2, 3),
            tokenizer_file="spm.model",
            vocab_size=processor.get_piece_size(),
            max_source_tokens=64,
            opset=17,
            variants={"fp32": graphs},
            evaluation={"fp32": {"everyday": {"bleu": 12.5, "chrf": 40.0}}},
        ),
    )
    return artifact


@pytest.fixture(scope="session")
def fake_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """en-de versions 1 and 2 (good) and 3 (a tampered graph); de-en 1 without attention."""
    root = tmp_path_factory.mktemp("fake_store")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(root / "spm"),
        vocab_size=60,
        model_type="unigram",
        character_coverage=1.0,
        normalization_rule_name="identity",  # as training.tokenizer trains them
        pad_id=0,
        unk_id=1,
        bos_id=2,
        eos_id=3,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    store = root / "store"
    tokenizer = root / "spm.model"
    _write_version(store, tokenizer, "en-de", "1", "en", "de")
    _write_version(store, tokenizer, "en-de", "2", "en", "de")
    broken = _write_version(store, tokenizer, "en-de", "3", "en", "de")
    (broken / "encoder.onnx").write_bytes(b"tampered")
    _write_version(store, tokenizer, "de-en", "1", "de", "en", attention="none")
    return store


def echo_loader(step_delay_s: float = 0.0) -> Callable[..., EchoModel]:
    def load(artifact_dir: Path, manifest: Manifest, settings: Settings) -> EchoModel:
        return EchoModel(manifest.vocab_size, step_delay_s)

    return load


@pytest.fixture
def make_client(fake_store: Path) -> Iterator[Callable[..., TestClient]]:
    """make_client(step_delay_s=0.0, **settings) -> a started TestClient (lifespan run), fake store."""
    clients: list[TestClient] = []

    def make(step_delay_s: float = 0.0, **overrides: Any) -> TestClient:
        values: dict[str, Any] = {"model_store": fake_store, "models": "en-de@1,de-en", **overrides}
        settings = Settings(**values)
        client = TestClient(create_app(settings, model_loader=echo_loader(step_delay_s)), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()
