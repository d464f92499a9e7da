"""Cold start: what a user waits for before the first fast step.

Every figure comes from fresh Python processes:

* ``import_s``: ``python -c "import fastopt"`` minus ``python -c "pass"``
  (medians of interleaved runs); the same for numpy and numba alone, since
  fastopt imports both.
* ``first_step_cold_cache_s``: optimizer construction plus the first
  ``step()`` with ``NUMBA_CACHE_DIR`` pointing at a fresh, empty directory
  (everything compiles).
* ``first_step_warm_cache_s``: the same in a new process reusing that
  directory (kernels load from the cache).
* ``compile_all_s``: first step of every optimizer (default hyperparameters,
  one dtype) with an empty cache.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

_REPO_ROOT = str(Path(__file__).resolve().parents[2])

_FIRST_STEPS = """
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import fastopt
t1 = time.perf_counter()
names, dtype, n = sys.argv[1].split(","), np.dtype(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
per = {}
for name in names:
    p = rng.standard_normal(n).astype(dtype)
    g = rng.standard_normal(n).astype(dtype)
    a = time.perf_counter()
    opt = fastopt.OPTIMIZERS[name]((p, g))
    opt.step()
    b = time.perf_counter()
    opt.step()
    per[name] = {"first_step_s": b - a, "second_step_s": time.perf_counter() - b}
print(json.dumps({"import_s": t1 - t0, "steps": per}))
"""


def _env(cache_dir: str | None = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_REPO_ROOT, env.get("PYTHONPATH")]))
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    return env


def _wall(code: str, env: dict) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def import_times(repeats: int = 5) -> dict:
    """Median extra seconds of ``import X`` over bare interpreter start-up, for
    fastopt, numpy and numba (interleaved fresh processes)."""
    codes = {"python": "pass", "numpy": "import numpy", "numba": "import numba", "fastopt": "import fastopt"}
    env = _env()
    samples: dict[str, list[float]] = {k: [] for k in codes}
    for _ in range(repeats):
        for k, code in codes.items():
            samples[k].append(_wall(code, env))
    base = statistics.median(samples["python"])
    # A difference of noisy process timings can dip below zero when the import
    # costs next to nothing (fastopt loads its submodules lazily): clamp at 0.
    extra = {k: max(0.0, statistics.median(v) - base) for k, v in samples.items() if k != "python"}
    return extra | {"python_startup_s": base}


def first_steps(optimizers: Sequence[str], dtype: str, cache_dir: str, n: int = 1000) -> dict:
    """Run one fresh process that imports fastopt and takes two steps of each
    optimizer, with ``NUMBA_CACHE_DIR=cache_dir``; returns its timings."""
    proc = subprocess.run([sys.executable, "-c", _FIRST_STEPS, ",".join(optimizers), dtype, str(n)],
                          env=_env(cache_dir), check=True, capture_output=True, text=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure_cold_start(optimizers: Sequence[str] | None = None, dtype: str = "float32", probe: str = "adam",
                       repeats: int = 5) -> dict:
    """Cold-start figures (seconds); see the module docstring.

    Parameters
    ----------
    optimizers : list of str, optional
        Optimizers compiled for ``compile_all_s`` (default all).
    dtype : str
    probe : str
        Optimizer whose first step is timed with an empty and a warm cache.
    repeats : int
        Interpreter launches per import-time measurement.
    """
    from ..optim import OPTIMIZERS

    names = list(optimizers) if optimizers else list(OPTIMIZERS)
    imports = import_times(repeats)
    with tempfile.TemporaryDirectory(prefix="fastopt-cold-") as cache:
        cold = first_steps([probe], dtype, cache)
        warm = first_steps([probe], dtype, cache)
    with tempfile.TemporaryDirectory(prefix="fastopt-cold-all-") as cache:
        every = first_steps(names, dtype, cache)
    return {
        "dtype": dtype,
        "probe": probe,
        "import_s": imports["fastopt"],
        "import_numpy_s": imports["numpy"],
        "import_numba_s": imports["numba"],
        "python_startup_s": imports["python_startup_s"],
        "first_step_cold_cache_s": cold["steps"][probe]["first_step_s"],
        "first_step_warm_cache_s": warm["steps"][probe]["first_step_s"],
        "second_step_s": warm["steps"][probe]["second_step_s"],
        "compile_all_s": sum(s["first_step_s"] for s in every["steps"].values()),
        "compile_each_s": {k: s["first_step_s"] for k, s in every["steps"].items()},
    }
