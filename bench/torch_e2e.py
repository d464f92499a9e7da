"""End-to-end CPU training steps of real torch models: torch.optim.AdamW
(single-tensor, foreach, fused) against fastopt.torch.AdamW, recorded under
bench/results/. The benchmark itself is :mod:`fastopt.benchmark.torch_e2e`
(also ``fastopt bench --torch-e2e``); see its docs for the models, the
contenders and what is timed.

Usage::

    python bench/torch_e2e.py [--quick] [--models mlp,many,transformer] [--rounds N]
                              [--markdown bench/results/torch-e2e.md]

``--markdown`` also writes the JSON results beside it (``.json``).
``OMP_WAIT_POLICY=PASSIVE`` is set unless the environment sets it (torch's
and numba's OpenMP pools must not spin against each other).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastopt.benchmark import torch_e2e  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=None, help="comma list of mlp, many, transformer (default all)")
    parser.add_argument("--quick", action="store_true", help="two rounds of one step (a smoke run)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds per model")
    parser.add_argument("--markdown", type=Path, help="write the report here (and the JSON beside it)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        torch_e2e.parse_models(args.models)
        torch_e2e.require_torch("bench/torch_e2e.py")
    except (ValueError, ImportError) as exc:
        parser.error(str(exc))
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
    result = torch_e2e.run_torch_e2e(args.models, quick=args.quick, rounds=args.rounds,
                                     progress=not args.no_progress)
    print(torch_e2e.to_text(result), end="")
    if args.markdown:
        torch_e2e.write_markdown(result, args.markdown)
        torch_e2e.write_json(result, args.markdown.with_suffix(".json"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
