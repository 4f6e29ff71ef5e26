"""The side-by-side benchmark: the naive PyTorch baseline and the service with batching off, static,
continuous and continuous + int8, each a separate server process on this machine, all up side by side,
driven by the same client over the same sentences: one unloaded ~10-word request for latency alone
(one config at a time), closed loop at fixed concurrency for saturation and open loop at a fixed
Poisson rate for latency under load (static and continuous), the configs' runs interleaved (A B C,
then C B A) so that every ratio compares runs from the same stretch of this shared machine's time.

Before anything is timed, every server translates the run's sentences one request at a time: its
reference answers (per server: the naive baseline decodes a paragraph whole, the service sentence by
sentence). Under load, an fp32 answer that differs from its server's reference for the same sentence
is an error; for int8, whose answers may change with the batch, the share that differs is reported.
Latency percentiles count every request: one that failed (an error, a 429, a wrong answer, a timeout)
or an open-loop arrival the client dropped counts at the client's timeout (FAILURE_LATENCY_S).

`python -m loadtest.bench [--quick]` writes loadtest/results/bench.json, then runs loadtest.engine_bench
(engine_bench.json) and renders docs/benchmarks.md: the whole benchmark is this one command.
Must not import locust, service or torch (servers run in their own processes).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import random
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from loadtest import client
from loadtest.answers import strict_for
from loadtest.machine import describe_machine
from loadtest.report import write_benchmarks_doc
from loadtest.sentences import UNLOADED_SENTENCE, Sentence, load_sentences
from loadtest.servers import (
    REPO_ROOT,
    NaiveWeights,
    ServerProcess,
    ServerStartError,
    decoder_activity,
    naive_weights,
    scrape_counters,
    service_env,
    start_naive,
    start_service,
)
from loadtest.stats import json_safe, latency_summary_ms, spread_of_runs
from model_store.codec import Codec
from model_store.manifest import Manifest, read_manifest, resolve_artifact

# The service's settings for each configuration (TRANSLATOR_* without the prefix); None: the naive baseline.
CONFIGS: dict[str, dict[str, str] | None] = {
    "naive": None,
    "off": {"batching": "off"},
    "static": {"batching": "static"},
    "continuous": {"batching": "continuous"},
    "int8": {"batching": "continuous", "variant": "int8"},
}
LABELS = {
    "naive": "naive: FastAPI + PyTorch eager, one request at a time",
    "off": "service, TRANSLATOR_BATCHING=off",
    "static": "service, TRANSLATOR_BATCHING=static",
    "continuous": "service, TRANSLATOR_BATCHING=continuous",
    "int8": "service, continuous + TRANSLATOR_VARIANT=int8",
}
SAMPLE_TRANSLATIONS = 8  # the first few reference answers, kept in the results for a reader
# A request that failed or was never sent counts in the latency percentiles as if it had waited this long
# (the client's timeout): leaving it out would give a config that sheds load a better p99.
FAILURE_LATENCY_S = client.REQUEST_TIMEOUT_S
LATENCY_CONVENTION = "failures_at_timeout"
RUN_METRICS = ("sentences_per_s", "target_tokens_per_s", "p50_ms", "p95_ms", "p99_ms", "mean_ms", "errors",
               "rows_per_decoder_step", "server_cpu_ms_per_sentence")
OPEN_METRICS = (*RUN_METRICS, "offered_per_s", "dropped")


@dataclass(frozen=True)
class Plan:
    concurrency: int = 64  # enough clients to keep 64 decoder rows busy: saturation for every config
    duration_s: float = 20.0
    repeats: int = 3
    open_duration_s: float = 30.0
    open_fraction: float = 0.7  # offered rate = this x the first open config's saturated sentences/s
    open_rate_per_s: float | None = None  # fixed offered rate instead
    # Also open loop at these shares of that offered rate: the p99 ratio depends on the load (at light
    # load static's batches are small and short, so waiting for one costs little; near its saturation
    # static queues whole batches behind each other while continuous, with more capacity, does not).
    # 1.2 x 0.7 = 0.84 x static's saturated rate: heavy, yet below what static can serve.
    other_open_shares: tuple[float, ...] = (1.2, 0.5)
    unloaded_requests: int = 50
    warmup_s: float = 3.0
    seed: int = 0
    # The first N of the shuffled sentences only (None: all). Every server translates each of them once,
    # one at a time, before the load (its reference answers), which takes ~15-40 ms a sentence here.
    max_sentences: int | None = None


QUICK_PLAN = Plan(concurrency=4, duration_s=0.5, repeats=2, open_duration_s=0.5, unloaded_requests=3,
                  warmup_s=0.2, max_sentences=48)


TAIL_SHARE = 0.01  # the slowest answers whose time is broken down (the p99's neighbourhood)
ENGINE_PHASES = ("queue", "encode", "decode")  # the service's Server-Timing metrics


def slowest_phases_ms(outcomes: list[client.Outcome], share: float = TAIL_SHARE) -> dict[str, float] | None:
    """Means over the slowest `share` of the answers: their latency and where the engine spent it
    (Server-Timing: queue, encode, decode of each request's slowest sentence); `other` is the rest
    (HTTP, tokenizing, the event loop, the client). None when the server sends no timing."""
    timed = sorted((o for o in outcomes if o.server_timing_ms is not None), key=lambda o: o.latency_s)
    if not timed:
        return None
    tail = timed[-max(1, round(len(timed) * share)):]
    phases = {"latency": statistics.fmean(o.latency_s * 1e3 for o in tail)}
    for name in ENGINE_PHASES:
        phases[name] = statistics.fmean((o.server_timing_ms or {}).get(name, 0.0) for o in tail)
    phases["other"] = phases["latency"] - sum(phases[name] for name in ENGINE_PHASES)
    return phases


def latencies_counting_failures(record: client.RunRecord) -> list[float]:
    """Every request's latency (s): an answered one's own, a failed one (error, 429, wrong answer,
    timeout) and an arrival the client dropped at FAILURE_LATENCY_S, so that a server which fails or
    sheds requests never shows a better p99 for it. The one convention of bench and compare."""
    return ([o.latency_s if o.output is not None else FAILURE_LATENCY_S for o in record.outcomes]
            + [FAILURE_LATENCY_S] * record.dropped)


def reference_summary(outcomes: list[client.Outcome]) -> dict[str, Any]:
    """How many answers were compared with the server's reference answers and how many differed."""
    checked = [o for o in outcomes if o.checked]
    differing = sum(o.differs for o in checked)
    return {"reference_checked": len(checked), "reference_differing": differing,
            "reference_agreement": 1.0 - differing / len(checked) if checked else math.nan}


def summarize_run(record: client.RunRecord, codec: Codec, before: dict[str, float],
                  after: dict[str, float]) -> dict[str, Any]:
    ok = record.ok
    # Target tokens: the answer re-tokenized with the model's own tokenizer, plus eos; the same rule
    # for every server, so naive and service numbers compare.
    target_tokens = sum(len(codec.encode(o.output or "")) + 1 for o in ok)
    elapsed = max(record.elapsed_s, 1e-9)
    summary: dict[str, Any] = {
        "requests_ok": len(ok),
        "errors": len(record.errors),
        "error_samples": sorted({o.error or "" for o in record.errors})[:3],
        "elapsed_s": record.elapsed_s,
        "sentences_per_s": len(ok) / elapsed,
        "target_tokens_per_s": target_tokens / elapsed,
        "target_tokens_per_sentence": target_tokens / len(ok) if ok else math.nan,
        **latency_summary_ms(latencies_counting_failures(record)),
        "latency_convention": LATENCY_CONVENTION,
        "failure_latency_ms": 1000.0 * FAILURE_LATENCY_S,
        **reference_summary(record.outcomes),
    }
    summary |= decoder_activity(before, after)
    if (tail := slowest_phases_ms(ok)) is not None:
        summary["slowest_1pct_ms"] = tail
    if record.offered_rate_per_s is not None:
        summary["offered_per_s"] = record.offered_rate_per_s
        summary["dropped"] = record.dropped
    return summary


def server_cpu(before_s: float | None, after_s: float | None, answers: int) -> dict[str, float]:
    """The server process's CPU time per answered sentence over a run (every thread: the event loop,
    the model's threads); empty where the CPU time cannot be read."""
    if before_s is None or after_s is None or answers == 0:
        return {}
    return {"server_cpu_ms_per_sentence": 1000.0 * (after_s - before_s) / answers}


def config_settings(name: str, server_env: dict[str, str], model_spec: str) -> dict[str, str] | None:
    """The TRANSLATOR_* settings (without the prefix) the config's server runs with: --server-env,
    then the config's own, then the model; None for the naive baseline."""
    settings = CONFIGS[name]
    return None if settings is None else server_env | settings | {"models": model_spec}


def config_variant(settings: dict[str, str] | None) -> str:
    """The graph variant a config serves (the naive baseline: fp32 torch)."""
    return (settings or {}).get("variant", "fp32")


def _start(name: str, store: Path, naive: NaiveWeights | None, raw_dir: Path, model_spec: str,
           server_env: dict[str, str]) -> ServerProcess:
    log_path = raw_dir / f"server-{name}.log"
    settings = config_settings(name, server_env, model_spec)
    if settings is None:
        if naive is None:
            raise ServerStartError("no weights for the naive baseline")
        return start_naive(naive, log_path)
    return start_service(store, log_path, settings, label=name)


def model_alone(store: Path, manifest: Manifest, variant: str, text: str, repeats: int,
                settings: dict[str, str] | None = None) -> dict[str, Any]:
    """The unloaded sentence's model time alone, now (loadtest.lone_model in its own process: this
    client never imports ONNX Runtime), in the environment the config's server got (its TRANSLATOR_*
    settings, none of this process's), so it loads the model with the server's threads."""
    argv = [sys.executable, "-m", "loadtest.lone_model", "--store", str(store), "--model", manifest.name,
            "--version", manifest.version, "--variant", variant, "--text", text, "--repeats", str(repeats)]
    done = subprocess.run(argv, cwd=REPO_ROOT, env=service_env(store, settings), capture_output=True, text=True,
                          timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"loadtest.lone_model failed ({done.returncode}): {done.stderr[-1000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def bench_unloaded(name: str, server: ServerProcess, sentences: list[Sentence], plan: Plan,
                   force_lengths: bool, unloaded_text: str = UNLOADED_SENTENCE,
                   measure_model_alone: Callable[[], dict[str, Any]] | None = None,
                   reference: client.Reference | None = None) -> dict[str, Any]:
    """Warm-up (its answers checked against the reference: a config that answers wrongly fails here,
    before anything is timed), then the unloaded latency (and, right after, the model alone on the
    same sentence) of one config, while the other servers idle."""
    url = server.base_url
    warmup = client.run(lambda: client.closed_loop(url, sentences, plan.concurrency, plan.warmup_s, force_lengths,
                                                   reference=reference))
    if wrong := [o for o in warmup.errors if o.differs]:
        raise RuntimeError(f"{len(wrong)} of {len(warmup.outcomes)} warm-up answers differ from this server's "
                           f"sequential answers (first: {wrong[0].error})")
    unloaded_payload = client.translate_payload(Sentence(unloaded_text, None), force_lengths)
    unloaded = client.run(lambda: client.sequential(url, unloaded_payload, plan.unloaded_requests))
    alone = measure_model_alone() if measure_model_alone is not None else None
    return {
        "label": LABELS[name],
        "unloaded": {"requests": len(unloaded), "sentence": unloaded_text, **latency_summary_ms(unloaded)}
                    | ({"model_alone": alone} if alone is not None else {}),
    }


def reference_pass(servers: dict[str, ServerProcess], sentences: list[Sentence], force_lengths: bool,
                   variants: dict[str, str], raw_dir: Path) -> tuple[dict[str, client.Reference], dict[str, str]]:
    """Every server translates every sentence once, one request at a time (the servers side by side,
    before anything is timed): its reference answers, written to raw_dir/references-NAME.json.
    -> (references of the servers that passed, why each of the others failed)."""
    started = time.monotonic()
    urls = {name: server.base_url for name, server in servers.items()}
    strict = {name: strict_for(variants[name]) for name in servers}
    passes = client.run(lambda: client.references(urls, sentences, force_lengths, strict))
    print(f"[bench] reference answers: {len(sentences)} sentences, one at a time, from {len(servers)} servers in "
          f"{time.monotonic() - started:.0f} s", flush=True)
    references: dict[str, client.Reference] = {}
    failures: dict[str, str] = {}
    for name, result in passes.items():
        if isinstance(result, client.ReferencePassError):
            failures[name] = f"reference answers: {result}"
            continue
        references[name] = result
        (raw_dir / f"references-{name}.json").write_text(json.dumps(
            {"variant": variants[name], "strict": result.strict,
             "answers": {s.english: a for s, a in zip(sentences, result.answers, strict=True)}},
            ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    return references, failures


def reference_record(reference: client.Reference, variant: str) -> dict[str, Any]:
    """What the results keep of a server's reference answers (all of them are in raw/)."""
    return {"sentences": len(reference.answers), "distinct_answers": len(set(reference.answers)),
            "variant": variant, "policy": "error" if reference.strict else "share",
            "sample_translations": list(reference.answers[:SAMPLE_TRANSLATIONS])}


def measured_run(server: ServerProcess, codec: Codec, clock_zero: float,
                 load: Callable[[str], Coroutine[Any, Any, client.RunRecord]]) -> dict[str, Any]:
    """`load(url)` against the server, summarised: the client's answers and latencies, the server's
    counters and CPU time over the run, and when it started (seconds after `clock_zero`)."""
    url = server.base_url
    before = scrape_counters(url)
    started_s = time.monotonic() - clock_zero
    cpu_before = server.cpu_seconds()
    record = client.run(functools.partial(load, url))
    return (summarize_run(record, codec, before, scrape_counters(url))
            | {"started_s": started_s} | server_cpu(cpu_before, server.cpu_seconds(), len(record.ok)))


def closed_loop_run(server: ServerProcess, sentences: list[Sentence], codec: Codec, plan: Plan,
                    force_lengths: bool, repeat: int, clock_zero: float,
                    reference: client.Reference | None = None) -> dict[str, Any]:
    """One closed-loop run: `plan.concurrency` clients, each sending its next sentence on an answer."""
    return measured_run(server, codec, clock_zero, lambda url: client.closed_loop(
        url, sentences, plan.concurrency, plan.duration_s, force_lengths, repeat * 997, reference))


def bench_closed_interleaved(servers: dict[str, ServerProcess], sentences: list[Sentence], codec: Codec,
                             plan: Plan, force_lengths: bool, clock_zero: float,
                             references: dict[str, client.Reference] | None = None) -> dict[str, dict[str, Any]]:
    """`plan.repeats` closed-loop runs of every server, the servers up side by side and their runs
    interleaved (A B C, then C B A), so the throughput ratios between configs come from the same
    stretch of the machine's time. Per config: its runs and their spread."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
    for repeat in range(plan.repeats):
        for name in interleaved_order(list(servers), repeat):
            print(f"[bench] closed loop {name}, run {repeat + 1}/{plan.repeats}", flush=True)
            runs[name].append(closed_loop_run(servers[name], sentences, codec, plan, force_lengths, repeat,
                                              clock_zero, (references or {}).get(name)))
    return {name: {"concurrency": plan.concurrency, "duration_s": plan.duration_s, "runs": by_name,
                   "summary": spread_of_runs(by_name, RUN_METRICS)}
            for name, by_name in runs.items()}


def open_loop_run(server: ServerProcess, sentences: list[Sentence], codec: Codec, plan: Plan,
                  force_lengths: bool, rate_per_s: float, repeat: int, clock_zero: float,
                  reference: client.Reference | None = None) -> dict[str, Any]:
    """One open-loop run at `rate_per_s` on the repeat's Poisson schedule (the same for every config)."""
    return measured_run(server, codec, clock_zero, lambda url: client.open_loop(
        url, sentences, rate_per_s, plan.open_duration_s, force_lengths, plan.seed + repeat,
        reference=reference))


def interleaved_order(names: list[str], repeat: int) -> list[str]:
    """The configs' turn in one repeat: forwards, then backwards (A B, B A, A B ...), so neither config
    always runs right after the other or at the same point of the machine's drift."""
    return list(names) if repeat % 2 == 0 else list(reversed(names))


def bench_open_interleaved(servers: dict[str, ServerProcess], sentences: list[Sentence], codec: Codec,
                           plan: Plan, force_lengths: bool, rates_per_s: list[float], clock_zero: float,
                           references: dict[str, client.Reference] | None = None) -> dict[str, list[dict[str, Any]]]:
    """`plan.repeats` open-loop runs of every server at each rate, the servers up side by side and their
    runs interleaved: each config's p99 is taken over the same stretch of the machine's time, which on
    a shared VM moves a single run's p99 by up to 2x. Per config: one result per rate, in that order."""
    runs: dict[str, list[list[dict[str, Any]]]] = {name: [[] for _ in rates_per_s] for name in servers}
    for repeat in range(plan.repeats):
        for index, rate in enumerate(rates_per_s):
            for name in interleaved_order(list(servers), repeat + index):
                print(f"[bench] open loop {name} at {rate:.1f}/s, run {repeat + 1}/{plan.repeats}", flush=True)
                runs[name][index].append(open_loop_run(servers[name], sentences, codec, plan, force_lengths, rate,
                                                       repeat, clock_zero, (references or {}).get(name)))
    return {name: [{"offered_per_s": rate, "duration_s": plan.open_duration_s, "runs": by_rate[index],
                    "summary": spread_of_runs(by_rate[index], OPEN_METRICS)}
                   for index, rate in enumerate(rates_per_s)]
            for name, by_rate in runs.items()}


def bench_open_phase(servers: dict[str, ServerProcess], results: dict[str, Any], sentences: list[Sentence],
                     codec: Codec, plan: Plan, force_lengths: bool, rate_per_s: float, clock_zero: float,
                     references: dict[str, client.Reference] | None = None) -> None:
    """Run the open-loop configs' servers (warm from the closed loop) interleaved at the headline rate
    and its other shares, and put each config's results in `results[name]["open"]` (headline) and
    `["open_other"]`."""
    rates = [rate_per_s, *(share * rate_per_s for share in plan.other_open_shares)]
    by_name = bench_open_interleaved(servers, sentences, codec, plan, force_lengths, rates, clock_zero, references)
    for name, (headline, *others) in by_name.items():
        results[name]["open"] = headline
        results[name]["open_other"] = [load | {"share_of_offered": share}
                                       for load, share in zip(others, plan.other_open_shares, strict=True)]


def agreement(references: dict[str, client.Reference], reference: str = "continuous") -> dict[str, float]:
    """Per config: the fraction of the run's sentences its server (asked one at a time) translated exactly
    as `reference`'s did (greedy fp32 everywhere, so off/static should be 1.0; the naive baseline decodes
    a multi-sentence paragraph whole, and int8 may differ a little)."""
    expected = references.get(reference)
    if expected is None or not expected.answers:
        return {}
    return {name: sum(a == b for a, b in zip(ref.answers, expected.answers, strict=True)) / len(expected.answers)
            for name, ref in references.items()}


def _median(results: dict[str, Any], name: str, section: str, metric: str) -> float:
    try:
        return float(results[name][section]["summary"][metric]["median"])
    except (KeyError, TypeError):
        return math.nan


def _ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


def bleu_drop(manifest: Manifest) -> dict[str, float]:
    """fp32 BLEU - int8 BLEU per test set as the export recorded it (empty if it did not)."""
    fp32, int8 = manifest.evaluation.get("fp32", {}), manifest.evaluation.get("int8", {})
    drops = {}
    for test_set, scores in int8.items():
        reference = fp32.get(test_set, {})
        if "bleu_drop_vs_fp32" in scores:
            drops[test_set] = float(scores["bleu_drop_vs_fp32"])
        elif "bleu_onnx_greedy" in scores and "bleu_onnx_greedy" in reference:
            drops[test_set] = reference["bleu_onnx_greedy"] - scores["bleu_onnx_greedy"]
        elif "bleu" in scores and "bleu" in reference:
            drops[test_set] = reference["bleu"] - scores["bleu"]
    return drops


def p99_ratios_by_load(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Continuous / static open-loop p99 at each offered rate both ran (the headline rate first)."""
    def runs(name: str) -> list[dict[str, Any]]:
        result = results.get(name, {})
        return ([result["open"]] if "open" in result else []) + result.get("open_other", [])

    static_saturated = _median(results, "static", "closed", "sentences_per_s")
    ratios = []
    for static, continuous in zip(runs("static"), runs("continuous"), strict=False):
        static_p99, continuous_p99 = static["summary"]["p99_ms"]["median"], continuous["summary"]["p99_ms"]["median"]
        # Requests that failed or were dropped count at the timeout in each p99; a ratio of two p99s
        # then says little (static shedding a few would make continuous look better), so it is not judged.
        failed = sum(run.get("errors", 0) + run.get("dropped", 0) for run in [*static["runs"], *continuous["runs"]])
        # Repeat by repeat: the two runs of a repeat ran back to back (interleaved), so their ratio
        # shows how much of the spread is the machine's moment rather than the batching.
        by_repeat = [_ratio(c["p99_ms"], s["p99_ms"])
                     for s, c in zip(static["runs"], continuous["runs"], strict=False)]
        ratios.append({"offered_per_s": continuous["offered_per_s"],
                       "share_of_static_saturated": _ratio(continuous["offered_per_s"], static_saturated),
                       "static_p99_ms": static_p99,
                       "continuous_p99_ms": continuous_p99, "ratio": _ratio(continuous_p99, static_p99),
                       "ratio_by_repeat": by_repeat, "failed_or_dropped": failed})
    return ratios


# The saturation ratios the targets compare: (numerator, denominator) configs.
SATURATION_RATIOS = (("continuous", "naive"), ("continuous", "static"), ("int8", "continuous"))


def saturation_ratios_by_round(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each saturation ratio round by round: the closed-loop runs of one round ran back to back
    (interleaved), so the spread of these shows how far one moment of the machine moves a ratio."""
    ratios = []
    for top, bottom in SATURATION_RATIOS:
        if "closed" not in results.get(top, {}) or "closed" not in results.get(bottom, {}):
            continue
        by_round = [_ratio(a["sentences_per_s"], b["sentences_per_s"])
                    for a, b in zip(results[top]["closed"]["runs"], results[bottom]["closed"]["runs"], strict=False)]
        ratios.append({"numerator": top, "denominator": bottom, "by_round": by_round})
    return ratios


def evaluate_targets(results: dict[str, Any], manifest: Manifest) -> list[dict[str, Any]]:
    """The issue's targets, each with the measured value and whether it is met (None: not measured)."""
    def target(name: str, value: float, goal: str, met: bool | None, note: str | None = None) -> dict[str, Any]:
        row = {"target": name, "value": value, "goal": goal, "met": None if math.isnan(value) or note else met}
        return row | ({"note": note} if note else {})

    def not_judged(load: dict[str, Any]) -> str | None:
        failed = load.get("failed_or_dropped", 0)
        return (f"not judged: {failed} requests failed or were dropped (each counted at the "
                f"{FAILURE_LATENCY_S:.0f} s timeout)") if failed else None

    speedup = _ratio(_median(results, "continuous", "closed", "sentences_per_s"),
                     _median(results, "naive", "closed", "sentences_per_s"))
    # One row per offered load, the headline first: the ratio moves with the load, and no single load
    # stands for all of them.
    p99_rows = [target("continuous / static p99 at the same offered load (open loop), "
                       + (f"{load['share_of_static_saturated']:.2f} x static's saturated rate"
                          if math.isfinite(load.get("share_of_static_saturated", math.nan))
                          else f"{load['offered_per_s']:.1f}/s offered"), load["ratio"], "<= 0.5", load["ratio"] <= 0.5,
                       not_judged(load))
                for load in p99_ratios_by_load(results)]
    if not p99_rows:
        p99_rows = [target("continuous / static p99 at the same offered load (open loop)", math.nan, "<= 0.5", False)]
    throughput = _ratio(_median(results, "continuous", "closed", "sentences_per_s"),
                        _median(results, "static", "closed", "sentences_per_s"))
    unloaded = results.get("continuous", {}).get("unloaded", {}).get("p50_ms", math.nan)
    int8 = _ratio(_median(results, "int8", "closed", "sentences_per_s"),
                  _median(results, "continuous", "closed", "sentences_per_s"))
    drops = bleu_drop(manifest)
    return [
        target("continuous / naive sentences/s at saturation", speedup, ">= 10", speedup >= 10),
        *p99_rows,
        target("continuous / static sentences/s at saturation", throughput, ">= 1", throughput >= 1),
        target("unloaded ~10-word request p50 (ms), continuous", unloaded, "<= 15", unloaded <= 15),
        target("int8 / fp32 sentences/s at saturation (continuous)", int8, ">= 1.5", int8 >= 1.5),
        {"target": "int8 BLEU drop (manifest)", "value": drops or None, "goal": "recorded",
         "met": bool(drops) if manifest.evaluation else None},
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run (tests); numbers mean little")
    parser.add_argument("--store", type=Path, default=REPO_ROOT / "model_store")
    parser.add_argument("--model", default="en-de", help="model name in the store")
    parser.add_argument("--version", help="model version (default: the newest)")
    parser.add_argument("--checkpoint", type=Path, default=REPO_ROOT / "runs/en-de/best.pt",
                        help="torch checkpoint of the same model, for the naive baseline; when it does not "
                             "exist, the naive baseline runs the benchmarked artifact's fp32 weights in PyTorch")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"subset of {','.join(CONFIGS)}")
    parser.add_argument("--open-configs", default="static,continuous", help="configs also run open loop")
    parser.add_argument("--sentences", type=Path, help="default: the test sets, else loadtest/sentences.txt")
    parser.add_argument("--lengths", choices=["model", "reference"], default="model",
                        help="reference: send max_length = the reference length (untrained stand-in models)")
    parser.add_argument("--concurrency", type=int)
    parser.add_argument("--duration-s", type=float)
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--open-duration-s", type=float)
    parser.add_argument("--open-fraction", type=float)
    parser.add_argument("--open-rate", type=float, help="offered sentences/s of the open-loop runs (default: auto)")
    parser.add_argument("--unloaded-requests", type=int)
    parser.add_argument("--max-sentences", type=int,
                        help="only the first N of the shuffled sentences (each server translates each of them once, "
                             "one at a time, before the load: its reference answers)")
    parser.add_argument("--unloaded-text", default=UNLOADED_SENTENCE, help="the unloaded-latency request's text")
    parser.add_argument("--skip-engine", action="store_true", help="do not run loadtest.engine_bench afterwards")
    parser.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra TRANSLATOR_* setting for every service config, e.g. MAX_BATCH_ROWS=128")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "loadtest/results")
    parser.add_argument("--docs", default=str(REPO_ROOT / "docs/benchmarks.md"), help="'' to skip")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    plan = QUICK_PLAN if args.quick else Plan()
    overrides = {"concurrency": args.concurrency, "duration_s": args.duration_s, "repeats": args.repeats,
                 "open_duration_s": args.open_duration_s, "open_fraction": args.open_fraction,
                 "open_rate_per_s": args.open_rate, "unloaded_requests": args.unloaded_requests,
                 "max_sentences": args.max_sentences}
    plan = replace(plan, **{k: v for k, v in overrides.items() if v is not None})
    names = [name for name in CONFIGS if name in args.configs.split(",")]  # canonical order
    if unknown := set(args.configs.split(",")) - CONFIGS.keys():
        parser.error(f"unknown configs {sorted(unknown)}")
    open_names = [name for name in names if name in args.open_configs.split(",")]
    server_env = dict(item.split("=", 1) for item in args.server_env)
    server_env = {key.lower().removeprefix("translator_"): value for key, value in server_env.items()}

    artifact_dir = resolve_artifact(args.store, args.model, args.version)
    manifest = read_manifest(artifact_dir)
    codec = Codec(artifact_dir / manifest.tokenizer_file)
    all_sentences, sentences_source = load_sentences(args.sentences)
    sentences = list(all_sentences)
    random.Random(plan.seed).shuffle(sentences)  # mixed lengths in every window; same order everywhere
    if plan.max_sentences:
        sentences = sentences[:plan.max_sentences]
    naive = naive_weights(args.checkpoint, artifact_dir) if "naive" in names else None
    if naive is not None and naive.source == "artifact":
        print(f"[bench] naive: no checkpoint at {args.checkpoint}; running the fp32 weights of {artifact_dir} "
              "in PyTorch", flush=True)
    force_lengths = args.lengths == "reference"
    raw_dir = args.out / "raw" / "bench"
    raw_dir.mkdir(parents=True, exist_ok=True)

    machine = describe_machine()
    started = time.monotonic()
    results: dict[str, Any] = {}
    references: dict[str, client.Reference] = {}
    model_spec = f"{manifest.name}@{manifest.version}"
    settings = {name: config_settings(name, server_env, model_spec) for name in names}
    variants = {name: config_variant(settings[name]) for name in names}
    open_rate = plan.open_rate_per_s
    failed = False
    with contextlib.ExitStack() as stack:
        # Every server up before any is measured (an idle one costs no CPU), so that the closed-loop
        # runs of all configs can be interleaved like the open loop's.
        servers: dict[str, ServerProcess] = {}
        for name in names:
            variant = variants[name]
            if variant not in manifest.variants:
                # The export drops int8 when it costs too much BLEU: nothing to serve, not a failure.
                reason = f"the artifact has no {variant} variant (bleu drop recorded: {bleu_drop(manifest) or 'none'})"
                results[name] = {"label": LABELS[name], "skipped": reason}
                print(f"[bench] {name} skipped: {reason}", flush=True)
                continue
            try:
                servers[name] = stack.enter_context(_start(name, args.store, naive, raw_dir, model_spec, server_env))
            except ServerStartError as exc:
                failed = True
                results[name] = {"label": LABELS[name], "error": str(exc)[-2000:]}
                print(f"[bench] {name} FAILED: {exc}", file=sys.stderr, flush=True)
        # Before anything is timed: each server's own answers, one request at a time.
        references, reference_failures = reference_pass(servers, sentences, force_lengths, variants, raw_dir)
        for name, why in reference_failures.items():
            failed = True
            results[name] = {"label": LABELS[name], "error": why[-2000:]}
            print(f"[bench] {name} FAILED: {why}", file=sys.stderr, flush=True)
            del servers[name]
        for name, server in list(servers.items()):
            print(f"[bench] {name}: {LABELS[name]}", flush=True)
            alone = None if CONFIGS[name] is None else functools.partial(
                model_alone, args.store, manifest, variants[name], args.unloaded_text, plan.unloaded_requests,
                settings[name])
            try:
                results[name] = bench_unloaded(name, server, sentences, plan, force_lengths, args.unloaded_text,
                                               alone, references[name])
                results[name]["reference"] = reference_record(references[name], variants[name])
            except RuntimeError as exc:
                failed = True
                results[name] = {"label": LABELS[name], "error": str(exc)[-2000:]}
                print(f"[bench] {name} FAILED: {exc}", file=sys.stderr, flush=True)
                del servers[name]
        for name, closed in bench_closed_interleaved(servers, sentences, codec, plan, force_lengths,
                                                     started, references).items():
            results[name]["closed"] = closed
            print(f"[bench] {name}: {closed['summary']['sentences_per_s']['median']:.1f} sentences/s, "
                  f"p99 {closed['summary']['p99_ms']['median']:.0f} ms, unloaded p50 "
                  f"{results[name]['unloaded']['p50_ms']:.1f} ms", flush=True)
        if opened := [name for name in open_names if name in servers]:
            if open_rate is None:  # the first open config's (static by default) saturated rate x fraction
                open_rate = plan.open_fraction * _median(results, opened[0], "closed", "sentences_per_s")
            try:
                if not (math.isfinite(open_rate) and open_rate > 0):
                    raise RuntimeError(f"no open-loop rate: {opened[0]} served nothing in the closed loop")
                bench_open_phase({name: servers[name] for name in opened}, results, sentences, codec, plan,
                                 force_lengths, open_rate, started, references)
            except RuntimeError as exc:
                failed = True
                for name in opened:
                    results[name]["open_error"] = str(exc)[-2000:]
                print(f"[bench] open loop FAILED: {exc}", file=sys.stderr, flush=True)
    results = {name: results[name] for name in names}  # the canonical order, whatever happened when

    lengths = [len(codec.encode(s.english)) + 1 for s in sentences]
    document = {
        "kind": "bench",
        "quick": args.quick,
        "command": "python -m loadtest.bench " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "machine": machine,
        "wall_s": time.monotonic() - started,
        "plan": asdict(plan) | {"open_rate_per_s": open_rate},
        "lengths": args.lengths,
        "model": {"artifact": str(artifact_dir), "name": manifest.name, "version": manifest.version,
                  "attention": manifest.attention, "model_config": manifest.model_config,
                  "training": manifest.training.get("task") or manifest.training.get("trained_on"),
                  "checkpoint": str(naive.path) if naive and naive.source == "checkpoint" else None,
                  "naive_weights": {"source": naive.source, "path": str(naive.path)} if naive else None},
        "sentences": {"source": sentences_source, "count": len(sentences),
                      "source_tokens_mean": sum(lengths) / len(lengths),
                      "source_tokens_p50": sorted(lengths)[len(lengths) // 2],
                      "source_tokens_max": max(lengths)},
        "configs": results,
        "agreement_with_continuous": agreement(references),
        "agreement_sentences": len(sentences),
        "targets": evaluate_targets(results, manifest),
        "p99_ratio_by_offered_load": p99_ratios_by_load(results),
        "saturation_ratios_by_round": saturation_ratios_by_round(results),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    out_file = args.out / "bench.json"
    out_file.write_text(json.dumps(json_safe(document), indent=2) + "\n", encoding="utf-8")
    print(f"[bench] wrote {out_file}")
    if not args.skip_engine:
        # Its own process: the engine benchmark loads ONNX Runtime, which this client never imports.
        engine_argv = [sys.executable, "-m", "loadtest.engine_bench", "--store", str(args.store), "--model",
                       args.model, "--out", str(args.out), "--docs", ""]
        engine_argv += [*(["--version", args.version] if args.version else []),
                        *(["--sentences", str(args.sentences)] if args.sentences else []),
                        *(["--quick"] if args.quick else [])]
        print("[bench] engine-only benchmark", flush=True)
        failed = subprocess.run(engine_argv, cwd=REPO_ROOT, check=False).returncode != 0 or failed
    if args.docs:
        write_benchmarks_doc(args.out, Path(args.docs))
        print(f"[bench] wrote {args.docs}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
