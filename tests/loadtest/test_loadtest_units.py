"""Pure functions of the load-test tooling: sentence sampling, percentiles and spreads, answer checks,
FLOP counting. No server, no Locust import (its gevent patching must stay out of the test process)."""

from __future__ import annotations

import inspect
import json
import math
import random
import re
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
from loadtest.pacing import PoissonSchedule, poisson_pacing
from loadtest.sentences import (
    SAMPLE_FILE,
    Sentence,
    forced_length_tokens,
    length_stratified_sample,
    load_sentences,
)
from loadtest.stats import (
    average_ranks,
    format_spread,
    histogram_percentile,
    json_safe,
    percentile,
    spearman,
    spread,
)


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


def test_rank_correlation_with_ties() -> None:
    assert average_ranks([0.3, 0.1, 0.3, 0.2]) == [3.5, 1.0, 3.5, 2.0]
    assert spearman([1, 2, 3, 4], [10, 20, 30, 45]) == pytest.approx(1.0)  # monotone, not linear
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)  # 1 - 6 * 2 / (4 * 15)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError):
        spearman([1, 2], [1])


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
    assert "## Overload: held and shed" in text and "| 100.0 | 2 | 1 | 0 | 1 | 0 |" in text  # held, wrong, shed
    assert "210 -> 214" in text
    assert "## Where the time goes (py-spy)" in text
    assert "| MainThread | 60% | Scheduler._run (scheduler.py:235) 40% |" in text
    assert "| idle |" not in text  # threads that never ran are left out


def test_poisson_schedule_keeps_its_starts_and_a_late_user_catches_up_one_request_at_a_time() -> None:
    now = [0.0]
    user = SimpleNamespace(schedule=PoissonSchedule(4.0, random.Random(0), start=0.0))
    wait_time = poisson_pacing(clock=lambda: now[0])
    gaps = []
    for _ in range(20_000):
        wait = wait_time(user)
        assert wait >= 0
        now[0] += wait  # the request starts when the pause ends (an instant answer)
        assert now[0] == user.schedule.current  # on schedule: sent at its scheduled start
        gaps.append(wait)
    mean = statistics.fmean(gaps)
    assert mean == pytest.approx(0.25, rel=0.03)  # 4 requests/s
    assert statistics.pstdev(gaps) / mean == pytest.approx(1.0, rel=0.05)  # exponential, not constant
    # A slow answer: the user is 10 s behind. It sends the requests it owes at once, one after another
    # (each when the last is answered), until it is back on schedule; each keeps its scheduled start,
    # which is what its latency is timed from (the old pacing moved the schedule to now: 1 of the ~40
    # owed requests was sent, and timed from its late send).
    now[0] += 10.0
    behind = 0
    while wait_time(user) == 0.0:
        behind += 1
        assert user.schedule.current <= now[0]  # its latency runs from a start in the past
        now[0] += 0.001  # a quick answer
    assert 30 <= behind <= 50  # ~4/s x 10 s owed


def test_the_schedule_counts_what_it_meant_to_send() -> None:
    schedule = PoissonSchedule(10.0, random.Random(1), start=5.0)
    for _ in range(40):  # four seconds' worth drawn so far
        schedule.advance()
    due = schedule.due_between(6.0, 106.0)  # draws the starts up to the end
    assert due == pytest.approx(1000, rel=0.1)
    assert schedule.current >= 106.0
    assert schedule.due_between(6.0, 6.0) == 0


def test_a_step_is_saturated_when_it_sent_less_than_its_schedule() -> None:
    from loadtest.run_loadtest import schedule_summary

    step = schedule_summary({"users": 256, "sent": 5762, "scheduled": 7680, "latency_from": "schedule",
                             "reference": {"checked": 10, "differing": 0, "learned": 0, "strict": True}}, 30.0)
    assert step["saturated"] is True and step["sent_per_s"] == pytest.approx(192.07, abs=0.01)
    assert step["scheduled_per_s"] == 256.0 and step["reference_policy"] == "error"
    # a keeping-up step can owe one request per user as it ends: not saturated
    assert schedule_summary({"users": 5, "sent": 13, "scheduled": 15}, 3.0)["saturated"] is False
    assert schedule_summary({"users": 64, "sent": 1900, "scheduled": 1920}, 30.0)["saturated"] is False
    assert schedule_summary({"users": 2, "sent": 100, "scheduled": None}, 3.0)["saturated"] is None  # back to back


