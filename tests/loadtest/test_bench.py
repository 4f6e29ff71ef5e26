"""`loadtest.bench --quick` end to end against the tiny model: five real server processes (naive
PyTorch + the service in four modes), the engine benchmark, the JSON and the Markdown report.
Checks structure and consistency only; timings on a shared CI machine are not asserted."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from loadtest import bench
from model_store.manifest import read_manifest, write_manifest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quick_bench(tiny_store: Path, number_model, number_sentences: Path,  # type: ignore[no-untyped-def]
                tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, Path]:
    out = tmp_path_factory.mktemp("bench")
    docs = out / "benchmarks.md"
    code = bench.main(["--quick", "--store", str(tiny_store), "--checkpoint", str(number_model.checkpoint),
                       "--sentences", str(number_sentences), "--unloaded-text", "three thousand and forty-two",
                       "--out", str(out), "--docs", str(docs)])
    if code != 0:
        written = out / "bench.json"
        configs = json.loads(written.read_text(encoding="utf-8"))["configs"] if written.is_file() else {}
        pytest.fail(f"bench exited {code}: {({name: result.get('error') for name, result in configs.items()})}")
    return json.loads((out / "bench.json").read_text(encoding="utf-8")), out, docs


def test_every_configuration_served_well_formed_answers(quick_bench: tuple[dict, Path, Path]) -> None:
    document, _, _ = quick_bench
    assert list(document["configs"]) == list(bench.CONFIGS)
    for name, result in document["configs"].items():
        assert "error" not in result, (name, result.get("error"))
        closed = result["closed"]
        assert len(closed["runs"]) == bench.QUICK_PLAN.repeats
        # every server translated the run's sentences one at a time first: its reference answers
        reference = result["reference"]
        assert reference["sentences"] == document["sentences"]["count"] == bench.QUICK_PLAN.max_sentences
        assert reference["policy"] == ("share" if name == "int8" else "error")
        for run in closed["runs"]:
            assert run["errors"] == 0, (name, run["error_samples"])
            assert run["requests_ok"] > 0
            assert run["reference_checked"] == run["requests_ok"]  # every answer compared with the reference
            if name != "int8":  # fp32: a differing answer would have been an error
                assert run["reference_differing"] == 0 and run["reference_agreement"] == 1.0
            assert run["sentences_per_s"] > 0 and run["target_tokens_per_s"] > 0
            assert 0 < run["p50_ms"] <= run["p95_ms"] <= run["p99_ms"]
            assert run["target_tokens_per_sentence"] >= 2  # at least one piece + eos
            assert run["server_cpu_ms_per_sentence"] > 0  # the server process's own CPU time (Linux /proc)
        summary = closed["summary"]["sentences_per_s"]
        assert summary["min"] <= summary["median"] <= summary["max"]
        assert len(summary["values"]) == bench.QUICK_PLAN.repeats
        assert result["unloaded"]["requests"] == bench.QUICK_PLAN.unloaded_requests
        assert result["unloaded"]["p50_ms"] > 0
        if name == "naive":
            assert "model_alone" not in result["unloaded"]  # torch: no ONNX model to time alone
        else:  # the same sentence through the ONNX model alone, the variant that server ran
            alone = result["unloaded"]["model_alone"]
            assert alone["variant"] == ("int8" if name == "int8" else "fp32")
            assert alone["repeats"] == bench.QUICK_PLAN.unloaded_requests and alone["decoder_steps"] >= 1
            assert 0 < alone["min_ms"] <= alone["p50_ms"]


def test_batching_modes_batch_as_configured(quick_bench: tuple[dict, Path, Path]) -> None:
    configs = quick_bench[0]["configs"]
    assert "rows_per_decoder_step" not in configs["naive"]["closed"]["runs"][0]  # no /metrics there
    # off decodes one request at a time: exactly one row per decoder step (greedy).
    assert all(run["rows_per_decoder_step"] == 1.0 for run in configs["off"]["closed"]["runs"])
    for name in ("static", "continuous", "int8"):
        assert all(run["rows_per_decoder_step"] >= 1.0 for run in configs[name]["closed"]["runs"])
        assert all(run["server_generated_tokens"] > 0 for run in configs[name]["closed"]["runs"])


def test_open_loop_runs_static_and_continuous_at_one_offered_rate(quick_bench: tuple[dict, Path, Path]) -> None:
    document = quick_bench[0]
    rates = {name: r["open"]["offered_per_s"] for name, r in document["configs"].items() if "open" in r}
    assert set(rates) == {"static", "continuous"}
    assert len(set(rates.values())) == 1 and next(iter(rates.values())) > 0
    static_closed = document["configs"]["static"]["closed"]["summary"]["sentences_per_s"]["median"]
    assert rates["static"] == pytest.approx(bench.QUICK_PLAN.open_fraction * static_closed)
    for name in rates:
        others = document["configs"][name]["open_other"]
        assert [o["offered_per_s"] for o in others] == pytest.approx(
            [share * rates[name] for share in bench.QUICK_PLAN.other_open_shares])
        for run in [*document["configs"][name]["open"]["runs"], *(r for o in others for r in o["runs"])]:
            assert run["errors"] == 0 and run["requests_ok"] > 0 and run["dropped"] == 0
            assert run["reference_checked"] == run["requests_ok"] and run["reference_differing"] == 0
            assert run["latency_convention"] == "failures_at_timeout"
            # the slowest answers broken down by the service's Server-Timing header
            tail = run["slowest_1pct_ms"]
            assert set(tail) == {"latency", "queue", "encode", "decode", "other"}
            assert tail["decode"] > 0 and min(tail["queue"], tail["encode"]) >= 0
            assert tail["other"] == pytest.approx(tail["latency"] - tail["queue"] - tail["encode"] - tail["decode"])
            assert tail["other"] > 0  # the client's latency holds the engine's time and the HTTP round trip
    assert all("slowest_1pct_ms" not in run for run in document["configs"]["naive"]["closed"]["runs"])
    # the ratio at each offered load, the headline's first
    ratios = document["p99_ratio_by_offered_load"]
    assert len(ratios) == 1 + len(bench.QUICK_PLAN.other_open_shares)
    assert ratios[0]["offered_per_s"] == pytest.approx(rates["continuous"])
    assert all(r["ratio"] == pytest.approx(r["continuous_p99_ms"] / r["static_p99_ms"]) for r in ratios)
    assert all(len(r["ratio_by_repeat"]) == bench.QUICK_PLAN.repeats for r in ratios)


def test_open_loop_runs_are_interleaved(quick_bench: tuple[dict, Path, Path]) -> None:
    """Both servers up side by side: at every rate and repeat, a static run and a continuous run back
    to back (A B, then B A)."""
    configs = quick_bench[0]["configs"]
    timeline = sorted((run["started_s"], name, load["offered_per_s"])
                      for name in ("static", "continuous")
                      for load in [configs[name]["open"], *configs[name]["open_other"]] for run in load["runs"])
    rates = 1 + len(bench.QUICK_PLAN.other_open_shares)
    assert len(timeline) == 2 * rates * bench.QUICK_PLAN.repeats
    pairs = [timeline[i:i + 2] for i in range(0, len(timeline), 2)]
    assert all(a[1] != b[1] and a[2] == b[2] for a, b in pairs)  # one of each, at one rate
    firsts = [a[1] for a, _ in pairs]
    assert set(firsts) == {"static", "continuous"}  # the order alternates: neither always goes first
    assert [bench.interleaved_order(["static", "continuous"], r) for r in range(3)] == [
        ["static", "continuous"], ["continuous", "static"], ["static", "continuous"]]


def test_closed_loop_runs_are_interleaved(quick_bench: tuple[dict, Path, Path]) -> None:
    """All servers up side by side: every repeat runs each config once, in canonical order, then
    reversed, so no config's runs all come before another's."""
    configs = quick_bench[0]["configs"]
    names = list(bench.CONFIGS)
    timeline = sorted((run["started_s"], name) for name in names for run in configs[name]["closed"]["runs"])
    rounds = [[name for _, name in timeline[i:i + len(names)]] for i in range(0, len(timeline), len(names))]
    assert rounds == [bench.interleaved_order(names, r) for r in range(bench.QUICK_PLAN.repeats)]
    # every closed-loop run came before the open loop's first
    first_open = min(run["started_s"] for name in ("static", "continuous") for run in configs[name]["open"]["runs"])
    assert timeline[-1][0] < first_open
    # the targets' saturation ratios, round by round
    by_round = {(r["numerator"], r["denominator"]): r["by_round"] for r in quick_bench[0]["saturation_ratios_by_round"]}
    assert set(by_round) == set(bench.SATURATION_RATIOS)
    for (top, bottom), ratios in by_round.items():
        assert ratios == pytest.approx([a["sentences_per_s"] / b["sentences_per_s"] for a, b in zip(
            configs[top]["closed"]["runs"], configs[bottom]["closed"]["runs"], strict=True)])


def test_fp32_servers_translate_identically(quick_bench: tuple[dict, Path, Path]) -> None:
    agreement = quick_bench[0]["agreement_with_continuous"]
    assert agreement["off"] == 1.0 and agreement["static"] == 1.0  # the service's modes are equivalent
    assert agreement["naive"] >= 0.75  # torch eager vs ONNX Runtime: the same greedy decoding
    assert 0.0 <= agreement["int8"] <= 1.0


def test_targets_and_machine_are_recorded(quick_bench: tuple[dict, Path, Path]) -> None:
    document = quick_bench[0]
    assert document["quick"] is True
    assert document["command"].startswith("python -m loadtest.bench --quick")
    assert document["machine"]["cpus"] >= 1 and document["machine"]["cpu_model"]
    targets = {t["target"]: t for t in document["targets"]}
    loads = document["p99_ratio_by_offered_load"]
    assert len(targets) == 5 + len(loads)  # the p99 target once per offered load, the headline first
    p99_rows = [t for t in document["targets"] if t["target"].startswith("continuous / static p99")]
    assert [t["value"] for t in p99_rows] == pytest.approx([load["ratio"] for load in loads])
    for row, load in zip(p99_rows, loads, strict=True):
        assert f"{load['share_of_static_saturated']:.2f} x static's saturated rate" in row["target"]
    static_saturated = document["configs"]["static"]["closed"]["summary"]["sentences_per_s"]["median"]
    assert loads[0]["share_of_static_saturated"] == pytest.approx(bench.QUICK_PLAN.open_fraction)
    assert loads[1]["offered_per_s"] == pytest.approx(
        bench.QUICK_PLAN.other_open_shares[0] * bench.QUICK_PLAN.open_fraction * static_saturated)
    speedup = targets["continuous / naive sentences/s at saturation"]
    configs = document["configs"]
    assert speedup["value"] == pytest.approx(
        configs["continuous"]["closed"]["summary"]["sentences_per_s"]["median"]
        / configs["naive"]["closed"]["summary"]["sentences_per_s"]["median"])
    assert all(t["met"] in (True, False, None) for t in targets.values())


def test_engine_results_and_report_are_written(quick_bench: tuple[dict, Path, Path]) -> None:
    _, out, docs = quick_bench
    engine = json.loads((out / "engine_bench.json").read_text(encoding="utf-8"))
    assert set(engine["variants"]) == {"fp32", "int8"}
    for result in engine["variants"].values():  # the unloaded request's model time alone
        lone = result["lone_sentence"]
        assert lone["decoder_steps"] >= 1 and 0 < lone["min_ms"] <= lone["p50_ms"]
    text = docs.read_text(encoding="utf-8")
    assert "model alone in this process" in text
    off_answers = sum(run["requests_ok"] for run in quick_bench[0]["configs"]["off"]["closed"]["runs"])
    assert f"| 0 | all {off_answers} equal |" in text  # off's closed loop: errors, answers vs its reference
    assert "answers vs the server's reference" in text and " equal |" in text
    assert "- **In the runs above** (read from their results" in text
    assert "The slowest 1% of those answers" in text
    for heading in ("## Side-by-side benchmark", "## Engine only (no HTTP)", "quick mode"):
        assert heading in text
    for name in bench.CONFIGS:
        assert f"| {name} |" in text
    assert (out / "raw" / "bench" / "server-continuous.log").is_file()


def test_bleu_drop_reads_what_the_export_records(tiny_artifact: Path) -> None:
    manifest = read_manifest(tiny_artifact)
    published = dataclasses.replace(manifest, evaluation={
        "fp32": {"everyday": {"bleu": 20.0, "bleu_onnx_greedy": 19.0}},
        "int8": {"everyday": {"bleu_onnx_greedy": 18.5, "bleu_drop_vs_fp32": 0.5},
                 "technical": {"bleu_onnx_greedy": 10.0}},
    })
    assert bench.bleu_drop(published) == {"everyday": 0.5}
    assert bench.bleu_drop(dataclasses.replace(manifest, evaluation={})) == {}


def test_int8_is_skipped_when_the_export_dropped_it(tiny_artifact: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    artifact = store / tiny_artifact.parent.name / tiny_artifact.name
    shutil.copytree(tiny_artifact, artifact)
    manifest = read_manifest(artifact)
    write_manifest(artifact, dataclasses.replace(manifest, variants={"fp32": manifest.variants["fp32"]}))
    code = bench.main(["--quick", "--configs", "int8", "--skip-engine", "--store", str(store),
                       "--out", str(tmp_path / "out"), "--docs", str(tmp_path / "benchmarks.md")])
    assert code == 0
    document = json.loads((tmp_path / "out" / "bench.json").read_text(encoding="utf-8"))
    assert "no int8 variant" in document["configs"]["int8"]["skipped"]
    int8_target = next(t for t in document["targets"] if t["target"].startswith("int8 / fp32"))
    assert int8_target["met"] is None
    assert "| int8 | the artifact has no int8 variant" in (tmp_path / "benchmarks.md").read_text(encoding="utf-8")


def test_the_naive_baseline_without_a_checkpoint_runs_the_artifact(
    tiny_store: Path, tiny_artifact: Path, number_sentences: Path, tmp_path: Path
) -> None:
    docs = tmp_path / "benchmarks.md"
    code = bench.main(["--quick", "--configs", "naive", "--skip-engine", "--store", str(tiny_store),
                       "--checkpoint", str(tmp_path / "never-written.pt"), "--sentences", str(number_sentences),
                       "--unloaded-text", "three thousand and forty-two", "--out", str(tmp_path / "out"),
                       "--docs", str(docs)])
    assert code == 0
    document = json.loads((tmp_path / "out" / "bench.json").read_text(encoding="utf-8"))
    assert document["model"]["naive_weights"] == {"source": "artifact", "path": str(tiny_artifact)}
    assert document["model"]["checkpoint"] is None
    naive = document["configs"]["naive"]
    assert "error" not in naive, naive.get("error")
    assert all(run["errors"] == 0 and run["requests_ok"] > 0 for run in naive["closed"]["runs"])
    assert all(naive["reference"]["sample_translations"])
    assert f"naive baseline weights: the artifact's fp32 graphs (`{tiny_artifact}`)" in docs.read_text(encoding="utf-8")
