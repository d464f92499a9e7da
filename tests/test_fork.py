"""Steps in a process forked from one whose OpenMP pool had started.

GNU OpenMP (numba's ``omp`` threading layer) terminates a forked child that
enters a parallel region after its parent started the pool. fastopt notices
such a child and runs its steps on the serial loop (same numbers, one
thread), warning once (``fastopt.backends.threads``). These tests fork a real
child with multiprocessing's ``fork`` method after parallel steps in the
parent, compare the child's params and state with the parent's own result
bit for bit, and check the warning policy and that the parent stays parallel.

Each scenario runs in a fresh interpreter with a pool of two threads, under a
timeout, so that a hang or a killed child fails the test instead of blocking.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SCENARIO = r'''
import json, multiprocessing as mp, sys, warnings
import numba, numpy as np
import fastopt
from fastopt.backends import cpu, threads

mode = sys.argv[1]  # "after": fork after parallel steps; "before": before the pool started; "unguarded"
N = 4 * cpu.SERIAL_BELOW  # every launch and reduction below takes the parallel branch
BEFORE, AFTER = (0 if mode == "before" else 2), 3
rng = np.random.default_rng(0)
grads = [rng.standard_normal(N).astype(np.float32) for _ in range(BEFORE + AFTER)]


def optimizers():
    """(name, optimizer, params, grads) over three kinds of parallel loop."""
    out = []
    for name, make in (
        ("adam-clipped", lambda fp: fastopt.Adam(fp, lr=1e-2, max_grad_norm=1.0)),  # reduction + element-wise
        ("adamw-int8", lambda fp: fastopt.AdamW(fp, lr=1e-2, state_dtype="int8", rounding_seed=7)),  # blockwise
        ("lamb", lambda fp: fastopt.LAMB(fp, lr=1e-2, weight_decay=0.1)),  # two-pass segmented
    ):
        fp = fastopt.FlatParams({"w": (N // 2 + 256,), "b": (N // 2 - 256,)})
        fp.data[:] = np.random.default_rng(1).standard_normal(N)
        out.append((name, make(fp), fp))
    return out


def step_all(opts, steps, record):
    for t in steps:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _, opt, fp in opts:
                fp.grad[:] = grads[t]
                opt.step()
        record.append([str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)
                       and str(w.message).startswith("fastopt:")])


def result(opts):
    return {name: [fp.data.copy()] + [v for k, v in sorted(opt.state_dict()["state"][0].items())
                                      if isinstance(v, np.ndarray)] for name, opt, fp in opts}


def facts():
    return {"unsafe_fork": threads.in_unsafe_fork(), "serial_below": cpu.serial_below(),
            "numba_threads": numba.get_num_threads()}


opts = optimizers()
parent_warnings = []
step_all(opts, range(BEFORE), parent_warnings)


def child(conn):
    if mode == "unguarded":
        threads._unsafe_fork = False  # pretend fastopt did not notice the fork
    record = []
    step_all(opts, range(BEFORE, BEFORE + AFTER), record)
    conn.send({"warnings": record, "facts": facts(), "result": result(opts)})
    conn.close()


ctx = mp.get_context("fork")
receive, send = ctx.Pipe(duplex=False)
proc = ctx.Process(target=child, args=(send,))
proc.start()
send.close()
report = {"layer": numba.threading_layer() if BEFORE else None, "child": None}
if receive.poll(120):
    try:
        report["child"] = receive.recv()
    except EOFError:  # the child died before sending
        pass
proc.join(60)
if proc.is_alive():
    proc.kill()
    proc.join()
    report["hung"] = True
report["exitcode"] = proc.exitcode

step_all(opts, range(BEFORE, BEFORE + AFTER), parent_warnings)  # the parent's own result
report["parent"] = {"warnings": parent_warnings, "facts": facts()}
report["layer"] = numba.threading_layer()
child_result = report["child"].pop("result") if report["child"] else None
if child_result is not None:
    mine = result(opts)
    report["same_bits"] = {
        name: len(arrays) == len(mine[name]) and all(
            a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
            for a, b in zip(arrays, mine[name]))
        for name, arrays in child_result.items()}
print("REPORT " + json.dumps(report))
'''


def run_scenario(mode: str) -> tuple[dict, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "FASTOPT_NUM_THREADS", "NUMBA_THREADING_LAYER")}
    env["NUMBA_NUM_THREADS"] = "2"
    result = subprocess.run([sys.executable, "-c", SCENARIO, mode], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=420)
    assert result.returncode == 0, result.stdout + result.stderr
    line = [x for x in result.stdout.splitlines() if x.startswith("REPORT ")]
    assert line, result.stdout + result.stderr
    return json.loads(line[-1][len("REPORT "):]), result.stderr


@pytest.fixture(scope="module")
def after_fork():
    return run_scenario("after")


def test_child_forked_after_parallel_steps_gets_the_parents_numbers(after_fork):
    report, stderr = after_fork
    assert not report.get("hung") and report["exitcode"] == 0, stderr
    assert report["child"] is not None, f"the child died (exit code {report['exitcode']}):\n{stderr}"
    assert report["same_bits"] == {"adam-clipped": True, "adamw-int8": True, "lamb": True}


def test_child_warns_once_and_runs_serially_and_the_parent_stays_parallel(after_fork):
    report, _ = after_fork
    from fastopt.backends.cpu import SERIAL_BELOW
    from fastopt.backends.threads import NEVER_PARALLEL

    if report["layer"] != "omp":
        pytest.skip(f"numba's threading layer here is {report['layer']!r}: a forked child may run in parallel")
    child, parent = report["child"], report["parent"]
    assert child is not None, f"the child died (exit code {report['exitcode']})"
    # one warning, at the child's first step (its first launch), none at its later steps
    first, *later = child["warnings"]
    assert len(first) == 1 and all(not w for w in later), child["warnings"]
    assert first[0].startswith("fastopt: this process was forked after numba's OpenMP thread pool started")
    assert "'spawn' or 'forkserver'" in first[0] and "NUMBA_THREADING_LAYER=tbb" in first[0]
    assert child["facts"]["unsafe_fork"] is True and child["facts"]["serial_below"] == NEVER_PARALLEL
    # the parent never warns and keeps its parallel loops and its two threads
    assert parent["warnings"] == [[]] * len(parent["warnings"]) and len(parent["warnings"]) == 5
    assert parent["facts"] == {"unsafe_fork": False, "serial_below": SERIAL_BELOW, "numba_threads": 2}


def test_child_forked_before_the_pool_started_stays_parallel():
    report, stderr = run_scenario("before")
    from fastopt.backends.cpu import SERIAL_BELOW

    assert not report.get("hung") and report["exitcode"] == 0 and report["child"] is not None, stderr
    assert report["child"]["warnings"] == [[], [], []]
    assert report["child"]["facts"] == {"unsafe_fork": False, "serial_below": SERIAL_BELOW, "numba_threads": 2}
    assert report["same_bits"] == {"adam-clipped": True, "adamw-int8": True, "lamb": True}


def test_without_the_fallback_the_child_is_killed():
    """The control: with fastopt's notice of the fork switched off in the child,
    its first parallel step is fatal, so the scenario above does exercise the
    hazard the serial fallback avoids."""
    report, stderr = run_scenario("unguarded")
    if report["layer"] != "omp":
        pytest.skip(f"numba's threading layer here is {report['layer']!r}, which survives a fork")
    assert not report.get("hung"), "the unguarded child hung instead of being terminated"
    assert report["child"] is None and report["exitcode"] != 0
    assert "fork() called from a process already using GNU OpenMP" in stderr