def test_failed_and_dropped_requests_count_at_the_timeout() -> None:
    from loadtest import bench
    from loadtest.client import RunRecord

    ok = [Outcome(i, 0.010, "x") for i in range(95)]
    failed = [Outcome(95 + i, 0.001, None, "HTTP 429: shed") for i in range(3)]
    record = RunRecord(outcomes=ok + failed, elapsed_s=1.0, offered_rate_per_s=100.0, dropped=2)
    codec = SimpleNamespace(encode=lambda text: [1])
    summary = bench.summarize_run(record, codec, {}, {})  # type: ignore[arg-type]
    # 5 of 100 arrivals failed or were dropped: p99 and p95 are the timeout, not the answered 10 ms
    assert summary["p99_ms"] == pytest.approx(1000 * bench.FAILURE_LATENCY_S)
    assert summary["p50_ms"] == pytest.approx(10.0)
    assert summary["errors"] == 3 and summary["dropped"] == 2 and summary["requests_ok"] == 95
    assert summary["latency_convention"] == "failures_at_timeout"


def test_the_p99_target_is_not_judged_when_requests_failed_or_were_dropped(tiny_artifact: Path) -> None:
    from loadtest import bench
    from model_store.manifest import read_manifest

    def load(p99: float, errors: int = 0, dropped: int = 0) -> dict[str, object]:
        run = {"p99_ms": p99, "errors": errors, "dropped": dropped}
        return {"offered_per_s": 100.0, "runs": [run], "summary": {"p99_ms": {"median": p99}}}

    def results(static_errors: int) -> dict[str, object]:
        closed = {"summary": {"sentences_per_s": {"median": 200.0}}, "runs": []}
        return {"static": {"closed": closed, "open": load(120_000.0 if static_errors else 300.0, static_errors)},
                "continuous": {"closed": closed, "open": load(100.0)}}

    manifest = read_manifest(tiny_artifact)
    judged = next(t for t in bench.evaluate_targets(results(0), manifest) if "p99" in t["target"])
    assert judged["met"] is True and "note" not in judged  # 100 vs 300 ms
    shed = next(t for t in bench.evaluate_targets(results(2), manifest) if "p99" in t["target"])
    # static shed 2 requests: its p99 is the timeout, and the ratio would look like a win
    assert shed["met"] is None and shed["note"].startswith("not judged: 2 requests failed or were dropped")


def test_the_lone_model_runs_in_the_environment_its_server_got(monkeypatch: pytest.MonkeyPatch,
                                                             tiny_artifact: Path) -> None:
    from loadtest import bench
    from model_store.manifest import read_manifest

    seen: dict[str, object] = {}

    def run(argv: list[str], **kwargs: object) -> SimpleNamespace:
        seen.update(kwargs)
        return SimpleNamespace(returncode=0, stdout='{"p50_ms": 1.0, "min_ms": 1.0}\n', stderr="")

    monkeypatch.setattr(bench.subprocess, "run", run)
    monkeypatch.setenv("TRANSLATOR_ENCODER_INTRA_OP_THREADS", "7")  # the benchmark's own, not the servers'
    settings = bench.config_settings("continuous", {"decoder_threads": "3"}, "en-de@1")
    bench.model_alone(tiny_artifact.parent.parent, read_manifest(tiny_artifact), "fp32", "x", 1, settings)
    env = seen["env"]
    assert isinstance(env, dict)
    assert "TRANSLATOR_ENCODER_INTRA_OP_THREADS" not in env
    assert env["TRANSLATOR_DECODER_THREADS"] == "3"  # --server-env reaches it, as it reaches the servers
    assert env["TRANSLATOR_BATCHING"] == "continuous" and env["TRANSLATOR_MODELS"] == "en-de@1"


