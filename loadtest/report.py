"""Renders docs/benchmarks.md from whatever of loadtest/results/{bench,engine_bench,loadtest,overload,
profile-continuous}.json exists: exact commands, machine, date, medians with their min-max spread,
and the issue's targets.

Stdlib only.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from pathlib import Path
from typing import Any

from loadtest.stats import format_spread

RESULT_FILES = ("bench.json", "engine_bench.json", "engine_bench_cuda.json", "engine_bench_cuda_no_io_binding.json",
                "loadtest.json", "overload.json", "profile-continuous.json")
MAKE_TARGETS = {"bench": "make bench", "engine_bench": "make bench", "loadtest": "make loadtest"}


def _load(results_dir: Path) -> dict[str, dict[str, Any]]:
    documents = {}
    for name in RESULT_FILES:
        path = results_dir / name
        if path.is_file():
            documents[name.removesuffix(".json")] = json.loads(path.read_text(encoding="utf-8"))
    return documents


def _number(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_number(v, 2)}" for k, v in value.items()) or "n/a"
    return f"{value:.{digits}f}" if isinstance(value, int | float) else str(value)


def _percent(fraction: float | None) -> str:
    return "n/a" if fraction is None else f"{100 * fraction:.0f}%"


def _met(value: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "not measured"}[value]


def _target_verdict(target: dict[str, Any]) -> str:
    """met / **missed** / not measured, or why it was not judged."""
    return str(target["note"]) if target.get("note") else _met(target["met"])


NOT_MEASURED = "not measured"


def _reference_cell(runs: list[dict[str, Any]]) -> str:
    """The answers of some runs compared with their server's reference answers: 'all 1234 equal',
    '3 of 1234 differ (0.2%)'; 'not measured' for results from before the check."""
    if not runs or any("reference_checked" not in run for run in runs):
        return NOT_MEASURED
    checked = sum(int(run["reference_checked"] or 0) for run in runs)
    differing = sum(int(run["reference_differing"] or 0) for run in runs)
    if not checked:
        return "none compared"
    if not differing:
        return f"all {checked} equal"
    return f"{differing} of {checked} differ ({100 * differing / checked:.1f}%)"


def _sum(runs: list[dict[str, Any]], key: str) -> str:
    """A count summed over runs; 'not measured' when a run lacks it."""
    if any(key not in run for run in runs):
        return NOT_MEASURED
    return str(sum(int(run[key] or 0) for run in runs))


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|",
            *("| " + " | ".join(row) + " |" for row in rows), ""]


def _caveats(document: dict[str, Any]) -> list[str]:
    notes = list(document.get("notes", []))  # recorded with the run (e.g. what the machine line cannot say)
    if document.get("quick"):
        notes.append("**quick mode**: a smoke run of a few seconds; the numbers are not measurements.")
    training = str(document.get("model", {}).get("training") or "")
    if "STAND-IN" in training.upper():
        notes.append(f"**stand-in model** ({training}): untrained weights; only the speed means anything.")
    machine = document.get("machine", {})
    load, cpus = machine.get("load_average_1m_at_start"), machine.get("cpus") or 1
    if isinstance(load, int | float) and load > 0.5 * cpus:
        notes.append(f"**contended machine**: load average {load} on {cpus} CPUs at the start; "
                     "other work shared the cores, so these numbers are low and noisy.")
    return notes


def _machine_line(document: dict[str, Any]) -> str:
    m = document.get("machine", {})
    versions = ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items())
    return (f"{m.get('date_utc')} on {m.get('cpu_model')} ({m.get('cpus')} CPUs, "
            f"{m.get('threads_per_core')} thread/core, {m.get('hypervisor') or 'bare metal'}), "
            f"load average {m.get('load_average_1m_at_start')} at start, nice {m.get('niceness')}; {versions}")


def _naive_weights(model: dict[str, Any]) -> str:
    """Which torch weights the naive baseline ran (results written before the artifact fallback name a
    checkpoint only)."""
    weights = model.get("naive_weights") or {}
    if weights.get("source") == "artifact":
        return f"naive baseline weights: the artifact's fp32 graphs (`{weights['path']}`), rebuilt in PyTorch"
    return f"naive baseline checkpoint `{model.get('checkpoint')}`"


def _bench_section(doc: dict[str, Any]) -> list[str]:
    plan = doc["plan"]
    lines = ["## Side-by-side benchmark", "", f"Command: `{doc['command']}` (`{MAKE_TARGETS['bench']}`)", "",
             f"Measured: {_machine_line(doc)}. Wall time {doc.get('wall_s', 0):.0f} s.", "",
             *(f"- {note}" for note in _caveats(doc)), "",
             f"Model: `{doc['model']['artifact']}` ({doc['model']['name']} v{doc['model']['version']}, "
             f"{doc['model']['attention']}); {_naive_weights(doc['model'])}.",
             f"Sentences: {doc['sentences']['count']} from {doc['sentences']['source']} "
             f"(source tokens mean {doc['sentences']['source_tokens_mean']:.1f}, "
             f"max {doc['sentences']['source_tokens_max']}); output lengths: "
             + ("the model's own" if doc["lengths"] == "model" else "forced to the reference length (max_length)")
             + ".", ""]
    interleaved = any("started_s" in run for result in doc["configs"].values()
                      for run in result.get("closed", {}).get("runs", []))
    lines += [f"Closed loop: {plan['concurrency']} concurrent clients, {plan['repeats']} x {plan['duration_s']} s"
              + (" (the servers up side by side, the configs' runs interleaved: A B C D E, then E D C B A)"
                 if interleaved else "")
              + "; median (min-max) over the repeats. Unloaded: p50 of "
              f"{plan['unloaded_requests']} sequential requests of a 10-word sentence; model alone: the same "
              "sentence through the ONNX model with no HTTP and no scheduler, measured right after it (the "
              "same moment's neighbours), so the difference is what the service adds.", ""]
    rows = []
    for name, result in doc["configs"].items():
        if "error" in result or "skipped" in result:
            why = "failed: " + result["error"].splitlines()[0][:80] if "error" in result else result["skipped"]
            rows.append([name, why, "", "", "", "", "", "", "", "", "", ""])
            continue
        s = result["closed"]["summary"]
        runs = result["closed"]["runs"]
        alone = result["unloaded"].get("model_alone", {}).get("p50_ms")
        rows.append([name, format_spread(s["sentences_per_s"]), format_spread(s["target_tokens_per_s"], 0),
                     format_spread(s["p50_ms"], 0), format_spread(s["p95_ms"], 0), format_spread(s["p99_ms"], 0),
                     _sum(runs, "errors"), _reference_cell(runs),
                     format_spread(s.get("rows_per_decoder_step", {})),
                     format_spread(s.get("server_cpu_ms_per_sentence", {})), _number(result["unloaded"].get("p50_ms")),
                     _number(alone)])
    lines += _table(["config", "sentences/s", "target tokens/s", "p50 ms", "p95 ms", "p99 ms", "errors",
                     "answers vs the server's reference", "rows/decoder step", "server CPU ms/sentence",
                     "unloaded p50 ms", "model alone p50 ms"], rows)
    lines += _answers_note(doc)
    all_runs = [run for result in doc["configs"].values() for load in [result.get("closed", {}), result.get("open", {}),
                                                                       *result.get("open_other", [])]
                for run in load.get("runs", [])]
    lines += [_latency_convention(all_runs), ""]
    if by_round := doc.get("saturation_ratios_by_round"):
        lines += ["Sentences/s ratios round by round (each round ran every config once, back to back): "
                  + "; ".join(f"{r['numerator']} / {r['denominator']} "
                              + ", ".join(_number(x, 2) for x in r["by_round"]) for r in by_round) + ".", ""]
    opened = {name: [r["open"], *r.get("open_other", [])] for name, r in doc["configs"].items() if "open" in r}
    if opened:
        rate = next(iter(opened.values()))[0]["offered_per_s"]
        others = plan.get("other_open_shares") or []
        lines += [f"Open loop (Poisson arrivals, the same schedule for each config; the configs' servers up side by "
                  "side and their runs interleaved, A B then B A, so each config's p99 comes from the same stretch "
                  f"of the machine's time): {rate:.1f} sentences/s offered "
                  f"({plan['open_fraction']} x the first open config's saturated rate unless fixed)"
                  + (f", and {' and '.join(f'{share} x' for share in others)} that" if others else "")
                  + f"; {plan['repeats']} x {plan['open_duration_s']} s each.", ""]
        rows = [[name, f"{o['offered_per_s']:.1f}", format_spread(o["summary"]["sentences_per_s"]),
                 format_spread(o["summary"]["p50_ms"], 0), format_spread(o["summary"]["p95_ms"], 0),
                 format_spread(o["summary"]["p99_ms"], 0),
                 format_spread(o["summary"].get("server_cpu_ms_per_sentence", {})),
                 _sum(o["runs"], "errors"), _sum(o["runs"], "dropped"), _reference_cell(o["runs"])]
                for name, runs in opened.items() for o in runs]
        lines += _table(["config", "offered/s", "served sentences/s", "p50 ms", "p95 ms", "p99 ms",
                         "server CPU ms/sentence", "errors", "dropped", "answers vs the server's reference"], rows)

        if ratios := doc.get("p99_ratio_by_offered_load"):
            lines += ["Continuous / static p99 by offered load (medians; then repeat by repeat, each pair run back "
                      "to back): " + "; ".join(
                f"{r['ratio']:.2f} at {r['offered_per_s']:.1f}/s ({r['continuous_p99_ms']:.0f} vs "
                f"{r['static_p99_ms']:.0f} ms; {', '.join(_number(x, 2) for x in r.get('ratio_by_repeat', []))})"
                for r in ratios) + ".", ""]
        lines += _slowest_breakdown(opened)
    lines += ["Targets (from the issue):", ""]
    lines += _table(["target", "goal", "measured", ""],
                    [[t["target"], t["goal"], _number(t["value"], 2), _target_verdict(t)] for t in doc["targets"]])
    unloaded = doc["configs"].get("continuous", {}).get("unloaded", {})
    if "model_alone" in unloaded and "p50_ms" in unloaded:
        alone = unloaded["model_alone"]["p50_ms"]
        lines += [f"Unloaded, continuous: {unloaded['p50_ms']:.1f} ms p50 end to end; the model alone took "
                  f"{alone:.1f} ms p50 (min {unloaded['model_alone']['min_ms']:.1f}) right after, so the service "
                  f"(HTTP, tokenizing, scheduling, thread hand-offs) added {unloaded['p50_ms'] - alone:.1f} ms.",
                  ""]
    return lines


def _answers_note(doc: dict[str, Any]) -> list[str]:
    """How the answers were checked, and how the servers' own answers compare with continuous's."""
    configs = doc["configs"]
    records = {name: r["reference"] for name, r in configs.items() if "reference" in r}
    agreement = doc.get("agreement_with_continuous") or {}
    count = doc.get("agreement_sentences")
    compared = (f"the {count} sentences of the run" if count else
                f"{len(next((r['sample_translations'] for r in configs.values() if r.get('sample_translations')), []))}"
                " sample sentences")
    same = ", ".join(f"{name} {100 * share:.1f}%" for name, share in agreement.items() if name != "continuous")
    if not records:
        return ["Answers: checked for shape only (these results are from before each answer was compared with its "
                "server's reference answer: not measured)."
                + (f" Sample translations equal to continuous's ({compared}): {same}." if same else ""), ""]
    policies = {r["policy"] for r in records.values()}
    lines = ["Answers: before anything was timed, every server translated the run's sentences one request at a time "
             "(its reference answers, per server: the naive baseline decodes a paragraph whole, the service sentence "
             "by sentence). Under load, "
             + ("an fp32 answer that differs from its server's reference is an error (counted in errors)"
                if "error" in policies else "")
             + ("; " if len(policies) > 1 else "")
             + ("int8's may change with the batch (dynamic quantization), so its differing answers are only counted"
                if "share" in policies else "") + "."]
    if same:
        lines[0] += f" Reference answers equal to continuous's, over {compared}: {same}."
    return [*lines, ""]


def _latency_convention(runs: list[dict[str, Any]]) -> str:
    if runs and all(run.get("latency_convention") == "failures_at_timeout" for run in runs):
        timeout_s = runs[0].get("failure_latency_ms", 120_000) / 1000
        return ("Latency percentiles (closed and open loop) count every request: one that failed (an error, a 429, "
                "a wrong answer, a timeout) or an open-loop arrival the client dropped (over 2,048 outstanding) counts "
                f"at the client's timeout, {timeout_s:.0f} s, and a p99 target is not judged where any occurred.")
    return ("Latency percentiles of these results count answered requests only (recorded before failed and dropped "
            "requests were counted at the timeout); errors and dropped arrivals are shown beside them.")


def _slowest_breakdown(opened: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Where the slowest 1% of the open-loop answers spent their time (the service's Server-Timing),
    medians over the repeats of each run's means."""
    rows = []
    for name, loads in opened.items():
        for load in loads:
            tails = [run["slowest_1pct_ms"] for run in load["runs"] if "slowest_1pct_ms" in run]
            if tails:
                rows.append([name, f"{load['offered_per_s']:.1f}"] + [
                    f"{statistics.median(tail[phase] for tail in tails):.0f}"
                    for phase in ("latency", "queue", "encode", "decode", "other")])
    if not rows:
        return []
    return ["The slowest 1% of those answers, where their time went (means per run, median over the runs, ms; "
            "queue, encode and decode are the engine's for the request's slowest sentence, from the service's "
            "`Server-Timing` header; other is the rest: HTTP, tokenizing, the event loop and the client, and for "
            "static the wait for the rest of its batch after its own sentence ended):", "",
            *_table(["config", "offered/s", "latency", "queue", "encode", "decode", "other"], rows)]


