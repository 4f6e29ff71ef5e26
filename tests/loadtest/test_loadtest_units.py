"""Pure functions of the load-test tooling: sentence sampling, percentiles and spreads, answer checks,
FLOP counting. No server, no Locust import (its gevent patching must stay out of the test process)."""

from __future__ import annotations

import json
import math
import random
import statistics
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from loadtest import sentences as sentences_module
from loadtest.answers import attention_problem, libre_problem, translation_problem
from loadtest.bench import slowest_phases_ms
from loadtest.client import Outcome, parse_server_timing
from loadtest.engine_bench import lstm_flops, model_flops
from loadtest.pacing import poisson_pacing
from loadtest.sentences import (
    SAMPLE_FILE,
    Sentence,
    forced_length_tokens,
    length_stratified_sample,
    load_sentences,
)
from loadtest.stats import format_spread, histogram_percentile, json_safe, percentile, spread


def test_committed_sample_has_about_300_english_sentences() -> None:
    lines = SAMPLE_FILE.read_text(encoding="utf-8").splitlines()
    assert 250 <= len(lines) <= 350
    assert all(line.strip() for line in lines)
    assert "\t" not in "".join(lines)


def test_falls_back_to_the_committed_sample_without_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sentences_module, "TEST_SETS", (tmp_path / "missing.tsv",))
    loaded, source = load_sentences()
    assert source == str(SAMPLE_FILE)
    assert len(loaded) == len(SAMPLE_FILE.read_text(encoding="utf-8").splitlines())
    assert all(s.german is None for s in loaded)


def test_tsv_sentences_carry_their_reference(tmp_path: Path) -> None:
    path = tmp_path / "s.tsv"
    path.write_text("Hello world\tHallo Welt\torigin\n\nGood\tGut\tx\n", encoding="utf-8")
    loaded, _ = load_sentences(path)
    assert loaded == [Sentence("Hello world", "Hallo Welt"), Sentence("Good", "Gut")]


def test_stratified_sample_keeps_the_length_quantiles() -> None:
    population = [Sentence(" ".join(["w"] * (1 + i % 40)) + f" {i}", None) for i in range(4000)]
    sample = length_stratified_sample(population, 300)
    assert len(sample) == 300 and len(set(sample)) == 300

    def quantiles(items: list[Sentence]) -> list[float]:
        return [percentile([len(s.english.split()) for s in items], q) for q in (10, 50, 90)]

    for full, drawn in zip(quantiles(population), quantiles(sample), strict=True):
        assert abs(full - drawn) <= 1.0
    first_half = [len(s.english.split()) for s in sample[:150]]
    assert min(first_half) <= 5 and max(first_half) >= 35  # interleaved, not sorted by length


def test_forced_length_follows_the_reference_and_is_capped() -> None:
    assert forced_length_tokens(Sentence("a b", "eins zwei drei vier")) == math.ceil(1.6 * 4)
    assert forced_length_tokens(Sentence("a b c", None)) == math.ceil(1.6 * 3)
    assert forced_length_tokens(Sentence(" ".join(["w"] * 1000), None)) == 256


def test_percentiles_and_spread() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([5.0], 99) == 5.0
    assert math.isnan(percentile([], 50))
    assert histogram_percentile({10.0: 98, 500.0: 2}, 50) == 10.0
    assert histogram_percentile({10.0: 98, 500.0: 2}, 99) == 500.0
    summary = spread([3.0, 1.0, 2.0, float("nan")])
    assert (summary["median"], summary["min"], summary["max"]) == (2.0, 1.0, 3.0)
    assert format_spread(summary) == "2.0 (1.0-3.0)"
    assert format_spread(spread([])) == "n/a"
    assert json_safe({"a": [float("nan"), 1.5], "b": Path("x")}) == {"a": [None, 1.5], "b": "x"}


def test_translation_answers_must_be_complete_and_non_empty() -> None:
    good = {"model": {"name": "en-de", "version": "1"}, "translations": [{"text": "Hallo"}, {"text": "Welt"}]}
    assert translation_problem(good, 2) is None
    assert translation_problem(good, 1) is not None  # one translation per text
    assert translation_problem({**good, "translations": [{"text": " "}, {"text": "x"}]}, 2) is not None
    assert translation_problem({"translations": [{"text": "x"}]}, 1) is not None  # no model
    assert libre_problem({"translatedText": "Hallo"}) is None
    assert libre_problem({"translatedText": ""}) is not None
    assert libre_problem(["Hallo"]) is not None


