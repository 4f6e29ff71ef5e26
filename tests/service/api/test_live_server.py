"""The HTTP API against REAL uvicorn processes (`python -m service`) serving the tiny real artifact.

Every endpoint, every documented error status, the LibreTranslate clients, /metrics after traffic,
client disconnects, model reload and the SIGTERM drain.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from model_store import read_manifest, write_manifest
from tests.deploy.deploy_tools import read_exported_metrics

pytestmark = pytest.mark.slow

NUMBERS = ["twenty-one", "one hundred and five", "seven", "one thousand, nine hundred and ninety-nine"]


def distinct_numbers(count: int) -> list[str]:
    """`count` different numbers in words (the tiny model's task): a request's repeated sentences are
    decoded once, so a request that must keep the engine busy needs them all different."""
    from num2words import num2words

    return [num2words(number) for number in range(1000, 1000 + count)]
# The metric names operators rely on (alerts, dashboard): one list, shared with deploy/.
METRIC_NAMES = tuple(sorted(read_exported_metrics()))


def assert_error(response: httpx.Response, status: int, code: str) -> dict:  # type: ignore[type-arg]
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    return body


def metric_value(text: str, sample: str) -> float:
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{sample} not in /metrics")


@pytest.fixture(scope="module")
def http(live_server: str) -> httpx.Client:
    with httpx.Client(base_url=live_server, timeout=60.0) as client:
        yield client


@pytest.fixture(scope="module")
def versioned_store(tiny_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny artifact as version 1, a copy re-stamped as version 2, and a truncated version 3."""
    store = tmp_path_factory.mktemp("versioned") / "store"
    shutil.copytree(tiny_artifact.parent.parent, store)
    for version in ("2", "3"):
        target = store / tiny_artifact.parent.name / version
        shutil.copytree(tiny_artifact, target)
        write_manifest(target, dataclasses.replace(read_manifest(target), version=version, files={}))
    manifest = read_manifest(store / "en-de" / "3")
    graph = store / "en-de" / "3" / manifest.variants["fp32"]["decoder_step"].file
    graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 2])
    return store


# ---- endpoints ----------------------------------------------------------------------------------


def test_translate_texts_in_order(http: httpx.Client) -> None:
    response = http.post("/v1/translate", json={"texts": NUMBERS, "source": "en", "target": "de", "beam_size": 2})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == {"name": "en-de", "version": "1"}
    assert len(body["translations"]) == len(NUMBERS)
    assert all(isinstance(t["text"], str) and t["text"] for t in body["translations"])
    one_by_one = [
        http.post("/v1/translate", json={"text": text, "beam_size": 2}).json()["translations"][0]["text"]
        for text in NUMBERS
    ]
    assert [t["text"] for t in body["translations"]] == one_by_one  # batching changes nothing
    assert response.headers["x-request-id"]


def test_attention_matrix_and_alignment(http: httpx.Client) -> None:
    body = http.post("/v1/attention", json={"text": "one hundred and five"}).json()
    source, target, weights = body["source_tokens"], body["target_tokens"], body["weights"]
    assert len(weights) == len(target) >= 2 and all(len(row) == len(source) for row in weights)
    assert all(abs(sum(row) - 1.0) < 1e-4 for row in weights)
    words_in = len(["one", "hundred", "and", "five"])
    assert all(0 <= s < words_in and t >= 0 for s, t in body["alignment"])
    assert body["moses"] == " ".join(f"{s}-{t}" for s, t in body["alignment"])
    svg = http.post("/v1/attention", json={"text": "one hundred and five", "format": "svg"})
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert "<svg" in svg.text


def test_models_languages_health(http: httpx.Client) -> None:
    models = http.get("/v1/models").json()["models"]
    assert [(m["name"], m["version"], m["source_language"], m["target_language"]) for m in models] == [
        ("en-de", "1", "en", "de")
    ]
    assert models[0]["evaluation"] == {"fp32": {"numbers": {"exact_match": -1.0}}}
    assert models[0]["providers"] == ["CPUExecutionProvider"]
    assert http.get("/languages").json() == [
        {"code": "en", "name": "English", "targets": ["de"]},
        {"code": "de", "name": "German", "targets": []},
    ]
    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.get("/readyz").json() == {"status": "ready"}
    assert http.get("/").headers["content-type"].startswith("text/html")
    assert "/v1/translate" in http.get("/openapi.json").json()["paths"]


