"""Loss-curve PNGs for the commands; matplotlib (extra ``fastopt[plot]``) is imported lazily."""

from __future__ import annotations

import math

__all__ = ["require_matplotlib", "save_loss_curves"]

INSTALL_HINT = 'pip install "fastopt[plot]"'


def require_matplotlib():
    """Return the ``matplotlib.figure`` module, or raise ImportError with the install hint.

    Call it before a long run so that a missing dependency fails fast.
    """
    try:
        import matplotlib.figure
    except ImportError as exc:
        raise ImportError(f"--plot needs matplotlib, which is not installed; install it with: {INSTALL_HINT}") from exc
    return matplotlib.figure


def save_loss_curves(path, curves: dict, title: str, xlabel: str = "epoch") -> None:
    """Plot one or more loss curves (log y axis) and save them as a PNG.

    Parameters
    ----------
    path : str or path-like
        Output file.
    curves : dict of str -> sequence of float
        Label -> loss per epoch. Non-finite values are left out of the plot.
    title : str
    xlabel : str, default "epoch"
    """
    figure = require_matplotlib()
    fig = figure.Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for label, values in curves.items():
        points = [(i + 1, v) for i, v in enumerate(values) if math.isfinite(v) and v > 0]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, label=label, lw=1.6)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("training loss (cross-entropy)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if len(curves) > 1:
        ax.legend()
    fig.savefig(path, dpi=110)
