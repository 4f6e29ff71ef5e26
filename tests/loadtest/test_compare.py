"""`loadtest.compare` against the tiny model: real server processes side by side, interleaved runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtest import compare

pytestmark = pytest.mark.slow


def test_configs_parse_with_or_without_the_prefix() -> None:
    assert compare.parse_config("cap:TRANSLATOR_MAX_BATCH_ROWS=16;batching=continuous") == (
        "cap", {"max_batch_rows": "16", "batching": "continuous"})
    assert compare.parse_config("default:") == ("default", {})
    for bad in (":batching=static", "x:batching", "x:=1"):
        with pytest.raises(ValueError):
            compare.parse_config(bad)
    for configs in (["a:batching=static"], ["a:batching=static", "a:batching=continuous"]):
        with pytest.raises(SystemExit):  # argparse's usage error: a comparison needs two distinct names
            compare.main([*configs, "--rate", "1"])


def test_two_configs_run_interleaved_and_are_written(tiny_store: Path, number_sentences: Path,
                                                     tmp_path: Path) -> None:
    out = tmp_path / "compare.json"
    code = compare.main(["static:batching=static", "continuous:batching=continuous", "--rate", "20",
                         "--duration-s", "0.5", "--repeats", "2", "--closed", "2", "--closed-duration-s", "0.3",
                         "--warmup-s", "0.2", "--store", str(tiny_store),
                         "--sentences", str(number_sentences), "--out", str(out)])
    assert code == 0
    document = json.loads(out.read_text(encoding="utf-8"))
    configs = document["configs"]
    assert configs["static"]["settings"] == {"batching": "static"}
    for result in configs.values():
        closed = result["closed"]["runs"]
        assert len(closed) == 2 and all(run["sentences_per_s"] > 0 and run["errors"] == 0 for run in closed)
        runs = result["open"]["runs"]
        assert len(runs) == 2 and all(run["errors"] == 0 and run["requests_ok"] > 0 for run in runs)
        # the server's CPU time per sentence (clock ticks: the closed loop keeps the server busy for
        # many of them; the short open-loop runs may use less than one)
        assert all(run["server_cpu_ms_per_sentence"] > 0 for run in closed)
        assert all(run["server_cpu_ms_per_sentence"] >= 0 for run in runs)
    # interleaved: the open-loop runs alternate between the two servers, A B then B A
    timeline = [name for _, name in sorted((run["started_s"], name) for name, result in configs.items()
                                           for run in result["open"]["runs"])]
    assert timeline == ["static", "continuous", "continuous", "static"]
    closed_timeline = [name for _, name in sorted((run["started_s"], name) for name, result in configs.items()
                                                  for run in result["closed"]["runs"])]
    assert closed_timeline == ["static", "continuous", "continuous", "static"]
