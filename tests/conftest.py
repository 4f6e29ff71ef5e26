"""Session fixtures shared by the whole suite: a tiny REAL model (trained on the synthetic
number task in seconds on CPU) and its exported, checksummed artifact in a temporary store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

TINY_MODEL_NAME, TINY_MODEL_VERSION = "en-de", "1"
# The suite tests the engine: a sentence asked twice is decoded twice (comparing an answer in a batch
# with the same sentence asked alone means nothing if the second comes from the translation cache).
# Tests of the cache turn it on (cache_mb=...); `make serve` and the deployment have it on.
TEST_CACHE_MB = "0"


def pytest_configure(config: pytest.Config) -> None:
    import os

    os.environ.setdefault("TRANSLATOR_CACHE_MB", TEST_CACHE_MB)


@dataclass(frozen=True)
class NumberModel:
    checkpoint: Path
    tokenizer: Path
    corpus_dir: Path


@pytest.fixture(scope="session")
def number_model(tmp_path_factory: pytest.TempPathFactory) -> NumberModel:
    """A small attention model trained on English -> German number words (about 15-30 s on 2 cores)."""
    from model_store.codec import Codec
    from training.config import ModelConfig, TrainConfig
    from training.synthetic import write_number_corpus
    from training.tokenizer import train_tokenizer
    from training.train import train

    root = tmp_path_factory.mktemp("number_model")
    write_number_corpus(root / "corpus", train_size=6000, max_number=1999)
    tokenizer = train_tokenizer(root / "corpus" / "train.tsv", root / "tokenizer", vocab_size=200)
    model_config = ModelConfig(
        vocab_size=Codec(tokenizer).vocab_size, embedding_dim=64, encoder_hidden=64, encoder_layers=1,
        decoder_hidden=128, decoder_layers=1, dropout=0.1,
    )
    train_config = TrainConfig(
        corpus_dir=str(root / "corpus"), tokenizer_model=str(tokenizer), out_dir=str(root / "run"),
        batch_tokens=1500, epochs=10, learning_rate=3e-3, label_smoothing=0.0, log_every_steps=0,
        threads=1, early_stopping_patience=100,
    )
    checkpoint = train(model_config, train_config)
    return NumberModel(checkpoint=checkpoint, tokenizer=tokenizer, corpus_dir=root / "corpus")


@pytest.fixture(scope="session")
def tiny_artifact(number_model: NumberModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`<store>/en-de/1`: the number model exported (fp32 + int8) with a verified manifest.

    The store is `tiny_artifact.parent.parent`; tests that tamper with files must copy it first.
    """
    import torch

    from training.config import model_config_from_dict
    from training.export import write_artifact
    from training.model import Seq2Seq

    checkpoint = torch.load(number_model.checkpoint, map_location="cpu", weights_only=False)
    model = Seq2Seq(model_config_from_dict(checkpoint["model_config"]))
    model.load_state_dict(checkpoint["model_state"])
    store = tmp_path_factory.mktemp("store")
    artifact_dir, _, _ = write_artifact(
        model, number_model.tokenizer, store, TINY_MODEL_NAME, TINY_MODEL_VERSION,
        source_language="en", target_language="de", max_source_tokens=64,
        training_info={"task": "synthetic numbers (tests only)"}, data_info={"corpus": "num2words"},
        evaluation={"fp32": {"numbers": {"exact_match": -1.0}}},
    )
    return artifact_dir


# ---- a real server process over the tiny artifact (written by the HTTP-layer contributor) -------------
# Imports stay inside the functions so the part above keeps its own import block.

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class LiveServer:
    """A `python -m service` process; `base_url` like http://127.0.0.1:PORT (no trailing slash)."""

    base_url: str
    process: object  # subprocess.Popen[bytes]
    log_path: Path

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, wait for the drained exit; kill if it hangs. Returns the exit code."""
        import signal
        import subprocess

        process: subprocess.Popen[bytes] = self.process  # type: ignore[assignment]
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return int(process.returncode)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_live_server(
    store: Path, log_path: Path, ready_timeout_s: float = 90.0, **settings: str
) -> LiveServer:
    """Start `python -m service` on a free port over `store` and wait until /readyz answers 200.

    `settings` are extra TRANSLATOR_* variables without the prefix, e.g. api_keys="k1".
    """
    import os
    import subprocess
    import sys
    import time

    import httpx

    port = _free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRANSLATOR_")}
    env |= {
        "TRANSLATOR_HOST": "127.0.0.1",
        "TRANSLATOR_PORT": str(port),
        "TRANSLATOR_MODEL_STORE": str(store),
        "TRANSLATOR_INTRA_OP_THREADS": "1",
        "TRANSLATOR_CACHE_MB": TEST_CACHE_MB,
        "PYTHONUNBUFFERED": "1",
    }
    env |= {f"TRANSLATOR_{key.upper()}": value for key, value in settings.items()}
    log_handle = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "service"], cwd=REPO_ROOT, env=env, stdout=log_handle, stderr=subprocess.STDOUT
    )
    log_handle.close()  # the child keeps its own descriptor
    server = LiveServer(base_url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = server.log_text()[-4000:]
            raise RuntimeError(f"server exited with {process.returncode} before ready:\n{tail}")
        try:
            if httpx.get(server.base_url + "/readyz", timeout=2.0).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"server not ready after {ready_timeout_s} s:\n{server.log_text()[-4000:]}")


@pytest.fixture(scope="session")
def live_server(tiny_artifact: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Base URL of one real uvicorn process serving the tiny artifact for the whole session."""
    server = start_live_server(tiny_artifact.parent.parent, tmp_path_factory.mktemp("live") / "server.log")
    yield server.base_url
    server.stop()


@pytest.fixture
def live_server_factory(tmp_path: Path):  # type: ignore[no-untyped-def]
    """start(store, **settings) -> LiveServer, for tests that need their own settings or kill the process."""
    servers: list[LiveServer] = []

    def start(store: Path, **settings: str) -> LiveServer:
        server = start_live_server(store, tmp_path / f"server{len(servers)}.log", **settings)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
