"""A real Prometheus server (Debian package) scrapes the service and PromQL over its metrics answers.

`live_server` (tests/conftest.py) is the base URL of a real uvicorn service process. The static
test checks the same scrape-and-poll path against a plain HTTP server with a fixed exposition.
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
from deploy_tools import PrometheusServer, free_port, read_exported_metrics

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
