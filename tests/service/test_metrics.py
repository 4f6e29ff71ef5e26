"""ServiceMetrics: the exported names, its own registry, and StepStats turned into counters."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.engine import FinishedRequest, SchedulerSnapshot, StepStats
from service.metrics import ServiceMetrics
from tests.deploy.deploy_tools import read_exported_metrics

# The metric names operators rely on (alerts, dashboard): one list, shared with deploy/.
REQUIRED = read_exported_metrics()


def samples(metrics: ServiceMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = metrics.render().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def stats(**overrides: object) -> StepStats:
    values: dict[str, object] = dict(
        encoder_calls=1,
        rows_admitted=3,
        requests_admitted=3,
        step_rows=(5,),
        padded_source_positions=2,
        total_source_positions=10,
        decoder_padded_source_positions=3,
        decoder_total_source_positions=10,
        generated_tokens=5,
        finished=(FinishedRequest(0.25, 0.125, 0.5, 7, True), FinishedRequest(0.25, 0.125, 0.5, 3, False)),
        unadmitted_queue_waits=(),
        failed=0,
        expired=0,
        cancelled=0,
        queue_depth=4,
        active_rows=5,
    )
    values.update(overrides)
    return StepStats(**values)  # type: ignore[arg-type]


def test_every_required_name_is_exported_by_a_fresh_instance() -> None:
    metrics = ServiceMetrics()
    metrics.set_model_info("en-de", "1", "fp32", "cpu")
    metrics.observe_http("/v1/translate", "POST", 200, 0.1)
    metrics.observe_step(stats())
    names = {name for name, _ in samples(metrics)}
    for name in REQUIRED:
        assert any(n == name or n.startswith(name + "_") for n in names), name


def test_instances_do_not_share_a_registry() -> None:
    first, second = ServiceMetrics(), ServiceMetrics()
    first.observe_http("/healthz", "GET", 200, 0.001)
    key = (
        "translator_http_requests_total",
        frozenset({("route", "/healthz"), ("method", "GET"), ("status", "200")}),
    )
    assert samples(first)[key] == 1.0
    assert key not in samples(second)


def test_step_stats_feed_counters_and_gauges() -> None:
    metrics = ServiceMetrics()
    metrics.observe_step(stats())
    metrics.observe_step(stats(encoder_calls=0, rows_admitted=0, finished=(), queue_depth=0, active_rows=2))
    # requests that left the queue unencoded (expired, client gone) waited too: counted, not lost
    metrics.observe_step(stats(encoder_calls=0, rows_admitted=0, step_rows=(), finished=(), queue_depth=0,
                               active_rows=2, unadmitted_queue_waits=(15.0,), generated_tokens=0,
                               padded_source_positions=0, total_source_positions=0,
                               decoder_padded_source_positions=0, decoder_total_source_positions=0))
    values = samples(metrics)
    assert values[("translator_encoder_calls_total", frozenset())] == 1
    assert values[("translator_decoder_steps_total", frozenset())] == 2
    assert values[("translator_generated_tokens_total", frozenset())] == 10
    assert values[("translator_truncated_sentences_total", frozenset())] == 1
    assert values[("translator_queue_wait_seconds_count", frozenset())] == 3
    assert values[("translator_queue_wait_seconds_sum", frozenset())] == pytest.approx(15.5)
    assert values[("translator_encode_seconds_sum", frozenset())] == pytest.approx(0.25)
    assert values[("translator_decode_seconds_sum", frozenset())] == pytest.approx(1.0)
    assert values[("translator_decode_seconds_count", frozenset())] == 2
    assert values[("translator_batch_rows_count", frozenset())] == 2
    assert values[("translator_encoder_rows_sum", frozenset())] == 3
    assert values[("translator_queue_depth", frozenset())] == 0
    assert values[("translator_active_rows", frozenset())] == 2
    assert values[("translator_padding_waste_ratio", frozenset())] == pytest.approx(10 / 40)


def test_snapshots_refresh_gauges_and_reasons_are_bounded() -> None:
    metrics = ServiceMetrics()
    snapshot = SchedulerSnapshot(
        queue_depth=3,
        active_rows=7,
        active_requests=2,
        mode="continuous",
        running=True,
        draining=False,
        max_batch_rows=64,
    )
    metrics.observe_snapshots([snapshot, snapshot])
    metrics.reject("overloaded")
    values = samples(metrics)
    assert values[("translator_queue_depth", frozenset())] == 6
    assert values[("translator_active_rows", frozenset())] == 14
    assert values[("translator_requests_rejected_total", frozenset({("reason", "overloaded")}))] == 1
    assert values[("translator_requests_rejected_total", frozenset({("reason", "deadline")}))] == 0
    with pytest.raises(ValueError):
        metrics.reject("some user text")


def test_model_info_is_replaced_not_accumulated() -> None:
    metrics = ServiceMetrics()
    metrics.set_model_info("en-de", "1", "fp32", "cpu")
    metrics.clear_model_info("en-de", "1", "fp32", "cpu")
    metrics.set_model_info("en-de", "2", "fp32", "cpu")
    infos = [labels for name, labels in samples(metrics) if name == "translator_model_info"]
    assert infos == [frozenset({("name", "en-de"), ("version", "2"), ("variant", "fp32"), ("provider", "cpu")})]
    metrics.set_ready(True)
    assert samples(metrics)[("translator_ready", frozenset())] == 1
