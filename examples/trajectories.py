"""Paths of every optimizer on two 2-D test functions, drawn over their contours.

* ``f(x, y) = 20 x^2 + 2 y^2``: an elongated bowl (condition number 10);
* ``f(x, y) = 2 x^2 + 10 y^2 + 10 sin(5 y)``: a bowl with ripples (local minima along y).

Each optimizer updates a 2-element float64 parameter in place from the analytic
gradient, exactly as it would update a network's flat parameter buffer.

Usage: ``python examples/trajectories.py [--out DIR] [--quick]``
"""

from __future__ import annotations

import math

import _common
import numpy as np


def bowl(x, y):
    """``20 x^2 + 2 y^2``."""
    return 20 * x**2 + 2 * y**2


def bowl_grad(x, y):
    """Gradient of :func:`bowl`."""
    return 40 * x, 4 * y


def ripples(x, y):
    """``2 x^2 + 10 y^2 + 10 sin(5 y)``."""
    return 2 * x**2 + 10 * y**2 + 10 * np.sin(5 * y)


def ripples_grad(x, y):
    """Gradient of :func:`ripples`."""
    return 4 * x, 20 * y + 50 * math.cos(5 * y)


#: name -> (f, grad, start, (xlim, ylim), learning rate per optimizer)
PROBLEMS = {
    "bowl": (bowl, bowl_grad, (-4.0, 4.0), ((-5, 5), (-5, 5)),
             {"sgd": 0.02, "momentum": 0.01, "adagrad": 1.0, "rmsprop": 0.1,
              "adadelta": 20.0, "adam": 0.3, "adamw": 0.3, "adamax": 0.3, "nadam": 0.3,
              "radam": 0.04, "lion": 0.1, "lamb": 0.05}),
    "ripples": (ripples, ripples_grad, (-4.0, 2.5), ((-5, 5), (-3, 3)),
                {"sgd": 0.005, "momentum": 0.002, "adagrad": 1.0, "rmsprop": 0.1,
                 "adadelta": 20.0, "adam": 0.3, "adamw": 0.3, "adamax": 0.3, "nadam": 0.3,
              "radam": 0.3, "lion": 0.1, "lamb": 0.05}),
}


def trajectory(label, grad, start, lr, steps):
    """Run optimizer `label` from `start` for `steps` steps.

    Returns
    -------
    ndarray, shape (steps + 1, 2)
        The point after every step, `start` first.
    """
    p = np.array(start, dtype=np.float64)
    g = np.zeros_like(p)
    opt = _common.make_optimizer(label, (p, g), lr=lr)
    path = [p.copy()]
    for _ in range(steps):
        g[:] = grad(p[0], p[1])
        opt.step()
        path.append(p.copy())
    return np.array(path)


def _contours(ax, f, xlim, ylim, resolution):
    xs, ys = np.linspace(*xlim, resolution), np.linspace(*ylim, resolution)
    X, Y = np.meshgrid(xs, ys)
    Z = f(X, Y)
    levels = np.quantile(Z, np.linspace(0, 1, 30) ** 2)
    ax.contourf(X, Y, Z, levels=levels, cmap="Blues_r", alpha=0.6)
    ax.contour(X, Y, Z, levels=levels, colors="k", linewidths=0.3, alpha=0.5)
    best = np.unravel_index(np.argmin(Z), Z.shape)
    ax.plot(X[best], Y[best], "wX", ms=9, mec="k")
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)


def plot_problem(name, paths, out, resolution=300):
    """Draw one panel per optimizer (path over the contours) plus one with all paths; return the PNG path.

    The white cross marks the grid's global minimum, the black star the start.
    """
    f, _, start, (xlim, ylim), lrs = PROBLEMS[name]
    rows = -(-(len(paths) + 1) // 4)
    fig = _common.figure(figsize=(15, 3.75 * rows))
    axes = fig.subplots(rows, 4, sharex=True, sharey=True).ravel()
    for ax in axes[len(paths) + 1:]:
        ax.set_visible(False)
    panels = [[label] for label in paths] + [list(paths)]
    for ax, labels in zip(axes, panels, strict=False):
        _contours(ax, f, xlim, ylim, resolution)
        for label in labels:
            path = paths[label]
            ax.plot(path[:, 0], path[:, 1], "-o", ms=2, lw=1.2, color=_common.COLORS[label], label=label)
        ax.plot(*start, "k*", ms=11)
        if len(labels) == 1:
            x, y = paths[labels[0]][-1]
            ax.set_title(f"{labels[0]} (lr={lrs[labels[0]]:g}): f={f(x, y):.3g}", fontsize=10)
        else:
            ax.set_title("all", fontsize=10)
            ax.legend(loc="lower right", fontsize=7, framealpha=0.9)
    title = {"bowl": r"$f(x,y)=20x^2+2y^2$", "ripples": r"$f(x,y)=2x^2+10y^2+10\sin(5y)$"}[name]
    steps = len(next(iter(paths.values()))) - 1
    fig.suptitle(f"{title}: {steps} steps from {start} (star); white cross: global minimum")
    return _common.save(fig, out, f"trajectories_{name}.png")


def main(argv=None) -> int:
    args = _common.parser(__doc__.splitlines()[0]).parse_args(argv)
    steps = 10 if args.quick else 100
    for name, (f, grad, start, _, lrs) in PROBLEMS.items():
        paths = {label: trajectory(label, grad, start, lrs[label], steps) for label in _common.labels()}
        print(f"{name}: final points after {steps} steps")
        for label, path in paths.items():
            x, y = path[-1]
            print(f"  {label:<9} lr={lrs[label]:<6g} ({x:+.4f}, {y:+.4f})  f={f(x, y):.4f}")
        plot_problem(name, paths, args.out, resolution=60 if args.quick else 300)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
