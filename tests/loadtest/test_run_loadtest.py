"""`loadtest.run_loadtest --quick` end to end: a real server process, two Locust steps in their own
processes, the summary table, the plot, and every kind of request answered and validated."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from loadtest import run_loadtest

pytestmark = pytest.mark.slow

REQUEST_NAMES = {"POST /v1/translate [text x1]", "POST /v1/translate [texts x3]", "POST /v1/attention [text x1]",
                 "POST /translate form [q x1]"}


def test_quick_step_load(tiny_store: Path, number_sentences: Path, tmp_path: Path) -> None:
    docs = tmp_path / "benchmarks.md"
    # Back-to-back users and equal weights, so every kind of request is sent within the short steps.
    code = run_loadtest.main(["--quick", "--store", str(tiny_store), "--sentences", str(number_sentences),
                              "--user-rps", "0", "--batch-texts", "3",
                              "--weights", "single=1,batch=1,attention=1,libre=1",
                              "--out", str(tmp_path), "--docs", str(docs)])
    assert code == 0
    document = json.loads((tmp_path / "loadtest.json").read_text(encoding="utf-8"))
    steps = document["steps"]
    assert [step["users"] for step in steps] == list(run_loadtest.QUICK_USERS)
    for step in steps:
        assert step["failures"] == 0, step["failure_samples"]
        assert step["exceptions"] == []
        assert step["requests"] > 0 and step["requests_per_s"] > 0
        assert step["sentences_per_s"] >= step["requests_per_s"]  # batch requests carry 3 sentences
        assert 0 < step["p50_ms"] <= step["p95_ms"] <= step["p99_ms"]
        assert step["rows_per_decoder_step"] >= 1.0
        assert sum(r["requests"] for r in step["by_request"].values()) == step["requests"]
        # every translation compared with the server's own sequential answer, and all the same (fp32)
        assert step["reference_checked"] > 0 and step["reference_differing"] == 0
        assert step["reference_policy"] == "error"
        assert step["latency_from"] == "send" and step["saturated"] is None  # users back to back: no schedule
        assert step["sent_requests"] >= step["requests"] - step["users"]
    assert document["references"]["sentences"] > 0 and Path(document["references"]["file"]).is_file()
    assert set().union(*(step["by_request"] for step in steps)) >= REQUEST_NAMES

    with (tmp_path / "loadtest_summary.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["users"]) for row in rows] == list(run_loadtest.QUICK_USERS)
    assert (tmp_path / "loadtest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    raw = tmp_path / "raw" / "loadtest"
    for users in run_loadtest.QUICK_USERS:
        for suffix in (".json", ".html", "_stats.csv", "_failures.csv"):
            assert (raw / f"users{users:04d}{suffix}").is_file()
    assert "## Locust step load" in docs.read_text(encoding="utf-8")


def test_a_saturated_step_is_marked_and_timed_from_the_schedule(stub_server: Any, tmp_path: Path) -> None:
    """A server that serves one request at a time in 25 ms (40/s) under 80 users offering 1 request/s
    each: the step sends far fewer than scheduled, is marked saturated, and its latency (timed from each
    request's scheduled start) holds the queue; 5 users (5/s) are served on schedule."""
    sentences = tmp_path / "s.tsv"
    sentences.write_text("".join(f"sentence {i}\tSatz {i}\n" for i in range(20)), encoding="utf-8")
    server = stub_server("echo", service_s=0.025)
    code = run_loadtest.main(["--url", server.base_url, "--users", "5,80", "--step-s", "4", "--sentences",
                              str(sentences), "--out", str(tmp_path), "--docs", str(tmp_path / "b.md")])
    assert code == 0
    light, heavy = json.loads((tmp_path / "loadtest.json").read_text(encoding="utf-8"))["steps"]
    for step in (light, heavy):
        assert step["latency_from"] == "schedule" and step["failures"] == 0
        assert step["reference_checked"] > 0 and step["reference_differing"] == 0
    assert light["saturated"] is False
    assert heavy["saturated"] is True and heavy["sent_per_s"] < 0.95 * heavy["scheduled_per_s"]
    assert heavy["scheduled_per_s"] == pytest.approx(80, rel=0.25) and heavy["requests_per_s"] < 45
    # the queue the schedule saw: far above the 25 ms a request took to serve
    assert heavy["p50_ms"] > 200 and heavy["p50_ms"] > 5 * light["p50_ms"]
    text = (tmp_path / "b.md").read_text(encoding="utf-8")
    assert "**saturated**" in text and "timed from each request's scheduled start" in text

