"""Where the service spends its time under load: py-spy samples a real server process while the
benchmark client drives it, then the samples are summarised per thread (active time, top frames).

`python -m loadtest.profile [--config continuous] [--concurrency 64] [--seconds 15] [--quick]`
writes loadtest/results/profile-<config>.speedscope.json (open it in https://speedscope.app) and
profile-<config>.json (the summary), and prints the summary. This is how the findings in
docs/benchmarks.md ("What limits it") were made. Must not import locust, service or torch.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from loadtest import client
from loadtest.bench import CONFIGS
from loadtest.sentences import load_sentences
from loadtest.servers import REPO_ROOT, ServerProcess, start_service

RESULTS_DIR = REPO_ROOT / "loadtest" / "results"
SAMPLE_RATE_HZ = 250
TOP_FRAMES = 25


def frame_label(frame: dict[str, Any]) -> str:
    file = str(frame.get("file", "")).rsplit("/", 1)[-1]
    return f"{frame.get('name', '?')} ({file}:{frame.get('line', '')})"


def summarize_speedscope(document: dict[str, Any], wall_s: float, top: int = TOP_FRAMES) -> dict[str, Any]:
    """Per thread: seconds it was sampled as active (not idle), its share of the wall time, and the
    frames it spent its active time in (inclusive: a frame counts once per sample it is on the stack)."""
    frames = document["shared"]["frames"]
    threads = []
    for profile in document["profiles"]:
        active_s = float(sum(profile["weights"]))
        inclusive: Counter[str] = Counter()
        for stack, weight in zip(profile["samples"], profile["weights"], strict=True):
            for label in {frame_label(frames[index]) for index in stack}:
                inclusive[label] += weight
        threads.append({
            "thread": profile.get("name", "?"),
            "active_s": round(active_s, 3),
            "active_share_of_wall": round(active_s / wall_s, 3) if wall_s > 0 else None,
            "top_frames": [{"frame": label, "share_of_active": round(value / active_s, 3)}
                           for label, value in inclusive.most_common(top)] if active_s else [],
        })
    threads.sort(key=lambda thread: -thread["active_s"])
    return {"wall_s": wall_s, "threads": threads}


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("py-spy is not installed: pip install -e '.[loadtest]'")
    return found


def profile_server(server: ServerProcess, out: Path, concurrency: int, seconds: float,
                   sentences_path: Path | None = None) -> dict[str, Any]:
    sentences, _ = load_sentences(sentences_path)
    recorder = subprocess.Popen(
        [py_spy(), "record", "--pid", str(server.process.pid), "--format", "speedscope", "--output", str(out),
         "--rate", str(SAMPLE_RATE_HZ), "--duration", str(max(1, round(seconds))), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    time.sleep(0.5)  # let py-spy attach before the load starts
    record = client.run(lambda: client.closed_loop(server.base_url, sentences, concurrency, seconds, False))
    _, error = recorder.communicate(timeout=seconds + 60)
    if recorder.returncode != 0 or not out.exists():
        raise SystemExit(f"py-spy failed ({recorder.returncode}): {error.decode(errors='replace')[-2000:]}")
    summary = summarize_speedscope(json.loads(out.read_text(encoding="utf-8")), record.elapsed_s)
    summary["load"] = {"concurrency": concurrency, "sentences_per_s": round(len(record.ok) / record.elapsed_s, 1),
                       "errors": len(record.errors)}
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.profile", description=__doc__)
    parser.add_argument("--config", default="continuous", choices=[n for n, s in CONFIGS.items() if s is not None])
    parser.add_argument("--store", type=Path, default=REPO_ROOT / "model_store")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--sentences", type=Path, help=".tsv or .txt (default: the test sets, else the sample)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--quick", action="store_true", help="2 s at concurrency 4 (for the tests)")
    args = parser.parse_args(argv)
    if args.quick:
        args.concurrency, args.seconds = 4, 2.0
    args.out_dir.mkdir(parents=True, exist_ok=True)
    speedscope = args.out_dir / f"profile-{args.config}.speedscope.json"
    settings = CONFIGS[args.config] or {}
    with start_service(args.store, args.out_dir / "raw" / f"server-profile-{args.config}.log", settings) as server:
        summary = profile_server(server, speedscope, args.concurrency, args.seconds, args.sentences)
    summary |= {"config": args.config, "command": "python -m loadtest.profile " + " ".join(argv or sys.argv[1:])}
    (args.out_dir / f"profile-{args.config}.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(summary, indent=1))
    return 0 if summary["load"]["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
