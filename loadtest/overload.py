"""Overload benchmark: bursts of POST /v1/translate at a few offered rates against a running service,
reporting how much load was held (200) and how much was shed (429/503), and the accepted p99 latency.
Every 200 is validated: its shape, and each translation (each position of a batch) against the server's
own answer to that text asked on its own before the bursts. A 200 whose answer is malformed, or (fp32)
differs from that reference, is a wrong answer, not held load; for int8, whose answers may change with
the batch, the differing translations are counted instead.

`python -m loadtest.overload --url http://127.0.0.1:8000 [--quick] [--out overload.json]`
Must not import locust, service, onnxruntime or torch (the server under test runs in its own process).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from loadtest.answers import (
    ReferenceBook,
    default_variant,
    degenerate_references,
    reference_key,
    strict_for,
    translation_problem,
)
from loadtest.machine import describe_machine
from loadtest.stats import json_safe, percentile

TRANSLATE_PATH = "/v1/translate"
WARM_UP_PATH = "/healthz"
SHED_STATUSES = (429, 503)
DEFAULT_TEXTS = ("Good morning.", "Where is the station?", "The house is small.", "I would like a coffee, please.")
FULL_RATES_PER_S = (25.0, 100.0, 400.0, math.inf)
FULL_REQUESTS = 400
QUICK_RATES_PER_S = (50.0, math.inf)
QUICK_REQUESTS = 60
REQUEST_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Answer:
    status: int | None  # None: no HTTP answer (timeout, connection error)
    latency_s: float
    retry_after: str | None
    error_code: str | None  # `error.code` of an error body, when the body has that shape
    problem: str | None = None  # a 200 whose answer is wrong: malformed, or (fp32) not the reference


def _error_code(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return str(error.get("code")) if isinstance(error, dict) and "code" in error else None


def answer_problem(response: httpx.Response, texts: list[str], references: ReferenceBook | None) -> str | None:
    """Why a 200's body is not the right answer to `texts` (shape, then each position against the
    text's reference), or None."""
    try:
        body = response.json()
    except ValueError:
        return "not JSON"
    if problem := translation_problem(body, len(texts)):
        return problem
    if references is None:
        return None
    return references.check([reference_key(t) for t in texts], [item["text"] for item in body["translations"]])


async def _send(client: httpx.AsyncClient, payload: dict[str, Any], references: ReferenceBook | None = None) -> Answer:
    started = time.perf_counter()
    try:
        response = await client.post(TRANSLATE_PATH, json=payload)
    except httpx.HTTPError:
        return Answer(None, time.perf_counter() - started, None, None)
    latency_s = time.perf_counter() - started
    if response.status_code == 200:
        problem = answer_problem(response, list(payload["texts"]), references)
        return Answer(200, latency_s, response.headers.get("retry-after"), None, problem)
    return Answer(response.status_code, latency_s, response.headers.get("retry-after"), _error_code(response))


async def reference_answers(base_url: str, texts: tuple[str, ...], headers: dict[str, str] | None = None,
                            variant: str | None = None) -> ReferenceBook:
    """Each text translated on its own, one request at a time, before any burst: the answers the
    bursts' 200s must give (fp32: any other is wrong; int8: counted). `variant` None: asked of the
    server (GET /v1/models), fp32 rules when it does not say. Raises RuntimeError when a text gets no
    well-formed answer or the answers are degenerate (the same answer for different texts)."""
    async with httpx.AsyncClient(base_url=base_url, timeout=REQUEST_TIMEOUT_S, headers=headers) as client:
        if variant is None:
            try:
                variant = default_variant((await client.get("/v1/models")).json())
            except (httpx.HTTPError, ValueError):
                variant = None
        book = ReferenceBook(strict=strict_for(variant), variant=variant)
        answers = []
        for text in dict.fromkeys(texts):
            response = await client.post(TRANSLATE_PATH, json={"texts": [text]})
            if response.status_code != 200 or (problem := answer_problem(response, [text], None)):
                raise RuntimeError(f"reference answer for {text!r:.60}: HTTP {response.status_code} "
                                   f"{response.text[:200]}")
            answers.append(str(response.json()["translations"][0]["text"]))
            book.answers[reference_key(text)] = answers[-1]
    if problem := degenerate_references(list(dict.fromkeys(texts)), answers):
        raise RuntimeError(f"reference answers: {problem}")
    return book


async def burst(
    base_url: str, requests: int, rate_per_s: float, texts: tuple[str, ...] = DEFAULT_TEXTS,
    headers: dict[str, str] | None = None, texts_per_request: int = 1, references: ReferenceBook | None = None,
) -> list[Answer]:
    """Send `requests` translations spaced 1/rate apart (inf: all at once), each on its own connection
    so the client never queues them itself; returns every answer in send order.

    The connections are opened (GET /healthz) before the first send: otherwise connection set-up
    spreads an "all at once" burst out and the server sees a lower rate than offered."""
    limits = httpx.Limits(max_connections=requests, max_keepalive_connections=requests)
    async with httpx.AsyncClient(
        base_url=base_url, limits=limits, timeout=REQUEST_TIMEOUT_S, headers=headers
    ) as client:
        await asyncio.gather(*(client.get(WARM_UP_PATH) for _ in range(requests)))
        tasks = []
        begin = time.perf_counter()
        for index in range(requests):
            if math.isfinite(rate_per_s):
                delay_s = begin + index / rate_per_s - time.perf_counter()
                if delay_s > 0:
                    await asyncio.sleep(delay_s)
            first = index * texts_per_request
            payload = {"texts": [texts[(first + k) % len(texts)] for k in range(texts_per_request)]}
            tasks.append(asyncio.create_task(_send(client, payload, references)))
        return list(await asyncio.gather(*tasks))