def test_attention_answers_must_have_consistent_shapes() -> None:
    good = {"translation": "Hallo Welt", "source_tokens": ["▁Hello", "▁world", "</s>"],
            "target_tokens": ["▁Hallo", "▁Welt", "</s>"],
            "weights": [[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.0, 0.0, 1.0]],
            "alignment": [[0, 0], [1, 1]], "moses": "0-0 1-1"}
    assert attention_problem(good) is None
    assert attention_problem({**good, "weights": good["weights"][:2]}) is not None
    assert attention_problem({**good, "weights": [[0.5, 0.2, 0.2], *good["weights"][1:]]}) is not None
    assert attention_problem({**good, "alignment": [[7, 0]]}) is not None
    assert attention_problem({**good, "translation": ""}) is not None


def test_server_timing_is_parsed_and_the_slowest_answers_broken_down() -> None:
    assert parse_server_timing("queue;dur=1.5, encode;desc=\"x\";dur=2, decode;dur=10.25") == {
        "queue": 1.5, "encode": 2.0, "decode": 10.25}
    assert parse_server_timing(None) is None and parse_server_timing("") is None
    with pytest.raises(ValueError):
        parse_server_timing("queue;dur=soon")
    timing = {"queue": 1.0, "encode": 2.0, "decode": 3.0}
    outcomes = [Outcome(i, latency_s, "x", None, timing | {"decode": latency_s * 500})
                for i, latency_s in enumerate([0.01] * 198 + [0.1, 0.2])]
    tail = slowest_phases_ms(outcomes)  # 1% of 200: the two slowest
    assert tail == pytest.approx({"latency": 150.0, "queue": 1.0, "encode": 2.0, "decode": 75.0, "other": 72.0})
    assert slowest_phases_ms([Outcome(0, 0.1, "x")]) is None  # a server without the header


def test_flops_by_hand() -> None:
    assert lstm_flops(2, 3) == 2 * 4 * 3 * (2 + 3)
    assert lstm_flops(2, 3, cell="gru") == 2 * 3 * 3 * (2 + 3)
    config = {"embedding_dim": 4, "encoder_hidden": 3, "encoder_layers": 1, "decoder_hidden": 5,
              "decoder_layers": 1, "vocab_size": 11, "attention": "luong_general", "encoder_cell": "lstm"}
    flops = model_flops(config, source_tokens=7)
    memory = 6
    step = lstm_flops(4, 5) + 2 * 7 * 5 + 2 * 7 * memory + 2 * (5 + memory) * 5 + 2 * 5 * 11
    assert flops["decoder_step_per_row"] == step
    encoder = 7 * (2 * lstm_flops(4, 3) + 2 * memory * 5) + 2 * (2 * memory * 5)
    assert flops["encoder_per_sentence"] == encoder
    none = model_flops({**config, "attention": "none"}, source_tokens=7)
    assert none["decoder_step_per_row"] == lstm_flops(4, 5) + 2 * 5 * 5 + 2 * 5 * 11
    # Tied embeddings: the attentional vector and the output projection are embedding-wide (4), not 5.
    tied = model_flops({**config, "tie_embeddings": True}, source_tokens=7)
    attend = 2 * 7 * 5 + 2 * 7 * memory
    assert tied["decoder_step_per_row"] == lstm_flops(4, 5) + attend + 2 * (5 + memory) * 4 + 2 * 4 * 11
    assert tied["output_projection_per_row"] == 2 * 4 * 11


def test_the_tooling_never_imports_locust_into_this_process() -> None:
    import loadtest.bench
    import loadtest.run_loadtest  # noqa: F401

    assert "locust" not in sys.modules and "gevent.monkey" not in sys.modules


