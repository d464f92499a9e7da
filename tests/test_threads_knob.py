"""``fastopt.set_num_threads`` and the environment variables are honoured by
the parallel step, in fresh processes with a pool of two threads (so that the
check does not depend on this machine's core count)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastopt

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import json, sys
import numba, numpy as np
import fastopt
from fastopt.backends import cpu

n = 4 * cpu.SERIAL_BELOW  # large enough for the parallel loop
p, g = np.zeros(n, np.float32), np.ones(n, np.float32)
opt = fastopt.Adam([(p, g)], lr=1e-3)
out = {}
for label, request in json.loads(sys.argv[1]):
    if request != "env":
        fastopt.set_num_threads(request)
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)  # whatever numba had, the step must apply its own
    opt.step()
    out[label] = [fastopt.get_num_threads(), numba.get_num_threads()]
print(json.dumps(out))
"""


def probe(plan, **env):
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("OMP_NUM_THREADS", "FASTOPT_NUM_THREADS", "OMPI_COMM_WORLD_LOCAL_SIZE")}
    environment.update(NUMBA_NUM_THREADS="2", **env)
    result = subprocess.run([sys.executable, "-c", PROBE, json.dumps(plan)], cwd=ROOT, env=environment,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_set_num_threads_reaches_the_parallel_step():
    seen = probe([["default", "env"], ["one", 1], ["two", 2], ["back", None]])
    assert seen == {"default": [2, 2], "one": [1, 1], "two": [2, 2], "back": [2, 2]}


@pytest.mark.parametrize("variable", ["OMP_NUM_THREADS", "FASTOPT_NUM_THREADS"])
def test_environment_variables_are_honoured(variable):
    assert probe([["env", "env"]], **{variable: "1"}) == {"env": [1, 1]}


def test_set_num_threads_overrides_the_environment():
    assert probe([["call", 2]], OMP_NUM_THREADS="1") == {"call": [2, 2]}


def test_fastopt_variable_wins_over_omp():
    assert probe([["env", "env"]], OMP_NUM_THREADS="2", FASTOPT_NUM_THREADS="1") == {"env": [1, 1]}


def test_mpi_local_ranks_share_the_cores():
    cores = os.cpu_count() or 1
    expected = max(1, min(2, cores // 2))
    assert probe([["env", "env"]], OMPI_COMM_WORLD_LOCAL_SIZE="2") == {"env": [expected, expected]}


@pytest.mark.parametrize("bad", [0, 3, -1, 1.5, True, "2"])
def test_bad_thread_counts_name_the_argument_and_change_nothing(bad):
    import fastopt

    before = fastopt.get_num_threads()
    with pytest.raises(ValueError, match=r"^n must be an int in \[1, "):
        fastopt.set_num_threads(bad if bad != 3 else 10**6)
    assert fastopt.get_num_threads() == before


def test_contention_benchmark_runs_and_records(tmp_path):
    out = tmp_path / "contention.json"
    command = [sys.executable, str(ROOT / "bench" / "contention.py"), "--size", "1e5", "--steps", "20",
               "--block", "10", "--threads", "2,1", "--neighbours", "0,1", "--json", str(out)]
    result = subprocess.run(command, cwd=ROOT, env={**os.environ, "NUMBA_NUM_THREADS": "2"},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [(r["neighbours"], r["threads"]) for r in rows] == [(0, 2), (0, 1), (1, 2), (1, 1)]
    assert all(0 < r["median_ms"] <= r["p90_ms"] <= r["p99_ms"] <= r["max_ms"] for r in rows)
    assert "busy neighbours" in result.stdout


@pytest.mark.parametrize("policy,expected", [("", "SPINNING_SERIAL_BELOW"), ("passive", "SLEEPING_SERIAL_BELOW"),
                                             ("ACTIVE", "SPINNING_SERIAL_BELOW")])
def test_the_serial_threshold_follows_the_openmp_wait_policy(policy, expected):
    """Sleeping idle threads take tens of microseconds to wake: under
    OMP_WAIT_POLICY=PASSIVE the parallel loop starts at a larger size."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    code = (f"from fastopt.backends import cpu; "
            f"assert cpu.SERIAL_BELOW == cpu.{expected}, (cpu.SERIAL_BELOW, cpu.{expected}); "
            "assert cpu.SLEEPING_SERIAL_BELOW > cpu.SPINNING_SERIAL_BELOW")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("state_dtype,n,parallel", [(None, 60_000, False), ("bfloat16", 60_000, True),
                                                    ("bfloat16", 50_000, False), ("int8", 12_288, True),
                                                    ("int8", 8192, False)])
def test_costlier_elements_go_parallel_sooner(monkeypatch, state_dtype, n, parallel):
    """The thread wake-up is a fixed cost: a step whose elements cost more
    (bfloat16 conversions 1.5x, 8-bit block floats 8x) takes the parallel
    loop at SERIAL_BELOW divided by that cost."""
    from fastopt.backends import cpu
    monkeypatch.setattr(cpu, "SERIAL_BELOW", 80_000)
    went_parallel = []
    monkeypatch.setattr(cpu.threads, "apply_num_threads", lambda: went_parallel.append(True))
    options = {} if state_dtype is None else {"state_dtype": state_dtype}
    p, g = np.ones(n, np.float32), np.full(n, 0.1, np.float32)
    fastopt.Adam([(p, g)], lr=1e-3, **options).step()
    assert bool(went_parallel) is parallel
    assert np.all(p < 1)
