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


@pytest.mark.skipif(importlib.util.find_spec("numba_cuda") is None, reason="numba-cuda is not installed")
def test_bench_device_cuda_runs_under_the_simulator(tmp_path):
    """``fastopt bench --device cuda`` is the CPU benchmark's runner with the GPU as its device."""
    out = tmp_path / "gpu.json"
    command = [sys.executable, "-m", "fastopt", "bench", "--device", "cuda", "--optimizer", "adam,sgd",
               "--sizes", "64", "--rounds", "2", "--json", str(out), "--markdown", str(tmp_path / "gpu.md"),
               "--plot", str(tmp_path / "gpu.png"), "--no-progress", "--verbose"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "NUMBA_ENABLE_CUDASIM": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(out.read_text())
    assert data["settings"]["device"] == "cuda" and data["machine"]["device"]["simulated"] is True
    assert [(e["optimizer"], e["size"]) for e in data["results"]] == [("adam", 64), ("sgd", 64)]
    adam = data["results"][0]
    assert set(adam["contenders"]) == {"fastopt", "roofline", "copy"} and adam["bytes_per_step"] == 28 * 64
    assert set(adam["skipped"]) == {"torch_fused", "torch_foreach"}
    assert "fastopt" in data["extras"]["host_overhead"]["per_step"]
    assert "| adam | 64 |" in (tmp_path / "gpu.md").read_text()
    assert (tmp_path / "gpu.png").read_bytes()[:4] == b"\x89PNG"
    assert "Host overhead per Adam step" in result.stdout and "Traceback" not in result.stderr


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
