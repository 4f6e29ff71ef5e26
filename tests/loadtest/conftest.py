"""Fixtures of the load-test tests: the tiny artifact's store and sentences the tiny number model knows."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_store(tiny_artifact: Path) -> Path:
    return tiny_artifact.parent.parent


@pytest.fixture(scope="session")
def number_sentences(number_model) -> Path:  # type: ignore[no-untyped-def]
    """english<TAB>german number words: the held-out test split of the tiny model's corpus."""
    path = Path(number_model.corpus_dir) / "test.tsv"
    assert path.is_file()
    return path


STUB = Path(__file__).resolve().parent / "stub_server.py"


@pytest.fixture
def stub_server(tmp_path: Path):  # type: ignore[no-untyped-def]
    """start(mode, service_s=0.0, variant="fp32") -> a running tests/loadtest/stub_server.py process (a
    ServerProcess), stopped at the end of the test."""
    import os
    import sys

    from loadtest.servers import ServerProcess, _start, free_port

    started: list[ServerProcess] = []

    def start(mode: str, service_s: float = 0.0, variant: str = "fp32", log_path: Path | None = None) -> ServerProcess:
        port = free_port()
        env = dict(os.environ) | {"STUB_MODE": mode, "STUB_SERVICE_S": str(service_s), "STUB_VARIANT": variant}
        server = _start(f"stub-{mode}", [sys.executable, str(STUB), str(port)], env, port,
                        log_path or tmp_path / f"stub-{mode}-{len(started)}.log", 30.0)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
