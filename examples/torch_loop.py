"""fastopt inside a PyTorch CPU training loop, next to torch.optim.Adam.

Two copies of one small torch MLP train on the spiral data with the same
batches. One uses ``torch.optim.Adam``; the other hands fastopt's Adam the
parameters and gradients as NumPy views (``p.detach().numpy()`` shares memory
with ``p``), so every ``opt.step()`` updates the torch tensors in place. The
gradient tensors are created once (``p.grad = torch.zeros_like(p)``) so that
``loss.backward()`` accumulates into the same memory every step, and fastopt's
``zero_grad`` clears them. Both runs should end at (nearly) the same loss.

Usage: ``python examples/torch_loop.py [--out DIR] [--quick]``
"""

from __future__ import annotations

import copy
import time

import _common
import numpy as np

import fastopt
from fastopt.data import spiral


def make_model(torch, seed=0):
    """A 2-64-3 ReLU MLP with seeded initial weights."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(2, 64), torch.nn.ReLU(), torch.nn.Linear(64, 3))


def fastopt_adam(model, lr):
    """fastopt's Adam over `model`'s parameters through NumPy views (grads allocated once)."""
    pairs = []
    for p in model.parameters():
        p.grad = p.detach().new_zeros(p.shape)
        pairs.append((p.detach().numpy(), p.grad.detach().numpy()))
    return fastopt.Adam(pairs, lr=lr)


def train(torch, model, opt, X, y, epochs, batch_size=32, seed=0):
    """Mini-batch cross-entropy training; returns (loss per epoch, median seconds of opt.step)."""
    rng = np.random.default_rng(seed)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    losses, step_times = [], []
    for _ in range(epochs):
        order = torch.from_numpy(rng.permutation(len(X)))
        total = 0.0
        for start in range(0, len(X), batch_size):
            idx = order[start:start + batch_size]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(Xt[idx]), yt[idx])
            loss.backward()
            t0 = time.perf_counter()
            opt.step()
            step_times.append(time.perf_counter() - t0)
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
    ax.set_title("torch MLP on spiral: torch.optim.Adam vs fastopt.Adam on the same tensors")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return _common.save(fig, out, "torch_loop.png")


def main(argv=None) -> int:
    args = _common.parser(__doc__.splitlines()[0]).parse_args(argv)
    try:
        import torch
    except ImportError:
        raise SystemExit('this example needs PyTorch: pip install "fastopt[torch]"') from None
    epochs, lr = (3 if args.quick else 100), 1e-2
    X, y = spiral(seed=0)
    reference = make_model(torch)
    ours = copy.deepcopy(reference)
    opt = fastopt_adam(ours, lr)
    grad_ptrs = [p.grad.data_ptr() for p in ours.parameters()]
    torch_losses, torch_seconds = train(torch, reference, torch.optim.Adam(reference.parameters(), lr=lr), X, y, epochs)
    fast_losses, fast_seconds = train(torch, ours, opt, X, y, epochs)
    if [p.grad.data_ptr() for p in ours.parameters()] != grad_ptrs:
        raise SystemExit("torch replaced a .grad tensor: fastopt no longer sees the gradients")
    with torch.no_grad():
        Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
        final = {name: torch.nn.functional.cross_entropy(m(Xt), yt).item()
                 for name, m in (("torch.optim.Adam", reference), ("fastopt.Adam", ours))}
        pairs = zip(reference.parameters(), ours.parameters(), strict=True)
        max_diff = max((a - b).abs().max().item() for a, b in pairs)
    steps = epochs * -(-len(X) // 32)
    print(f"{epochs} epochs ({steps} steps), Adam lr={lr:g}, batch 32:")
    for name, value in final.items():
        seconds = torch_seconds if name.startswith("torch") else fast_seconds
        print(f"  {name:<17} final loss {value:.6f}   median step {1e6 * seconds:6.1f} us")
    print(f"  relative loss difference {abs(final['fastopt.Adam'] / final['torch.optim.Adam'] - 1):.2e}, "
          f"largest parameter difference {max_diff:.2e}")
    plot({"torch.optim.Adam": torch_losses, "fastopt.Adam (in place, numpy views)": fast_losses}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
