"""Runs tests/cuda under numba's CUDA simulator, in a process of its own.

NUMBA_ENABLE_CUDASIM must be set before numba is first imported, and this
process has imported it already; so the CUDA backend's simulator tests
(tests/cuda/test_cuda_sim.py, ignored by the normal collection) run in a
child pytest with the variable set.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(importlib.util.find_spec("numba_cuda") is None,
                    reason='numba-cuda is not installed (pip install "fastopt[cuda]")')
def test_cuda_backend_under_the_simulator():
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    command = [sys.executable, "-m", "pytest", "tests/cuda", "-q", "-p", "no:cacheprovider"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"simulator tests failed:\n{output}"
    passed = re.search(r"(\d+) passed", output)
    assert passed and int(passed.group(1)) > 0, f"the simulator run passed no test:\n{output}"
    print(output.strip().splitlines()[-1])


def _gpu_bench():
    from fastopt.benchmark import gpu

    return gpu


def test_gpu_bench_arguments(tmp_path):
    bench = _gpu_bench()
    args = bench.parse_args(["--out", str(tmp_path), "--optimizers", "adam,sgd", "--max-log2", "20"])
    assert (args.min_log2, args.max_log2, args.dtype, args.simulate) == (16, 20, "float32", False)
    sim = bench.parse_args(["--out", str(tmp_path), "--simulate"])
    assert sim.min_log2 == sim.max_log2 == 6 and sim.no_torch
    with pytest.raises(SystemExit):
        bench.parse_args(["--out", str(tmp_path), "--min-log2", "30", "--max-log2", "20"])


@pytest.mark.skipif(importlib.util.find_spec("numba_cuda") is None, reason="numba-cuda is not installed")
def test_gpu_bench_runs_under_the_simulator(tmp_path):
    command = [sys.executable, str(ROOT / "bench" / "gpu_bench.py"), "--simulate", "--optimizers", "adam,sgd",
               "--out", str(tmp_path)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "NUMBA_ENABLE_CUDASIM": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads((tmp_path / "gpu_bench.json").read_text())
    assert set(data["optimizers"]) == {"adam", "sgd"}
    row = data["optimizers"]["adam"]["sizes"][0]
    assert set(row["seconds"]) == {"fastopt", "twin", "copy"} and row["bytes"] == 28 * 64
    assert "fastopt" in data["host_overhead"]["per_step"]
    assert "| 2^6 |" in (tmp_path / "gpu_bench.md").read_text()


def test_cuda_backend_import_error_names_the_extra():
    """Without numba-cuda, the CUDA backend's import says what to install."""
    code = (
        "import importlib.util as u\n"
        "real = u.find_spec\n"
        "u.find_spec = lambda name, *a: None if name == 'numba_cuda' else real(name, *a)\n"
        "try:\n"
        "    import fastopt.backends.cuda\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert 'pip install "fastopt[cuda]"' in result.stdout, result.stdout + result.stderr


def test_import_fastopt_does_not_load_the_cuda_target():
    code = ("import sys, numpy as np, fastopt\n"
            "fastopt.SGD([(np.ones(3, np.float32), np.ones(3, np.float32))], lr=0.1).step()\n"
            "print(sorted(m for m in ('numba.cuda', 'numba_cuda', 'fastopt.backends.cuda') if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