def summarize(answers: list[Answer], rate_per_s: float, elapsed_s: float,
              references: ReferenceBook | None = None) -> dict[str, Any]:
    statuses = Counter("transport_error" if a.status is None else str(a.status) for a in answers)
    held = [a for a in answers if a.status == 200 and a.problem is None]
    wrong = [a for a in answers if a.status == 200 and a.problem is not None]
    shed = [a for a in answers if a.status in SHED_STATUSES]
    unexpected = len(answers) - len(held) - len(wrong) - len(shed)
    tally = references.tally() if references is not None else {}
    return {
        "offered_rate_per_s": rate_per_s if math.isfinite(rate_per_s) else "all at once",
        "sent": len(answers),
        "held": len(held),  # answered 200 with the right answer
        "wrong_answers": len(wrong),  # answered 200 with a malformed or (fp32) differing answer
        "wrong_samples": sorted({a.problem or "" for a in wrong})[:3],
        "reference_checked": tally.get("checked"),
        "reference_differing": tally.get("differing"),
        "reference_policy": None if not tally else ("error" if tally["strict"] else "share"),
        "shed": len(shed),
        "unexpected": unexpected,  # neither 200 nor 429/503: 5xx, 4xx or no answer at all
        "held_fraction": len(held) / len(answers) if answers else math.nan,
        "statuses": dict(sorted(statuses.items())),
        "shed_without_retry_after": sum(1 for a in shed if a.status == 429 and not a.retry_after),
        "accepted_p50_ms": 1000.0 * percentile([a.latency_s for a in held], 50),
        "accepted_p99_ms": 1000.0 * percentile([a.latency_s for a in held], 99),
        "shed_p99_ms": 1000.0 * percentile([a.latency_s for a in shed], 99),
        "elapsed_s": elapsed_s,
    }


async def server_rss_mb(base_url: str) -> float | None:
    """The server's resident memory from its /metrics (process_resident_memory_bytes); None if absent."""
    async with httpx.AsyncClient(base_url=base_url, timeout=REQUEST_TIMEOUT_S) as client:
        try:
            text = (await client.get("/metrics")).text
        except httpx.HTTPError:
            return None
    for line in text.splitlines():
        if line.startswith("process_resident_memory_bytes "):
            return round(float(line.split()[1]) / 2**20, 1)
    return None


async def run_overload(
    base_url: str, rates_per_s: tuple[float, ...], requests: int, texts: tuple[str, ...] = DEFAULT_TEXTS,
    pause_s: float = 1.0, headers: dict[str, str] | None = None, texts_per_request: int = 1,
    variant: str | None = None,
) -> dict[str, Any]:
    """One burst per offered rate, with a pause between them so each starts from an empty queue; first,
    each text's reference answer, asked on its own."""
    references = await reference_answers(base_url, texts, headers, variant)
    results = []
    for position, rate in enumerate(rates_per_s):
        if position:
            await asyncio.sleep(pause_s)
        rss_before_mb = await server_rss_mb(base_url)
        references.reset_tally()
        started = time.perf_counter()
        answers = await burst(base_url, requests, rate, texts, headers, texts_per_request, references)
        summary = summarize(answers, rate, time.perf_counter() - started, references)
        summary |= {"server_rss_before_mb": rss_before_mb, "server_rss_after_mb": await server_rss_mb(base_url)}
        results.append(summary)
    return {"url": base_url, "requests_per_rate": requests, "texts_per_request": texts_per_request,
            "variant": references.variant, "reference_policy": "error" if references.strict else "share",
            "runs": results}


def _rate(text: str) -> float:
    return math.inf if text.strip().lower() in ("inf", "burst") else float(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="base URL of the service, e.g. http://127.0.0.1:8000")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_REQUESTS} requests at rates {QUICK_RATES_PER_S}")
    parser.add_argument("--rates", help="comma-separated offered rates per second; 'inf' = all at once")
    parser.add_argument("--requests", type=int, help="requests per rate")
    parser.add_argument("--text", action="append", help="text to translate (repeatable); default: a few sentences")
    parser.add_argument("--texts-per-request", type=int, default=1,
                        help="engine rows each request asks for (different texts: a repeated one is decoded once)")
    parser.add_argument("--api-key", help="sent as a Bearer token")
    parser.add_argument("--out", type=Path, help="also write the JSON report here")
    args = parser.parse_args(argv)
    rates = tuple(_rate(r) for r in args.rates.split(",")) if args.rates else (
        QUICK_RATES_PER_S if args.quick else FULL_RATES_PER_S
    )
    requests = args.requests or (QUICK_REQUESTS if args.quick else FULL_REQUESTS)
    texts = tuple(args.text) if args.text else DEFAULT_TEXTS
    if args.texts_per_request > len(set(texts)):  # the service decodes a request's repeated sentence once
        parser.error(f"--texts-per-request {args.texts_per_request} needs as many different texts; "
                     f"{len(set(texts))} given")
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else None
    machine = describe_machine()  # before the run: the load average says whether the machine was quiet
    try:
        report = json_safe(asyncio.run(run_overload(
            args.url.rstrip("/"), rates, requests, texts, headers=headers, texts_per_request=args.texts_per_request
        )))
    except RuntimeError as exc:  # no reference answers: the server cannot be judged
        print(f"[overload] {exc}", file=sys.stderr)
        return 1
    command_args = [a for a in (argv if argv is not None else sys.argv[1:]) if not a.startswith("--api-key")]
    report |= {"command": "python -m loadtest.overload " + " ".join(command_args), "machine": machine}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    # Anything but held or shed (a 500, a hang, a refused connection, a wrong answer) is a failure of the service.
    return 1 if any(run["unexpected"] or run["wrong_answers"] for run in report["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main())
