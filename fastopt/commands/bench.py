"""``fastopt bench``: time every optimizer against NumPy, torch.optim and the
memory-bandwidth limit (the roofline twin), on the CPU or a CUDA GPU; see
:mod:`fastopt.benchmark`. ``fastopt bench --torch-e2e`` times full training
steps of torch models instead (:mod:`fastopt.benchmark.torch_e2e`).

Every argument, output path and optional dependency is checked before the
first timing starts.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys

from ..plotting import INSTALL_HINT
from ._outputs import check_output_path

DEFAULT_PLOT = {"cpu": "fastopt-bench.png", "cuda": "fastopt-bench-cuda.png"}
"""Where the plot goes unless ``--plot FILE`` or ``--no-plot`` is given."""


def _sizes(text: str) -> list[int]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--sizes must be a comma list of numbers like 1e3,1e6, got {text!r}") from None
    if not values or any(v < 1 or v != int(v) for v in values):
        raise ValueError(f"--sizes must be positive whole numbers, got {text!r}")
    return [int(v) for v in values]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--optimizer", action="append", metavar="NAME",
                        help="optimizer to time (repeatable or comma list; default all)")
    parser.add_argument("--sizes", metavar="N,N,...",
                        help="buffer sizes in elements, e.g. 1e3,1e6 (default 1e3..5e7; --quick 1e3..1e6; "
                             "GPU 2^16..2^28)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="params' dtype")
    parser.add_argument("--state-dtype", choices=("bfloat16", "int8"), default=None,
                        help="low-precision optimizer states (CPU): timed against their own roofline twin, "
                             "fastopt with full states, torch and (int8) bitsandbytes")
    parser.add_argument("--quick", action="store_true", help="fewer sizes and rounds (under a minute)")
    parser.add_argument("--rounds", type=int, metavar="N", help="interleaved rounds per optimizer and size")
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="also print every contender with its spread, the run's notes and skipped baselines")
    parser.add_argument("--json", metavar="FILE", help="write the full results as JSON")
    parser.add_argument("--markdown", metavar="FILE", help="write the report (with details and targets) as markdown")
    parser.add_argument("--plot", metavar="FILE.png",
                        help=f"where to write the speed-up plot (default {DEFAULT_PLOT['cpu']}; needs matplotlib)")
    parser.add_argument("--no-plot", action="store_true", help="do not write the plot")
    parser.add_argument("--cold", action="store_true",
                        help="also measure import time, first step (empty/warm compile cache), cold compile")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    e2e = parser.add_argument_group("end to end (torch models)")
    e2e.add_argument("--torch-e2e", action="store_true",
                     help="time full CPU training steps of torch models (forward, backward, step) with "
                          "torch.optim.AdamW single/foreach/fused and fastopt.torch.AdamW instead (needs "
                          "fastopt[torch]; takes --models, --quick, --rounds, --json, --markdown)")
    e2e.add_argument("--models", metavar="NAME,...",
                     help="with --torch-e2e: models to train, from mlp, many, transformer (default all)")


def _plot_path(args: argparse.Namespace) -> str | None:
    """The plot's path after the checks, or None (no plot); may print one note."""
    if args.no_plot:
        if args.plot:
            raise ValueError("--plot and --no-plot contradict each other; drop one")
        return None
    if args.plot:
        from ..plotting import require_matplotlib

        check_output_path("--plot", args.plot)
        require_matplotlib("--plot")
        return str(args.plot)
    path = DEFAULT_PLOT[args.device]
    if importlib.util.find_spec("matplotlib") is None:
        print(f"fastopt bench: note: no plot (matplotlib is not installed: {INSTALL_HINT}); "
              "--no-plot silences this", file=sys.stderr)
        return None
    try:
        check_output_path("--plot", path)
    except ValueError as exc:
        raise ValueError(f"{exc}; or pass --plot FILE or --no-plot") from None
    return path


