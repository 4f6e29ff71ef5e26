"""Overload against a REAL server process (`python -m service`) with a tiny queue or a tiny in-flight limit:
every answer is 200 or 429 with Retry-After, accepted answers are intact, nothing hangs, and service
recovers once the burst ends.

Also runs loadtest.overload (the held-vs-shed benchmark) in --quick mode against such a server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import httpx
import pytest

from loadtest import overload
from loadtest.answers import translation_problem

pytestmark = pytest.mark.slow

# batching "off" decodes one sentence at a time whatever max_batch_rows says; 2 lets a request put both
# of its texts into the engine at once (a request keeps at most max_batch_rows of its sentences there).
OVERLOAD_SETTINGS = {"max_queue_requests": "2", "max_batch_rows": "2", "batching": "off"}
BURST_REQUESTS = 60
BURST_TIMEOUT_S = 60.0  # the whole burst; a hang anywhere fails the test instead of blocking it
MAX_RETRY_AFTER_S = 30  # the scheduler's ceiling for Retry-After
TEXT = "one thousand, nine hundred and ninety-nine"
# Two texts (two engine rows) per request: with one, the server's per-request HTTP work on its single
# event loop is slower than the tiny model, so the engine queue never fills however many are offered.
# Different texts: a request's repeated sentence is decoded once.
TEXTS = [TEXT, "one thousand, eight hundred and eighty-eight"]


def metric_value(text: str, sample: str) -> float:
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{sample} not in /metrics")


async def fire_burst(base_url: str, requests: int) -> list[httpx.Response]:
    """`requests` POSTs sent together over connections opened beforehand, so they reach the server
    within a few milliseconds of each other rather than spread out by TCP set-up."""
    limits = httpx.Limits(max_connections=requests, max_keepalive_connections=requests)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=BURST_TIMEOUT_S) as client:
        await asyncio.gather(*(client.get("/healthz") for _ in range(requests)))
        sends = (client.post("/v1/translate", json={"texts": TEXTS}) for _ in range(requests))
        return list(await asyncio.wait_for(asyncio.gather(*sends), timeout=BURST_TIMEOUT_S))


@dataclasses.dataclass
class RawResponse:
    status_code: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:  # type: ignore[type-arg]
        return json.loads(self.body)


async def raw_burst(base_url: str, requests: int, payload: dict) -> list[RawResponse]:  # type: ignore[type-arg]
    """`requests` POSTs written on pre-opened connections in one tight loop (microseconds apart), so
    they all reach the server before it can answer the first: an HTTP client library spends
    milliseconds of CPU per request and would spread the burst out on a busy 2-core machine."""
    host, port = base_url.removeprefix("http://").split(":")
    body = json.dumps(payload).encode()
    request = (f"POST /v1/translate HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    connections = [await asyncio.open_connection(host, int(port)) for _ in range(requests)]
    for _, writer in connections:
        writer.write(request)
    await asyncio.gather(*(writer.drain() for _, writer in connections))

    async def read(reader: asyncio.StreamReader) -> RawResponse:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
        return RawResponse(int(head[0].split()[1]), headers, await reader.readexactly(int(headers["content-length"])))

    try:
        return list(await asyncio.wait_for(asyncio.gather(*(read(r) for r, _ in connections)), BURST_TIMEOUT_S))
    finally:
        for _, writer in connections:
            writer.close()


@pytest.fixture
def overloaded_server(tiny_artifact: Path, live_server_factory):  # type: ignore[no-untyped-def]
    return live_server_factory(tiny_artifact.parent.parent, **OVERLOAD_SETTINGS)


def test_burst_is_held_or_shed_and_service_recovers(overloaded_server) -> None:  # type: ignore[no-untyped-def]
    base_url = overloaded_server.base_url
    reference = httpx.post(base_url + "/v1/translate", json={"texts": TEXTS}, timeout=30.0)
    assert reference.status_code == 200, reference.text
    expected = [t["text"] for t in reference.json()["translations"]]

    responses = asyncio.run(fire_burst(base_url, BURST_REQUESTS))

    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 429}, statuses
    held = [r for r in responses if r.status_code == 200]
    shed = [r for r in responses if r.status_code == 429]
    assert held and shed, statuses
    for response in held:  # an accepted request is answered in full and uncorrupted by the overload
        body = response.json()
        assert translation_problem(body, len(TEXTS)) is None, body
        assert [t["text"] for t in body["translations"]] == expected
    for response in shed:
        assert response.headers["content-type"].startswith("application/json")
        body = response.json()
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
        assert body["error"]["code"] == "overloaded" and body["error"]["message"]
        assert 1 <= int(response.headers["retry-after"]) <= MAX_RETRY_AFTER_S
        assert response.headers["x-request-id"]

    recovered = httpx.post(base_url + "/v1/translate", json={"texts": TEXTS}, timeout=30.0)
    assert recovered.status_code == 200, recovered.text
    assert [t["text"] for t in recovered.json()["translations"]] == expected

    metrics = httpx.get(base_url + "/metrics", timeout=10.0).text
    assert metric_value(metrics, 'translator_requests_rejected_total{reason="overloaded"}') == len(shed)
    assert metric_value(metrics, "translator_queue_depth") == 0
    assert metric_value(metrics, "translator_active_rows") == 0
    assert overloaded_server.process.poll() is None  # still serving
    print(f"burst of {BURST_REQUESTS}: {len(held)} held, {len(shed)} shed")


def test_single_text_burst_is_shed_at_the_edge(tiny_artifact: Path, live_server_factory) -> None:  # type: ignore[no-untyped-def]
    """One text per request: the per-request HTTP work is slower than the engine, so the engine queue
    never fills; the edge's in-flight limit must still refuse what it cannot hold, before reading it."""
    inflight_limit = 3
    server = live_server_factory(
        tiny_artifact.parent.parent, batching="off", max_batch_rows="8", max_inflight_requests=str(inflight_limit)
    )
    # Beam 8, one request at a time in the engine: each takes long enough that the burst overlaps on
    # the server even when the client needs a while to send it (a tiny greedy request can finish first).
    slow = {"beam_size": 8, "max_length": 40}
    reference = httpx.post(server.base_url + "/v1/translate", json={"text": TEXT, **slow}, timeout=30.0)
    assert reference.status_code == 200, reference.text
    expected = reference.json()["translations"][0]["text"]

    responses = asyncio.run(raw_burst(server.base_url, BURST_REQUESTS, {"text": TEXT, **slow}))

    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 429}, statuses
    held = [r for r in responses if r.status_code == 200]
    shed = [r for r in responses if r.status_code == 429]
    assert len(held) >= inflight_limit and shed, statuses
    assert all(r.json()["translations"][0]["text"] == expected for r in held)
    for response in shed:
        assert response.json()["error"]["code"] == "overloaded"
        assert str(inflight_limit) in response.json()["error"]["message"]
        assert 1 <= int(response.headers["retry-after"]) <= MAX_RETRY_AFTER_S
    metrics = httpx.get(server.base_url + "/metrics", timeout=10.0).text
    assert metric_value(metrics, 'translator_requests_rejected_total{reason="overloaded"}') == len(shed)
    assert metric_value(metrics, "translator_http_inflight_requests") == 0
    # Not work routes: never refused by the in-flight limit, even while it is reached.
    assert httpx.get(server.base_url + "/readyz", timeout=10.0).status_code == 200
    recovered = httpx.post(server.base_url + "/v1/translate", json={"text": TEXT, **slow}, timeout=30.0)
    assert recovered.status_code == 200 and recovered.json()["translations"][0]["text"] == expected


