"""Learning-rate tolerance: final training loss versus lr for every optimizer.

Each optimizer trains the same 2-64-3 MLP (same initial weights, same batches)
on the spiral data for a short run at each learning rate of a log grid. A wide
flat valley means the optimizer forgives a badly chosen lr.

Usage: ``python examples/lr_tolerance.py [--out DIR] [--quick]``
"""

from __future__ import annotations

import math

import _common
import numpy as np

from fastopt.data import spiral
from fastopt.nn import MLP


def final_loss(label, lr, X, y, epochs, batch_size=32, seed=0):
    """Train a fresh MLP with optimizer `label` at `lr`; return the final full-data loss (inf if it diverged)."""
    model = MLP([2, 64, 3], seed=seed)
    opt = _common.make_optimizer(label, model.params, lr=lr)
    rng = np.random.default_rng(seed)
    with np.errstate(all="ignore"):
        for _ in range(epochs):
            if not math.isfinite(model.train_epoch(X, y, opt, batch_size=batch_size, seed=rng)):
                return math.inf
        value = model.loss(X, y)
    return value if math.isfinite(value) else math.inf


def plot(lrs, losses, out, epochs, ceiling):
    """Final loss versus lr, one line per optimizer (diverged runs drawn at the top); return the PNG path."""
    fig = _common.figure(figsize=(8, 5))
    ax = fig.add_subplot()
    for label, values in losses.items():
        values = np.array(values)
        bad = ~np.isfinite(values) | (values > ceiling)
        ax.plot(lrs, np.where(bad, ceiling, values), "-o", ms=4, color=_common.COLORS[label], label=label)
        ax.plot(lrs[bad], np.full(bad.sum(), ceiling), "x", ms=9, color=_common.COLORS[label])
    ax.axhline(math.log(3), color="k", ls=":", lw=0.8)
    ax.text(lrs[0], math.log(3) * 1.05, "chance (ln 3)", fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(top=ceiling * 1.5)
    ax.set_xlabel("learning rate")
    ax.set_ylabel(f"training loss after {epochs} epochs")
    ax.set_title(f"Learning-rate tolerance on spiral (2-64-3 MLP); x: diverged or loss > {ceiling:g}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, ncols=2)
    return _common.save(fig, out, "lr_tolerance.png")


def main(argv=None) -> int:
    args = _common.parser(__doc__.splitlines()[0]).parse_args(argv)
    lrs = np.logspace(-4, 2, 3 if args.quick else 13)
    epochs = 2 if args.quick else 40
    X, y = spiral(seed=0)
    losses = {label: [final_loss(label, lr, X, y, epochs) for lr in lrs] for label in _common.labels()}
    print(f"final training loss after {epochs} epochs (batch 32):")
    print(f"{'lr':>9}" + "".join(f"{label:>10}" for label in losses))
    for i, lr in enumerate(lrs):
        print(f"{lr:>9.2g}" + "".join(f"{losses[label][i]:>10.4g}" for label in losses))
    best = {label: lrs[int(np.argmin(values))] for label, values in losses.items()}
    print("best lr: " + ", ".join(f"{label} {lr:.2g}" for label, lr in best.items()))
    plot(lrs, losses, args.out, epochs, ceiling=10.0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