def test_libretranslate_form_encoded_and_json(http: httpx.Client) -> None:
    expected = http.post("/v1/translate", json={"text": "seven"}).json()["translations"][0]["text"]
    form = http.post("/translate", data={"q": "seven", "source": "en", "target": "de", "format": "text"})
    assert form.status_code == 200 and form.json() == {"translatedText": expected}
    as_json = http.post("/translate", json={"q": ["seven", "seven"], "source": "auto", "target": "de"})
    assert as_json.json() == {"translatedText": [expected, expected]}


def test_the_real_libretranslate_client(live_server: str, http: httpx.Client) -> None:
    libretranslatepy = pytest.importorskip("libretranslatepy")
    client = libretranslatepy.LibreTranslateAPI(live_server)
    expected = http.post("/v1/translate", json={"text": "twenty-one"}).json()["translations"][0]["text"]
    assert client.translate("twenty-one", "en", "de") == expected
    assert {"code": "en", "name": "English", "targets": ["de"]} in client.languages()


# ---- errors --------------------------------------------------------------------------------------


def test_every_client_error_has_the_shape(http: httpx.Client) -> None:
    assert_error(http.get("/no/such/page"), 404, "not_found")
    assert_error(http.put("/v1/translate", json={"text": "seven"}), 405, "method_not_allowed")
    assert_error(http.post("/v1/translate", json={"text": ""}), 422, "invalid_request")
    assert_error(http.post("/v1/translate", json={"text": "seven", "beam_size": 99}), 422, "invalid_request")
    assert_error(http.post("/v1/translate", json={"text": 7}), 422, "invalid_request")
    assert_error(
        http.post("/v1/translate", content=b'{"text": ', headers={"content-type": "application/json"}),
        422,
        "invalid_request",
    )
    assert_error(http.post("/v1/translate", json={"text": "seven", "target": "fr"}), 422, "unsupported_language_pair")
    assert_error(http.post("/translate", json={"q": "seven", "target": "de", "format": "xml"}), 422, "invalid_request")
    assert_error(
        http.post("/translate", content=b"seven", headers={"content-type": "text/plain"}),
        415,
        "unsupported_media_type",
    )
    assert_error(http.post("/v1/translate", json={"text": "seven " * 1000}), 413, "too_large")
    assert_error(http.post("/v1/translate", json={"texts": ["seven"] * 1000}), 413, "too_large")
    huge = http.post("/v1/translate", content=b"x" * 300_000, headers={"content-type": "application/json"})
    assert_error(huge, 413, "too_large")
    assert_error(http.post("/v1/admin/reload", json={"name": "en-de"}), 403, "admin_disabled")
    assert http.get("/healthz").status_code == 200  # still serving after all of that


def test_keys_queue_capacity_and_reload(versioned_store: Path, live_server_factory: Callable[..., object]) -> None:
    server = live_server_factory(
        versioned_store, models="en-de@1", api_keys="s3cret", max_queue_requests="1", max_batch_rows="1"
    )
    auth = {"Authorization": "Bearer s3cret"}
    with httpx.Client(base_url=server.base_url, timeout=60.0) as http:  # type: ignore[attr-defined]
        assert_error(http.post("/v1/translate", json={"text": "seven"}), 401, "unauthorized")
        assert_error(
            http.post("/v1/translate", json={"text": "seven"}, headers={"X-API-Key": "wrong"}),
            401,
            "unauthorized",
        )
        assert_error(http.post("/translate", data={"q": "seven", "target": "de"}), 401, "unauthorized")
        assert http.post("/translate", data={"q": "seven", "target": "de", "api_key": "s3cret"}).status_code == 200
        assert http.post("/v1/translate", json={"text": "seven"}, headers=auth).status_code == 200

        # More texts than the engine's queue holds: a request's sentences go in a batch's worth at a
        # time, so it is served, not refused (it was 413 when they were all queued at once).
        many = http.post("/v1/translate", json={"texts": NUMBERS}, headers=auth)
        assert many.status_code == 200, many.text
        assert len(many.json()["translations"]) == len(NUMBERS) > 1
        too_long = http.post("/v1/translate", json={"text": "seven " * 400}, headers=auth)  # over 2,000 characters
        assert_error(too_long, 413, "too_large")
        assert "retry-after" not in too_long.headers

        swapped = http.post("/v1/admin/reload", json={"name": "en-de", "version": "2"}, headers=auth)
        assert swapped.status_code == 200, swapped.text
        assert swapped.json()["model"]["version"] == "2"
        broken = assert_error(
            http.post("/v1/admin/reload", json={"name": "en-de", "version": "3"}, headers=auth),
            409,
            "reload_failed",
        )
        assert "decoder_step" in broken["error"]["message"]
        after = http.post("/v1/translate", json={"text": "seven"}, headers=auth)
        assert after.status_code == 200 and after.json()["model"]["version"] == "2"
        metrics = http.get("/metrics").text
    assert metric_value(metrics, "translator_model_load_failures_total") == 1.0
    assert metric_value(metrics, 'translator_requests_rejected_total{reason="unauthorized"}') == 3.0
    assert metric_value(metrics, 'translator_requests_rejected_total{reason="too_large"}') == 1.0
    assert "s3cret" not in server.log_text()  # type: ignore[attr-defined]


