"""``fastopt demo``: train the 2-64-3 MLP on spiral data with Adam, then time
one Adam step of fastopt against a naive NumPy Adam at a few sizes."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

from ..progress import ProgressBar
from ._training import check_positive, load_dataset, make_optimizer, train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=int, default=100, help="training epochs (default 100)")
    parser.add_argument("--sizes", default="1e4,1e6",
                        help="comma-separated buffer sizes for the step table (default 1e4,1e6)")
    parser.add_argument("--repeats", type=int, default=15, help="timed samples per size and method (median)")
    parser.add_argument("--seed", type=int, default=0, help="seed of data, weights and shuffling")
    parser.add_argument("--no-progress", action="store_true", help="do not draw the progress bar")


def parse_sizes(text: str) -> list[int]:
    """Parse ``"1e4,1e6"`` into ``[10000, 1000000]``; ValueError on bad input."""
    sizes = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            raise ValueError(f"--sizes must be comma-separated numbers, got {text!r}") from None
        if not (value >= 1 and value == int(value)):
            raise ValueError(f"--sizes entries must be integers >= 1, got {part.strip()!r}")
        sizes.append(int(value))
    return sizes


def _format_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    return f"{seconds * 1e3:.2f} ms"


def step_table(sizes: Sequence[int], repeats: int, seed: int = 0) -> list[tuple[int, float, float]]:
    """Median seconds of one float32 Adam step, fastopt vs NumPy written the
    tutorial way (a temporary array per operation), per size.

    Returns
    -------
    list of (size, fastopt_seconds, naive_seconds)
    """
    from ..benchmark.baselines import NumpyStepper
    from ..benchmark.problems import hyperparameters
    from ..benchmark.timing import medians
    from ..optim import OPTIMIZERS
    from ..params import FlatParams

    rng = np.random.default_rng(seed)
    rows = []
    for n in sizes:
        fp = FlatParams({"x": (n,)})
        fp.data[:] = rng.standard_normal(n)
        fp.grad[:] = rng.standard_normal(n)
        h = hyperparameters("adam")
        opt = OPTIMIZERS["adam"](fp, **h)
        naive = NumpyStepper("adam", h, fp.data, fp.grad, "naive")
        times = medians({"fastopt": opt.step, "naive": naive.step}, rounds=repeats)
        rows.append((n, times["fastopt"], times["naive"]))
    return rows


def run(args: argparse.Namespace) -> int:
    check_positive("--epochs", args.epochs, integer=True)
    check_positive("--repeats", args.repeats, integer=True)
    sizes = parse_sizes(args.sizes)
    from ..nn import MLP

    data = load_dataset("spiral", seed=args.seed)
    model = MLP(data.sizes, seed=args.seed)
    optimizer = make_optimizer("adam", model.params)
    lr = optimizer.param_groups[0]["lr"]
    print(f"fastopt demo: {'-'.join(map(str, data.sizes))} MLP on spiral data "
          f"(3 classes x 100 points), Adam lr={lr:g}, batch {data.batch_size}, {args.epochs} epochs")
    bar = ProgressBar(args.epochs, "train", enabled=False if args.no_progress else None)
    with bar:
        result = train(model, optimizer, data, args.epochs, data.batch_size, seed=args.seed, progress=bar)
    print(f"final: loss {result.train_loss:.4f}, train accuracy {100 * result.train_acc:.1f}% "
          f"({result.steps} steps in {result.seconds:.2f} s; optimizer.step {1e3 * result.step_seconds:.0f} ms "
          f"= {100 * result.step_share:.0f}% of it)")
    print()
    print(f"One Adam step on a float32 buffer, median of {args.repeats} interleaved samples:")
    print(f"{'elements':>12}  {'fastopt':>10}  {'naive NumPy':>12}  {'speed-up':>8}")
    for n, fast, naive in step_table(sizes, args.repeats, seed=args.seed):
        print(f"{n:>12,}  {_format_time(fast):>10}  {_format_time(naive):>12}  {naive / fast:>7.1f}x")
    print("(naive NumPy: the tutorial Adam, a temporary array per operation)")
    return 0
