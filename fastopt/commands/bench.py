"""``fastopt bench``: time every optimizer against NumPy, torch.optim and the
memory-bandwidth limit (the roofline twin); see :mod:`fastopt.benchmark`."""

from __future__ import annotations

import sys


def _sizes(text: str) -> list[int]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--sizes must be a comma list of numbers like 1e3,1e6, got {text!r}") from None
    if not values or any(v < 1 or v != int(v) for v in values):
        raise ValueError(f"--sizes must be positive whole numbers, got {text!r}")
    return [int(v) for v in values]


def add_arguments(parser) -> None:
    parser.add_argument("--optimizer", action="append", metavar="NAME",
                        help="optimizer to time (repeatable or comma list; default all)")
    parser.add_argument("--sizes", metavar="N,N,...",
                        help="buffer sizes in elements, e.g. 1e3,1e6 (default 1e3..5e7; --quick 1e3..1e6)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--quick", action="store_true", help="fewer sizes and rounds (under a minute)")
    parser.add_argument("--rounds", type=int, metavar="N", help="interleaved rounds per optimizer and size")
    parser.add_argument("--json", metavar="FILE", help="write the full results as JSON")
    parser.add_argument("--markdown", metavar="FILE", help="write the report as markdown")
    parser.add_argument("--plot", metavar="FILE.png", help="plot fastopt's speed-up vs size (matplotlib)")
    parser.add_argument("--cold", action="store_true",
                        help="also measure import time, first step (empty/warm compile cache), cold compile")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def _run_cuda(args) -> int:
    """``--device cuda``: the GPU benchmark (CUDA events, torch fused/foreach,
    device-to-device copy, host overhead); see :mod:`fastopt.benchmark.gpu`."""
    import json
    import math
    from pathlib import Path

    from ..benchmark import gpu

    if args.plot or args.cold:
        raise ValueError("--plot and --cold are CPU-only; the GPU report is a table (--markdown, --json)")
    gpu.require_gpu()
    argv = ["--out", ".", "--dtype", args.dtype]
    if args.optimizer:
        argv += ["--optimizers", ",".join(args.optimizer)]
    if args.sizes:
        logs = [round(math.log2(n)) for n in _sizes(args.sizes)]
        argv += ["--min-log2", str(max(1, min(logs))), "--max-log2", str(max(logs))]
    elif args.quick:
        argv += ["--max-log2", "24"]
    if args.rounds or args.quick:
        argv += ["--repeats", str(args.rounds or 5)]
    result = gpu.run(gpu.parse_args(argv))
    text = gpu.to_markdown(result)
    print(text, end="")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    if args.markdown:
        Path(args.markdown).write_text(text)
    return 0


def run(args) -> int:
    if args.device == "cuda":
        return _run_cuda(args)
    from ..benchmark import measure_cold_start, report, run_benchmark

    sizes = _sizes(args.sizes) if args.sizes else None
    result = run_benchmark(optimizers=args.optimizer, sizes=sizes, dtype=args.dtype, quick=args.quick,
                           device=args.device, progress=not args.no_progress, rounds=args.rounds)
    if args.cold:
        print("measuring cold start (fresh processes)...", file=sys.stderr)
        result["cold_start"] = measure_cold_start(dtype=args.dtype)
    print(report.to_text(result), end="")
    if args.json:
        report.write_json(result, args.json)
    if args.markdown:
        report.write_markdown(result, args.markdown)
    if args.plot:
        report.plot(result, args.plot)
    return 0