def test_the_stand_in_has_the_shipped_models_shape() -> None:
    from loadtest import standin
    from training.cli import PRESETS

    shipped = json.loads((Path(__file__).resolve().parents[2] / "model_store/en-de/3/manifest.json")
                         .read_text(encoding="utf-8"))["model_config"]
    preset = PRESETS[standin.build_parser().parse_args([]).preset]
    for key in ("embedding_dim", "encoder_hidden", "encoder_layers", "decoder_hidden", "decoder_layers",
                "tie_embeddings"):
        assert preset.get(key, False) == shipped[key], key
    assert inspect.signature(standin.write_standin).parameters["preset"].default == standin.SHIPPED_PRESET


def test_every_command_the_page_gives_parses() -> None:
    """Each `python -m loadtest.X ...` of the page's "Running it" parses with that tool's own options
    (the stand-in line told run_loadtest and compare to take --checkpoint, which they refuse)."""
    import shlex

    from loadtest import bench, compare, report, run_loadtest, standin

    parsers = {"loadtest.bench": bench.build_parser(), "loadtest.run_loadtest": run_loadtest.build_parser(),
               "loadtest.compare": compare.build_parser(), "loadtest.standin": standin.build_parser()}
    commands = [c for line in report.RUNNING_IT for c in re.findall(r"`python -m (loadtest\.[a-z_]+[^`]*)`", line)]
    stand_in = next(line for line in report.RUNNING_IT if "Before a trained model exists" in line)
    assert {"loadtest.bench", "loadtest.run_loadtest", "loadtest.compare"} <= {
        c.split()[0] for c in re.findall(r"`python -m (loadtest\.[a-z_]+[^`]*)`", stand_in)}
    checked = 0
    for command in commands:
        module, *args = shlex.split(command)
        if module in parsers and "..." not in args and not any(a.isupper() for a in args):
            parsers[module].parse_args(args)  # SystemExit (a usage error) fails the test
            checked += 1
    assert checked >= 4


def test_report_states_only_the_numbers_of_the_runs_it_renders(tmp_path: Path) -> None:
    """A rerun's page must not contradict itself: every number about "the run above" is read from the
    results (an engine run whose step reached 0.50 of peak said "0.70 ... the highest measured here")."""
    from loadtest import report

    results = Path(__file__).resolve().parents[2] / "loadtest/results"
    for name in report.RESULT_FILES:
        if (results / name).is_file():
            (tmp_path / name).write_text((results / name).read_text(encoding="utf-8"), encoding="utf-8")
    engine = json.loads((tmp_path / "engine_bench.json").read_text(encoding="utf-8"))
    engine["target"] |= {"value": 0.5, "met": False}
    engine["matmul_peak_gflops"] = 150.0
    engine["machine"]["date_utc"] = "2027-01-02T03:04:05Z"
    (tmp_path / "engine_bench.json").write_text(json.dumps(engine), encoding="utf-8")
    bench = json.loads((tmp_path / "bench.json").read_text(encoding="utf-8"))
    continuous = bench["configs"]["continuous"]["closed"]["summary"]["sentences_per_s"]["median"]
    bench["machine"]["date_utc"] = "2027-01-02T02:00:00Z"
    for result in bench["configs"].values():
        result["closed"]["summary"]["sentences_per_s"]["median"] *= 2
    bench["configs"]["int8"]["unloaded"]["p50_ms"] = 9.9
    (tmp_path / "bench.json").write_text(json.dumps(bench), encoding="utf-8")
    text = report.render(tmp_path, tmp_path / "benchmarks.md")
    assert "0.50 of a 150 GFLOP/s numpy GEMM peak (**missed**)" in text
    int8_alone = bench["configs"]["int8"]["unloaded"]["model_alone"]["p50_ms"]
    assert f"continuous {2 * continuous:.1f};" in text
    assert f"int8 9.9 ms end to end, {int8_alone:.1f} ms of it the model alone" in text
    for stale in ("09:42", "09:28", "0.70 against", "highest measured here", "in the latest run", "the one before",
                  "in the run above (", "three of the five latest", "1.56 in the run", "2-3x more sentences"):
        assert stale not in text, stale
    assert "[benchmark-history.md](benchmark-history.md)" in text
    history = Path(__file__).resolve().parents[2] / "docs/benchmark-history.md"
    assert "hand-maintained" in history.read_text(encoding="utf-8")


