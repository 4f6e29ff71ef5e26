"""Prometheus metrics of the service: one class, its own CollectorRegistry, fed by plain stats objects.

The engine knows nothing of Prometheus: it hands `StepStats` to `observe_step`. Label values are
bounded (route templates, fixed reasons, configured model names), never user text.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from service.engine import SchedulerSnapshot, StepStats

REJECT_REASONS = (
    "overloaded", "deadline", "draining", "invalid", "unauthorized", "too_large", "body_timeout", "failed"
)
# What became of a sentence translated again to copy what it left out (service.api.translation).
COPY_OUTCOMES = ("copied", "as_written", "lost")
CONTENT_TYPE = CONTENT_TYPE_LATEST

_LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


class ServiceMetrics:
    """Every metric the service exports; one instance per app, so tests never share counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # process_resident_memory_bytes, process_cpu_seconds_total, open fds: memory must stay bounded
        # under overload, and operators alert on it.
        ProcessCollector(registry=r)
        self.http_requests = Counter(
            "translator_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.http_duration = Histogram(
            "translator_http_request_duration_seconds",
            "Time from request start to response end.",
            ["route"],
            buckets=_LATENCY_BUCKETS_S,
            registry=r,
        )
        # A sentence's time in the engine, by phase (a text of several sentences has one of each per sentence).
        def phase(name: str, documentation: str) -> Histogram:
            return Histogram(name, documentation, buckets=_LATENCY_BUCKETS_S, registry=r)

        self.queue_wait = phase(
            "translator_queue_wait_seconds",
            "Time a sentence waited in the engine's queue before its encoding began, or before it left the queue "
            "unencoded (its deadline passed, its client left).",
        )
        self.encode_duration = phase(
            "translator_encode_seconds",
            "Time from a sentence's admission until its decoder lane took it over (its encoder call).",
        )
        self.decode_duration = phase(
            "translator_decode_seconds", "Time from joining a decoder lane until the sentence's last row ended."
        )
        self.queue_depth = Gauge("translator_queue_depth", "Requests waiting for admission.", registry=r)
        self.inflight = Gauge(
            "translator_http_inflight_requests",
            "Translation requests inside the service (admitted at the HTTP edge, not yet answered).",
            registry=r,
        )
        self.active_rows = Gauge(
            "translator_active_rows", "Decoder rows in the running batches (all lanes).", registry=r
        )
        self.batch_rows = Histogram(
            "translator_batch_rows",
            "Live rows per decoder step (the batch size of one lane).",
            buckets=_ROW_BUCKETS,
            registry=r,
        )
        self.encoder_calls = Counter("translator_encoder_calls", "Batched encoder calls.", registry=r)
        self.encoder_rows = Histogram(
            "translator_encoder_rows",
            "Rows admitted per encoder call.",
            buckets=_ROW_BUCKETS,
            registry=r,
        )
        self.decoder_steps = Counter(
            "translator_decoder_steps", "Decoder steps run (each lane steps its own rows).", registry=r
        )
        self.generated_tokens = Counter(
            "translator_generated_tokens",
            "Target tokens generated for finished requests.",
            registry=r,
        )
        self.truncated = Counter(
            "translator_truncated_sentences",
            "Sentences whose translation was stopped at its length limit where the model would have gone "
            "on (a max_length set too low, or a model looping).",
            registry=r,
        )
        self.copy_retries = Counter(
            "translator_copy_retries",
            "Sentences translated again because their translation left out text it can only copy (a URL, "
            "a number kept verbatim, a character the vocabulary lacks), by outcome: copied (a beam that had "
            "to write it did), as_written (translated as written instead, the address given to the model "
            "as text), lost (answered without it).",
            ["outcome"],
            registry=r,
        )
        # Its distribution moves when the texts sent move away from what the model knows (another domain,
        # another language, garbage): the dashboard shows it per model, beside the test sets' medians.
        self.confidence = Histogram(
            "translator_sentence_confidence",
            "Per translated sentence, the geometric mean of the probabilities the model gave its tokens "
            "(service.engine.confidence), by model name.",
            ["model"],
            buckets=_CONFIDENCE_BUCKETS,
            registry=r,
        )
        self.cache_lookups = Counter(
            "translator_cache_lookups",
            "Sentences answered, by where the engine's result came from: hit (the translation cache, "
            "TRANSLATOR_CACHE_MB), shared (the same sentence with the same options decoded once for several: "
            "in the engine for another request at that moment, or repeated within the request) or miss "
            "(decoded for this request; kept in the cache when it is on). A refused request counts nothing.",
            ["result"],
            registry=r,
        )
        self.html_runs = Counter(
            "translator_html_runs",
            "Runs of HTML text joined by inline elements (LibreTranslate format html: \"Click <b>Save</b> now\"), "
            "by how their markup came back: carried (translated as one text, each element put around the words "
            "aligned to its own by attention) or node_by_node (the alignment could not place the elements as "
            "the source nests them: each text node translated on its own).",
            ["markup"],
            registry=r,
        )
        self.cache_bytes = Gauge(
            "translator_cache_bytes",
            "Estimated bytes the translation caches hold (service.engine.result_cache.entry_bytes), at most "
            "TRANSLATOR_CACHE_MB per loaded model version.",
            registry=r,
        )
        self.padding_waste = Gauge(
            "translator_padding_waste_ratio",
            "Fraction of source positions (encoder and decoder steps) that were padding, since start.",
            registry=r,
        )
        self.padded_positions = Counter(
            "translator_padded_source_positions",
            "Padded source positions processed.",
            registry=r,
        )
        self.source_positions = Counter(
            "translator_source_positions",
            "Source positions processed (real + padding).",
            registry=r,
        )
        # Counted once per HTTP request by the API's error handler, not per scheduler row.
        self.rejected = Counter(
            "translator_requests_rejected",
            "HTTP requests refused or failed, by reason.",
            ["reason"],
            registry=r,
        )
        self.model_info = Gauge(
            "translator_model_info",
            "Loaded model versions (value 1).",
            ["name", "version", "variant", "provider"],
            registry=r,
        )
        self.ready = Gauge("translator_ready", "1 when the service accepts work, else 0.", registry=r)
        self.model_load_failures = Counter(
            "translator_model_load_failures",
            "Model versions that failed to load.",
            registry=r,
        )
        for reason in REJECT_REASONS:  # export zeros so rate() works before the first rejection
            self.rejected.labels(reason=reason)
        for outcome in COPY_OUTCOMES:
            self.copy_retries.labels(outcome=outcome)
        for markup in ("carried", "node_by_node"):
            self.html_runs.labels(markup=markup)
        self._cache_hits, self._cache_shared, self._cache_misses = (
            self.cache_lookups.labels(result=result) for result in ("hit", "shared", "miss"))
        self._padded_total = 0
        self._positions_total = 0
        self._http_counters: dict[tuple[str, str, int], Any] = {}
        self._http_durations: dict[str, Any] = {}

    def observe_http(self, route: str, method: str, status: int, duration_seconds: float) -> None:
        # The labelled children are looked up once per label set (prometheus_client's labels() costs
        # more than the increment, on the event loop, per request); routes are templates, so bounded.
        counter = self._http_counters.get((route, method, status))
        if counter is None:
            counter = self._http_counters[(route, method, status)] = self.http_requests.labels(
                route=route, method=method, status=str(status))
        histogram = self._http_durations.get(route)
        if histogram is None:
            histogram = self._http_durations[route] = self.http_duration.labels(route=route)
        counter.inc()
        histogram.observe(duration_seconds)

    def track_inflight(self, in_flight: Callable[[], float]) -> None:
        """The in-flight gauge reads `in_flight()` at scrape time: no metric update per request."""
        self.inflight.set_function(in_flight)

    def reject(self, reason: str) -> None:
        if reason not in REJECT_REASONS:
            raise ValueError(f"unknown reject reason {reason!r}")
        self.rejected.labels(reason=reason).inc()

    def observe_step(self, stats: StepStats) -> None:
        """Scheduler callback, after each encoding and decoder report; runs on the event loop, so it must stay cheap."""
        if stats.encoder_calls:
            self.encoder_calls.inc(stats.encoder_calls)
            self.encoder_rows.observe(stats.rows_admitted / stats.encoder_calls)
        if stats.step_rows:
            self.decoder_steps.inc(len(stats.step_rows))
            for rows in stats.step_rows:
                self.batch_rows.observe(rows)
        for queue_wait_seconds, encode_seconds, decode_seconds, generated_tokens, truncated in stats.finished:
            self.queue_wait.observe(queue_wait_seconds)
            self.encode_duration.observe(encode_seconds)
            self.decode_duration.observe(decode_seconds)
            self.generated_tokens.inc(generated_tokens)
            if truncated:
                self.truncated.inc()
        for queue_wait_seconds in stats.unadmitted_queue_waits:
            self.queue_wait.observe(queue_wait_seconds)
        # Padding of the encoder batch and of the memory every decoder step attends over.
        padded = stats.padded_source_positions + stats.decoder_padded_source_positions
        positions = stats.total_source_positions + stats.decoder_total_source_positions
        if positions:
            self.padded_positions.inc(padded)
            self.source_positions.inc(positions)
            self._padded_total += padded
            self._positions_total += positions
            self.padding_waste.set(self._padded_total / self._positions_total)
        self.queue_depth.set(stats.queue_depth)
        self.active_rows.set(stats.active_rows)

    def observe_copy_retry(self, outcome: str) -> None:
        if outcome not in COPY_OUTCOMES:
            raise ValueError(f"unknown copy retry outcome {outcome!r}")
        self.copy_retries.labels(outcome=outcome).inc()

    def observe_markup(self, carried: int, uncarried: int) -> None:
        if carried:
            self.html_runs.labels(markup="carried").inc(carried)
        if uncarried:
            self.html_runs.labels(markup="node_by_node").inc(uncarried)

    def observe_cache(self, hits: int, shared: int, misses: int) -> None:
        if hits:
            self._cache_hits.inc(hits)
        if shared:
            self._cache_shared.inc(shared)
        if misses:
            self._cache_misses.inc(misses)

    def observe_confidence(self, model: str, confidence: float) -> None:
        self.confidence.labels(model=model).observe(confidence)

    def observe_snapshots(self, snapshots: Iterable[SchedulerSnapshot]) -> None:
        """Refresh the gauges at scrape time, so an idle service does not report its last busy step."""
        snapshots = list(snapshots)
        self.queue_depth.set(sum(s.queue_depth for s in snapshots))
        self.active_rows.set(sum(s.active_rows for s in snapshots))

    def set_model_info(self, name: str, version: str, variant: str, provider: str) -> None:
        self.model_info.labels(name=name, version=version, variant=variant, provider=provider).set(1)
        self.confidence.labels(model=name)  # exported (empty) from the load on, so rate() works at once

    def clear_model_info(self, name: str, version: str, variant: str, provider: str) -> None:
        with contextlib.suppress(KeyError):
            self.model_info.remove(name, version, variant, provider)

    def set_ready(self, ready: bool) -> None:
        self.ready.set(1 if ready else 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
