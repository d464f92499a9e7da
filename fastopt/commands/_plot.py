"""Loss-curve PNGs for the commands; matplotlib (extra ``fastopt[plot]``) is imported lazily."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from os import PathLike
from typing import Any

from ..plotting import distinct_colours, require_matplotlib

__all__ = ["loss_curve_figure", "save_loss_curves"]


def loss_curve_figure(curves: Mapping[str, Sequence[float]], title: str, xlabel: str = "epoch") -> Any:
    """A matplotlib Figure of one or more loss curves (log y axis), one colour each.

    Parameters
    ----------
    curves : mapping of str to sequence of float
        Label -> loss per epoch. Non-finite values are left out of the plot.
    title : str
    xlabel : str, default "epoch"
    """
    figure = require_matplotlib()
    fig = figure.Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = fig.add_subplot()
    for (label, values), colour in zip(curves.items(), distinct_colours(len(curves)), strict=True):
        points = [(i + 1, v) for i, v in enumerate(values) if math.isfinite(v) and v > 0]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, label=label, lw=1.6, color=colour)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("training loss (cross-entropy)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if len(curves) > 1:
        fig.legend(loc="outside right upper", fontsize=8)
    return fig


def save_loss_curves(path: str | PathLike[str], curves: Mapping[str, Sequence[float]], title: str,
                     xlabel: str = "epoch") -> None:
    """Plot :func:`loss_curve_figure` and save it as a PNG at `path`."""
    loss_curve_figure(curves, title, xlabel).savefig(path, dpi=110)
