"""What the numbers were measured on: CPU model, cores, load, library versions, date.

Stdlib only (library versions are read from installed metadata, nothing heavy is imported).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

# onnxruntime-gpu installs the same `onnxruntime` module under another distribution name.
PACKAGES = ("onnxruntime", "onnxruntime-gpu", "numpy", "torch", "fastapi", "uvicorn", "aiohttp", "locust")


def _lscpu() -> dict[str, str]:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def describe_machine() -> dict[str, Any]:
    cpu = _lscpu()
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return {
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpu_model": cpu.get("Model name", platform.processor() or "unknown"),
        "cpus": os.cpu_count(),
        "cores_per_socket": cpu.get("Core(s) per socket"),
        "threads_per_core": cpu.get("Thread(s) per core"),
        "hypervisor": cpu.get("Hypervisor vendor"),
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
        "niceness": os.nice(0),
        "python": platform.python_version(),
        "versions": versions,
    }


def tool_command(module: str, argv: list[str] | None) -> str:
    """The command that reproduces a tool's run: `python -m module args` (argv None: this process's)."""
    return f"python -m {module} {shlex.join(argv if argv is not None else sys.argv[1:])}".rstrip()


def tool_report(module: str, argv: list[str] | None, **fields: Any) -> dict[str, Any]:
    """A tool's report: the command that reproduces it (tool_command), the machine, then `fields`."""
    return {"command": tool_command(module, argv), "machine": describe_machine(), **fields}


def write_report(path: Path, report: dict[str, Any]) -> None:
    """`report` as indented JSON at `path` (its folder made), text as written (no ASCII escapes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
