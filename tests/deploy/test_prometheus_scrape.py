"""A real Prometheus server (Debian package) scrapes the service and PromQL over its metrics answers.

`live_server` (tests/conftest.py) is the base URL of a real uvicorn service process. The static
test checks the same scrape-and-poll path against a plain HTTP server with a fixed exposition.
Also: prometheus.yml's pod relabeling run by a real Prometheus, and deploy/metrics.txt against the
families a live /metrics exports, both ways.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from deploy_tools import (
    DEPLOY_DIR,
    PrometheusServer,
    free_port,
    read_exported_metrics,
    start_prometheus_with_config,
)

# A fixed exposition with every exported family, in the types the service uses.
STATIC_EXPOSITION = """\
# TYPE translator_http_requests_total counter
translator_http_requests_total{route="/v1/translate",method="POST",status="200"} 3
# TYPE translator_http_request_duration_seconds histogram
translator_http_request_duration_seconds_bucket{route="/v1/translate",le="0.5"} 3
translator_http_request_duration_seconds_bucket{route="/v1/translate",le="+Inf"} 3
translator_http_request_duration_seconds_sum{route="/v1/translate"} 0.3
translator_http_request_duration_seconds_count{route="/v1/translate"} 3
# TYPE translator_queue_wait_seconds histogram
translator_queue_wait_seconds_bucket{le="0.1"} 3
translator_queue_wait_seconds_bucket{le="+Inf"} 3
translator_queue_wait_seconds_sum 0.01
translator_queue_wait_seconds_count 3
# TYPE translator_encode_seconds histogram
translator_encode_seconds_bucket{le="0.1"} 3
translator_encode_seconds_bucket{le="+Inf"} 3
translator_encode_seconds_sum 0.006
translator_encode_seconds_count 3
# TYPE translator_decode_seconds histogram
translator_decode_seconds_bucket{le="0.1"} 2
translator_decode_seconds_bucket{le="+Inf"} 3
translator_decode_seconds_sum 0.25
translator_decode_seconds_count 3
# TYPE translator_sentence_confidence histogram
translator_sentence_confidence_bucket{model="en-de",le="0.5"} 1
translator_sentence_confidence_bucket{model="en-de",le="+Inf"} 3
translator_sentence_confidence_sum{model="en-de"} 1.9
translator_sentence_confidence_count{model="en-de"} 3
# TYPE translator_cache_bytes gauge
translator_cache_bytes 18432
# TYPE translator_cache_lookups_total counter
translator_cache_lookups_total{result="hit"} 2
translator_cache_lookups_total{result="shared"} 1
translator_cache_lookups_total{result="miss"} 5
# TYPE translator_html_runs_total counter
translator_html_runs_total{markup="carried"} 4
translator_html_runs_total{markup="node_by_node"} 1
# TYPE translator_queue_depth gauge
translator_queue_depth 0
# TYPE translator_http_inflight_requests gauge
translator_http_inflight_requests 0
# TYPE translator_active_rows gauge
translator_active_rows 0
# TYPE translator_batch_rows histogram
translator_batch_rows_bucket{le="1"} 5
translator_batch_rows_bucket{le="+Inf"} 9
translator_batch_rows_sum 20
translator_batch_rows_count 9
# TYPE translator_encoder_calls_total counter
translator_encoder_calls_total 2
# TYPE translator_encoder_rows histogram
translator_encoder_rows_bucket{le="1"} 1
translator_encoder_rows_bucket{le="+Inf"} 2
translator_encoder_rows_sum 3
translator_encoder_rows_count 2
# TYPE translator_decoder_steps_total counter
translator_decoder_steps_total 9
# TYPE translator_generated_tokens_total counter
translator_generated_tokens_total 20
# TYPE translator_padding_waste_ratio gauge
translator_padding_waste_ratio 0.1
# TYPE translator_padded_source_positions_total counter
translator_padded_source_positions_total 4
# TYPE translator_source_positions_total counter
translator_source_positions_total 40
# TYPE translator_requests_rejected_total counter
translator_requests_rejected_total{reason="overloaded"} 0
# TYPE translator_model_info gauge
translator_model_info{name="en-de",version="1",variant="fp32",provider="cpu"} 1
# TYPE translator_ready gauge
translator_ready 1
# TYPE translator_model_load_failures_total counter
translator_model_load_failures_total 0
# TYPE translator_truncated_sentences_total counter
translator_truncated_sentences_total 0
# TYPE translator_copy_retries_total counter
translator_copy_retries_total{outcome="copied"} 1
translator_copy_retries_total{outcome="as_written"} 0
translator_copy_retries_total{outcome="lost"} 0
"""


def missing_families(server: PrometheusServer, families: set[str]) -> set[str]:
    """Exported families with no series in Prometheus (histograms appear as `_bucket`/`_count`)."""
    names = server.metric_names()
    return {f for f in families if f not in names and f"{f}_bucket" not in names and f"{f}_count" not in names}


@pytest.fixture
def static_metrics_target(tmp_path: Path) -> Iterator[str]:
    """`host:port` of `python -m http.server` serving STATIC_EXPOSITION at /metrics."""
    root = tmp_path / "static"
    root.mkdir()
    (root / "metrics").write_text(STATIC_EXPOSITION, encoding="utf-8")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("static metrics server did not start")
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.slow
def test_prometheus_scrapes_a_static_exposition(
    prometheus_server: Callable[[str], PrometheusServer], static_metrics_target: str
) -> None:
    server = prometheus_server(static_metrics_target)
    server.wait_for('up{job="translator"} == 1')
    assert missing_families(server, read_exported_metrics()) == set()
    (info,) = server.query("translator_model_info")
    assert info["metric"]["name"] == "en-de" and info["metric"]["namespace"] == "test"
    (ready,) = server.query("translator_ready == 1")
    assert ready["metric"]["pod"] == "local"
    # Prometheus evaluates rules.yml over the scraped series: a recording rule appears, and the
    # "no ready pod" alert (pending before the first scrape) resolves.
    (recorded,) = server.wait_for('namespace_route_status:translator_http_requests:rate5m{route="/v1/translate"}')
    assert recorded["metric"]["status"] == "200"
    server.wait_until_empty('ALERTS{alertname="TranslatorNoReadyPods"}')


def discovered_pod(name: str, phase: str, *, app: str = "translator", port_name: str = "http") -> dict:
    """A static target carrying the meta labels Kubernetes pod discovery gives one container port."""
    return {
        "targets": [f"{name}.invalid:8000"],
        "labels": {
            "__meta_kubernetes_namespace": "translator",
            "__meta_kubernetes_pod_name": name,
            "__meta_kubernetes_pod_node_name": "node-1",
            "__meta_kubernetes_pod_phase": phase,
            "__meta_kubernetes_pod_label_app_kubernetes_io_name": app,
            "__meta_kubernetes_pod_annotation_prometheus_io_scrape": "true",
            "__meta_kubernetes_pod_container_port_name": port_name,
        },
    }


@pytest.mark.slow
def test_pod_discovery_relabeling_keeps_only_live_translator_pods(tmp_path: Path) -> None:
    """The `translator` job of prometheus.yml, run by a real Prometheus. Debian's Prometheus lacks
    Kubernetes discovery, so static targets carry the meta labels it would set; the relabel rules
    under test are the file's own. Ended pods (evicted: Failed; Succeeded) must not become targets,
    or each would be down for good and fire TranslatorTargetDown."""
    config = yaml.safe_load((DEPLOY_DIR / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "translator")
    assert job.pop("kubernetes_sd_configs")[0]["role"] == "pod"
    job["static_configs"] = [
        discovered_pod("translator-5d8f7c9b4-running", "Running"),
        discovered_pod("translator-5d8f7c9b4-pending", "Pending"),  # has its IP, still starting
        discovered_pod("translator-5d8f7c9b4-evicted", "Failed"),
        discovered_pod("translator-5d8f7c9b4-completed", "Succeeded"),
        discovered_pod("translator-5d8f7c9b4-grpc", "Running", port_name="grpc"),
        discovered_pod("other-6b9f7c8d5-running", "Running", app="other"),
    ]
    server = start_prometheus_with_config(tmp_path, {"scrape_configs": [job]})
    try:
        deadline = time.monotonic() + 20
        while not (targets := server.targets())["activeTargets"]:
            assert time.monotonic() < deadline, f"no active target:\n{server.log_tail()}"
            time.sleep(0.2)
    finally:
        server.stop()
    active = {target["labels"]["pod"]: target["labels"] for target in targets["activeTargets"]}
    assert set(active) == {"translator-5d8f7c9b4-running", "translator-5d8f7c9b4-pending"}
    labels = active["translator-5d8f7c9b4-running"]
    assert (labels["namespace"], labels["node"], labels["job"]) == ("translator", "node-1", "translator")
    dropped = {t["discoveredLabels"]["__meta_kubernetes_pod_name"] for t in targets["droppedTargets"]}
    assert {"translator-5d8f7c9b4-evicted", "translator-5d8f7c9b4-completed"} <= dropped


def exposed_families(exposition: str) -> set[str]:
    """translator_* family names of a /metrics text, as its `# TYPE` lines name them, without the
    `_created` gauges prometheus_client adds beside each counter and histogram."""
    types = dict(line.split()[2:4] for line in exposition.splitlines() if line.startswith("# TYPE translator_"))
    created = {
        name
        for name, kind in types.items()
        if kind == "gauge" and name.endswith("_created") and {name[:-8], name[:-8] + "_total"} & types.keys()
    }
    return types.keys() - created


def test_exposed_families_reads_type_lines() -> None:
    assert exposed_families(STATIC_EXPOSITION) == read_exported_metrics()
    extra = "# TYPE translator_x_total counter\n# TYPE translator_x_created gauge\n# TYPE process_open_fds gauge\n"
    assert exposed_families(extra) == {"translator_x_total"}


@pytest.mark.slow
def test_metrics_txt_lists_exactly_what_the_service_exports(live_server: str) -> None:
    """Both ways: a family the service dropped would leave rules and panels empty, and one it added
    would never be checked against them (rules and dashboard may read only metrics.txt's names)."""
    with urllib.request.urlopen(f"{live_server}/metrics", timeout=10) as response:
        exposed = exposed_families(response.read().decode("utf-8"))
    listed = read_exported_metrics()
    assert not listed - exposed, f"deploy/metrics.txt lists families the service does not export: {listed - exposed}"
    assert not exposed - listed, f"the service exports families deploy/metrics.txt lacks: {exposed - listed}"


def post_json(url: str, body: dict) -> int:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.slow
def test_prometheus_scrapes_the_running_service(
    prometheus_server: Callable[[str], PrometheusServer], live_server: str
) -> None:
    target = urllib.parse.urlsplit(live_server).netloc
    server = prometheus_server(target)
    server.wait_for('up{job="translator"} == 1')
    server.wait_for("translator_ready == 1")

    # A labelled series exists from its first request on; rate() needs it to move after a scrape.
    translate_url = f"{live_server}/v1/translate"
    assert post_json(translate_url, {"text": "one hundred and five"}) == 200
    server.wait_for('translator_http_requests_total{route="/v1/translate",status="200"}')
    for _ in range(3):
        assert post_json(translate_url, {"text": "one hundred and five"}) == 200
    assert post_json(translate_url, {"text": ""}) == 422

    (rate,) = server.wait_for('sum(rate(translator_http_requests_total{route="/v1/translate",status="200"}[30s])) > 0')
    assert float(rate["value"][1]) > 0
    server.wait_for('translator_requests_rejected_total{reason="invalid"} >= 1')
    # The recording rules of rules.yml evaluate over the real series.
    recorded = server.wait_for('namespace_route_status:translator_http_requests:rate5m{route="/v1/translate"}')
    assert recorded[0]["metric"]["namespace"] == "test"
    latency = server.wait_for(
        "histogram_quantile(0.99, sum by (le) ("
        'rate(translator_http_request_duration_seconds_bucket{route="/v1/translate"}[30s]))) > 0'
    )
    assert float(latency[0]["value"][1]) < 30
    (info, *_) = server.query("translator_model_info == 1")
    assert {"name", "version", "variant", "provider"} <= info["metric"].keys()
    missing = missing_families(server, read_exported_metrics())
    assert not missing, f"deploy/metrics.txt names metrics the service does not export: {missing}"