def _engine_section(doc: dict[str, Any], title: str = "Engine only (no HTTP)") -> list[str]:
    flops = doc["flops"]
    shaped = doc["shaped_matmul_gflops"]
    lines = [f"## {title}", "", f"Command: `{doc['command']}`", "",
             f"Measured: {_machine_line(doc)}; ORT intra-op threads {doc['machine'].get('ort_intra_op_threads')} "
             "(0 = ORT's default: each graph alone with every core; the service splits the cores between the "
             "encoder and the decoder lanes that run side by side)"
             + (f", encoder {doc['machine']['ort_encoder_intra_op_threads']}"
                if "ort_encoder_intra_op_threads" in doc["machine"] else "") + ".", "",
             *(f"- {note}" for note in _caveats(doc)), "",
             f"Compute floor: numpy fp32 GEMM {doc['matmul_peak_size']}^3 reaches **{doc['matmul_peak_gflops']:.1f} "
             f"GFLOP/s** on this machine; at the output projection's shape {shaped['shape']} it reaches "
             f"{shaped['gflops']:.1f} GFLOP/s.",
             f"Per sentence of {doc['sentences']['source_tokens']} source tokens and "
             f"{doc['sentences']['decoder_steps']} decoder steps (means of {doc['sentences']['source']}): encoder "
             f"{flops['encoder_per_sentence'] / 1e6:.1f} MFLOP, decoder step {flops['decoder_step_per_row'] / 1e6:.2f} "
             f"MFLOP per row (output projection {flops['output_projection_per_row'] / 1e6:.2f}), "
             f"**{flops['per_sentence'] / 1e6:.1f} MFLOP per sentence** (matrix multiplies only).", ""]
    for variant, result in doc["variants"].items():
        lines += [f"{variant} ({result['providers'][0]}):", ""]
        # The peak is numpy's fp32 GEMM: int8's integer matrix multiplies are no fraction of it.
        rows = [[str(r["batch"]), f"{r['encoder_ms']:.2f}", f"{r['encoder_sentences_per_s']:.0f}",
                 f"{r['decoder_step_ms']:.2f}", f"{r['decoder_step_rows_per_s']:.0f}",
                 f"{r['decoder_step_gflops']:.1f}",
                 _percent(r["decoder_step_fraction_of_peak"]) if variant == "fp32" else "n/a",
                 f"{r['sentences_per_s']:.0f}"] for r in result["rows"]]
        lines += _table(["batch", "encoder ms", "encoder sentences/s", "step ms", "step rows/s",
                         "step GFLOP/s" if variant == "fp32" else "step Gop/s",
                         "of peak", "sentences/s (encoder + all steps)"], rows)
        if variant != "fp32":
            lines += [f"No fraction of peak for {variant}: the peak above is numpy's fp32 GEMM, and {variant}'s "
                      "matrix multiplies are integer ones (its operations per second counted like fp32's FLOPs).", ""]
    lone = {variant: result["lone_sentence"] for variant, result in doc["variants"].items()
            if "lone_sentence" in result}
    if lone:
        first = next(iter(lone.values()))
        lines += [f"The side-by-side's unloaded request (\"{first['text']}\", {first['source_tokens']} source "
                  f"tokens, {first['decoder_steps']} greedy steps), model alone in this process (no HTTP, no "
                  "scheduler), p50 (min) of " + f"{first['repeats']} runs: "
                  + ", ".join(f"{variant} {r['p50_ms']:.1f} ms ({r['min_ms']:.1f})" for variant, r in lone.items())
                  + ".", ""]
    target = doc["target"]
    lines += [f"Target: {target['target']} {target['goal']}: {_number(target['value'], 2)} ({_met(target['met'])}).",
              ""]
    return lines