def check(args: argparse.Namespace) -> tuple[list[int] | None, str | None]:
    """Every check of ``fastopt bench``'s arguments, made before any work.

    Returns
    -------
    sizes : list of int or None
    plot : str or None
        Where the plot goes (None: no plot).
    """
    from ..benchmark.runner import get_device, parse_optimizers

    if args.models is not None and not args.torch_e2e:
        raise ValueError("--models is for --torch-e2e (the models whose training steps it times); add --torch-e2e "
                         "or drop --models")
    if args.torch_e2e:
        _check_torch_e2e(args)
        return None, None
    sizes = _sizes(args.sizes) if args.sizes else None
    parse_optimizers(args.optimizer)
    if args.rounds is not None and args.rounds < 1:
        raise ValueError(f"--rounds must be an integer >= 1, got {args.rounds}")
    if args.device == "cuda" and args.state_dtype:
        raise ValueError("--state-dtype is CPU-only for now (the GPU runner has no low-precision twin); "
                         "drop it with --device cuda")
    if args.device == "cuda" and args.cold:
        raise ValueError("--cold is CPU-only (it times fresh processes importing fastopt); drop it with --device cuda")
    for option in ("json", "markdown"):
        if getattr(args, option):
            check_output_path(f"--{option}", getattr(args, option))
    plot = _plot_path(args)
    get_device(args.device)  # no GPU, or no numba-cuda: fail now
    return sizes, plot


_NOT_E2E = {"optimizer": "--optimizer", "sizes": "--sizes", "state_dtype": "--state-dtype", "plot": "--plot",
            "cold": "--cold", "verbose": "--verbose"}
"""Options of the per-optimizer benchmark that --torch-e2e does not take."""


def _check_torch_e2e(args: argparse.Namespace) -> None:
    """The checks of ``fastopt bench --torch-e2e``, before any work (torch is not imported)."""
    from ..benchmark import torch_e2e

    given = [flag for key, flag in _NOT_E2E.items() if getattr(args, key)]
    if args.dtype != "float32":
        given.append("--dtype")
    if given:
        raise ValueError(f"{', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply to --torch-e2e "
                         "(it trains torch models with AdamW in float32); drop "
                         f"{'it' if len(given) == 1 else 'them'}")
    if args.device != "cpu":
        raise ValueError("--torch-e2e times CPU training steps only; drop --device cuda")
    torch_e2e.parse_models(args.models)
    if args.rounds is not None and args.rounds < 1:
        raise ValueError(f"--rounds must be an integer >= 1, got {args.rounds}")
    for option in ("json", "markdown"):
        if getattr(args, option):
            check_output_path(f"--{option}", getattr(args, option))
    torch_e2e.require_torch()


def _run_torch_e2e(args: argparse.Namespace) -> int:
    from ..benchmark import torch_e2e

    _check_torch_e2e(args)
    result = torch_e2e.run_torch_e2e(models=args.models, quick=args.quick, rounds=args.rounds,
                                     progress=not args.no_progress)
    print(torch_e2e.to_text(result), end="")
    written = []
    if args.json:
        torch_e2e.write_json(result, args.json)
        written.append(args.json)
    if args.markdown:
        torch_e2e.write_markdown(result, args.markdown)
        written.append(args.markdown)
    print(f"wrote {', '.join(written)}" if written else "(--json and --markdown write files)")
    return 0


def run(args: argparse.Namespace) -> int:
    from ..benchmark import measure_cold_start, report, run_benchmark

    if args.torch_e2e:
        return _run_torch_e2e(args)
    sizes, plot = check(args)
    result = run_benchmark(optimizers=args.optimizer, sizes=sizes, dtype=args.dtype, quick=args.quick,
                           device=args.device, progress=not args.no_progress, rounds=args.rounds,
                           state_dtype=args.state_dtype)
    if args.cold:
        print("measuring cold start (fresh processes)...", file=sys.stderr)
        result["cold_start"] = measure_cold_start(dtype=args.dtype)
    print(report.to_text(result, verbose=args.verbose), end="")
    written = []
    if args.json:
        report.write_json(result, args.json)
        written.append(args.json)
    if args.markdown:
        report.write_markdown(result, args.markdown)
        written.append(args.markdown)
    if plot:
        report.plot(result, plot)
        written.append(plot)
    more = "" if args.verbose else "; --verbose for every contender"
    print(f"wrote {', '.join(written)}{more}" if written else f"(--json, --markdown, --plot write files{more})")
    return 0
