"""loadtest.profile: py-spy on a REAL server process under the benchmark client, summarised per thread."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtest import profile

pytestmark = pytest.mark.slow


def test_summary_counts_active_time_and_inclusive_frames() -> None:
    document = {
        "shared": {"frames": [{"name": "run", "file": "/a/loop.py", "line": 1},
                              {"name": "step", "file": "/a/engine.py", "line": 9}]},
        "profiles": [
            {"name": "MainThread", "samples": [[0, 1], [0], [0, 1]], "weights": [1.0, 1.0, 2.0]},
            {"name": "worker", "samples": [], "weights": []},
        ],
    }
    summary = profile.summarize_speedscope(document, wall_s=8.0)
    main, worker = summary["threads"]
    assert main["thread"] == "MainThread" and main["active_s"] == 4.0 and main["active_share_of_wall"] == 0.5
    assert main["top_frames"][0] == {"frame": "run (loop.py:1)", "share_of_active": 1.0}
    assert main["top_frames"][1] == {"frame": "step (engine.py:9)", "share_of_active": 0.75}
    assert worker["active_s"] == 0.0 and worker["top_frames"] == []


def test_quick_profile_of_a_live_server(tiny_store: Path, number_sentences: Path, tmp_path: Path) -> None:
    exit_code = profile.main(["--quick", "--store", str(tiny_store), "--sentences", str(number_sentences),
                              "--out-dir", str(tmp_path)])
    assert exit_code == 0
    summary = json.loads((tmp_path / "profile-continuous.json").read_text(encoding="utf-8"))
    assert summary["load"]["sentences_per_s"] > 0 and summary["load"]["errors"] == 0
    threads = {thread["thread"]: thread for thread in summary["threads"]}
    assert any("engine-decoder" in name for name in threads), sorted(threads)  # the scheduler's model thread
    busiest = summary["threads"][0]
    assert busiest["active_s"] > 0 and busiest["top_frames"]
    speedscope = json.loads((tmp_path / "profile-continuous.speedscope.json").read_text(encoding="utf-8"))
    assert speedscope["profiles"]
