"""The Grafana dashboard (no Grafana here): its JSON structure, a layout without overlaps, every
query valid PromQL for promtool, every metric it reads one the service exports, and the panels whose
queries are easy to get wrong evaluated by promtool over synthetic series."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml
from deploy_tools import DEPLOY_DIR, find_tool, metric_family, promql_metric_names, run_tool

DASHBOARD = json.loads((DEPLOY_DIR / "grafana" / "dashboard.json").read_text(encoding="utf-8"))
PANELS = [panel for panel in DASHBOARD["panels"] if panel["type"] != "row"]
# Grafana variables replaced by what Grafana would send, so promtool can parse the query.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "1h", "$namespace": ".*", "$route": ".*"}
# Exported but deliberately not on the dashboard, each with the reason.
NOT_SHOWN = {
    # A ratio since the process started: it barely moves after a while and restarts with every pod.
    # The padding panel divides the rates of the two position counters instead.
    "translator_padding_waste_ratio",
}
GRID_COLUMNS = 24


def expanded(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def all_exprs() -> list[str]:
    return [target["expr"] for panel in PANELS for target in panel["targets"]]


def test_dashboard_has_the_grafana_fields() -> None:
    assert DASHBOARD["uid"] and DASHBOARD["title"]
    assert isinstance(DASHBOARD["schemaVersion"], int) and DASHBOARD["schemaVersion"] >= 36
    variables = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in PANELS:
        assert panel["title"] and panel["type"] in {"timeseries", "stat", "table", "gauge", "bargauge"}
        assert panel["datasource"]["uid"] == "${datasource}"
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert panel["targets"] and len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["datasource"]["uid"] == "${datasource}"
        for variable in ("$namespace",):
            assert all(variable in target["expr"] for target in panel["targets"]), panel["title"]


def test_panels_tile_the_grid_without_overlap() -> None:
    occupied: dict[tuple[int, int], str] = {}
    for panel in DASHBOARD["panels"]:
        grid = panel["gridPos"]
        assert grid["w"] >= 1 and grid["h"] >= 1 and grid["x"] >= 0 and grid["x"] + grid["w"] <= GRID_COLUMNS
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in occupied, f"{panel['title']} overlaps {occupied[(x, y)]}"
                occupied[(x, y)] = panel["title"]


@pytest.mark.parametrize(
    "topic", ["throughput", "latency", "queue depth", "queue wait", "batch size", "error", "model"]
)
def test_dashboard_covers(topic: str) -> None:
    assert any(topic in panel["title"].lower() for panel in PANELS), f"no panel about {topic}"


def test_dashboard_reads_only_exported_metrics(exported_metrics: set[str]) -> None:
    used = {metric_family(name, exported_metrics) for expr in all_exprs() for name in promql_metric_names(expr)}
    assert used, "no metric found: the PromQL name extraction is broken"
    assert used <= exported_metrics, f"not exported by the service: {sorted(used - exported_metrics)}"
    # Every metric the service exports is on the dashboard somewhere (model_info drives per-model panels).
    not_shown = exported_metrics - NOT_SHOWN - used
    assert not not_shown, f"exported but not shown: {sorted(not_shown)}"
    assert exported_metrics >= NOT_SHOWN and not NOT_SHOWN & used, "NOT_SHOWN is out of date"


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query as a recording rule (Grafana variables replaced first)."""
    rules = [{"record": f"dashboard:query:{i}", "expr": expanded(expr)} for i, expr in enumerate(all_exprs())]
    rules_path = tmp_path / "dashboard_queries.yml"
    rules_path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8")
    output = run_tool([find_tool("promtool"), "check", "rules", str(rules_path)])
    assert f"SUCCESS: {len(rules)} rules found" in output


def test_metric_name_extraction_handles_joins_and_literals() -> None:
    expr = (
        'sum by (name) (rate(a_total{route!~"/x|/y"}[5m]) * on (pod) group_left (name) b_info)'
        " / clamp_min(c_count, 1e-9) > bool 0.5"
    )
    assert promql_metric_names(expr) == {"a_total", "b_info", "c_count"}


def panel_expr(title_start: str) -> str:
    (panel,) = [panel for panel in PANELS if panel["title"].startswith(title_start)]
    (target,) = panel["targets"]
    return expanded(target["expr"])


def evaluate_with_promtool(
    tmp_path: Path, expr: str, input_series: Mapping[str, str], expected: Mapping[str, float]
) -> None:
    """promtool evaluates `expr` at 10m over `input_series` (1m apart) and compares every sample: an
    expression that fails at query time (many-to-many matching, duplicate series) fails the test too."""
    empty_rules = tmp_path / "no_rules.yml"
    empty_rules.write_text("groups: []\n", encoding="utf-8")
    tests = {
        "rule_files": [str(empty_rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": series, "values": values} for series, values in input_series.items()],
                "promql_expr_test": [
                    {
                        "expr": expr,
                        "eval_time": "10m",
                        "exp_samples": [{"labels": labels, "value": value} for labels, value in expected.items()],
                    }
                ],
            }
        ],
    }
    tests_path = tmp_path / "dashboard_test.yml"
    tests_path.write_text(yaml.safe_dump(tests), encoding="utf-8")
    output = run_tool([find_tool("promtool"), "test", "rules", str(tests_path)])
    assert "SUCCESS" in output


def test_per_model_traffic_with_two_models_in_one_pod(tmp_path: Path) -> None:
    """The service can load several models in one process and its requests carry no model label: a
    pod's traffic counts toward each model it serves, and the join must not fail on such a pod."""
    requests = 'translator_http_requests_total{namespace="translator",route="/v1/translate",method="POST",status="200"'
    info = 'translator_model_info{namespace="translator",variant="fp32",provider="cpu"'
    input_series = {
        requests.replace("{", '{pod="a",') + "}": "0+60x10",  # 1 request/s
        requests.replace("{", '{pod="b",') + "}": "0+120x10",  # 2 requests/s
        # Probes are not traffic.
        'translator_http_requests_total{namespace="translator",pod="b",route="/readyz",method="GET",status="200"}': (
            "0+600x10"
        ),
        info.replace("{", '{pod="a",name="en-de",version="3",') + "}": "1x10",
        info.replace("{", '{pod="a",name="de-en",version="1",') + "}": "1x10",
        info.replace("{", '{pod="b",name="en-de",version="4",') + "}": "1x10",
    }
    expected = {'{name="en-de",version="3"}': 1, '{name="de-en",version="1"}': 1, '{name="en-de",version="4"}': 2}
    evaluate_with_promtool(tmp_path, panel_expr("Per-model traffic"), input_series, expected)


def test_padding_waste_is_a_ratio_of_rates(tmp_path: Path) -> None:
    """Pod a padded 30 of every 100 source positions since start, but none lately: the panel shows the
    recent share (0), not the share since start."""
    input_series = {
        'translator_padded_source_positions_total{namespace="translator",pod="a"}': "0+300x5 1500x5",
        'translator_source_positions_total{namespace="translator",pod="a"}': "0+1000x10",
        'translator_padded_source_positions_total{namespace="translator",pod="b"}': "0+100x10",
        'translator_source_positions_total{namespace="translator",pod="b"}': "0+400x10",
    }
    evaluate_with_promtool(tmp_path, panel_expr("Padding waste"), input_series, {'{pod="a"}': 0, '{pod="b"}': 0.25})
