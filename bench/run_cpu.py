"""Run the benchmark and record it under bench/results/.

    python bench/run_cpu.py                      # every optimizer, default sizes
    python bench/run_cpu.py --optimizer adam     # one optimizer
    python bench/run_cpu.py --quick --sizes 1e3,1e6,5e7
    python bench/run_cpu.py --device cuda --tag h100   # the GPU (or: python bench/gpu_bench.py)

Writes ``results/<device>-<tag>-<date>.json``, ``.md`` and ``.png`` (the tag
names the run); every option is passed to ``fastopt bench``.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastopt.commands import bench  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.add_arguments(parser)
    parser.add_argument("--tag", default="all", help="name of the run in the file names (default 'all')")
    args = parser.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"{args.device}-{args.tag}-{datetime.date.today().isoformat()}"
    args.json = args.json or f"{stem}.json"
    args.markdown = args.markdown or f"{stem}.md"
    if not args.no_plot and not args.torch_e2e:
        args.plot = args.plot or f"{stem}.png"
    return bench.run(args)


if __name__ == "__main__":
    sys.exit(main())