def test_report_tolerates_results_from_before_the_answer_checks(tmp_path: Path) -> None:
    """The results committed before the answer checks (2026-12-07 09:28 and earlier), kept as they were."""
    from loadtest import report

    results = Path(__file__).resolve().parent / "data/results_before_answer_checks"
    text = report.render(results, tmp_path / "benchmarks.md")
    assert "| naive | 24.2 (19.1-24.7) |" in text and "| 0 | not measured |" in text  # errors, answers
    assert "| 0 | 0 | not measured |" in text  # open loop: errors, dropped, answers
    assert "| all at once | 400 | 256 | not measured |" in text  # overload: wrong answers
    assert "| 256 | 256.0 | not measured | not measured | 192.0 |" in text  # locust: scheduled, sent
    assert "**saturated** (answers short of the offer)" in text and "| 39* |" in text


def test_report_labels_small_samples_saturation_and_int8_peak(tmp_path: Path) -> None:
    from loadtest import report

    machine = {"date_utc": "2027-01-01T00:00:00Z", "cpus": 2, "load_average_1m_at_start": 0.1}

    def step(users: int, requests: int, sent: int, scheduled: int, saturated: bool) -> dict[str, object]:
        return {"users": users, "offered_requests_per_s": float(users), "scheduled_per_s": scheduled / 30,
                "sent_per_s": sent / 30, "requests_per_s": requests / 30, "sentences_per_s": requests / 20,
                "requests": requests, "failures": 0, "shed_429": 0, "p50_ms": 15.0, "p95_ms": 36.0, "p99_ms": 39.0,
                "max_ms": 45.0, "saturated": saturated, "latency_from": "schedule", "reference_checked": requests,
                "reference_differing": 0, "reference_learned": 0, "reference_policy": "error", "elapsed_s": 30.0}

    (tmp_path / "loadtest.json").write_text(json.dumps({
        "command": "python -m loadtest.run_loadtest", "machine": machine, "traffic": "Locust", "model": {},
        "step_s": 30.0, "saturated_share": 0.95,
        "steps": [step(1, 40, 40, 40, False), step(256, 5762, 5762, 7680, True)]}), encoding="utf-8")
    rows = [{"batch": 32, "encoder_ms": 1.0, "encoder_sentences_per_s": 1.0, "decoder_step_ms": 1.0,
             "decoder_step_rows_per_s": 1.0, "decoder_step_gflops": 237.6, "decoder_step_fraction_of_peak": 1.27,
             "sentences_per_s": 1.0}]
    (tmp_path / "engine_bench.json").write_text(json.dumps({
        "command": "python -m loadtest.engine_bench", "machine": machine, "flops": {
            "encoder_per_sentence": 1e8, "decoder_step_per_row": 7.8e6, "output_projection_per_row": 4.1e6,
            "per_sentence": 2.4e8},
        "shaped_matmul_gflops": {"shape": [32, 256, 8000], "gflops": 149.0}, "matmul_peak_size": 1024,
        "matmul_peak_gflops": 187.0, "sentences": {"source_tokens": 17, "decoder_steps": 18, "source": "x"},
        "variants": {"fp32": {"providers": ["CPUExecutionProvider"], "rows": [rows[0] | {
                         "decoder_step_fraction_of_peak": 0.7}]},
                     "int8": {"providers": ["CPUExecutionProvider"], "rows": rows}},
        "target": {"target": "t", "goal": ">= 0.6", "value": 0.7, "met": True}}), encoding="utf-8")
    text = report.render(tmp_path, tmp_path / "benchmarks.md")
    assert "| 1 | 1.0 | 1.3 | 1.3 | 1.3 | 2.0 | 40 | 0 | 0 | all 40 equal | 15 | 36 | max 45 |  |" in text
    assert "| 256 | 256.0 | 256.0 | 192.1 | 192.1 |" in text and "| 39 | **saturated** |" in text
    assert "| 32 | 1.00 | 1 | 1.00 | 1 | 237.6 | n/a | 1 |" in text and "127%" not in text  # int8: no fraction
    assert "| 32 | 1.00 | 1 | 1.00 | 1 | 237.6 | 70% | 1 |" in text  # fp32 keeps it
