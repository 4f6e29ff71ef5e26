"""What does a burst of one text cost, with the translation cache's sharing and without it?

`python -m loadtest.same_text_burst`: two servers side by side over the shipped model, one with the
cache (TRANSLATOR_CACHE_MB=64: a sentence in the engine for one request answers the same sentence asked
meanwhile by another) and one without; each round sends `--clients` identical requests at once (a page
many users translate at the same moment) to each, the order alternating between rounds, a new sentence
every round so that no answer comes from the cache itself. Per server: the burst's wall time, its
requests' median latency and the sentences the engine decoded for it (translator_decode_seconds_count),
medians over the rounds with the spread; every answer must equal the other server's. Prints them and
writes `loadtest/results/same_text_burst.json`. Must not import service or torch.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from loadtest.client import TRANSLATE_PATH
from loadtest.machine import tool_report, write_report
from loadtest.servers import REPO_ROOT, ServerProcess, scrape_counters, start_service
from loadtest.stats import format_spread, spread

DECODED = {"decoded": "translator_decode_seconds_count"}


def burst_sentences(corpus: Path, rounds: int, min_words: int = 15) -> list[str]:
    """The first `rounds` different source sentences of at least `min_words` words (a sentence long
    enough that the burst arrives while it is decoded, as a real page's paragraphs would)."""
    sources = [line.split("\t", 1)[0] for line in corpus.read_text(encoding="utf-8").splitlines()]
    chosen = list(dict.fromkeys(s for s in sources if len(s.split()) >= min_words))[:rounds]
    if len(chosen) < rounds:
        raise SystemExit(f"{corpus} has {len(chosen)} sentences of {min_words}+ words; {rounds} rounds need as many")
    return chosen


async def _burst(base_url: str, text: str, clients: int, beam_size: int) -> tuple[float, list[float], list[str]]:
    """`clients` identical requests sent at once: the burst's wall seconds, each one's latency, the answers."""
    body = {"text": text, "beam_size": beam_size}
    async with aiohttp.ClientSession(base_url, connector=aiohttp.TCPConnector(limit=clients)) as session:

        async def one() -> tuple[float, str]:
            started = time.perf_counter()
            async with session.post(TRANSLATE_PATH, json=body) as response:
                answer = await response.json()
                if response.status != 200:
                    raise RuntimeError(f"{base_url}: {response.status} {answer}")
            return time.perf_counter() - started, answer["translations"][0]["text"]

        started = time.perf_counter()
        results = await asyncio.gather(*(one() for _ in range(clients)))
        return time.perf_counter() - started, [latency for latency, _ in results], [text for _, text in results]


def measure(servers: dict[str, ServerProcess], sentences: list[str], clients: int, beam_size: int) -> dict[str, Any]:
    rounds: dict[str, list[dict[str, float]]] = {label: [] for label in servers}
    differing = 0
    for number, text in enumerate(sentences):
        order = list(servers) if number % 2 == 0 else list(servers)[::-1]
        answers: dict[str, list[str]] = {}
        for label in order:
            server = servers[label]
            before = scrape_counters(server.base_url, DECODED).get("decoded", 0.0)
            wall_s, latencies_s, answers[label] = asyncio.run(_burst(server.base_url, text, clients, beam_size))
            decoded = scrape_counters(server.base_url, DECODED).get("decoded", 0.0) - before
            rounds[label].append({"burst_ms": wall_s * 1e3, "p50_ms": statistics.median(latencies_s) * 1e3,
                                  "decoded": decoded})
        every = [answer for label in servers for answer in answers[label]]
        differing += sum(answer != every[0] for answer in every)
    summary = {label: {key: spread(run[key] for run in runs) for key in ("burst_ms", "p50_ms", "decoded")}
               for label, runs in rounds.items()}
    return {"servers": summary, "rounds": rounds, "answers_differing": differing}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=REPO_ROOT / "model_store")
    parser.add_argument("--corpus", type=Path, default=REPO_ROOT / "data" / "corpus" / "test_technical.tsv")
    parser.add_argument("--clients", type=int, default=32, help="identical requests sent at once")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--beam-size", type=int, default=4)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "loadtest" / "results" / "same_text_burst.json")
    args = parser.parse_args(argv)
    sentences = burst_sentences(args.corpus, args.rounds)
    logs = args.out.parent / "raw" / "same_text_burst"
    servers: dict[str, ServerProcess] = {}
    try:
        servers["sharing (cache on)"] = start_service(args.store, logs / "sharing.log", {"cache_mb": "64"},
                                                      label="sharing")
        servers["cache off"] = start_service(args.store, logs / "off.log", label="cache off")
        result = measure(servers, sentences, args.clients, args.beam_size)
    finally:
        for server in servers.values():
            server.stop()
    report = tool_report("loadtest.same_text_burst", argv, clients=args.clients, beam_size=args.beam_size,
                         sentences=sentences, **result)
    write_report(args.out, report)
    print(f"{args.clients} identical requests at once (beam {args.beam_size}), {args.rounds} rounds, medians "
          f"(min-max):")
    for label, summary in result["servers"].items():
        print(f"  {label}: burst {format_spread(summary['burst_ms'], 0)} ms, request p50 "
              f"{format_spread(summary['p50_ms'], 0)} ms, sentences decoded {format_spread(summary['decoded'], 0)}")
    print(f"answers differing from the first: {result['answers_differing']}")
    return 0 if result["answers_differing"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
