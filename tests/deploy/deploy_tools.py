"""What the deploy tests share: finding and running the deploy-check tools (a missing tool fails the
test, it never skips), reading rendered manifests, PromQL metric names, and a real Prometheus server.

Tools come from deploy/install-tools.sh. Must not import the service (the checks are about files).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY_DIR = REPO_ROOT / "deploy"
OVERLAYS_DIR = DEPLOY_DIR / "k8s" / "overlays"
# The Kubernetes version the manifests are validated against (and documented in deploy/README.md).
KUBERNETES_VERSION = "1.30.0"
INSTALL_HINT = "run deploy/install-tools.sh (or `make deploy-check`)"

PROMQL_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def find_tool(name: str) -> str:
    """Path of a deploy-check tool: PATH, the running venv's bin/, or checkov's own venv."""
    candidates = [shutil.which(name), str(Path(sys.executable).parent / name)]
    if name == "checkov":
        checkov_venv = Path(os.environ.get("CHECKOV_VENV", REPO_ROOT / "build" / "checkov-venv"))
        candidates.append(str(checkov_venv / "bin" / "checkov"))
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    hint = INSTALL_HINT
    if name == "kubectl":
        # No pinned pip-installable kustomize exists for Python 3.11 (pykustomize needs 3.14), and
        # Debian's kubernetes-client 1.20 predates components/labels: kubectl must come from upstream.
        hint = "install kubectl >= 1.27 (it carries kustomize; Debian's kubernetes-client is too old)"
    pytest.fail(f"{name} not found: {hint}", pytrace=False)


def run_tool(args: list[str], *, timeout_s: float = 120, input_text: str | None = None) -> str:
    """Run a tool and fail the test with its output when it exits non-zero."""
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s, input=input_text, cwd=REPO_ROOT)
    if result.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}", pytrace=False)
    return result.stdout


def overlay_names() -> list[str]:
    return sorted(path.name for path in OVERLAYS_DIR.iterdir() if (path / "kustomization.yaml").is_file())


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [obj for obj in objects if obj["kind"] == kind]


def one(objects: list[dict], kind: str) -> dict:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def promql_metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (label matchers, strings, ranges, grouping removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"(?<![A-Za-z0-9_:.])\d+(\.\d+)?([eE][+-]?\d+)?(?![A-Za-z0-9_:])", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        token = match.group(0)
        following = text[match.end() :].lstrip()
        if following.startswith("(") or token.lower() in PROMQL_KEYWORDS:
            continue  # a function call or an operator keyword
        if re.fullmatch(r"\d+[smhdwy]", token):
            continue
        names.add(token)
    return names


def metric_family(series_name: str, exported: set[str]) -> str:
    """`translator_x_bucket` -> `translator_x` when `translator_x` is an exported histogram."""
    for suffix in HISTOGRAM_SUFFIXES:
        if series_name.endswith(suffix) and series_name.removesuffix(suffix) in exported:
            return series_name.removesuffix(suffix)
    return series_name


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PrometheusServer:
    """A real Prometheus (Debian package) on loopback, scraping one target every second."""

    base_url: str
    process: subprocess.Popen
    log_path: Path

    def query(self, promql: str) -> list[dict]:
        url = f"{self.base_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]["result"]

    def wait_for(self, promql: str, timeout_s: float = 30.0) -> list[dict]:
        """Poll until the query returns a series: the first scrape lands 5-6 s after start."""
        deadline = time.monotonic() + timeout_s
        while True:
            result = self.query(promql)
            if result:
                return result
            if self.process.poll() is not None:
                pytest.fail(f"prometheus exited with {self.process.returncode}:\n{self.log_tail()}", pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(f"no series for {promql!r} after {timeout_s:.0f} s:\n{self.log_tail()}", pytrace=False)
            time.sleep(0.5)

    def wait_until_empty(self, promql: str, timeout_s: float = 15.0) -> None:
        """Poll until the query returns nothing (e.g. an alert that resolves once data arrives)."""
        deadline = time.monotonic() + timeout_s
        while self.query(promql):
            if time.monotonic() > deadline:
                pytest.fail(f"{promql!r} still returns {self.query(promql)} after {timeout_s:.0f} s", pytrace=False)
            time.sleep(0.5)

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def targets(self) -> dict:
        """/api/v1/targets: `activeTargets` (labels after relabeling) and `droppedTargets`."""
        with urllib.request.urlopen(f"{self.base_url}/api/v1/targets?state=any", timeout=5) as response:
            return json.load(response)["data"]

    def metric_names(self) -> set[str]:
        with urllib.request.urlopen(f"{self.base_url}/api/v1/label/__name__/values", timeout=5) as response:
            return set(json.load(response)["data"])


def read_exported_metrics() -> set[str]:
    """Metric family names the service exports (deploy/metrics.txt; cross-checked against /metrics)."""
    lines = (DEPLOY_DIR / "metrics.txt").read_text(encoding="utf-8").splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def render_overlay(name: str) -> list[dict]:
    """`kubectl kustomize` of one overlay, as a list of Kubernetes objects."""
    text = run_tool([find_tool("kubectl"), "kustomize", str(OVERLAYS_DIR / name)])
    return [doc for doc in yaml.safe_load_all(text) if doc]


def start_prometheus(workdir: Path, target: str) -> PrometheusServer:
    """Start Prometheus scraping `host:port` every second as job `translator`, with rules.yml loaded.

    The caller stops it (`server.stop()`).
    """
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(DEPLOY_DIR / "prometheus" / "rules.yml")],
        "scrape_configs": [
            {
                "job_name": "translator",
                "static_configs": [{"targets": [target], "labels": {"namespace": "test", "pod": "local"}}],
            }
        ],
    }
    return start_prometheus_with_config(workdir, config)


def start_prometheus_with_config(workdir: Path, config: dict) -> PrometheusServer:
    """Start Prometheus with `config` (a prometheus.yml as a dict); the caller stops it."""
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    log_path = workdir / "prometheus.log"
    port = free_port()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                find_tool("prometheus"),
                f"--config.file={config_path}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = PrometheusServer(base_url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(f"{server.base_url}/-/ready", timeout=1) as response:
                if response.status == 200:
                    return server
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            pytest.fail(f"prometheus did not become ready:\n{server.log_tail()}", pytrace=False)
        time.sleep(0.1)