def _loadtest_section(doc: dict[str, Any], docs_dir: Path, results_dir: Path) -> list[str]:
    lines = ["## Locust step load", "", f"Command: `{doc['command']}` (`{MAKE_TARGETS['loadtest']}`)", "",
             f"Measured: {_machine_line(doc)}.", "", *(f"- {note}" for note in _caveats(doc)), "",
             f"Traffic: {doc['traffic']}.",
             "Served: " + (", ".join(f"{m['name']} v{m['version']}" for m in doc["model"].get("served", []))
                           or str(doc["model"].get("url", "?"))) + f" from `{doc['model'].get('store', '')}`.", ""]
    scheduled = all(s.get("latency_from") == "schedule" for s in doc["steps"])
    measured_sent = all(s.get("sent_per_s") is not None for s in doc["steps"])
    rows = [[str(s["users"]), _number(s["offered_requests_per_s"]),
             _number(s.get("scheduled_per_s")) if measured_sent else NOT_MEASURED,
             _number(s.get("sent_per_s")) if measured_sent else NOT_MEASURED,
             _number(s["requests_per_s"]), _number(s["sentences_per_s"]), str(s["requests"]), str(s["failures"]),
             _number(s.get("shed_429"), 0), _locust_reference_cell(s),
             _number(s["p50_ms"], 0), _number(s["p95_ms"], 0), _p99_cell(s), _saturation_cell(s, doc.get("step_s"))]
            for s in doc["steps"]]
    lines += _table(["users", "offered req/s (nominal)", "scheduled req/s", "sent req/s", "answered req/s",
                     "sentences/s", "n (answers)", "failures", "of which shed (429)", "translations vs reference",
                     "p50 ms", "p95 ms", f"p99 ms (n < {SMALL_SAMPLE:,}: max)", "step"], rows)
    lines += _loadtest_notes(doc, scheduled, measured_sent)
    plot = results_dir / doc.get("plot", "")
    if doc.get("plot") and plot.is_file():
        lines += [f"![throughput and latency against offered load]({os.path.relpath(plot, docs_dir)})", ""]
    return lines


SMALL_SAMPLE = 1000  # fewer answers than this: a p99 is one of the slowest ten, shown as the slowest one


def _p99_cell(step: dict[str, Any]) -> str:
    """The step's p99; from fewer than SMALL_SAMPLE answers the slowest answer, labelled 'max' (results
    from before the max was recorded: the p99, starred)."""
    if step["requests"] >= SMALL_SAMPLE:
        return _number(step["p99_ms"], 0)
    if step.get("max_ms") is not None:
        return f"max {step['max_ms']:.0f}"
    return f"{_number(step['p99_ms'], 0)}*"


def _saturation_cell(step: dict[str, Any], step_s: float | None) -> str:
    """'saturated' where the users sent fewer than 95% of the requests their schedules meant to send;
    for results from before sends were counted, where the answers fell short of the nominal offer by
    more than a Poisson schedule's chance (3 standard deviations)."""
    if step.get("saturated") is not None:
        return "**saturated**" if step["saturated"] else ""
    offered = step.get("offered_requests_per_s")
    seconds = step.get("elapsed_s") or step_s
    if not offered or not seconds:
        return ""
    expected = offered * seconds
    return ("**saturated** (answers short of the offer)" if step["requests"] < expected - 3 * math.sqrt(expected)
            else "")


def _locust_reference_cell(step: dict[str, Any]) -> str:
    if step.get("reference_checked") is None:
        return NOT_MEASURED
    checked, differing = int(step["reference_checked"]), int(step.get("reference_differing") or 0)
    if not checked:
        return "none compared"
    text = (f"all {checked} equal" if not differing
            else f"{differing} of {checked} differ ({100 * differing / checked:.1f}%)")
    return text + (f", {step['reference_learned']} first seen" if step.get("reference_learned") else "")


def _loadtest_notes(doc: dict[str, Any], scheduled: bool, measured_sent: bool) -> list[str]:
    share = doc.get("saturated_share", 0.95)
    notes = []
    if scheduled and measured_sent:
        notes.append(f"Offered: users x rate (nominal); scheduled: the requests the users' Poisson schedules meant to "
                     f"start in the step; sent: those started; answered: those completed in it. A step that sent fewer "
                     f"than {100 * share:.0f}% of its scheduled requests (and more than one per user short) is "
                     "saturated: the server could not keep up. "
                     "Latency is timed from each request's scheduled start, so in a saturated step it includes the "
                     "wait for the user's previous answer (no coordinated omission).")
    else:
        notes.append("These results are from before sends were counted and requests timed from their scheduled "
                     "start (scheduled and sent: not measured): latency is timed from the actual send, and a user "
                     "whose answer came late sent its next request later, so a saturated step sent fewer requests "
                     "than its nominal offer and its latencies are closed-loop numbers that leave out that wait "
                     "(coordinated omission). Saturated here: fewer answers than the nominal offer by more than a "
                     "Poisson schedule's chance.")
    if any(s.get("reference_policy") == "share" for s in doc["steps"]):
        notes.append("The server ran int8, whose answers may change with the batch: translations that differ from "
                     "its sequential answers are counted, not failed.")
    elif any(s.get("reference_checked") is not None for s in doc["steps"]):
        notes.append("Every translation (each text of a batch request) was compared with the server's answer to that "
                     "text asked on its own before the first step; one that differs is a failure.")
    starred = any(s.get("max_ms") is None and s["requests"] < SMALL_SAMPLE for s in doc["steps"])
    notes.append(f"p99 from fewer than {SMALL_SAMPLE:,} answers is one of the slowest ten: shown as the slowest "
                 "answer (max)" + ("; starred: the p99 of results that did not record the max (with fewer than 100 "
                                   "answers it is the max)" if starred else "") + ".")
    return [" ".join(notes), ""]


