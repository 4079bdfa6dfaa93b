"""The prepared GPU run (`benchmarks/gpu_check.sh`) on a CPU: its CPU steps run and write their
results, its GPU steps say they were skipped, and it fails nowhere before the GPU parts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "gpu_check.sh"


def test_gpu_check_runs_its_cpu_steps(tmp_path):
    torch = pytest.importorskip("torch")
    out = tmp_path / "results"
    env = {**os.environ, "GPU_CHECK_QUICK": "1", "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(SCRIPT), str(out)], capture_output=True, text=True, timeout=600, env=env,
                          cwd=SCRIPT.parents[1])
    summary = (out / "summary.txt").read_text()
    assert done.returncode == 0, summary + done.stderr
    lines = dict(line.split(": ", 1) for line in summary.splitlines() if ": " in line)
    for step in ("environment", "bench-null", "kernels"):
        assert lines[step].startswith("ok"), summary
    gpu_steps = ("gpu-tests", "bench-teacher", "bench-student", "compositor")
    if not torch.cuda.is_available():
        assert all(lines[step] == "skipped: no CUDA GPU" for step in gpu_steps), summary
    assert json.loads((out / "bench-null.json").read_text())["config"]["model"] == "null"
    assert (out / "binary-kernels.md").stat().st_size > 0
    assert f"torch {torch.__version__}" in (out / "environment.log").read_text()
