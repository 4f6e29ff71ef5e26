"""`make loadtest`: start the service as a separate process, run Locust headless at a series of user
counts (a step load), and write per-step Locust CSV/JSON/HTML plus a summary table (CSV, JSON) and a
plot of throughput and p50/p95/p99 latency against offered load under loadtest/results/.

Before the first step the server translates every sentence the users draw from, one request at a time:
its reference answers (raw/loadtest/references.json, LOADTEST_REFERENCES for the Locust processes),
against which every translation under load is checked. Each user offers a Poisson schedule of requests
and each request is timed from its scheduled start; a step that sent fewer than SATURATED_SHARE of the
requests its schedules meant to send (and more than one per user short) is marked saturated (the server
could not keep up).

Never imports locust (each step is a `python -m locust` child process: its gevent patching would
hang a server started here) nor service or torch.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import os
import re
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from loadtest import client
from loadtest.answers import ReferenceBook, default_variant, reference_key, strict_for
from loadtest.machine import describe_machine
from loadtest.report import write_benchmarks_doc
from loadtest.sentences import forced_length_tokens, load_sentences
from loadtest.servers import REPO_ROOT, ServerProcess, decoder_activity, scrape_counters, start_service
from loadtest.stats import PERCENTILES, histogram_percentile, json_safe
from model_store.manifest import list_models, read_manifest, resolve_artifact

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
FULL_USERS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
QUICK_USERS = (1, 4)
TEXTS_IN_NAME = re.compile(r"x(\d+)\]$")  # "POST /v1/translate [texts x4]" -> 4 sentences per request
SUMMARY_FIELDS = ("users", "offered_requests_per_s", "scheduled_per_s", "sent_per_s", "saturated", "requests",
                  "failures", "requests_per_s", "sentences_per_s", "p50_ms", "p95_ms", "p99_ms", "max_ms",
                  "reference_checked", "reference_differing", "rows_per_decoder_step")
# A step that sent fewer than this share of the requests its users' schedules meant to send is saturated.
SATURATED_SHARE = 0.95


def texts_per_request(name: str) -> int:
    match = TEXTS_IN_NAME.search(name)
    return int(match.group(1)) if match else 1


def summarize_step(entries: list[dict[str, Any]], users: int, user_rps: float, step_s: float) -> dict[str, Any]:
    """One step's totals from Locust's serialized stats entries (exact counts over `step_s`; latencies
    from its histogram, which Locust rounds to 2-3 significant digits)."""
    histogram: dict[float, int] = {}
    by_name = {}
    requests = failures = sentences = 0
    max_ms = 0.0
    for entry in entries:
        max_ms = max(max_ms, float(entry.get("max_response_time") or 0.0))
        counts = {float(k): int(v) for k, v in entry["response_times"].items()}
        for value, count in counts.items():
            histogram[value] = histogram.get(value, 0) + count
        ok = entry["num_requests"] - entry["num_failures"]
        requests += entry["num_requests"]
        failures += entry["num_failures"]
        sentences += ok * texts_per_request(entry["name"])
        by_name[entry["name"]] = {"requests": entry["num_requests"], "failures": entry["num_failures"],
                                  **{f"p{q}_ms": histogram_percentile(counts, q) for q in PERCENTILES}}
    return {
        "users": users,
        "elapsed_s": step_s,
        "offered_requests_per_s": users * user_rps if user_rps > 0 else None,
        "requests": requests,
        "failures": failures,
        "requests_per_s": requests / step_s,
        "sentences_per_s": sentences / step_s,
        **{f"p{q}_ms": histogram_percentile(histogram, q) for q in PERCENTILES},
        "max_ms": max_ms if requests else None,
        "by_request": by_name,
    }


def saturated(sent: int | None, scheduled: int | None, users: int) -> bool | None:
    """Whether the users sent fewer than SATURATED_SHARE of the requests their schedules meant to send
    (None without a schedule). A user that keeps up can still owe one request as the step ends (its
    next start came while its answer was on the way), so a shortfall of up to one per user is not one."""
    if sent is None or not scheduled:
        return None
    return sent < SATURATED_SHARE * scheduled and scheduled - sent > users


def schedule_summary(document: dict[str, Any], step_s: float) -> dict[str, Any]:
    """From a locust_step document: requests sent and scheduled per second, whether the step saturated
    (see `saturated`), what the latency is timed from, and the reference check."""
    sent, scheduled = document.get("sent"), document.get("scheduled")
    reference = document.get("reference") or {}
    return {
        "sent_requests": sent,
        "sent_per_s": sent / step_s if sent is not None else None,
        "scheduled_requests": scheduled,
        "scheduled_per_s": scheduled / step_s if scheduled is not None else None,
        "saturated": saturated(sent, scheduled, int(document.get("users", 0))),
        "latency_from": document.get("latency_from"),
        "reference_checked": reference.get("checked"),
        "reference_differing": reference.get("differing"),
        "reference_learned": reference.get("learned"),
        "reference_policy": None if not reference else ("error" if reference.get("strict") else "share"),
    }


def served_variant(base_url: str) -> str | None:
    """The graph variant of the server's default model, from GET /v1/models (None: not reported)."""
    try:
        with urllib.request.urlopen(base_url + "/v1/models", timeout=10.0) as response:
            return default_variant(json.loads(response.read()))
    except (OSError, ValueError):
        return None


