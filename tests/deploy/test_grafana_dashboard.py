"""The Grafana dashboard (no Grafana here): its JSON structure, a layout without overlaps, every
query valid PromQL for promtool, and every metric it reads one the service exports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from deploy_tools import DEPLOY_DIR, find_tool, metric_family, promql_metric_names, run_tool

DASHBOARD = json.loads((DEPLOY_DIR / "grafana" / "dashboard.json").read_text(encoding="utf-8"))
PANELS = [panel for panel in DASHBOARD["panels"] if panel["type"] != "row"]
# Grafana variables replaced by what Grafana would send, so promtool can parse the query.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$namespace": ".*", "$route": ".*"}
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
    assert exported_metrics <= used, f"exported but not shown: {sorted(exported_metrics - used)}"


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