def test_overload_benchmark_quick(overloaded_server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "overload.json"
    exit_code = overload.main([
        "--url", overloaded_server.base_url, "--quick", *(part for text in TEXTS for part in ("--text", text)),
        "--texts-per-request", str(len(TEXTS)), "--out", str(out),
    ])
    printed = json.loads(capsys.readouterr().out)
    with capsys.disabled():
        print(json.dumps([{k: run[k] for k in ("offered_rate_per_s", "held", "shed", "accepted_p99_ms")}
                          for run in printed["runs"]]))
    assert exit_code == 0, printed
    assert json.loads(out.read_text(encoding="utf-8")) == printed
    runs = printed["runs"]
    assert len(runs) == len(overload.QUICK_RATES_PER_S)
    for run in runs:
        assert run["sent"] == overload.QUICK_REQUESTS
        assert run["held"] + run["shed"] == run["sent"] and run["unexpected"] == 0, run
        assert run["held"] >= 1 and run["accepted_p99_ms"] > 0, run
        assert run["shed_without_retry_after"] == 0, run
        assert set(run["statuses"]) <= {"200", "429"}, run
        # bounded memory: a burst leaves the server's resident memory where it was, give or take
        assert run["server_rss_before_mb"] > 0 and run["server_rss_after_mb"] - run["server_rss_before_mb"] < 64, run
    assert runs[-1]["offered_rate_per_s"] == "all at once" and runs[-1]["shed"] >= 1, runs[-1]
    metrics = httpx.get(overloaded_server.base_url + "/metrics", timeout=10.0).text
    shed_total = sum(run["shed"] for run in runs)
    assert metric_value(metrics, 'translator_requests_rejected_total{reason="overloaded"}') == shed_total


def test_summarize_counts_and_percentiles() -> None:
    answers = [
        overload.Answer(200, 0.010, None, None),
        overload.Answer(200, 0.030, None, None),
        overload.Answer(429, 0.001, "1", "overloaded"),
        overload.Answer(503, 0.001, None, "draining"),
        overload.Answer(500, 0.002, None, "internal"),
        overload.Answer(None, 60.0, None, None),
    ]
    summary = overload.summarize(answers, float("inf"), 1.0)
    assert (summary["sent"], summary["held"], summary["shed"], summary["unexpected"]) == (6, 2, 2, 2)
    assert summary["statuses"] == {"200": 2, "429": 1, "500": 1, "503": 1, "transport_error": 1}
    assert summary["shed_without_retry_after"] == 0
    assert summary["offered_rate_per_s"] == "all at once"
    assert summary["accepted_p99_ms"] == pytest.approx(29.8)


def test_a_stalled_body_is_refused_in_time_and_frees_its_slot(tiny_artifact: Path, live_server_factory) -> None:  # type: ignore[no-untyped-def]
    """A client that promises a body and stalls (slowloris) holds its in-flight slot only until
    TRANSLATOR_BODY_TIMEOUT_S, then gets 408 and a closed connection."""
    server = live_server_factory(tiny_artifact.parent.parent, max_inflight_requests="1", body_timeout_s="2")
    host, port = server.base_url.removeprefix("http://").split(":")

    async def stall() -> tuple[bytes, bytes, httpx.Response]:
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"POST /v1/translate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"text\": ")
        await writer.drain()
        await asyncio.sleep(0.3)  # the stalled request has entered the service and holds the only slot
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30.0) as client:
            refused = await client.post("/v1/translate", json={"text": TEXT})
        answer = await asyncio.wait_for(reader.read(), timeout=15.0)  # read() returns at connection close
        writer.close()
        return answer.split(b"\r\n", 1)[0], answer, refused

    status_line, answer, refused = asyncio.run(stall())
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "overloaded"
    assert status_line.split()[1] == b"408", answer
    assert b'"body_timeout"' in answer
    recovered = httpx.post(server.base_url + "/v1/translate", json={"text": TEXT}, timeout=30.0)
    assert recovered.status_code == 200, recovered.text
    metrics = httpx.get(server.base_url + "/metrics", timeout=10.0).text
    assert metric_value(metrics, 'translator_requests_rejected_total{reason="body_timeout"}') == 1
    assert metric_value(metrics, "translator_http_inflight_requests") == 0