def write_references(base_url: str, sentences_path: Path | None, force_lengths: bool, path: Path) -> dict[str, Any]:
    """Every sentence the Locust users draw from, translated once by the server, one request at a time,
    as each request kind will ask it (with its forced max_length, and without for the LibreTranslate
    form, which sends none): the reference answers every step checks against, written to `path`.
    Raises RuntimeError when a sentence gets no answer or the answers are degenerate."""
    sentences, _ = load_sentences(sentences_path)
    started = time.monotonic()
    variant = served_variant(base_url)
    book = ReferenceBook(strict=strict_for(variant), variant=variant)
    api_key = os.environ.get("LOADTEST_API_KEY")  # what the Locust users send
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
    for forced in sorted({False, force_lengths}):
        outcomes = client.run(functools.partial(client.sequential_outcomes, base_url, sentences, forced, headers))
        reference = client.reference_from(outcomes, sentences, book.strict)  # ReferencePassError: a RuntimeError
        for sentence, answer in zip(sentences, reference.answers, strict=True):
            key = reference_key(sentence.english, forced_length_tokens(sentence) if forced else None)
            book.answers[key] = str(answer)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(book.to_json(), ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    return {"sentences": len(sentences), "answers": len(book.answers), "variant": variant,
            "policy": "error" if book.strict else "share", "seconds": time.monotonic() - started,
            "file": str(path)}


def run_step(base_url: str, users: int, step_s: float, raw_dir: Path, env: dict[str, str]) -> dict[str, Any]:
    """One Locust child process (loadtest/locust_step.py); -> its JSON document."""
    prefix = raw_dir / f"users{users:04d}"
    argv = [sys.executable, "-m", "loadtest.locust_step", "--host", base_url, "--users", str(users),
            "--seconds", f"{step_s:g}", "--prefix", str(prefix)]
    log_path = prefix.with_suffix(".log")
    with log_path.open("wb") as log:
        completed = subprocess.run(argv, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   timeout=step_s + 180, check=False)
    json_path = prefix.with_suffix(".json")
    if completed.returncode != 0 or not json_path.is_file():
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
        raise RuntimeError(f"locust failed at {users} users (exit {completed.returncode}):\n{tail}")
    document: dict[str, Any] = json.loads(json_path.read_text(encoding="utf-8"))
    return document


def describe_served_models(store: Path, models: str) -> dict[str, Any]:
    """Which artifacts the server loads (TRANSLATOR_MODELS, else the newest of each) and how they were made."""
    specs = [item.strip().partition("@") for item in models.split(",") if item.strip()]
    chosen = [(name, version or None) for name, _, version in specs] or [(n, None) for n in list_models(store)]
    served = []
    for name, version in chosen:
        manifest = read_manifest(resolve_artifact(store, name, version))
        served.append({"name": manifest.name, "version": manifest.version,
                       "training": manifest.training.get("task") or manifest.training.get("trained_on")})
    return {"store": str(store), "served": served,
            "training": "; ".join(str(m["training"]) for m in served if m["training"])}


def plot(steps: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    offered = [s["offered_requests_per_s"] or s["users"] for s in steps]
    x_label = "offered load, nominal (requests/s)" if steps and steps[0]["offered_requests_per_s"] else "users"
    scheduled = steps and steps[0].get("latency_from") == "schedule"
    saturated = [x for x, s in zip(offered, steps, strict=True) if s.get("saturated")]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    if any(s.get("sent_per_s") is not None for s in steps):
        left.plot(offered, [s.get("sent_per_s") for s in steps], "d--", label="requests/s sent")
    left.plot(offered, [s["requests_per_s"] for s in steps], "o-", label="requests/s answered")
    left.plot(offered, [s["sentences_per_s"] for s in steps], "s-", label="sentences/s")
    left.plot(offered, offered, ":", color="grey", label="offered = served")
    left.set(xscale="log", xlabel=x_label, ylabel="throughput (per second)", title="throughput")
    for q, style in zip(PERCENTILES, ("o-", "s-", "^-"), strict=True):
        right.plot(offered, [s[f"p{q}_ms"] for s in steps], style, label=f"p{q}")
    right.set(xscale="log", yscale="log", xlabel=x_label, ylabel="latency (ms)",
              title="latency from each request's scheduled start" if scheduled else "latency from the send")
    for axis in (left, right):
        for x in saturated:  # the server could not keep up: fewer requests sent than scheduled
            axis.axvline(x, color="red", alpha=0.25, linewidth=6)
    if saturated:
        left.plot([], [], color="red", alpha=0.25, linewidth=6, label="saturated step")
    left.legend()
    right.legend()
    for axis in (left, right):
        axis.grid(True, which="both", alpha=0.3)
        axis.xaxis.set_major_formatter(ScalarFormatter())
        axis.xaxis.set_minor_formatter(NullFormatter())
    right.yaxis.set_major_formatter(ScalarFormatter())
    right.yaxis.set_minor_formatter(NullFormatter())
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m loadtest.run_loadtest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run (tests)")
    parser.add_argument("--store", type=Path, default=REPO_ROOT / "model_store")
    parser.add_argument("--models", default="", help="TRANSLATOR_MODELS for the server (default: all, newest)")
    parser.add_argument("--url", help="load an already running server instead of starting one")
    parser.add_argument("--users", help="comma-separated user counts (default 1..256, quick 1,4)")
    parser.add_argument("--step-s", type=float, help="seconds per step (default 30, quick 2)")
    parser.add_argument("--user-rps", type=float, default=1.0,
                        help="requests/s each user offers (0: back to back); offered load = users x this")
    parser.add_argument("--batch-texts", type=int, default=4)
    parser.add_argument("--weights", default="", help='e.g. "single=6,batch=2,attention=1,libre=2"')
    parser.add_argument("--lengths", choices=["model", "reference"], default="model")
    parser.add_argument("--sentences", type=Path)
    parser.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "loadtest/results")
    parser.add_argument("--docs", default=str(REPO_ROOT / "docs/benchmarks.md"), help="'' to skip")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    users = tuple(int(u) for u in args.users.split(",")) if args.users else (QUICK_USERS if args.quick else FULL_USERS)
    step_s = args.step_s or (2.0 if args.quick else 30.0)
    raw_dir = args.out / "raw" / "loadtest"
    raw_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ) | {
        "LOADTEST_BATCH_TEXTS": str(args.batch_texts), "LOADTEST_USER_RPS": str(args.user_rps),
        "LOADTEST_LENGTHS": args.lengths, "LOADTEST_WEIGHTS": args.weights,
    }
    if args.sentences:
        env["LOADTEST_SENTENCES"] = str(args.sentences.resolve())
    machine = describe_machine()
    started = time.monotonic()
    server: ServerProcess | None = None
    steps: list[dict[str, Any]] = []
    references: dict[str, Any] = {}
    try:
        if args.url:
            base_url = args.url.rstrip("/")
        else:
            settings = {key.lower().removeprefix("translator_"): value
                        for key, value in (item.split("=", 1) for item in args.server_env)}
            if args.models:
                settings["models"] = args.models
            server = start_service(args.store, raw_dir / "server.log", settings)
            base_url = server.base_url
        references = write_references(base_url, args.sentences, args.lengths == "reference",
                                      raw_dir / "references.json")
        env["LOADTEST_REFERENCES"] = references["file"]
        print(f"[loadtest] reference answers: {references['answers']} from {references['sentences']} sentences "
              f"asked one at a time in {references['seconds']:.0f} s ({references['variant'] or 'variant unknown'}: "
              f"differing answers {'fail' if references['policy'] == 'error' else 'counted'})", flush=True)
        for count in users:
            before = scrape_counters(base_url)
            result = run_step(base_url, count, step_s, raw_dir, env)
            step = summarize_step(result["stats"], count, args.user_rps, result["elapsed_s"])
            step |= schedule_summary(result, result["elapsed_s"])
            step |= decoder_activity(before, scrape_counters(base_url))
            # Refused with 429 (held-or-shed by design above capacity), a subset of the failures.
            step["shed_429"] = sum(e["occurrences"] for e in result["errors"] if "HTTP 429" in e["error"])
            step["failure_samples"] = [f"{e['name']}: {e['error'][:200]} (x{e['occurrences']})"
                                       for e in result["errors"][:5]]
            step["exceptions"] = result["exceptions"][:5]
            steps.append(step)
            sent = "" if step["scheduled_per_s"] is None else (
                f"{step['sent_per_s']:.1f} sent of {step['scheduled_per_s']:.1f} scheduled"
                + (" (saturated)" if step["saturated"] else "") + ", ")
            print(f"[loadtest] {count:4d} users: {sent}{step['requests_per_s']:7.1f} req/s answered, "
                  f"{step['sentences_per_s']:7.1f} sentences/s, p50 {step['p50_ms']:.0f} ms, "
                  f"p99 {step['p99_ms']:.0f} ms (n={step['requests']}), {step['failures']}/{step['requests']} failed, "
                  f"{step['reference_differing']}/{step['reference_checked']} translations differ from the "
                  "reference", flush=True)
    except RuntimeError as exc:  # no reference answers (the server cannot be judged), or a Locust step failed
        print(f"[loadtest] FAILED: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        if server is not None:
            server.stop()

    weights = args.weights or "single=6,batch=2,attention=1,libre=2"
    pacing = ("closed loop (each user back to back; latency from the send)" if args.user_rps <= 0 else
              f"{args.user_rps:g} request/s per user (Poisson schedule; latency from each request's scheduled start)")
    document = {
        "kind": "loadtest",
        "quick": args.quick,
        "command": "python -m loadtest.run_loadtest " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "machine": machine,
        "wall_s": time.monotonic() - started,
        "traffic": (f"Locust {pacing}, "
                    f"{step_s:g} s per step; task weights {weights} (batch = {args.batch_texts} texts); "
                    f"output lengths: {args.lengths}"),
        "model": describe_served_models(args.store, args.models) if not args.url else {"url": args.url},
        "step_s": step_s,
        "saturated_share": SATURATED_SHARE,
        "references": references,
        "steps": steps,
        "plot": "loadtest.png",
        "raw": str(raw_dir),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "loadtest.json").write_text(json.dumps(json_safe(document), indent=2) + "\n", encoding="utf-8")
    with (args.out / "loadtest_summary.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=SUMMARY_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(json_safe(steps))
    plot(steps, args.out / "loadtest.png", f"{machine['cpu_model']} x{machine['cpus']}, {machine['date_utc']}")
    print(f"[loadtest] wrote {args.out / 'loadtest.json'}, loadtest_summary.csv, loadtest.png; raw in {raw_dir}")
    if args.docs:
        write_benchmarks_doc(args.out, Path(args.docs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