def _overload_section(doc: dict[str, Any]) -> list[str]:
    lines = ["## Overload: held and shed", "", f"Command: `{doc['command']}` against a running "
             "`make serve` (default settings; since the translation cache, `TRANSLATOR_CACHE_MB=0 make serve`, "
             "so that repeated texts reach the engine); each burst starts from an empty queue.", "",
             f"Measured: {_machine_line(doc)}.", "",
             *(f"- {note}" for note in _caveats(doc)), ""]
    rows = [[str(r["offered_rate_per_s"]), str(r["sent"]), str(r["held"]), _overload_wrong(r), str(r["shed"]),
             str(r["unexpected"]), _number(r["accepted_p50_ms"], 0), _number(r["accepted_p99_ms"], 0),
             _number(r["shed_p99_ms"], 0),
             f"{_number(r.get('server_rss_before_mb'), 0)} -> {_number(r.get('server_rss_after_mb'), 0)}"]
            for r in doc["runs"]]
    lines += _table(["offered requests/s", "sent", "held (200)", "wrong answers (200)", "shed (429/503)", "other",
                     "held p50 ms", "held p99 ms", "shed p99 ms", "server RSS MB"], rows)
    if all("wrong_answers" in r for r in doc["runs"]):
        lines += ["Every 200 was validated: its shape, and each translation against the server's answer to that text "
                  "asked on its own before the bursts; "
                  + ("a malformed or differing one is a wrong answer, not held load."
                     if doc.get("reference_policy", "error") == "error" else
                     "a malformed one is a wrong answer; int8's answers may change with the batch, so differing "
                     "translations are counted (in brackets) rather than failed."), ""]
    else:
        lines += ["Held counts every 200: these results are from before each answer's body was validated (wrong "
                  "answers: not measured).", ""]
    return lines


def _overload_wrong(run: dict[str, Any]) -> str:
    if "wrong_answers" not in run:
        return NOT_MEASURED
    text = str(run["wrong_answers"])
    if run.get("reference_policy") == "share" and run.get("reference_checked"):
        text += f" ({run['reference_differing']} of {run['reference_checked']} translations differ)"
    return text


def _profile_section(doc: dict[str, Any]) -> list[str]:
    load = doc["load"]
    lines = ["## Where the time goes (py-spy)", "", f"Command: `{doc['command']}` (`make profile`): "
             f"{load['concurrency']} clients, {load['sentences_per_s']} sentences/s while sampled; "
             "raw samples in `loadtest/results/profile-continuous.speedscope.json`.", "",
             "Active share of wall time per thread (ONNX Runtime's own pool threads are not Python threads "
             "and do not appear), and the frames the busiest threads spent it in:", ""]
    rows = [[t["thread"], _percent(t["active_share_of_wall"]),
             "; ".join(f"{f['frame']} {_percent(f['share_of_active'])}" for f in _own_frames(t["top_frames"])[:4])]
            for t in doc["threads"] if t["active_s"] > 0]
    lines += _table(["thread", "active", "top frames (share of its active time)"], rows)
    return lines