def test_the_naive_baseline_prefers_an_existing_checkpoint_else_the_artifact(tmp_path: Path) -> None:
    from loadtest.servers import NaiveWeights, ServerStartError, naive_weights

    checkpoint, artifact = tmp_path / "best.pt", tmp_path / "store" / "en-de" / "3"
    assert naive_weights(checkpoint, artifact) == NaiveWeights("artifact", artifact)
    assert naive_weights(None, artifact) == NaiveWeights("artifact", artifact)
    checkpoint.write_bytes(b"weights")
    assert naive_weights(checkpoint, artifact) == NaiveWeights("checkpoint", checkpoint)
    with pytest.raises(ServerStartError, match="needs a torch checkpoint"):
        naive_weights(tmp_path / "missing.pt", None)


def test_report_names_where_the_naive_weights_came_from() -> None:
    from loadtest.report import _naive_weights

    artifact = {"checkpoint": None, "naive_weights": {"source": "artifact", "path": "model_store/en-de/3"}}
    assert _naive_weights(artifact) == ("naive baseline weights: the artifact's fp32 graphs "
                                        "(`model_store/en-de/3`), rebuilt in PyTorch")
    checkpoint = {"checkpoint": "runs/en-de/best.pt",
                  "naive_weights": {"source": "checkpoint", "path": "runs/en-de/best.pt"}}
    assert _naive_weights(checkpoint) == "naive baseline checkpoint `runs/en-de/best.pt`"
    # results written before the artifact fallback existed
    assert _naive_weights({"checkpoint": "runs/en-de/best.pt"}) == "naive baseline checkpoint `runs/en-de/best.pt`"


def test_report_renders_the_overload_and_profile_results(tmp_path: Path) -> None:
    from loadtest import overload, report

    answers = [overload.Answer(200, 0.02, None, None), overload.Answer(429, 0.001, "1", "overloaded")]
    run = overload.summarize(answers, 100.0, 1.0) | {"server_rss_before_mb": 210.0, "server_rss_after_mb": 214.0}
    machine = {"date_utc": "2026-11-23T02:00:00Z", "cpus": 2, "load_average_1m_at_start": 0.1}
    (tmp_path / "overload.json").write_text(json.dumps(
        {"command": "python -m loadtest.overload --url http://x", "machine": machine, "runs": [run]}))
    (tmp_path / "profile-continuous.json").write_text(json.dumps({
        "command": "python -m loadtest.profile", "load": {"concurrency": 64, "sentences_per_s": 170.0, "errors": 0},
        "wall_s": 10.0,
        "threads": [{"thread": "MainThread", "active_s": 6.0, "active_share_of_wall": 0.6,
                     "top_frames": [{"frame": "Runner.run (runners.py:118)", "share_of_active": 0.9},
                                    {"frame": "Scheduler._run (scheduler.py:235)", "share_of_active": 0.4}]},
                    {"thread": "idle", "active_s": 0.0, "active_share_of_wall": 0.0, "top_frames": []}]}))
    text = report.render(tmp_path, tmp_path / "benchmarks.md")
    assert "## Overload: held and shed" in text and "| 100.0 | 2 | 1 | 1 | 0 |" in text
    assert "210 -> 214" in text
    assert "## Where the time goes (py-spy)" in text
    assert "| MainThread | 60% | Scheduler._run (scheduler.py:235) 40% |" in text
    assert "| idle |" not in text  # threads that never ran are left out


def test_poisson_pacing_makes_exponential_gaps_and_never_catches_up_in_a_burst() -> None:
    now = [0.0]
    user = SimpleNamespace(random=random.Random(0), next_request_at=0.0)
    wait_time = poisson_pacing(4.0, clock=lambda: now[0])
    gaps = []
    for _ in range(20_000):
        wait = wait_time(user)
        assert wait >= 0
        now[0] += wait  # the request starts when the pause ends (an instant answer)
        gaps.append(wait)
    mean = statistics.fmean(gaps)
    assert mean == pytest.approx(0.25, rel=0.03)  # 4 requests/s
    assert statistics.pstdev(gaps) / mean == pytest.approx(1.0, rel=0.05)  # exponential, not constant
    now[0] += 10.0  # a slow answer: the user is 10 s behind its schedule
    assert wait_time(user) == 0.0
    assert sum(wait_time(user) == 0.0 for _ in range(50)) < 5  # no burst of catch-up requests
