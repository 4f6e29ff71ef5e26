"""Compare service settings side by side: `python -m loadtest.compare --rate 165 static:batching=static
cont:batching=continuous 'cap16:batching=continuous;max_batch_rows=16'`.

Every config is its own server process, all up at once; their runs are interleaved (A B C, then C B A)
so each config's numbers come from the same stretch of this shared machine's time (one run's p99
moves by up to 2x with the VM's neighbours: a config measured alone, minutes from another, cannot be
compared with it). Open loop at `--rate` sentences/s (the side-by-side benchmark's schedule and
summaries), and with `--closed N` first a closed loop of N clients. Prints medians and every run,
writes the JSON. How the settings in docs/benchmarks.md's "What limits it" were compared.
As in the side-by-side benchmark, every server first translates the sentences one request at a time
(its reference answers; an fp32 answer under load that differs is an error, int8's are counted), and
the percentiles count a failed or dropped request at the client's timeout.
Must not import locust, service or torch (servers run in their own processes).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import random
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from loadtest import client
from loadtest.answers import strict_for
from loadtest.bench import Plan, bench_closed_interleaved, bench_open_interleaved
from loadtest.machine import describe_machine
from loadtest.sentences import load_sentences
from loadtest.servers import REPO_ROOT, ServerStartError, start_service
from loadtest.stats import json_safe
from model_store.codec import Codec
from model_store.manifest import read_manifest, resolve_artifact


def parse_config(spec: str) -> tuple[str, dict[str, str]]:
    """`name:KEY=VALUE;KEY=VALUE` -> (name, settings); keys are TRANSLATOR_* with or without the prefix,
    any case (`name:` alone: the service's defaults)."""
    name, _, assignments = spec.partition(":")
    if not name:
        raise ValueError(f"{spec!r}: a config needs a name before ':'")
    settings = {}
    for item in filter(None, assignments.split(";")):
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise ValueError(f"{spec!r}: {item!r} is not KEY=VALUE")
        settings[key.strip().lower().removeprefix("translator_")] = value
    return name, settings


def _joined(values: list[float]) -> str:
    return ", ".join(f"{value:.0f}" for value in values)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m loadtest.compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="+", metavar="NAME:KEY=VALUE;...", help="two or more service configs")
    parser.add_argument("--rate", type=float, required=True, help="offered sentences/s of the open loop")
    parser.add_argument("--duration-s", type=float, default=20.0, help="each open-loop run")
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--closed", type=int, default=0, metavar="N", help="also closed loop with N clients")
    parser.add_argument("--closed-duration-s", type=float, default=12.0)
    parser.add_argument("--warmup-s", type=float, default=3.0)
    parser.add_argument("--store", type=Path, default=REPO_ROOT / "model_store")
    parser.add_argument("--model", default="en-de")
    parser.add_argument("--version")
    parser.add_argument("--sentences", type=Path, help="default: the test sets, else loadtest/sentences.txt")
    parser.add_argument("--max-sentences", type=int, help="only the first N of the shuffled sentences")
    parser.add_argument("--lengths", choices=["model", "reference"], default="model",
                        help="reference: send max_length = the reference length (untrained stand-in models)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "loadtest/results/compare.json")
    return parser


def _run_line(load: dict[str, Any]) -> str:
    runs = load["runs"]
    errors, dropped = sum(r["errors"] for r in runs), sum(r.get("dropped", 0) for r in runs)
    checked, differing = sum(r["reference_checked"] for r in runs), sum(r["reference_differing"] for r in runs)
    return (f"errors {errors}, dropped {dropped}, answers differing from the server's sequential ones "
            f"{differing}/{checked}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        configs = dict(parse_config(spec) for spec in args.configs)
    except ValueError as exc:
        parser.error(str(exc))
    if len(configs) != len(args.configs) or len(configs) < 2:
        parser.error("give at least two configs, each with its own name")

    artifact_dir = resolve_artifact(args.store, args.model, args.version)
    manifest = read_manifest(artifact_dir)
    codec = Codec(artifact_dir / manifest.tokenizer_file)
    sentences, source = load_sentences(args.sentences)
    sentences = list(sentences)
    random.Random(0).shuffle(sentences)  # the side-by-side benchmark's order
    if args.max_sentences:
        sentences = sentences[:args.max_sentences]
    force_lengths = args.lengths == "reference"
    variants = {name: settings.get("variant", "fp32") for name, settings in configs.items()}
    plan = replace(Plan(), repeats=args.repeats, open_duration_s=args.duration_s)
    log_dir = args.out.parent / "raw" / "compare"
    log_dir.mkdir(parents=True, exist_ok=True)
    machine = describe_machine()
    started = time.monotonic()
    try:
        with contextlib.ExitStack() as stack:
            servers = {name: stack.enter_context(start_service(
                args.store, log_dir / f"server-{name}.log",
                settings | {"models": f"{manifest.name}@{manifest.version}"}, label=name))
                for name, settings in configs.items()}
            passes = client.run(lambda: client.references(
                {name: server.base_url for name, server in servers.items()}, sentences, force_lengths,
                {name: strict_for(variant) for name, variant in variants.items()}))
            if failures := {name: str(r) for name, r in passes.items() if isinstance(r, client.ReferencePassError)}:
                for name, why in failures.items():
                    print(f"[compare] {name}: reference answers: {why}", file=sys.stderr)
                return 1
            references = {name: r for name, r in passes.items() if isinstance(r, client.Reference)}
            for name, server in servers.items():
                client.run(functools.partial(client.closed_loop, server.base_url, sentences, 16, args.warmup_s,
                                             force_lengths, reference=references[name]))
            closed = (bench_closed_interleaved(servers, sentences, codec, replace(
                plan, concurrency=args.closed, duration_s=args.closed_duration_s), force_lengths, started,
                references) if args.closed else {})
            opened = bench_open_interleaved(servers, sentences, codec, plan, force_lengths, [args.rate], started,
                                            references)
    except ServerStartError as exc:
        print(f"[compare] a server did not start: {exc}", file=sys.stderr)
        return 1

    results: dict[str, Any] = {}
    for name, (load,) in opened.items():
        summary = load["summary"]  # medians over the runs, already taken by bench_open_interleaved
        results[name] = {"settings": configs[name], "open": load}
        cpu = summary["server_cpu_ms_per_sentence"]["median"]
        line = (f"{name}: p99 {summary['p99_ms']['median']:.0f} ms (runs {_joined(summary['p99_ms']['values'])}), "
                f"mean {summary['mean_ms']['median']:.0f} ms, server CPU {cpu:.1f} ms/sentence, {_run_line(load)}")
        if name in closed:
            results[name]["closed"] = closed[name]
            served = closed[name]["summary"]["sentences_per_s"]
            line += (f"; closed loop {served['median']:.0f} sentences/s (runs {_joined(served['values'])}), "
                     f"{_run_line(closed[name])}")
        print(line, flush=True)
    document = {"kind": "compare", "command": "python -m loadtest.compare " + shlex.join(
                    argv if argv is not None else sys.argv[1:]),
                "machine": machine, "wall_s": time.monotonic() - started, "model": str(artifact_dir),
                "sentences": {"source": source, "count": len(sentences)}, "offered_per_s": args.rate,
                "lengths": args.lengths, "variants": variants,
                "latency_convention": "failures_at_timeout (percentiles count a failed or dropped request at "
                                      f"{client.REQUEST_TIMEOUT_S:.0f} s)",
                "closed_clients": args.closed, "configs": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(json_safe(document), indent=2) + "\n", encoding="utf-8")
    print(f"[compare] wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