def _own_frames(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Frames of this project's code (and ONNX Runtime's run), skipping interpreter and server plumbing."""
    keep = ("scheduler.py", "onnx_model.py", "translation.py", "middleware.py", "codec.py", "decoding.py",
            "batch.py", "routes_", "onnxruntime_inference_collection.py")
    return [f for f in frames if any(k in f["frame"] for k in keep)]


def _when(document: dict[str, Any]) -> str:
    machine = document.get("machine", {})
    return f"{machine.get('date_utc', '?')}, load average {machine.get('load_average_1m_at_start', '?')} at start"


def _ratio_text(values: list[Any]) -> str:
    return ", ".join(_number(v, 2) for v in values)


def _closed_median(bench: dict[str, Any], name: str, metric: str) -> float | None:
    try:
        value = bench["configs"][name]["closed"]["summary"][metric]["median"]
    except (KeyError, TypeError):
        return None
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _engine_rows(engine: dict[str, Any], variant: str) -> dict[int, dict[str, Any]]:
    return {int(r["batch"]): r for r in engine.get("variants", {}).get(variant, {}).get("rows", [])}


def _this_run_points(documents: dict[str, dict[str, Any]]) -> list[str]:
    """The numbers of the runs rendered above that the analysis below refers to, each read from its
    results file (never typed in: a rerun changes them all)."""
    bench, engine = documents.get("bench"), documents.get("engine_bench")
    profile = documents.get("profile-continuous")
    points: list[str] = []
    if bench:
        by_round = {(r["numerator"], r["denominator"]): r["by_round"]
                    for r in bench.get("saturation_ratios_by_round", [])}
        targets = {t["target"]: t for t in bench.get("targets", [])}
        ratios = []
        for (top, bottom), label in ((("continuous", "naive"), "continuous / naive"),
                                     (("continuous", "static"), "continuous / static"),
                                     (("int8", "continuous"), "int8 / fp32 (continuous)")):
            a, b = _closed_median(bench, top, "sentences_per_s"), _closed_median(bench, bottom, "sentences_per_s")
            if a is not None and b:
                rounds = by_round.get((top, bottom))
                ratios.append(f"{label} {a / b:.2f}" + (f" (rounds {_ratio_text(rounds)})" if rounds else ""))
        if ratios:
            text = (f"Side-by-side ({_when(bench)}), sentences/s at saturation: continuous "
                    f"{_number(_closed_median(bench, 'continuous', 'sentences_per_s'))}; " + "; ".join(ratios) + ".")
            cpu8 = _closed_median(bench, "int8", "server_cpu_ms_per_sentence")
            cpu32 = _closed_median(bench, "continuous", "server_cpu_ms_per_sentence")
            if cpu8 and cpu32:
                text += (f" int8's server used {cpu8:.1f} ms of CPU per sentence against fp32's {cpu32:.1f} "
                         f"(a {cpu32 / cpu8:.2f}x saving).")
            p99s = {name: _closed_median(bench, name, "p99_ms") for name in ("static", "continuous")}
            if all(p99s.values()):
                text += (f" Closed-loop p99: static {p99s['static']:.0f} ms, continuous {p99s['continuous']:.0f} ms.")
            int8_target = next((t for name, t in targets.items() if name.startswith("int8 / fp32")), None)
            if int8_target is not None:
                text += f" The int8 >= 1.5x target: {_target_verdict(int8_target)}."
            points.append(text)
        loads = bench.get("p99_ratio_by_offered_load") or []
        if loads:
            verdicts = [t for name, t in targets.items() if name.startswith("continuous / static p99")]
            parts = []
            for position, load in enumerate(loads):
                share = load.get("share_of_static_saturated")
                at = (f"{share:.2f}x static's saturated rate ({load['offered_per_s']:.0f}/s)"
                      if isinstance(share, int | float) and math.isfinite(share) else f"{load['offered_per_s']:.0f}/s")
                verdict = f", {_target_verdict(verdicts[position])}" if position < len(verdicts) else ""
                parts.append(f"{_number(load['ratio'], 2)} at {at}: {_number(load['continuous_p99_ms'], 0)} vs "
                             f"{_number(load['static_p99_ms'], 0)} ms, by repeat "
                             f"{_ratio_text(load.get('ratio_by_repeat', []))}{verdict}")
            means = [(c["summary"]["mean_ms"]["median"], s["summary"]["mean_ms"]["median"])
                     for s, c in zip([bench["configs"]["static"]["open"], *bench["configs"]["static"].get(
                         "open_other", [])], [bench["configs"]["continuous"]["open"],
                                              *bench["configs"]["continuous"].get("open_other", [])], strict=False)
                     if "mean_ms" in s["summary"] and "mean_ms" in c["summary"]]
            mean_text = ("; mean latency continuous / static " + ", ".join(
                _number(c / s if s else None, 2) for c, s in means) + " at those loads") if means else ""
            points.append("Open-loop p99, continuous / static (target <= 0.5), in the same run: "
                          + "; ".join(parts) + mean_text + ".")
        unloaded = []
        for name, label in (("continuous", "fp32"), ("int8", "int8")):
            result = bench.get("configs", {}).get(name, {}).get("unloaded", {})
            alone = result.get("model_alone", {}).get("p50_ms")
            if "p50_ms" in result and alone is not None:
                unloaded.append(f"{label} {result['p50_ms']:.1f} ms end to end, {alone:.1f} ms of it the model alone "
                                f"(the service added {result['p50_ms'] - alone:.1f} ms)")
        if unloaded:
            points.append("A lone 10-word request, p50 in the same run: " + "; ".join(unloaded) + ".")
    if engine and engine.get("variants"):
        fp32, int8 = _engine_rows(engine, "fp32"), _engine_rows(engine, "int8")
        text = f"Engine alone ({_when(engine)})"
        gains = [f"{int8[b]['sentences_per_s'] / fp32[b]['sentences_per_s']:.2f}x at batch {b}"
                 for b in (32, 64) if b in fp32 and b in int8 and fp32[b]["sentences_per_s"]]
        text += (": int8 / fp32 sentences/s " + ", ".join(gains)) if gains else ""
        target = engine.get("target", {})
        if target.get("value") is not None:
            text += (f"; the fp32 decoder step at batch 32 reaches {target['value']:.2f} of a "
                     f"{engine['matmul_peak_gflops']:.0f} GFLOP/s numpy GEMM peak ({_met(target.get('met'))})")
        best = max(fp32.values(), key=lambda r: r["sentences_per_s"]) if fp32 else None
        served = _closed_median(bench, "continuous", "sentences_per_s") if bench else None
        if best is not None and served:
            text += (f"; at its best batch ({best['batch']}) {best['sentences_per_s']:.0f} fp32 sentences/s, "
                     f"{best['sentences_per_s'] / served:.1f}x what continuous served over HTTP in the side-by-side")
        points.append(text + ".")
    if profile and profile.get("threads"):
        busy = [t for t in profile["threads"] if t.get("active_s", 0) > 0][:4]
        points.append(f"py-spy under {profile.get('config', 'continuous')} load ({profile['load']['concurrency']} "
                      f"clients, {profile['load']['sentences_per_s']} sentences/s): "
                      + ", ".join(f"{t['thread']} {_percent(t['active_share_of_wall'])} busy" for t in busy) + ".")
    if not points:
        return []
    return ["- **In the runs above** (read from their results; earlier runs: [history](benchmark-history.md)):",
            *(f"  - {point}" for point in points)]


# The hand-written analysis of the generated page: no number in it describes "the run above" (those come
# from the results, _this_run_points); numbers of earlier runs live in docs/benchmark-history.md.
WHAT_LIMITS_IT = (
    "- **Under int8 load the decoder's thread is the chain everything waits on, and the GIL is much of it.** Timed "
    "inside the server (int8, 64 clients, December 2026, both lanes on one thread): that thread was busy all of "
    "the wall time, 57-61% of it inside ONNX Runtime, 12-15% advancing the searches and ~20% joining newcomers "
    "into the batch, and about half of those Python parts was waiting for the GIL (the thread's CPU time against "
    "wall time: joins 0.4-0.8 s of CPU in 1.2-2.4 s, advances 0.4-0.9 s in 0.8-1.5 s, per 2,000 steps). Every "
    "numpy copy large enough to release the GIL hands it to the event loop, which keeps it for up to the switch "
    "interval while it parses and answers requests (~0.8 ms of its CPU per request, fp32 and int8 alike). The "
    "server used ~1.45 of the 2 cores and the client ~0.15: the rest idled behind that chain. Hence one decoder "
    "thread per lane (next point): one lane's Python runs while the other lane's step is inside ONNX Runtime. "
    "Measured and left as they were (alternating runs, within this VM's noise): GIL switch intervals of 0.1, 0.2 "
    "and 0.5 ms (int8 medians 496, 434 and 479 sentences/s over 3 rounds), the decoder's ORT pool at one thread "
    "(then slower, with both lanes on one thread: int8 473/439 vs 514/518, fp32 311/325 vs 341/338; since each "
    "lane has its own thread, one ORT thread per lane is the default, see the open-loop point below), a lower OS "
    "priority (nice 5 and 10) for the encoder's thread.",
    "- **Decoder lanes by source length** (`TRANSLATOR_DECODER_LANE_BOUNDS`, default 32 tokens, below which lie "
    "91% of the test sentences): the memory a step attends over is as wide as the longest source in its batch, a "
    "batch of ~50 rows nearly always holds one long source, and under int8 load 70% of the attended positions were "
    "padding. At 51 rows an int8 step's two attention matmuls take 1.42 ms at 104 positions and 0.34 ms at 24 (42% "
    "and 17% of the step, ONNX Runtime's node profile). Rows are now split into lanes, each with its own batch and "
    "decoder thread (`service/engine/scheduler.py`; encoder calls never mix lanes): the padded share fell to ~51%. "
    "Alternating closed-loop runs (64 clients, 12 s): both lanes on one thread took int8 from 425/504 to 467/568 "
    "sentences/s (fp32 306/323 -> 316/358); a thread per lane then 454/469/566 -> 568/493/581; against one lane, 5 "
    "rounds, medians int8 481 -> 525 and fp32 334 -> 337 (ranges 425-612 and 477-603: this VM's neighbours move "
    "single runs by +-15%). Open loop at a fixed 156 sentences/s, 2 x 30 s: continuous p99 245 ms with one lane, "
    "167 ms with lanes.",
    "- **Earlier: the event loop's HTTP work was the busiest thread.** Decoder steps run back to back on the "
    "decoder's own thread (`service/engine/decode_loop.py`), which advances every request's search itself and "
    "hands only what ended to the event loop. Before, the event loop turned each step's output into the next "
    "step's input after whatever HTTP work was queued ahead of it, and under int8 load the decoder idled ~40% of "
    "the time between steps (step median 7 ms, gap 3.5 ms). In alternating runs (closed loop, 64 clients, 12 s, 4 "
    "rounds): int8 227 -> 271 sentences/s, fp32 183 -> 203. The GIL switch interval matters: right after each step "
    "the decoder's thread needs the GIL, which the event loop's thread holds while it parses and answers requests; "
    "with Python's default 5 ms the decoder waited for it (int8 240 sentences/s), with 0.5 ms "
    "(`TRANSLATOR_GIL_SWITCH_INTERVAL_MS`, the default) 271. Under fp32 saturation the two model threads were the "
    "limit when this was profiled (December 2026: decoder ~84% busy, encoder ~68%, event loop ~47%: with ONNX "
    "Runtime's pools that is more than the 2 cores; the profile above gives this run's shares). Under int8 "
    "saturation the event loop is: py-spy finds it busy ~90% of the time, almost all of it in "
    "uvicorn/Starlette/FastAPI's request handling (middleware layers, dependency resolution, validation, "
    "serialization; the route's own work, tokenizing and the engine's bookkeeping are a small part), the decoder's "
    "thread 63% in ONNX Runtime and the rest in Python, and the encoder's thread ~20%. Trimming that path (route "
    "checks without sub-dependencies or a generator dependency, one watcher task per request for disconnects, no "
    "task for a one-text request, the in-flight gauge read at scrape time): int8 259 -> 288 sentences/s in 4 "
    "alternating rounds (later: one dependency per work route, the HTTP metrics' labelled children looked up once, "
    "greedy rows advanced without per-row numpy calls; each too small to show above this machine's noise). The "
    "engine alone decodes more sentences per second than the service serves over HTTP (this run: the first point; "
    "earlier runs: [history](benchmark-history.md)).",
    "- **int8 vs fp32**: int8's gain in the service has been smaller than in the engine (this run: the first "
    "point; earlier runs, and how often the 1.5x target held: [history](benchmark-history.md)): the slower the "
    "machine, the smaller the gain. int8 is held back because the non-model share (HTTP on the event loop, "
    "tokenizing, the searches and the GIL waits around them) is the same for both and limits int8 first: at "
    "saturation int8's server used 1.48 of the 2 cores (the event loop 0.9 ms of CPU per request, the decoder "
    "lanes 1.4, the encoder 0.7) and the client 0.18, the rest idling behind that chain of threads, where fp32's "
    "used 1.7 (per-thread CPU from /proc, 64 clients, 2026-12-07).",
    "- **The bidirectional encoder is slow per call** (it runs over the whole source, a few decoder steps' worth "
    "of time at small batches; en-de/3's two encoder layers cost about 40% of a sentence's FLOPs), so the "
    "scheduler encodes newcomers on their own thread while the running batch keeps stepping "
    "(`service/engine/scheduler.py`). ONNX Runtime's LSTM runs every row of a call to the call's longest source "
    "(seven sources of 5-20 tokens plus one of 100: 36 ms in one fp32 call, 7 + 15 ms in two), so the requests "
    "admitted together are split into encoder calls by length (`service/engine/encoder_groups.py`): under int8 "
    "load the encoder's padding fell from 52% to 25% of its positions and its time per real token by 24%. Its "
    "thread pool gets half the CPUs (`TRANSLATOR_ENCODER_INTRA_OP_THREADS`, one on this machine): two pools of two "
    "threads on two cores slowed each other (one encoder thread: +14% int8 and +19% fp32 sentences/s in "
    "alternating runs, and a lone encode is faster too).",
    "- **Padding in the decoder's attention** (before the lanes above): the memory every step attends over is as "
    "wide as the longest source in the batch (rounded up to 8), and a batch of ~40 rows almost always holds one "
    "long sentence, so ~70% of the attended positions were padding under load; at batch 40 an int8 step took 3.7 "
    "ms at 16 positions and 4.4 ms at 104 (fp32: within noise). A prototype with Luong's key projection moved to "
    "the query side ((q W) . m instead of q . (W m): no memory_keys, half the attention's reads) was no faster "
    "(int8 at batch 40 x 104 positions: 3.63 vs 3.58 ms; fp32 5.58 vs 5.32), so it was not shipped.",
    "- **A lone fp32 request is memory-bound**: each decoder step reads ~15.5 MB of fp32 weights (ONNX Runtime's "
    "per-node profile at batch 1: output projection 40%, LSTM 33%), so the 10-word sentence's model time (2.3 ms "
    "encoder + 13 steps of 0.55-0.8 ms) is ~9-11 ms when the VM's neighbours are quiet and up to twice that when "
    "they are not (the engine benchmark above measures it, 'model alone', at its own moment, and the side-by-side "
    "right after the unloaded requests). The service adds a few ms to it (this run: the first point; earlier runs: "
    "[history](benchmark-history.md)). Measured in one process with the scheduler and the raw model loop "
    "interleaved: the scheduler adds 2.7-3 ms (two thread hand-offs and the batch join ~1 ms, ~80 us of Python "
    "between steps on the decoder's thread ~1 ms, and the same 13 decoder steps 0.7-1.6 ms slower than in a tight "
    "loop, which the same steps on a worker thread or fed from a DecodeBatch alone do not show); HTTP and the "
    "client add ~0.5-1 ms (server-side duration vs client latency). The encoder call runs on the event loop's "
    "thread (`TRANSLATOR_INLINE_MAX_ROWS`), saving a 0.2-0.3 ms hand-off. int8 reads a quarter of the bytes and "
    "halves the latency.",
    "- **The decoder step at batch 32** against the numpy GEMM peak (target 0.6): how near it comes depends on how "
    "busy the machine is as the engine benchmark starts, right after the HTTP benchmark (this run: the first "
    "point; earlier runs, from under 0.6 on a busy machine to over 0.7 on a quiet one: "
    "[history](benchmark-history.md)). The LSTM node (a third of the step) runs at ~68 GFLOP/s, the output "
    "projection at ~82 (numpy itself reaches 73-83 at that shape on this machine), and log-softmax, bias add and "
    "the vocabulary-wide gather take ~13%. Tried: a re-export with the LSTM cell as one fused GEMM and a 2-D tail "
    "(bias in a Gemm, no gather): no faster (batch 1: 0.97 vs 1.06 ms, batch 32: 4.6 vs 4.1, batch 64: 6.35 vs "
    "6.57).",
    "- **Open-loop p99, continuous vs static** (target <= 0.5 at the same offered load, measured at 0.35x, 0.7x "
    "and 0.84x static's saturated rate: this run in the targets above and the first point; every earlier run, the "
    "fixes that moved it and why static and continuous now run interleaved: [history](benchmark-history.md)). "
    "Continuous's mean latency has been 0.3-0.6x static's across runs (this run: the first point); its p99 is not, "
    "for this reason (timed per request and per step inside the server at 165/s, 2026-12-07, with the logging on): "
    "the slowest 1% are not the long sentences (sources over 40 words: p50 93-110 ms, 2-3 of the ~33 slowest per "
    "run) but ordinary sentences (mean 20 words) that arrived in a burst of the Poisson arrivals. They decoded ~32 "
    "tokens in ~290 ms, 34 steps of the short lane at 29 rows each (the median request: 12.5 rows, 3.2 ms per "
    "step), each step 6.4 ms in ONNX Runtime for 4.1 ms of CPU (one thread; ~3 ms in the engine alone at that "
    "batch); that lane's thread was inside ONNX Runtime 85% of the time. Continuous batching lets every newcomer "
    "join the running batch, so a burst slows every row in flight (processor sharing); static makes the burst wait "
    "for the next batch and decodes the running one at its own pace (first come, first served per batch): its "
    "slowest answers' decode took 50-140 ms, continuous's 130-290. With sentence lengths this even after "
    "splitting, first come, first served costs the tail little. And the machine is ~80% busy: continuous's server "
    "used 1.4-1.5 cores at 165/s (~9 ms of CPU per request: encoder calls of ~1.7 rows, steps of ~4 rows, each "
    "stepping all 15.5 MB of fp32 weights) against static's 1.0-1.2 (~7 ms), plus the client's 0.13. By thread "
    "(per-thread CPU from /proc, two interleaved 20 s runs): the decoder lanes 4.9-5.1 ms per request against "
    "static's 3.9-4.5, the encoder 2.1 against 1.3-1.5 (one source costs half as much as eight in one call: the "
    "recurrence streams its weights once per timestep), the event loop 1.6 against 1.3. Tried, interleaved 4 x 20 "
    "s at 165/s (p99 medians; `python -m loadtest.compare --rate 165 --closed 64 static:batching=static "
    "cont:batching=continuous 'cap16:batching=continuous;max_batch_rows=16'` runs such a comparison): capping "
    "continuous's rows in flight (`TRANSLATOR_MAX_BATCH_ROWS`) at 16: 170 vs 196 ms, but 242 vs 279 sentences/s at "
    "saturation (static 222), at 24: 207 ms, 260/s; repeated: 232 vs 205 ms, and a cap that follows the load (16 "
    "rows or twice the recent mean rows in flight, so a burst queues but sustained load opens it) 252 ms at 249 vs "
    "258 sentences/s: no gain; lane bounds at 16, 20 or 12+24 tokens instead of 32: 176, 207, 226 vs 187 ms, and "
    "one lane for all rows 236 vs 214 ms at 250 vs 267 sentences/s; moving rows into every hole at once instead of "
    "beyond a quarter of the rows: 259-261 vs 207; two ONNX Runtime threads per lane: 295 vs 249; ONNX Runtime's "
    "global thread pool (one pool thread shared by every session): its thread spins between calls (Python cannot "
    "turn that off), 0.78 cores, 11 vs 9 ms of CPU per request; nice 5 or 10 for the encoder's thread, so the rows "
    "in flight go first in a burst: 251 and 194 vs 217 ms; nice 5 for the short lane's thread, so the long "
    "sources' lane goes first (4 x 30 s at 128/s, 2026-12-07): 182 vs 165 ms (static 244). Again on 2026-12-07 at "
    "156/s, with the server's CPU per sentence measured: the cap of 16 rows over 8 x 20 s, 191 vs 206 ms (static "
    "312; continuous/static run by run 0.44 to 0.92); an admission window for the encoder under load (while rows "
    "are in flight, newcomers wait up to 25 ms for 6 rows or 40 ms for 8, so that encoder calls batch, as vLLM's "
    "scheduler delay batches prefills): 9.0 and 8.8 ms of CPU per sentence vs 9.4 (static 7.6), p99 246 and 193 vs "
    "216 ms (an earlier pair: 153 vs 178), mean latency +17 ms: no consistent gain, not kept. Earlier, without a "
    "clear effect: holding encoder calls up to 3 or 6 ms for more rows, a GIL switch interval of 0.1 ms, nice 5 "
    "for the short lane's thread. What would move it: less CPU per request at moderate load (fewer passes over the "
    "weights, or a decoder graph that runs several greedy steps per call), or more cores. The ratio falls as load "
    "grows and static's queue builds: 0.7 at 225 sentences/s (two 20 s runs, p99 326/390 vs 488/542 ms). At "
    "saturation (closed loop) 64 clients in lockstep make every static batch the same 64 requests, which favours "
    "static's p99 there (this run's closed-loop p99s: the first table above).",
    '- **Could any scheduler meet the p99 target on this machine? A queueing model says no** (`python -m '
    'loadtest.p99_model`, loadtest/results/p99_model.json, 2026-12-07: a discrete-event model of both policies as '
    "`service/engine/scheduler.py` implements them, on this machine's measured costs (the engine benchmark's "
    'encoder and step times, one thread per session, the HTTP and client CPU per request, the cores shared among '
    "the threads) and the test sets' sentence lengths; 300 simulated seconds x 3 seeds per point, paired Poisson "
    "schedules). Continuous / static p99 at 0.35x, 0.7x and 0.84x static's saturated rate: 0.63, 0.56, 0.51 as "
    "implemented; 0.56, 0.48, 0.44 for a continuous scheduler that costs nothing beyond the engine's cost curve; "
    '0.63, 0.55, 0.49 with 16 rows in flight at most. At light load no policy halves the p99: it is the longest '
    "sentences' own decode time, which both pay, and static adds only its 5 ms fill wait and the running batch's "
    'rest. The model fits the closed loop (static 206 vs 231 sentences/s measured, p99 365 vs 352 ms; continuous '
    "285 vs 317, 455 vs 453 ms; rows per step and CPU per request within 20%) and static's open-loop p99 at 81 "
    "and 162/s (96 vs 92, 204 vs 244 ms), but puts continuous's open-loop p99 1.7-1.9x below the measured one "
    "(108 vs 203 ms at 162/s): its slowest requests' queue and encoder times match, their decode is 2.2-2.4x "
    "shorter in the model. What it leaves out (the GIL between the threads' Python, the OS's time slices, two "
    'model calls side by side contending for the caches and memory bandwidth: a 29-row step took 4.1 ms of CPU in '
    "the loaded server against ~3 ms alone) costs continuous's many small steps more than static's batches, so "
    "the measured ratios mostly sit above the model's (16:17 run: 0.64-1.08; 19:39 run: 0.45-0.71, single "
    "repeats 0.44-1.13). The target is met in the model with 4 cores (0.54, "
    '0.35, 0.28; ideal 0.50, 0.33, 0.26), or on 2 cores by the ideal scheduler when 10% of the requests are 4x '
    'longer (0.47, 0.43, 0.42).',
    "- Fixed after profiling: FastAPI ran every plain-`def` dependency in a worker thread (now all `async`); httpx "
    "cost the load generator ~7 ms of CPU per request (now aiohttp, ~0.8 ms); uuid4 per request id; a float64 copy "
    "of the vocabulary per greedy row per step (now one argmax for the whole step); `np.pad` in batch joins; **the "
    "batch's memory copied on every join and ending** (an immutable batch rebuilt each time: 21% of the event loop "
    "under int8 load). Rows are now slots in preallocated arrays (`service/engine/batch.py`): a newcomer is "
    "written into a free slot, an ending frees its slots, and holes are filled by newcomers or, beyond a quarter "
    "of the rows, by moving the last rows into them (int8 closed loop, 4 alternating runs: 183 -> 221 "
    "sentences/s). Tried and dropped (no clear gain, measured): two independent scheduler lanes per model "
    "(requests split without regard to their length, unlike the lanes above), one decoder thread instead of ORT's "
    "two while one thread stepped both lanes (fp32 +11%, int8 -14% in 3 alternating runs each, with the encoder's "
    "one thread; before that change both pools at one: fp32 +9%, int8 -12%; again with the decoder's own thread: "
    "int8 257 vs 237, fp32 205 vs 216, 3 rounds), every decoder step on the event loop's thread under load too (no "
    "hand-off; int8 228 vs 254 sentences/s in 4 alternating runs, closed-loop p99 550-752 vs 772-914 ms), the "
    "fused-LSTM export above. (A shorter GIL switch interval made no difference while the event loop ran the "
    "steps; it does with the decoder's own thread, above.)",
)

RUNNING_IT = (
    "- `make bench` = `python -m loadtest.bench`: all five servers, each first translating the run's sentences "
    "once, one request at a time (its reference answers, the servers side by side, a few minutes), then the timed "
    "runs, then the engine benchmark, then this page (about 15 minutes on 2 cores). It needs only the model in "
    "`model_store/`: the naive baseline runs that artifact's fp32 weights in PyTorch (rebuilt by "
    "`training/from_artifact.py`, parity with ONNX Runtime checked at start), or the torch checkpoint given by "
    "`--checkpoint` (default `runs/en-de/best.pt`) when that file exists. `--quick` is a smoke run of about a "
    "minute (48 sentences; `--max-sentences N` sets that for any run).",
    "- `python -m loadtest.compare --rate R 'NAME:KEY=VALUE;KEY=VALUE' ...`: two or more service settings "
    "(TRANSLATOR_* without the prefix), their servers up side by side and their open-loop runs (and with `--closed "
    "N` closed-loop runs) interleaved; prints p99 and throughput per config and run, writes "
    "`loadtest/results/compare.json`. For tuning: a setting measured alone, minutes from another, cannot be "
    "compared with it on this VM.",
    "- `make loadtest` = `python -m loadtest.run_loadtest`: a real server process, its reference answers (every "
    "sentence once, one request at a time, about a minute), then Locust at 1, 2, 4 ... 256 users offering 1 "
    "request/s each on a Poisson schedule, 30 s per step (about 6 minutes); raw Locust CSV/JSON/HTML per step and "
    "the reference answers under `loadtest/results/raw/loadtest/`.",
    "- `python -m loadtest.overload --url URL --out loadtest/results/overload.json` against a running "
    "`TRANSLATOR_CACHE_MB=0 make serve` (the texts repeat, and the translation cache would answer them): bursts "
    "at a few offered rates, each 200 validated against the server's own answer to each text asked on its own.",
    "- Before a trained model exists: `python -m loadtest.standin` writes a random-weights artifact of the shipped "
    "shape (en-de/3's: the `gpu` preset of `training/cli.py`, 2 encoder layers, a 512-wide decoder, tied "
    "embeddings) and its checkpoint under `loadtest/results/raw/standin/`. A random model never stops by itself, "
    "so the HTTP tools force output lengths to the reference's (`--lengths reference`). The side-by-side "
    "benchmark: `python -m loadtest.bench --store loadtest/results/raw/standin/store --checkpoint "
    "loadtest/results/raw/standin/standin.pt --lengths reference`; the step load: `python -m loadtest.run_loadtest "
    "--store loadtest/results/raw/standin/store --lengths reference`; a comparison: `python -m loadtest.compare "
    "--store loadtest/results/raw/standin/store --lengths reference --rate 100 static:batching=static "
    "cont:batching=continuous`; the engine alone: `python -m loadtest.engine_bench --store "
    "loadtest/results/raw/standin/store`.",
    "- On a GPU machine: `python -m loadtest.engine_bench --providers cuda --batch-sizes "
    "1,2,4,8,16,32,64,128,256,512` writes `engine_bench_cuda.json` (add `--io-binding off` for "
    "`engine_bench_cuda_no_io_binding.json`), rendered here. onnxruntime-gpu must be installed (`pip install -e "
    ".[gpu]`).",
)

HOW_IT_IS_MEASURED = (
    "- Each configuration is its own server process, all up side by side (an idle one costs no CPU). Each is "
    "warmed up and its unloaded request timed while the others idle; then the closed-loop runs of all configs "
    "alternate (A B C D E, then E D C B A, ...), and so do static's and continuous's open-loop runs, so every "
    "ratio compares runs from the same stretch of this shared machine's time (one run moves by up to 2x with the "
    "VM's neighbours). The client (asyncio + aiohttp on uvloop) runs on the same machine and shares its cores.",
    "- Closed loop: N clients each send their next sentence when the last answer arrives; throughput counts right "
    "answers (well formed and, for fp32, the server's own answer to that sentence) over the time from the first "
    "send to the last answer.",
    "- Open loop: sentences are sent on a fixed Poisson schedule whatever the answers do; latency runs from the "
    "scheduled send time, so queueing is not hidden (no coordinated omission). In both loops a request that failed "
    "(an error, a 429, a wrong answer, a timeout) or an arrival the client dropped (over 2,048 outstanding) counts "
    "in the percentiles at the client's 120 s timeout, so a config that sheds load never shows a better p99 for it.",
    "- Answers: before anything is timed, every server translates each sentence of the run once, one request at a "
    "time (its reference answers: per server, since the naive baseline decodes a paragraph whole and the service "
    "sentence by sentence). fp32 answers do not depend on what else is in the batch, so under load an fp32 answer "
    "that differs from its server's reference for the same sentence (each position of a batch request) is an "
    "error; int8's may (dynamic quantization), so the share that differs is reported instead. Reference answers "
    "that are not translations (a few distinct answers for many sentences) fail the server. The Locust load and "
    "the overload bursts check every answer the same way.",
    "- Locust step load: each user's requests start on its own Poisson schedule and each request is timed from its "
    "scheduled start; a user whose answer comes late sends its next requests at once until it is back on schedule "
    "(one in flight per user). A step that sent fewer than 95% of the requests its schedules meant to send (and "
    "more than one per user short) is marked saturated.",
    "- Target tokens: each answer re-tokenized with the model's tokenizer, plus end-of-sentence, the same rule for "
    "every server.",
    "- The naive baseline (`loadtest/naive_server.py`) is FastAPI + the PyTorch model in eager mode, greedy "
    "decoding one sentence at a time behind a lock (torch's default threads), the same length rule as the service. "
    "It decodes a multi-sentence paragraph as one sequence, as the tutorial does; the service cuts it into "
    "sentences decoded side by side (about as many target tokens either way).",
    "- `static` (`TRANSLATOR_BATCHING=static`): the batch collects requests for up to "
    "`TRANSLATOR_STATIC_MAX_WAIT_MS` (5 ms) or until it is full, runs until its last row ends, and answers all its "
    "requests then (what a server that calls `generate()` per batch does; Orca's request-level scheduling); "
    "newcomers wait for the next batch. Finished rows leave the batch, so no compute is spent on them (kinder to "
    "static than keeping them as padding). `continuous`: newcomers join at the next decoder step and each request "
    "is answered as its last row ends.",
    "- FLOPs count matrix multiplies only (2 per multiply-add): LSTM gates, attention scores and context, the "
    "attentional and output projections.",
)



def render(results_dir: Path, docs_path: Path) -> str:
    documents = _load(results_dir)
    lines = ["# Benchmarks", "",
             "Generated by `loadtest/report.py` from `loadtest/results/*.json`; rerun `make bench` and "
             "`make loadtest` to refresh. Every number comes from one run of the commands shown, on the "
             "machine shown; medians with (min-max) over repeats. Numbers of earlier runs are kept by hand in "
             "[benchmark-history.md](benchmark-history.md).", ""]
    if "bench" in documents:
        lines += _bench_section(documents["bench"])
    if "engine_bench" in documents:
        lines += _engine_section(documents["engine_bench"])
    if "engine_bench_cuda" in documents:
        lines += _engine_section(documents["engine_bench_cuda"], "Engine only on the GPU (CUDA execution provider)")
    if "engine_bench_cuda_no_io_binding" in documents:
        lines += _engine_section(documents["engine_bench_cuda_no_io_binding"],
                                 "Engine only on the GPU without IO binding (for comparison)")
    if "loadtest" in documents:
        lines += _loadtest_section(documents["loadtest"], docs_path.parent, results_dir)
    if "overload" in documents:
        lines += _overload_section(documents["overload"])
    if "profile-continuous" in documents:
        lines += _profile_section(documents["profile-continuous"])
    lines += ["## What limits it (profiled)", "", *_this_run_points(documents), *WHAT_LIMITS_IT,
              "- Reproduce: `make profile` (py-spy, per-thread summary above and a speedscope file).", "",
              "## Running it", "", *RUNNING_IT, "", "## How it is measured", "", *HOW_IT_IS_MEASURED, ""]
    return "\n".join(lines)


def write_benchmarks_doc(results_dir: Path, docs_path: Path) -> None:
    docs_path.parent.mkdir(parents=True, exist_ok=True)
    docs_path.write_text(render(results_dir, docs_path), encoding="utf-8")
