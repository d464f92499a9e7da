"""Low-precision optimizer state: the digits MLP trained with float32, bfloat16 and int8 states.

The same 64-128-10 MLP (same initial weights, same batches) is trained on
scikit-learn's 8x8 digits with Adam, AdamW and SGD with momentum, once per
``state_dtype``. The table shows what each optimizer really stored (read from
``opt.state``: bfloat16 states are uint16 bits, int8 states are uint8 codes
plus one float32 scale per 256-element block), the bytes of state per
parameter, the final training loss and the test accuracy; the PNG has the
loss curves.

int8 states need a buffer of at least 4096 elements: the MLP's 9610
parameters are one flat buffer (``FlatParams``), so all of them get 8-bit
states. (The 2-64-3 spiral MLP, 387 parameters, would keep float32 states.)

Usage: ``python examples/low_precision.py [--out DIR] [--quick]`` (needs
scikit-learn: ``pip install "fastopt[digits]"``, and matplotlib).
"""

from __future__ import annotations

import _common
import numpy as np

from fastopt.data import digits
from fastopt.nn import MLP

STATE_DTYPES = ("float32", "bfloat16", "int8")
#: label -> (optimizer label of _common.OPTIMIZERS, hyperparameters)
RUNS = {"adam": ("adam", {"lr": 1e-2}), "adamw": ("adamw", {"lr": 1e-2, "weight_decay": 1e-2}),
        "momentum": ("momentum", {"lr": 0.05})}
STYLES = {"float32": ("black", "-"), "bfloat16": ("tab:blue", "--"), "int8": ("tab:red", "-.")}


def stored(opt, n_params):
    """``(what the state arrays are, bytes of state per parameter)``, read from ``opt.state``."""
    kinds = {"uint8": "int8 blocks", "uint16": "bfloat16", "float32": "float32", "float64": "float64"}
    arrays = {k: v for st in opt.state.values() for k, v in st.items() if isinstance(v, np.ndarray)}
    names = sorted({kinds[v.dtype.name] for k, v in arrays.items() if not k.endswith("_scale")})
    return "+".join(names), sum(v.nbytes for v in arrays.values()) / n_params


def train(label, state_dtype, data, epochs, seed=0):
    """Train a fresh MLP; return (epoch losses, final loss, test accuracy, stored, bytes per param)."""
    (X, y), (Xt, yt) = data
    model = MLP([64, 128, 10], seed=seed)
    name, hyper = RUNS[label]
    opt = _common.make_optimizer(name, model.params, state_dtype=state_dtype, **hyper)
    rng = np.random.default_rng(seed)
    losses = [model.train_epoch(X, y, opt, batch_size=32, seed=rng) for _ in range(epochs)]
    kind, nbytes = stored(opt, model.n_params)
    return losses, model.loss(X, y), model.accuracy(Xt, yt), kind, nbytes


def plot(results, out, epochs):
    """One panel per optimizer, one curve per state dtype; return the PNG path."""
    fig = _common.figure(figsize=(14, 4.5))
    for ax, label in zip(fig.subplots(1, len(RUNS)), RUNS, strict=True):
        for state_dtype in STATE_DTYPES:
            losses, _, acc, kind, nbytes = results[label, state_dtype]
            colour, style = STYLES[state_dtype]
            ax.plot(np.arange(1, len(losses) + 1), losses, style, color=colour, lw=1.5,
                    label=f"{state_dtype}: {nbytes:.3g} B/param, test {100 * acc:.1f}%")
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss")
        ax.set_title(f"{label} on digits (64-128-10 MLP), {epochs} epochs")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    return _common.save(fig, out, "low_precision.png")


def main(argv=None) -> int:
    args = _common.parser(__doc__.splitlines()[0]).parse_args(argv)
    try:
        data = digits(seed=0)
    except ImportError as exc:
        raise SystemExit(str(exc)) from None
    epochs = 3 if args.quick else 30
    results = {(label, d): train(label, d, data, epochs) for label in RUNS for d in STATE_DTYPES}
    print(f"{'optimizer':<10} {'state_dtype':<11} {'stored as':<12} {'B/param':>8} {'final loss':>11} {'test acc':>9}")
    for (label, state_dtype), (_, loss, acc, kind, nbytes) in results.items():
        print(f"{label:<10} {state_dtype:<11} {kind:<12} {nbytes:>8.3f} {loss:>11.4f} {100 * acc:>8.1f}%")
    plot(results, args.out, epochs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
