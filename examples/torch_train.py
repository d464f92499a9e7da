"""Training a torch model with fastopt.torch.AdamW and a torch scheduler, next to torch.optim.AdamW.

Two copies of one torch MLP train on the spiral data with the same batches,
each with its optimizer and a ``torch.optim.lr_scheduler.OneCycleLR`` (which
also cycles Adam's beta1). The only difference between the two loops is the
optimizer class: ``fastopt.torch.AdamW`` is a ``torch.optim.Optimizer``, so
the scheduler, ``model.zero_grad()``, ``loss.backward()`` and ``opt.step()``
are torch's own. fastopt moved the model's params into one flat buffer at
construction (each ``p.data`` is a view of it) and steps them with one fused
kernel call. Both runs follow the same trajectory to float32 rounding; the
plot shows both loss curves.

Usage: ``python examples/torch_train.py [--out DIR] [--quick]``
"""

from __future__ import annotations

import copy
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # torch's and numba's OpenMP pools share the cores

import _common  # noqa: E402
import numpy as np  # noqa: E402

from fastopt.data import spiral  # noqa: E402


def make_model(torch, seed=0):
    """A 2-64-64-3 ReLU MLP with seeded initial weights."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(2, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU(),
                               torch.nn.Linear(64, 3))


def train(torch, model, opt, X, y, epochs, batch_size=32, seed=0):
    """Mini-batch cross-entropy training with OneCycleLR; returns (loss per epoch, median seconds of opt.step)."""
    rng = np.random.default_rng(seed)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    steps_per_epoch = -(-len(X) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-2, total_steps=epochs * steps_per_epoch)
    losses, step_times = [], []
    for _ in range(epochs):
        order = torch.from_numpy(rng.permutation(len(X)))
        total = 0.0
        for start in range(0, len(X), batch_size):
            idx = order[start:start + batch_size]
            model.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(Xt[idx]), yt[idx])
            loss.backward()
            t0 = time.perf_counter()
            opt.step()
            step_times.append(time.perf_counter() - t0)
            sched.step()
            total += loss.item() * len(idx)
        losses.append(total / len(X))
    return losses, float(np.median(step_times))


def plot(curves, out):
    """Both loss curves on a log scale; return the PNG path."""
    fig = _common.figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    for (label, values), style in zip(curves.items(), ("-", "--"), strict=True):
        ax.plot(np.arange(1, len(values) + 1), values, style, lw=1.8, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (mean over the epoch)")
    ax.set_title("spiral MLP with OneCycleLR: torch.optim vs fastopt.torch AdamW")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return _common.save(fig, out, "torch_train.png")


def main(argv=None) -> int:
    args = _common.parser(__doc__.splitlines()[0]).parse_args(argv)
    try:
        import torch

        import fastopt.torch
    except ImportError:
        raise SystemExit('this example needs PyTorch: pip install "fastopt[torch]"') from None
    epochs, lr = (3 if args.quick else 60), 1e-2
    X, y = spiral(seed=0)
    reference = make_model(torch)
    ours = copy.deepcopy(reference)
    torch_opt = torch.optim.AdamW(reference.parameters(), lr=lr)
    fast_opt = fastopt.torch.AdamW(ours.parameters(), lr=lr)  # the one line that changes
    torch_losses, torch_seconds = train(torch, reference, torch_opt, X, y, epochs)
    fast_losses, fast_seconds = train(torch, ours, fast_opt, X, y, epochs)
    with torch.no_grad():
        Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
        final = {name: torch.nn.functional.cross_entropy(m(Xt), yt).item()
                 for name, m in (("torch.optim.AdamW", reference), ("fastopt.torch.AdamW", ours))}
        pairs = zip(reference.parameters(), ours.parameters(), strict=True)
        max_diff = max((a - b).abs().max().item() for a, b in pairs)
    steps = epochs * -(-len(X) // 32)
    print(f"{epochs} epochs ({steps} steps), AdamW with OneCycleLR (max lr 2e-2), batch 32:")
    for name, value in final.items():
        seconds = torch_seconds if name.startswith("torch") else fast_seconds
        print(f"  {name:<20} final loss {value:.6f}   median opt.step() {1e6 * seconds:6.1f} us")
    print(f"  relative loss difference {abs(final['fastopt.torch.AdamW'] / final['torch.optim.AdamW'] - 1):.2e}, "
          f"largest parameter difference {max_diff:.2e}")
    plot({"torch.optim.AdamW": torch_losses, "fastopt.torch.AdamW": fast_losses}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
