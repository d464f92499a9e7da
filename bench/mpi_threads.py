"""The cost of oversubscribing the cores with MPI ranks: 2 ranks x 2 threads
against 2 ranks x 1 thread (fastopt's default under mpiexec on a 2-core
machine), each rank stepping Adam on its own buffer at the same time (a
barrier before every step, as in a data-parallel loop, so the steps
overlap). A data-parallel step ends when the slowest rank's does, so the
figure of merit is the per-step maximum over the ranks: its median and p90.

    python bench/mpi_threads.py --sizes 1e6,1e7 --rounds 3 --json bench/results/mpi-threads.json \
        --markdown bench/results/mpi-threads.md

The driver launches ``mpiexec -n 2`` once per (threads, round), rounds
interleaved, and writes the tables; ``--worker`` is the part each rank runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def worker(sizes, steps_budget):
    from mpi4py import MPI

    import fastopt
    from fastopt.backends import threads

    comm = MPI.COMM_WORLD
    out = {"threads": threads.get_num_threads(), "why": threads.default_num_threads()[1], "sizes": {}}
    for n in sizes:
        rng = np.random.default_rng(comm.rank)
        p = rng.standard_normal(n).astype(np.float32)
        g = rng.standard_normal(n).astype(np.float32)
        opt = fastopt.Adam([(p, g)], lr=1e-4)
        for _ in range(3):
            opt.step()
        times, start = [], time.perf_counter()
        while True:  # until rank 0 has stepped for the budget (at least 10 steps)
            comm.Barrier()
            t0 = time.perf_counter()
            opt.step()
            times.append(time.perf_counter() - t0)
            if comm.bcast(len(times) >= 10 and time.perf_counter() - start > steps_budget, root=0):
                break
        slowest = np.max(comm.allgather(np.array(times)), axis=0)
        out["sizes"][str(n)] = slowest.tolist()
    if comm.rank == 0:
        print("RESULT " + json.dumps(out), flush=True)


def mpiexec() -> str:
    here = Path(sys.executable).with_name("mpiexec")
    return str(here) if here.exists() else "mpiexec"


def run_once(threads: int, sizes: str, budget: float) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "FASTOPT_NUM_THREADS")}
    if threads:
        env["FASTOPT_NUM_THREADS"] = str(threads)
    cmd = [mpiexec(), "--allow-run-as-root", "--oversubscribe", "-n", "2", sys.executable, __file__, "--worker",
           "--sizes", sizes, "--budget", str(budget)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    if proc.returncode:
        raise RuntimeError(proc.stdout + proc.stderr)
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[7:])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1e6,1e7")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--budget", type=float, default=0.7, help="seconds of stepping per size and run")
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--json")
    parser.add_argument("--markdown")
    args = parser.parse_args(argv)
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    if args.worker:
        worker(sizes, args.budget)
        return 0
    from fastopt.benchmark.machine import machine_info

    runs = {1: [], 2: []}
    for _ in range(args.rounds):
        for threads in (1, 2):  # interleaved: drift hits both alike
            runs[threads].append(run_once(threads, ",".join(map(str, sizes)), args.budget))
    rows = []
    for n in sizes:
        row = {"size": n}
        for threads, results in runs.items():
            times = np.concatenate([r["sizes"][str(n)] for r in results])
            row[f"{threads}t"] = {"median_ms": 1e3 * float(np.median(times)),
                                  "p90_ms": 1e3 * float(np.percentile(times, 90)), "steps": int(times.size)}
        row["median_ratio"] = row["2t"]["median_ms"] / row["1t"]["median_ms"]
        row["p90_ratio"] = row["2t"]["p90_ms"] / row["1t"]["p90_ms"]
        rows.append(row)
    report = {"machine": machine_info(), "ranks": 2, "default_threads_reason": run_once(0, "1000", 0.01)["why"],
              "rows": rows, "command": "python bench/mpi_threads.py " + " ".join(argv or sys.argv[1:])}
    lines = ["| Adam elements | 2 ranks x 1 thread: median / p90 | 2 ranks x 2 threads: median / p90 | "
             "x slower (median / p90) |", "| --- | --- | --- | --- |"]
    for row in rows:
        lines.append(f"| {row['size']:.0e} | {row['1t']['median_ms']:.2f} / {row['1t']['p90_ms']:.2f} ms | "
                     f"{row['2t']['median_ms']:.2f} / {row['2t']['p90_ms']:.2f} ms | "
                     f"{row['median_ratio']:.2f}x / {row['p90_ratio']:.2f}x |")
    table = "\n".join(lines)
    print(table)
    print(f"default under mpiexec -n 2 here: {report['default_threads_reason']}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(
            "# Threads per rank: 2 MPI ranks on a 2-core machine\n\n"
            f"`{report['command']}`; per-step time of the slowest rank (both ranks step Adam on their own "
            "float32 buffer after a barrier), all rounds pooled.\n\n" + table + "\n\n"
            f"fastopt's default under `mpiexec -n 2` here: {report['default_threads_reason']} = 1 thread.\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
