"""The optimizer's share of a spiral-MLP training step, and fastopt's Adam step
against torch.optim.Adam on a model of the same size.

Usage: ``python bench/mlp_step_share.py [--hidden 64,1024] [--repeats 101]``

Part 1 times, interleaved, the two halves of a training step of the NumPy
2-H-3 MLP (``loss_and_grad`` on a batch, then ``optimizer.step()``) and
reports the optimizer's share. Part 2 times one Adam step on parameters of
the same shapes: fastopt on the MLP's single flat buffer, fastopt on four
separate (param, grad) pairs of torch tensors (numpy views of them; for
torch models use fastopt.torch, see examples/torch_train.py), and torch.optim.Adam in its for-loop, foreach and
fused (CPU) forms. Medians of interleaved samples; absolute times vary
between runs on shared machines, ratios are steadier.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import fastopt  # noqa: E402
from fastopt.benchmark.timing import medians  # noqa: E402
from fastopt.data import spiral  # noqa: E402
from fastopt.nn import MLP  # noqa: E402


def training_step_share(hidden, batch, repeats):
    """Median seconds of ``loss_and_grad`` and of ``Adam.step`` on the 2-hidden-3 MLP."""
    X, y = spiral(seed=0)
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(X))[:batch]
    xb, yb = X[idx], y[idx]
    model = MLP([2, hidden, 3], seed=0)
    opt = fastopt.Adam(model.params, lr=1e-3)
    model.loss_and_grad(xb, yb)
    return medians({"backprop": lambda: model.loss_and_grad(xb, yb), "step": opt.step}, rounds=repeats)


def adam_steps(hidden, repeats):
    """Median seconds of one Adam step per implementation, on 2-hidden-3 MLP-shaped parameters."""
    import torch

    shapes = [(2, hidden), (hidden,), (hidden, 3), (3,)]
    fns = {}
    model = MLP([2, hidden, 3], seed=0)
    model.params.grad[:] = np.random.default_rng(1).standard_normal(model.params.grad.size)
    fns["fastopt (flat buffer)"] = fastopt.Adam(model.params, lr=1e-3).step

    def torch_params():
        torch.manual_seed(0)
        ps = [torch.randn(s, requires_grad=True) for s in shapes]
        for p in ps:
            p.grad = torch.randn(p.shape)
        return ps

    ps = torch_params()
    fns["fastopt (4 torch tensors)"] = fastopt.Adam(
        [(p.detach().numpy(), p.grad.detach().numpy()) for p in ps], lr=1e-3).step
    for label, kw in (("torch Adam (for-loop)", {"foreach": False}),
                      ("torch Adam (foreach)", {"foreach": True}),
                      ("torch Adam (fused)", {"fused": True})):
        try:
            opt = torch.optim.Adam(torch_params(), lr=1e-3, **kw)
            opt.step()
        except (RuntimeError, ValueError, TypeError) as exc:
            print(f"  ({label} unavailable: {exc})")
            continue
        fns[label] = opt.step
    with torch.no_grad():
        return medians(fns, rounds=repeats)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", default="64,1024", help="hidden widths (comma-separated)")
    p.add_argument("--repeats", type=int, default=101, help="interleaved samples per candidate")
    p.add_argument("--torch-threads", type=int, default=None,
                   help="torch.set_num_threads (default: torch's own; 1 avoids thread contention on a busy machine)")
    args = p.parse_args(argv)
    widths = [int(h) for h in args.hidden.split(",")]
    import torch

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    print(f"numpy {np.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"{os.cpu_count()} CPUs; medians of {args.repeats} interleaved samples")
    print("\n1. Training step of the NumPy MLP (spiral data): loss_and_grad + fastopt Adam.step")
    print(f"{'model':<10} {'batch':>5} {'params':>8} {'backprop':>10} {'opt.step':>9} {'step share':>10}")
    for hidden in widths:
        n = MLP([2, hidden, 3]).n_params
        for batch in (32, 300):
            t = training_step_share(hidden, batch, args.repeats)
            share = t["step"] / (t["step"] + t["backprop"])
            print(f"{'2-' + str(hidden) + '-3':<10} {batch:>5} {n:>8,} {1e6 * t['backprop']:>8.1f}us "
                  f"{1e6 * t['step']:>7.1f}us {100 * share:>9.1f}%")
    print("\n2. One Adam step on the same parameter shapes")
    for hidden in widths:
        n = MLP([2, hidden, 3]).n_params
        t = adam_steps(hidden, args.repeats)
        base = t["fastopt (flat buffer)"]
        print(f"2-{hidden}-3 ({n:,} params)")
        for label, seconds in t.items():
            print(f"  {label:<26} {1e6 * seconds:8.1f} us   {seconds / base:5.1f}x fastopt (flat)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
