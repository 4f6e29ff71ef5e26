"""checkov security scan of every rendered overlay and every Dockerfile: no failed check, and every
skip carries its reason inline (checkov.io/skipN annotations, `# checkov:skip=ID: reason` comments).

About 7-12 s on 2 busy cores (measured), so it is marked slow; it runs offline (--skip-download).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from deploy_tools import DEPLOY_DIR, find_tool


def run_checkov(scan_args: list[str]) -> list[dict]:
    args = [find_tool("checkov"), "--skip-download", "--output", "json", *scan_args]
    # checkov exits 1 on failed checks: read its report, which says which and why.
    result = subprocess.run(args, capture_output=True, text=True, timeout=300)
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"checkov gave no JSON report:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return report if isinstance(report, list) else [report]


@pytest.mark.slow
def test_checkov_finds_nothing_unjustified(rendered_overlays: dict[str, list[dict]], tmp_path: Path) -> None:
    for name, objects in rendered_overlays.items():
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump_all(objects), encoding="utf-8")
    scans = [
        ["--framework", "kubernetes", "--directory", str(tmp_path)],
        ["--framework", "dockerfile"]
        + [arg for path in sorted(DEPLOY_DIR.glob("Dockerfile*")) for arg in ("--file", str(path))],
    ]
    reports = []
    for scan in scans:
        reports += run_checkov(scan)
    checked = {report["check_type"] for report in reports}
    assert {"kubernetes", "dockerfile"} <= checked, checked
    failed = [
        f"{check['check_id']} {check['check_name']} in {check['resource']} ({check['file_path']})"
        for report in reports
        for check in report["results"]["failed_checks"]
    ]
    assert not failed, "checkov findings (fix them, or skip inline with a reason):\n" + "\n".join(failed)
    for report in reports:
        assert report["summary"]["passed"] > 0
        for check in report["results"]["skipped_checks"]:
            reason = (check.get("check_result") or {}).get("suppress_comment", "")
            assert len(reason.strip()) > 10, f"{check['check_id']} skipped without a reason"
