"""Prometheus rules, their promtool unit tests, the scrape configs and the ServiceMonitor: valid for
promtool, every alert tested both ways, and built only from metrics the service exports."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml
from deploy_tools import DEPLOY_DIR, find_tool, one, promql_metric_names, run_tool

PROMETHEUS_DIR = DEPLOY_DIR / "prometheus"
RULES = PROMETHEUS_DIR / "rules.yml"
REQUIRED_ALERTS = {
    "TranslatorHighErrorRatio",
    "TranslatorLatencyP99High",
    "TranslatorQueueRejecting",
    "TranslatorQueueWaitHigh",
    "TranslatorPodNotReady",
    "TranslatorNoReadyPods",
    "TranslatorTargetDown",
    "TranslatorModelLoadFailures",
}
# kube-state-metrics series (default collectors, no label allowlist needed), for what the service
# cannot report about itself: a pod that is loading has not opened its /metrics port yet.
KUBE_STATE_METRICS = {"kube_pod_status_ready", "kube_pod_status_phase", "kube_pod_owner"}


def all_rules() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_promtool_checks_the_rules() -> None:
    output = run_tool([find_tool("promtool"), "check", "rules", str(RULES)])
    assert f"SUCCESS: {len(all_rules())} rules found" in output


def test_promtool_unit_tests_of_the_alerts_pass() -> None:
    output = run_tool([find_tool("promtool"), "test", "rules", str(PROMETHEUS_DIR / "rules_test.yml")])
    assert "SUCCESS" in output


def test_every_alert_is_tested_firing_and_silent() -> None:
    alerts = {rule["alert"] for rule in all_rules() if "alert" in rule}
    assert alerts >= REQUIRED_ALERTS
    tests = yaml.safe_load((PROMETHEUS_DIR / "rules_test.yml").read_text(encoding="utf-8"))["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", [])]
    fired = {case["alertname"] for case in cases if case["exp_alerts"]}
    silent = {case["alertname"] for case in cases if not case["exp_alerts"]}
    assert alerts <= fired, f"never tested firing: {alerts - fired}"
    assert alerts <= silent, f"never tested silent: {alerts - silent}"


def test_rules_use_only_exported_metrics(exported_metrics: set[str]) -> None:
    recorded = {rule["record"] for rule in all_rules() if "record" in rule}
    for rule in all_rules():
        for name in promql_metric_names(rule["expr"]):
            family = name
            for suffix in ("_bucket", "_sum", "_count"):
                if name.endswith(suffix) and name.removesuffix(suffix) in exported_metrics:
                    family = name.removesuffix(suffix)
            assert family in exported_metrics | recorded | {"up"} | KUBE_STATE_METRICS, f"{rule}: unknown metric {name}"
    for name in recorded:
        # level:metric:operations naming, e.g. namespace:translator_http_requests:rate5m
        level, metric, operation = name.split(":")
        assert level and metric.startswith("translator_") and operation


def test_every_recording_rule_is_used() -> None:
    """A recording rule costs an evaluation and a series per group every interval: each must feed an
    alert or another recording rule (the dashboard queries raw series, with its own $namespace filter)."""
    rules = all_rules()
    used = {name for rule in rules for name in promql_metric_names(rule["expr"])}
    unused = {rule["record"] for rule in rules if "record" in rule} - used
    assert not unused, f"recording rules nothing reads: {unused}"


def test_kubernetes_scrape_config_is_valid(tmp_path: Path) -> None:
    """promtool check config; Debian's promtool is built without Kubernetes service discovery, so
    there the SD block is swapped for static targets and everything else is still checked."""
    promtool = find_tool("promtool")
    config_path = PROMETHEUS_DIR / "prometheus.yml"
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "translator")
    # The adapter rule and the alerts aggregate by these labels.
    targets = {r.get("target_label") for r in job["relabel_configs"]}
    assert {"namespace", "pod"} <= targets
    direct = subprocess.run([promtool, "check", "config", str(config_path)], capture_output=True, text=True)
    if direct.returncode == 0:
        return
    assert "field kubernetes_sd_configs not found" in direct.stdout + direct.stderr, direct.stdout
    for scrape in config["scrape_configs"]:
        if scrape.pop("kubernetes_sd_configs", None) is not None:
            scrape["static_configs"] = [{"targets": ["127.0.0.1:8000"]}]
    config["rule_files"] = [str(RULES)]
    swapped = tmp_path / "prometheus.yml"
    swapped.write_text(yaml.safe_dump(config), encoding="utf-8")
    output = run_tool([promtool, "check", "config", str(swapped)])
    assert "is valid prometheus config file syntax" in output


def test_service_monitor_selects_the_service(rendered_overlays: dict[str, list[dict]]) -> None:
    monitor = yaml.safe_load((PROMETHEUS_DIR / "servicemonitor.yaml").read_text(encoding="utf-8"))
    service = one(rendered_overlays["cpu"], "Service")
    assert monitor["kind"] == "ServiceMonitor"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [service["metadata"]["namespace"]]
    port_names = {port["name"] for port in service["spec"]["ports"]}
    assert {endpoint["port"] for endpoint in monitor["spec"]["endpoints"]} <= port_names
    assert all(endpoint["path"] == "/metrics" for endpoint in monitor["spec"]["endpoints"])


def test_pod_annotations_match_the_scrape_port(rendered_overlays: dict[str, list[dict]]) -> None:
    template = one(rendered_overlays["cpu"], "Deployment")["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    container = template["spec"]["containers"][0]
    http_port = next(p for p in container["ports"] if p["name"] == "http")["containerPort"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == http_port
    assert annotations["prometheus.io/path"] == "/metrics"
