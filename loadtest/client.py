"""The benchmark's load generator: an asyncio + aiohttp client, closed loop (fixed concurrency, for
saturation throughput) or open loop (Poisson arrivals at a fixed offered rate, for latency under load).

aiohttp rather than httpx: the client shares the machine with the server under test, and httpx spent
about 7 ms of CPU per request here against aiohttp's 0.9 ms, which capped what any server could show.

Every request is one sentence to POST /v1/translate; an answer counts only if it is well formed and,
given the server's reference answers (each sentence asked on its own before the load), the same as its
reference: fp32 answers that differ are errors, int8's are counted (`Reference.strict`).
Must not import locust (gevent), service, onnxruntime or torch.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from loadtest.answers import degenerate_references, translation_problem
from loadtest.sentences import Sentence, forced_length_tokens

TRANSLATE_PATH = "/v1/translate"
REQUEST_TIMEOUT_S = 120.0
TEXTS_PER_REQUEST = 32  # translations(): texts per POST


@dataclass(frozen=True)
class Outcome:
    sentence: int  # index into the run's sentence list
    latency_s: float
    output: str | None  # the translation; None when the request failed
    error: str | None = None
    # The service's Server-Timing header: the engine's queue/encode/decode ms for the request's slowest
    # sentence (None from servers without it, such as the naive baseline).
    server_timing_ms: dict[str, float] | None = None
    checked: bool = False  # compared with the server's reference answer for the sentence
    differs: bool = False  # ... and not the same (an error when the reference is strict)


@dataclass(frozen=True)
class Reference:
    """One server's own answers to the run's sentences, asked one request at a time before the load
    (index -> translation). strict: an answer under load that differs is an error (fp32, whose answers
    do not depend on the batch); else it is only counted (int8)."""

    answers: Sequence[str | None]
    strict: bool = True


@dataclass
class RunRecord:
    """Everything one load run saw; `elapsed_s` runs from the first send to the last answer."""

    outcomes: list[Outcome] = field(default_factory=list)
    elapsed_s: float = 0.0
    offered_rate_per_s: float | None = None  # open loop only
    dropped: int = 0  # open loop: arrivals not sent because too many were outstanding

    @property
    def ok(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.output is not None]

    @property
    def errors(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.output is None]


def translate_payload(sentence: Sentence, force_lengths: bool) -> dict[str, Any]:
    payload: dict[str, Any] = {"text": sentence.english}
    if force_lengths:
        payload["max_length"] = forced_length_tokens(sentence)
    return payload


def _translation(status: int, text: str) -> tuple[str | None, str | None]:
    """-> (translation, None) or (None, why the answer is wrong)."""
    if status != 200:
        return None, f"HTTP {status}: {text[:200]}"
    try:
        body = json.loads(text)
    except ValueError:
        return None, f"not JSON: {text[:200]}"
    if problem := translation_problem(body, 1):
        return None, problem
    return str(body["translations"][0]["text"]), None


def parse_server_timing(header: str | None) -> dict[str, float] | None:
    """'queue;dur=1.2, encode;dur=2.5' -> {'queue': 1.2, 'encode': 2.5}; None without a header."""
    if not header:
        return None
    phases: dict[str, float] = {}
    for metric in header.split(","):
        name, *params = (part.strip() for part in metric.split(";"))
        for param in params:
            key, _, value = param.partition("=")
            if key == "dur":
                phases[name] = float(value)
    return phases


async def _send(client: aiohttp.ClientSession, index: int, payload: dict[str, Any], started: float,
                reference: Reference | None = None) -> Outcome:
    try:
        async with client.post(TRANSLATE_PATH, json=payload) as response:
            status, text = response.status, await response.text()
            timing = parse_server_timing(response.headers.get("server-timing"))
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return Outcome(index, time.perf_counter() - started, None, f"{type(exc).__name__}: {exc}")
    latency_s = time.perf_counter() - started
    output, error = _translation(status, text)
    expected = reference.answers[index] if reference is not None and output is not None else None
    if expected is None:
        return Outcome(index, latency_s, output, error, timing)
    if output == expected:
        return Outcome(index, latency_s, output, None, timing, checked=True)
    if reference is not None and reference.strict:
        return Outcome(index, latency_s, None, f"differs from this server's sequential answer: {output!r:.80} "
                       f"instead of {expected!r:.80}", timing, checked=True, differs=True)
    return Outcome(index, latency_s, output, None, timing, checked=True, differs=True)


def _client(base_url: str, connections: int, headers: dict[str, str] | None = None) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    return aiohttp.ClientSession(base_url, connector=connector, timeout=timeout, headers=headers)


async def closed_loop(base_url: str, sentences: Sequence[Sentence], concurrency: int, duration_s: float,
                      force_lengths: bool, start_index: int = 0, reference: Reference | None = None) -> RunRecord:
    """`concurrency` workers, each sending its next sentence as soon as the last answer arrived,
    until `duration_s` has passed; requests in flight then are awaited and counted. With a
    `reference`, each answer is compared with the server's own sequential answer to its sentence."""
    record = RunRecord()
    payloads = [translate_payload(s, force_lengths) for s in sentences]
    counter = iter(range(start_index, 1 << 62))
    async with _client(base_url, concurrency) as client:
        begin = time.perf_counter()
        stop_at = begin + duration_s

        async def worker() -> None:
            while time.perf_counter() < stop_at:
                index = next(counter) % len(payloads)
                record.outcomes.append(await _send(client, index, payloads[index], time.perf_counter(), reference))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        record.elapsed_s = time.perf_counter() - begin
    return record


