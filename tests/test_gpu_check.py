"""benchmarks/gpu_check.py as a dry run on the CPU: every section ends pass or skip, and both reports are written."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # several minutes on a shared 2-core CPU
def test_gpu_check_dry_run_on_cpu(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), str(tmp_path), "--device", "cpu",
                           "--quick"], capture_output=True, text=True, env=env, timeout=900)
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    status = {s["name"]: s["status"] for s in report["sections"]}
    assert proc.returncode == 0, (status, proc.stdout[-2000:], proc.stderr[-2000:])
    assert status["memory per pixel"] == "skip"
    assert all(s["status"] in ("pass", "skip") for s in report["sections"])
    assert "| DDP two processes | pass |" in (tmp_path / "gpu_check.md").read_text()
