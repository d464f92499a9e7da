"""A busy neighbour and the parallel step's tail: Adam step times with and
without competing busy processes, on every thread count asked for.

    python bench/contention.py                          # 1e6 elements, threads 2,1, neighbours 0,1
    python bench/contention.py --neighbours 0,1,2 --json bench/results/contention.json

A parallel step waits for its slowest thread; a thread descheduled by another
process stretches that step, so the median barely moves while the p90 grows.
Running fewer threads (``fastopt.set_num_threads``) trades a slower median on
a quiet machine for a shorter tail on a busy one. Every step is timed on its
own; thread counts alternate in short blocks so that drift hits them alike.
A neighbour is a Python process spinning on one core.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fastopt  # noqa: E402
from fastopt.benchmark.machine import machine_info  # noqa: E402

SPIN = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"


def _ints(text: str) -> list[int]:
    try:
        values = [int(float(x)) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma list of integers, got {text!r}") from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected integers >= 0, got {text!r}")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=float, default=1e6, help="elements in the buffer (default 1e6)")
    parser.add_argument("--threads", type=_ints, default=[2, 1], help="thread counts to compare (default 2,1)")
    parser.add_argument("--neighbours", type=_ints, default=[0, 1],
                        help="numbers of busy neighbour processes (default 0,1)")
    parser.add_argument("--steps", type=int, default=1500, help="timed steps per thread count and setting")
    parser.add_argument("--block", type=int, default=50, help="steps per block before the thread count changes")
    parser.add_argument("--json", type=Path, help="write the results as JSON")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.block < 1 or args.size < 1:
        parser.error("--size, --steps and --block must be >= 1")
    return args


def time_steps(opt, threads: list[int], steps: int, block: int) -> dict[int, list[float]]:
    """Per-step seconds for each thread count, alternating every ``block`` steps."""
    times: dict[int, list[float]] = {t: [] for t in threads}
    clock = time.perf_counter
    while min(len(v) for v in times.values()) < steps:
        for t in threads:
            fastopt.set_num_threads(t)
            opt.step()  # the first step after a change applies it; not timed
            for _ in range(block):
                t0 = clock()
                opt.step()
                times[t].append(clock() - t0)
    fastopt.set_num_threads(None)
    return {t: v[:steps] for t, v in times.items()}


def summary(samples: list[float]) -> dict[str, float]:
    a = np.asarray(samples) * 1e3
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"median_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99), "max_ms": float(a.max())}


def run(args: argparse.Namespace) -> dict:
    import numba

    pool = numba.config.NUMBA_NUM_THREADS
    bad = [t for t in args.threads if not 1 <= t <= pool]
    if bad:
        raise SystemExit(f"--threads {bad}: numba's pool has {pool} threads (NUMBA_NUM_THREADS)")
    n = int(args.size)
    rng = np.random.default_rng(0)
    params = fastopt.FlatParams({"w": (n,)})
    params.data[:] = rng.standard_normal(n)
    params.grad[:] = rng.standard_normal(n)
    opt = fastopt.Adam(params, lr=1e-3)
    opt.step()
    rows = []
    for k in args.neighbours:
        # Each neighbour spins long enough to outlast the measurement, then exits by itself.
        budget = 60 + 0.01 * args.steps * len(args.threads)
        busy = [subprocess.Popen([sys.executable, "-c", SPIN.format(seconds=budget)]) for _ in range(k)]
        try:
            time.sleep(0.3 if k else 0.0)
            for t, samples in time_steps(opt, args.threads, args.steps, args.block).items():
                rows.append({"neighbours": k, "threads": t, **summary(samples)})
        finally:
            for proc in busy:
                proc.kill()
                proc.wait()
    return {"machine": machine_info(), "size": n, "optimizer": "adam", "dtype": "float32",
            "steps": args.steps, "block": args.block,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "rows": rows}


def to_text(result: dict) -> str:
    m = result["machine"]
    lines = [f"Adam step on {result['size']:,} float32 elements; {m['cpu']}, {m['cores']} cores; "
             f"{result['steps']} steps per row; OMP_WAIT_POLICY={result['omp_wait_policy']}",
             f"{'busy neighbours':>15}  {'threads':>7}  {'median':>9}  {'p90':>9}  {'p99':>9}"]
    for r in result["rows"]:
        lines.append(f"{r['neighbours']:>15}  {r['threads']:>7}  {r['median_ms']:>6.3f} ms  {r['p90_ms']:>6.3f} ms  "
                     f"{r['p99_ms']:>6.3f} ms")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.json is not None and not args.json.parent.is_dir():
        raise SystemExit(f"--json {args.json}: the folder {args.json.parent} does not exist")
    result = run(args)
    print(to_text(result), end="")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