def test_reload_under_traffic_drops_no_request(
    versioned_store: Path, live_server_factory: Callable[..., object]
) -> None:
    """Clients keep translating while the admin swaps versions back and forth: every answer is a 200
    with the same translation, and both versions answered some of them."""
    server = live_server_factory(versioned_store, models="en-de@1", api_keys="s3cret")
    url = server.base_url  # type: ignore[attr-defined]
    auth = {"Authorization": "Bearer s3cret"}
    expected = httpx.post(url + "/v1/translate", json={"texts": NUMBERS}, headers=auth, timeout=60).json()
    stop = threading.Event()
    answers: list[tuple[int, str, list[str]] | BaseException] = []

    def client() -> None:
        with httpx.Client(base_url=url, headers=auth, timeout=60.0) as http:
            while not stop.is_set():
                try:
                    response = http.post("/v1/translate", json={"texts": NUMBERS})
                    body = response.json()
                    texts = [t["text"] for t in body.get("translations", [])]
                    answers.append((response.status_code, str(body.get("model", {}).get("version")), texts))
                except BaseException as exc:
                    answers.append(exc)

    clients = [threading.Thread(target=client) for _ in range(4)]
    for thread in clients:
        thread.start()
    try:
        for version in ("2", "1", "2"):
            time.sleep(0.3)
            swapped = httpx.post(url + "/v1/admin/reload", json={"name": "en-de", "version": version},
                                 headers=auth, timeout=60)
            assert swapped.status_code == 200, swapped.text
        time.sleep(0.3)
    finally:
        stop.set()
        for thread in clients:
            thread.join(timeout=60)
    failures = [a for a in answers if isinstance(a, BaseException) or a[0] != 200]
    assert not failures, failures[:5]
    texts = [t["text"] for t in expected["translations"]]
    assert all(a[2] == texts for a in answers if not isinstance(a, BaseException))
    versions = {a[1] for a in answers if not isinstance(a, BaseException)}
    assert versions == {"1", "2"}, versions


def test_deadline_is_504(tiny_artifact: Path, live_server_factory: Callable[..., object]) -> None:
    server = live_server_factory(tiny_artifact.parent.parent, request_timeout_s="0.001")
    with httpx.Client(base_url=server.base_url, timeout=60.0) as http:  # type: ignore[attr-defined]
        response = http.post("/v1/translate", json={"texts": distinct_numbers(16), "beam_size": 8, "max_length": 200})
        assert_error(response, 504, "deadline_exceeded")
        assert 'reason="deadline"} 1.0' in http.get("/metrics").text


def test_tampered_artifact_is_refused_at_startup(
    versioned_store: Path, live_server_factory: Callable[..., object]
) -> None:
    with pytest.raises(RuntimeError, match="decoder_step") as caught:
        live_server_factory(versioned_store, models="en-de@3")
    assert "exited with 3" in str(caught.value)
    assert "sha256 mismatch" in str(caught.value)


# ---- metrics and disconnects ---------------------------------------------------------------------


