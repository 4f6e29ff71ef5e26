"""Fixtures of the deploy checks: rendered overlays, exported metric names, a Prometheus factory.

Must not import the service: these tests check files and tools (see deploy_tools.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from deploy_tools import PrometheusServer, overlay_names, read_exported_metrics, render_overlay, start_prometheus


@pytest.fixture(scope="session")
def rendered_overlays() -> dict[str, list[dict]]:
    """Every overlay under deploy/k8s/overlays rendered by `kubectl kustomize`."""
    return {name: render_overlay(name) for name in overlay_names()}


@pytest.fixture(scope="session")
def exported_metrics() -> set[str]:
    return read_exported_metrics()


@pytest.fixture
def prometheus_server(tmp_path: Path) -> Iterator[Callable[[str], PrometheusServer]]:
    """Factory: a real Prometheus scraping the given `host:port`; stopped after the test."""
    started: list[PrometheusServer] = []

    def start(target: str) -> PrometheusServer:
        server = start_prometheus(tmp_path, target)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
