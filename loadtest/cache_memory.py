"""How much memory does the translation cache take, against what it estimates (translator_cache_bytes)?

`python -m loadtest.cache_memory`: two servers side by side over the shipped model, one with the cache
(TRANSLATOR_CACHE_MB large enough to keep everything) and one without, each sent the same sentences
from the training corpus (data/corpus/train.tsv, from `make data`): short ones (at most 12 words),
then long ones (40-60 words) with a web address and 7 alternatives, which keep attention matrices.
After each, the growth of each server's resident memory (process_resident_memory_bytes); the cache's
cost is the difference, set beside its own estimate. Prints the numbers and writes
`loadtest/results/cache_memory.json`. Must not import service or torch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from loadtest.client import translations
from loadtest.machine import tool_report, write_report
from loadtest.servers import REPO_ROOT, ServerProcess, scrape_counters, start_service

BATCH = 8


MEMORY_METRICS = {"rss": "process_resident_memory_bytes", "estimated": "translator_cache_bytes"}


def _memory_mib(server: ServerProcess) -> dict[str, float]:
    return {key: value / 2**20 for key, value in scrape_counters(server.base_url, MEMORY_METRICS).items()}


def workloads(corpus: Path, short: int, long: int) -> dict[str, tuple[list[str], int]]:
    sources = [line.split("\t", 1)[0] for line in corpus.read_text(encoding="utf-8").splitlines()]
    short_ones = [s for s in sources if 0 < len(s.split()) <= 12][:short]
    long_ones = [f"{s} See https://example.org/{n} ." for n, s in
                 enumerate(s for s in sources if 40 <= len(s.split()) <= 60)][:long]
    return {f"{len(short_ones)} short sentences": (short_ones, 0),
            f"{len(long_ones)} long sentences with a URL, 7 alternatives": (long_ones, 7)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=REPO_ROOT / "model_store")
    parser.add_argument("--corpus", type=Path, default=REPO_ROOT / "data" / "corpus" / "train.tsv")
    parser.add_argument("--short", type=int, default=4000)
    parser.add_argument("--long", type=int, default=200)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "loadtest" / "results" / "cache_memory.json")
    args = parser.parse_args(argv)
    logs = args.out.parent / "raw" / "cache_memory"
    servers: dict[str, ServerProcess] = {}
    rows: list[dict[str, Any]] = []
    try:
        servers["cache"] = start_service(args.store, logs / "cache.log", {"cache_mb": "100000"}, label="cache")
        servers["no cache"] = start_service(args.store, logs / "no_cache.log", label="no cache")
        for server in servers.values():  # warm-up: the engine's first allocations are not the cache's
            translations(server.base_url, ["Good morning.", "The weather is nice today."])
        for name, (texts, alternatives) in workloads(args.corpus, args.short, args.long).items():
            before = {label: _memory_mib(server) for label, server in servers.items()}
            for server in servers.values():
                translations(server.base_url, texts, per_request=BATCH, alternatives=alternatives)
            after = {label: _memory_mib(server) for label, server in servers.items()}
            growth = {label: after[label]["rss"] - before[label]["rss"] for label in servers}
            rows.append({"workload": name, "rss_growth_mib": {k: round(v, 1) for k, v in growth.items()},
                         "cache_cost_mib": round(growth["cache"] - growth["no cache"], 1),
                         "estimated_mib": round(after["cache"]["estimated"] - before["cache"]["estimated"], 1)})
    finally:
        for server in servers.values():
            server.stop()
    report = tool_report("loadtest.cache_memory", argv, workloads=rows)
    write_report(args.out, report)
    for row in rows:
        print(f"{row['workload']}: resident memory +{row['rss_growth_mib']['cache']} MiB with the cache, "
              f"+{row['rss_growth_mib']['no cache']} without; the cache's cost {row['cache_cost_mib']} MiB, "
              f"its estimate {row['estimated_mib']} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