def test_metrics_after_traffic(http: httpx.Client) -> None:
    http.post("/v1/translate", json={"texts": NUMBERS})
    http.post("/v1/translate", json={"text": ""})
    text = http.get("/metrics").text
    for name in METRIC_NAMES:
        assert f"# TYPE {name} " in text, name
    assert metric_value(text, 'translator_http_requests_total{method="POST",route="/v1/translate",status="200"}') >= 1
    assert metric_value(text, "translator_ready") == 1.0
    assert metric_value(text, "translator_encoder_calls_total") >= 1
    assert metric_value(text, "translator_generated_tokens_total") > 0
    assert 'translator_model_info{name="en-de",provider="cpu",variant="fp32",version="1"} 1.0' in text
    assert "/no/such/page" not in text  # raw paths never become label values


def test_client_disconnect_cancels_and_frees_rows(
    tiny_artifact: Path, live_server_factory: Callable[..., object]
) -> None:
    # One beam-8 text at a time: 128 texts take 0.5-2 s, far longer than the client waits.
    server = live_server_factory(tiny_artifact.parent.parent, max_batch_rows="8", max_texts_per_request="128",
                                 max_rows_per_request="1024")
    url = server.base_url  # type: ignore[attr-defined]
    for _ in range(5):
        with pytest.raises(httpx.TimeoutException):
            httpx.post(url + "/v1/translate", json={"texts": distinct_numbers(128), "beam_size": 8}, timeout=0.1)
    deadline = time.monotonic() + 30
    while True:
        text = httpx.get(url + "/metrics").text
        cancelled = 'translator_http_requests_total{method="POST",route="/v1/translate",status="499"}'
        if (
            metric_value(text, "translator_active_rows") == 0
            and metric_value(text, "translator_queue_depth") == 0
            and cancelled in text
            and metric_value(text, cancelled) == 5
        ):
            break
        assert time.monotonic() < deadline, "rows still active after the clients went away"
        time.sleep(0.1)
    assert httpx.post(url + "/v1/translate", json={"text": "seven"}).status_code == 200


