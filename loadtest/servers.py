"""Server processes under test: the service (`python -m service`) or the naive baseline, each a
separate process on a free port, started, waited for (/readyz) and stopped (SIGTERM, then kill).

Stdlib only; never imports locust (its gevent patching would hang a server in this process).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# The service's /metrics counters that say how well the decoder batched (absent on the naive server).
SERVER_COUNTERS = {
    "decoder_steps": "translator_decoder_steps_total",
    "batch_rows_sum": "translator_batch_rows_sum",
    "generated_tokens": "translator_generated_tokens_total",
}


class ServerStartError(RuntimeError):
    """The server exited or never became ready; the message ends with its log's tail."""


@dataclass
class ServerProcess:
    label: str
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system, all threads) the server process has used so far, from
        /proc/<pid>/stat; None where there is no /proc (not Linux) or the process is gone."""
        try:
            stat = Path(f"/proc/{self.process.pid}/stat").read_text(encoding="ascii")
        except OSError:
            return None
        # Fields after the command name, which is in parentheses and may contain spaces: utime and
        # stime are the 14th and 15th fields of the line, in clock ticks.
        fields = stat[stat.rindex(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_tail(self, chars: int = 3000) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""
        return text[-chars:]

    def stop(self, timeout_s: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def _start(label: str, argv: list[str], env: dict[str, str], port: int, log_path: Path,
           ready_timeout_s: float) -> ServerProcess:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log_handle:
        process = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=log_handle, stderr=subprocess.STDOUT)
    server = ServerProcess(label, f"http://127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerStartError(f"{label}: exited with {process.returncode} before ready:\n{server.log_tail()}")
        if _ready(server.base_url + "/readyz"):
            return server
        time.sleep(0.2)
    server.stop()
    raise ServerStartError(f"{label}: not ready after {ready_timeout_s} s:\n{server.log_tail()}")


def start_service(store: Path, log_path: Path, settings: dict[str, str] | None = None, label: str = "service",
                  ready_timeout_s: float = 180.0) -> ServerProcess:
    """`python -m service` over `store`; `settings` are TRANSLATOR_* variables without the prefix
    ({"batching": "static", "variant": "int8"}). Other TRANSLATOR_* variables of this process are dropped."""
    port = free_port()
    env = service_env(store, settings) | {"TRANSLATOR_HOST": "127.0.0.1", "TRANSLATOR_PORT": str(port)}
    return _start(label, [sys.executable, "-m", "service"], env, port, log_path, ready_timeout_s)


def service_env(store: Path, settings: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a service process under test gets: this process's, without its TRANSLATOR_*
    variables, plus the store, no translation cache, and `settings` (TRANSLATOR_* without the prefix).
    Also what loadtest.lone_model runs in, so that it loads the model as that server does."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRANSLATOR_")}
    # The benchmarks measure the engine: the same sentences are sent again and again, which the
    # translation cache would answer without it (and the naive baseline has none). Off unless asked.
    env |= {"TRANSLATOR_MODEL_STORE": str(Path(store).resolve()), "TRANSLATOR_LOG_LEVEL": "WARNING",
            "TRANSLATOR_CACHE_MB": "0", "PYTHONUNBUFFERED": "1"}
    env |= {f"TRANSLATOR_{key.upper()}": str(value) for key, value in (settings or {}).items()}
    return env


@dataclass(frozen=True)
class NaiveWeights:
    """Where the naive baseline's torch weights come from."""

    source: str  # "checkpoint" (a training checkpoint) | "artifact" (the artifact's fp32 graphs)
    path: Path


def naive_weights(checkpoint: Path | None, artifact: Path | None) -> NaiveWeights:
    """The checkpoint when that file exists, else the artifact: checkpoints are never committed, and the
    artifact's fp32 graphs hold the very weights the service computes with."""
    if checkpoint is not None and Path(checkpoint).is_file():
        return NaiveWeights("checkpoint", Path(checkpoint))
    if artifact is None:
        raise ServerStartError(f"the naive baseline needs a torch checkpoint ({checkpoint} not found) or an artifact")
    return NaiveWeights("artifact", Path(artifact))


def start_naive(weights: NaiveWeights, log_path: Path, label: str = "naive", ready_timeout_s: float = 180.0,
                threads: int = 0) -> ServerProcess:
    """The naive PyTorch baseline (loadtest/naive_server.py) serving `weights` (see naive_weights)."""
    port = free_port()
    env = dict(os.environ) | {"PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "loadtest.naive_server", f"--{weights.source}", str(weights.path.resolve()),
            "--port", str(port), "--threads", str(threads)]
    return _start(label, argv, env, port, log_path, ready_timeout_s)


def scrape_counters(base_url: str, metrics: Mapping[str, str] = SERVER_COUNTERS) -> dict[str, float]:
    """`metrics` (key -> unlabelled sample name; default SERVER_COUNTERS) read from /metrics, by key;
    empty when the server has no such metrics."""
    try:
        with urllib.request.urlopen(base_url + "/metrics", timeout=5.0) as response:
            text = response.read().decode("utf-8")
    except (OSError, ValueError):
        return {}
    wanted = {metric: key for key, metric in metrics.items()}
    values: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in wanted:
            values[wanted[name]] = float(value)
    return values


def decoder_activity(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Mean rows per decoder step and tokens generated between two scrapes (empty without metrics)."""
    steps = after.get("decoder_steps", 0.0) - before.get("decoder_steps", 0.0)
    if steps <= 0:
        return {}
    return {
        "decoder_steps": steps,
        "rows_per_decoder_step": (after["batch_rows_sum"] - before["batch_rows_sum"]) / steps,
        "server_generated_tokens": after["generated_tokens"] - before["generated_tokens"],
    }
