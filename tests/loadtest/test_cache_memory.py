"""loadtest.cache_memory on a tiny corpus: two real servers (cache on and off), their resident memory
and the cache's own estimate read from /metrics."""

from __future__ import annotations

import json
from pathlib import Path

from loadtest.cache_memory import main, workloads

SHORT = ["Good morning.", "Where is the station?", "The house is small.", "Open the file menu."]
LONG = [" ".join(["The document that you open in the program is converted"] * 5)]


def test_workloads_pick_short_and_long_sentences(tmp_path: Path) -> None:
    corpus = tmp_path / "train.tsv"
    corpus.write_text("".join(f"{text}\tx\tsource\n" for text in [*SHORT, *LONG]), encoding="utf-8")
    chosen = workloads(corpus, short=3, long=5)
    (short, none), (long, seven) = chosen.values()
    assert short == SHORT[:3] and none == 0
    assert len(long) == 1 and long[0].startswith(LONG[0]) and "https://example.org/0" in long[0] and seven == 7


def test_cache_memory_on_a_tiny_corpus(tmp_path: Path) -> None:
    corpus = tmp_path / "train.tsv"
    corpus.write_text("".join(f"{text}\tx\tsource\n" for text in [*SHORT, *LONG]), encoding="utf-8")
    out = tmp_path / "cache_memory.json"
    assert main(["--corpus", str(corpus), "--out", str(out)]) == 0
    rows = json.loads(out.read_text(encoding="utf-8"))["workloads"]
    assert [row["workload"] for row in rows] == ["4 short sentences", "1 long sentences with a URL, 7 alternatives"]
    for row in rows:
        assert set(row["rss_growth_mib"]) == {"cache", "no cache"}
        assert row["estimated_mib"] >= 0  # the cache holds what it was sent (too little to show in MiB here)