def test_a_client_that_leaves_pipelined_requests_behind_is_not_a_server_failure(
    tiny_artifact: Path, live_server_factory: Callable[..., object]
) -> None:
    """Three requests pipelined on one connection, the connection closed after the first answer: the
    answers nobody can receive are the client's loss (499), not an error logged and counted as failed."""
    server = live_server_factory(tiny_artifact.parent.parent)
    url = server.base_url  # type: ignore[attr-defined]
    host, port = url.removeprefix("http://").split(":")

    def post(body: bytes) -> bytes:
        return (b"POST /v1/translate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

    for _ in range(5):
        with socket.create_connection((host, int(port)), timeout=30) as connection:
            connection.sendall(b"".join(post(b'{"text": "%s"}' % n.encode()) for n in NUMBERS[:3]))
            assert connection.recv(65536).startswith(b"HTTP/1.1 200")
    deadline = time.monotonic() + 10
    while 'status="499"' not in (metrics := httpx.get(url + "/metrics").text):
        assert time.monotonic() < deadline, "the abandoned answers were never accounted for"
        time.sleep(0.1)
    assert metric_value(metrics, 'translator_requests_rejected_total{reason="failed"}') == 0
    assert 'status="500"' not in metrics
    log = server.log_text()  # type: ignore[attr-defined]
    # No traceback (neither our error handler's nor uvicorn's) and nothing at ERROR: uvicorn's word on
    # the pipelined requests' unfinished responses is a warning once the edge saw their client go.
    assert "unhandled error" not in log and "Exception in ASGI application" not in log
    assert '"level": "ERROR"' not in log, log[-3000:]
    # ... and that warning names the request it is about (it had the id of the request before it).
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    abandoned = {r.get("request_id") for r in records if r.get("message") == "request" and r.get("status") == 499}
    warnings = [r for r in records if "without completing response" in r["message"]]
    assert warnings and all(r.get("request_id") in abandoned for r in warnings), (warnings, abandoned)
    assert httpx.post(url + "/v1/translate", json={"text": "seven"}).status_code == 200


def test_a_client_that_leaves_halfway_through_its_body_is_499_not_invalid(
    tiny_artifact: Path, live_server_factory: Callable[..., object]
) -> None:
    """Half a body and a closed connection: no request to judge (it was parsed, refused as invalid
    JSON and counted as a rejected request)."""
    server = live_server_factory(tiny_artifact.parent.parent)
    url = server.base_url  # type: ignore[attr-defined]
    host, port = url.removeprefix("http://").split(":")
    for _ in range(3):
        with socket.create_connection((host, int(port)), timeout=30) as connection:
            connection.sendall(b"POST /v1/translate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                               b"Content-Length: 100\r\n\r\n{\"text\": \"sev")
            time.sleep(0.2)  # the server has read what was sent and waits for the rest
    left = 'translator_http_requests_total{method="POST",route="/v1/translate",status="499"}'
    deadline = time.monotonic() + 10
    while left not in (metrics := httpx.get(url + "/metrics").text) or metric_value(metrics, left) < 3:
        assert time.monotonic() < deadline, "the half-sent requests were never accounted for"
        time.sleep(0.1)
    assert 'status="422"' not in metrics
    assert metric_value(metrics, 'translator_requests_rejected_total{reason="invalid"}') == 0


# ---- SIGTERM -------------------------------------------------------------------------------------

REQUESTS_IN_FLIGHT = 3
TEXTS_PER_REQUEST = 32 * len(NUMBERS)


def test_sigterm_drains_in_flight_requests_then_exits_0(
    tiny_artifact: Path, live_server_factory: Callable[..., object]
) -> None:
    # One beam-8 text decodes at a time (8 rows): a few seconds of accepted work when the signal comes.
    server = live_server_factory(
        tiny_artifact.parent.parent,
        max_batch_rows="8",
        max_queue_requests="1000",
        max_texts_per_request=str(TEXTS_PER_REQUEST),
        max_rows_per_request=str(TEXTS_PER_REQUEST * 8),
        drain_timeout_s="60",
    )
    url = server.base_url  # type: ignore[attr-defined]
    results: list[httpx.Response | BaseException] = []

    def long_request() -> None:
        try:
            body = {"texts": distinct_numbers(128), "beam_size": 8}
            results.append(httpx.post(url + "/v1/translate", json=body, timeout=120))
        except BaseException as exc:
            results.append(exc)

    threads = [threading.Thread(target=long_request) for _ in range(REQUESTS_IN_FLIGHT)]
    for thread in threads:
        thread.start()
    # Each request keeps a batch's worth (8) of its texts in the engine, one of them decoding: more than
    # (n-1) x 8 queued means all n requests are accepted.
    deadline = time.monotonic() + 30
    while metric_value(httpx.get(url + "/metrics").text, "translator_queue_depth") <= (REQUESTS_IN_FLIGHT - 1) * 8:
        assert time.monotonic() < deadline, f"the requests never queued up: {results}"
        time.sleep(0.01)
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)  # type: ignore[attr-defined]
    time.sleep(0.05)
    assert_error(httpx.get(url + "/readyz"), 503, "draining")
    assert_error(httpx.post(url + "/v1/translate", json={"text": "seven"}), 503, "draining")

    # New work keeps arriving during the drain: refused cleanly, and it does not hold the exit open.
    refusals: list[int | str] = []

    def hammer() -> None:
        while server.process.poll() is None:  # type: ignore[attr-defined]
            try:
                refusals.append(httpx.post(url + "/v1/translate", json={"text": "seven"}, timeout=10).status_code)
            except httpx.TransportError as exc:
                refusals.append(type(exc).__name__)

    hammer_thread = threading.Thread(target=hammer)
    hammer_thread.start()
    for thread in threads:
        thread.join(timeout=120)
    exit_code = server.process.wait(timeout=60)  # type: ignore[attr-defined]
    hammer_thread.join(timeout=30)
    assert refusals and all(status == 503 or isinstance(status, str) for status in refusals), refusals
    assert exit_code == 0, server.log_text()[-3000:]  # type: ignore[attr-defined]
    assert time.monotonic() - started < 60
    assert len(results) == REQUESTS_IN_FLIGHT
    for result in results:
        assert isinstance(result, httpx.Response), result
        assert result.status_code == 200, result.text
        assert len(result.json()["translations"]) == TEXTS_PER_REQUEST
