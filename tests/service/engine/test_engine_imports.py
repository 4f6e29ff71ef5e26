"""The engine stays pure Python + numpy: importing it loads no web, ONNX or metrics library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

FORBIDDEN = (
    "fastapi", "onnxruntime", "prometheus_client", "torch", "training", "service.api", "service.runtime"
)


def test_importing_the_engine_loads_nothing_forbidden() -> None:
    code = (
        "import sys, service.engine; "
        f"print([m for m in {FORBIDDEN!r} if m in sys.modules])"
    )
    root = Path(__file__).resolve().parents[3]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
