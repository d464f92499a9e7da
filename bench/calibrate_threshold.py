"""Measure where fastopt's parallel loop starts beating its serial loop.

For each optimizer and each size 2^10 .. 2^20 (float32 by default), the same
optimizer step is timed with the serial loop forced and with the parallel loop
forced, interleaved round by round; the ratio serial/parallel (> 1: parallel
wins) is the median of the per-round ratios. The crossover is the smallest
size from which the parallel loop wins at every larger size measured.
``fastopt.backends.cpu.SERIAL_BELOW`` should sit there.

torch is not imported: only numba's thread pool runs, as in a user's process
that does not mix thread pools.

    python bench/calibrate_threshold.py [--optimizer adam,sgd] [--dtype float32] [--rounds 15] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastopt.backends import cpu as _cpu  # noqa: E402
from fastopt.benchmark.contenders import FORCE_PARALLEL, FORCE_SERIAL, fastopt_contender  # noqa: E402
from fastopt.benchmark.machine import machine_info  # noqa: E402
from fastopt.benchmark.problems import hyperparameters, make_data  # noqa: E402
from fastopt.benchmark.runner import parse_optimizers  # noqa: E402
from fastopt.benchmark.timing import interleaved, paired_ratio  # noqa: E402

SIZES = [2**k for k in range(10, 21)]


def crossover(sizes, ratios) -> int | None:
    """Smallest size from which every ratio (serial / parallel) exceeds 1."""
    best = None
    for n, r in reversed(list(zip(sizes, ratios, strict=True))):
        if r <= 1:
            break
        best = n
    return best


def calibrate(name: str, dtype: str, rounds: int) -> dict:
    """Serial vs parallel ratios of one optimizer over :data:`SIZES`."""
    h = hyperparameters(name)
    rows = []
    for n in SIZES:
        p0, g = make_data(n, dtype)
        contenders = [fastopt_contender(name, h, p0, g, FORCE_SERIAL, "serial"),
                      fastopt_contender(name, h, p0, g, FORCE_PARALLEL, "parallel")]
        t = interleaved(contenders, rounds, target_s=2e-3)["times"]
        ratio = paired_ratio(t["serial"], t["parallel"])
        rows.append({"size": n, "serial_s": sorted(t["serial"])[len(t["serial"]) // 2],
                     "parallel_s": sorted(t["parallel"])[len(t["parallel"]) // 2], "ratio": ratio})
    return {"optimizer": name, "rows": rows,
            "crossover": crossover([r["size"] for r in rows], [r["ratio"]["median"] for r in rows])}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--optimizer", action="append", help="optimizers (default all)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--json", help="write the measurements here")
    args = parser.parse_args(argv)
    info = machine_info()
    print(f"{info['cpu']}, {info['cores']} cores, numba {info['numba_threads']} threads, {info['date']}; "
          f"{args.dtype}; current SERIAL_BELOW={_cpu.SERIAL_BELOW}")
    results = []
    for name in parse_optimizers(args.optimizer):
        res = calibrate(name, args.dtype, args.rounds)
        results.append(res)
        cells = "  ".join(f"2^{r['size'].bit_length() - 1}:{r['ratio']['median']:.2f}" for r in res["rows"])
        print(f"{name:<9} crossover {res['crossover']!s:>8}  serial/parallel  {cells}", flush=True)
    found = [r["crossover"] for r in results if r["crossover"]]
    if found:
        found.sort()
        print(f"median crossover over optimizers: {found[len(found) // 2]} elements "
              f"(range {found[0]}..{found[-1]})")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "dtype": args.dtype, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