def poisson_arrivals(rate_per_s: float, duration_s: float, count: int, seed: int) -> list[tuple[float, int]]:
    """(send offset in seconds, sentence index) pairs: exponential gaps, uniformly drawn sentences;
    the same seed gives every configuration the same schedule."""
    rng = random.Random(seed)
    arrivals: list[tuple[float, int]] = []
    at = rng.expovariate(rate_per_s)
    while at < duration_s:
        arrivals.append((at, rng.randrange(count)))
        at += rng.expovariate(rate_per_s)
    return arrivals


async def open_loop(base_url: str, sentences: Sequence[Sentence], rate_per_s: float, duration_s: float,
                    force_lengths: bool, seed: int = 0, max_outstanding: int = 2048,
                    reference: Reference | None = None) -> RunRecord:
    """Send on a fixed Poisson schedule whatever the answers do. Latency runs from the scheduled send
    time, so a client that fell behind does not hide the server's queueing (coordinated omission).
    An arrival due while `max_outstanding` requests are unanswered is not sent and counted in
    `dropped` (the summaries count it as a failure, not leave it out)."""
    record = RunRecord(offered_rate_per_s=rate_per_s)
    payloads = [translate_payload(s, force_lengths) for s in sentences]
    schedule = poisson_arrivals(rate_per_s, duration_s, len(payloads), seed)
    async with _client(base_url, max_outstanding) as client:
        begin = time.perf_counter()
        sent: list[asyncio.Task[Outcome]] = []
        outstanding = 0

        def finished(_: asyncio.Task[Outcome]) -> None:
            nonlocal outstanding
            outstanding -= 1

        for offset, index in schedule:
            delay = begin + offset - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if outstanding >= max_outstanding:
                record.dropped += 1
                continue
            task = asyncio.ensure_future(_send(client, index, payloads[index], begin + offset, reference))
            outstanding += 1
            task.add_done_callback(finished)
            sent.append(task)
        record.outcomes = list(await asyncio.gather(*sent))
        record.elapsed_s = time.perf_counter() - begin
    return record


async def sequential(base_url: str, payload: dict[str, Any], requests: int) -> list[float]:
    """Latencies (s) of `requests` requests sent one after another on one kept-alive connection."""
    latencies: list[float] = []
    async with _client(base_url, 1) as client:
        for _ in range(requests):
            outcome = await _send(client, 0, payload, time.perf_counter())
            if outcome.output is None:
                raise RuntimeError(f"unloaded request failed: {outcome.error}")
            latencies.append(outcome.latency_s)
    return latencies


async def translate_each(base_url: str, sentences: Sequence[Sentence], force_lengths: bool) -> list[str | None]:
    """Each sentence's translation (None where it failed), sent one after another."""
    return [o.output for o in await sequential_outcomes(base_url, sentences, force_lengths)]


async def sequential_outcomes(base_url: str, sentences: Sequence[Sentence], force_lengths: bool,
                              headers: dict[str, str] | None = None) -> list[Outcome]:
    """Each sentence translated on its own, one request after another (nothing else in the server's batch)."""
    async with _client(base_url, 1, headers) as http:
        return [await _send(http, i, translate_payload(s, force_lengths), time.perf_counter())
                for i, s in enumerate(sentences)]


class ReferencePassError(RuntimeError):
    """A server's reference pass failed: some sentence had no well-formed answer, or the answers are
    not translations (degenerate)."""


def reference_from(outcomes: Sequence[Outcome], sentences: Sequence[Sentence], strict: bool) -> Reference:
    """The Reference of a server from its sequential answers; raises ReferencePassError when a sentence
    failed or the answers are degenerate (the same few answers for many sentences)."""
    failed = [o for o in outcomes if o.output is None]
    if failed:
        raise ReferencePassError(f"{len(failed)} of {len(outcomes)} sentences asked one at a time got no well-formed "
                              f"answer (first: {sentences[failed[0].sentence].english!r:.60}: {failed[0].error})")
    answers = [o.output for o in outcomes]
    if problem := degenerate_references([s.english for s in sentences], answers):
        raise ReferencePassError(problem)
    return Reference(answers, strict)


async def references(base_urls: dict[str, str], sentences: Sequence[Sentence], force_lengths: bool,
                     strict: dict[str, bool]) -> dict[str, Reference | ReferencePassError]:
    """Every server's Reference, the servers asked side by side (each one request at a time)."""
    names = list(base_urls)
    passes = await asyncio.gather(*(sequential_outcomes(base_urls[n], sentences, force_lengths) for n in names))
    result: dict[str, Reference | ReferencePassError] = {}
    for name, outcomes in zip(names, passes, strict=True):
        try:
            result[name] = reference_from(outcomes, sentences, strict[name])
        except ReferencePassError as exc:
            result[name] = exc
    return result


def run(coroutine_factory: Callable[[], Any]) -> Any:
    """asyncio.run on uvloop when it is installed (a lighter client leaves more CPU to the server)."""
    try:
        import uvloop

        return uvloop.run(coroutine_factory())
    except ImportError:
        return asyncio.run(coroutine_factory())


def translations(base_url: str, texts: Sequence[str], per_request: int = TEXTS_PER_REQUEST,
                 **options: Any) -> list[dict[str, Any]]:
    """The service's translation items (text, truncated, confidence, alternatives) for `texts`, in
    order: plain synchronous requests of `per_request` texts each, with `options` (e.g. alternatives=7)
    in every body, for tools that score answers or load the server, not time them."""
    items: list[dict[str, Any]] = []
    for start in range(0, len(texts), per_request):
        body = json.dumps({"texts": list(texts[start:start + per_request]), **options}).encode()
        request = urllib.request.Request(base_url + TRANSLATE_PATH, body, {"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=600) as response:
            items += json.load(response)["translations"]
    return items
