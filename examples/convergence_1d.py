"""Every optimizer on the 1-D loss L(x) = 2x^4 + 3x^3 + 2, started at x = 2.

L'(x) = x^2 (8x + 9): a saddle (flat inflection) at x = 0 and the minimum at
x = -9/8. From x = 2 an optimizer must cross the flat saddle, where plain
gradient steps shrink like x^2, without diverging on the steep quartic side.
For lr = 1e-3, 1e-2 and 1e-1 the script reports the iterations each optimizer
needs to reach |x + 9/8| < 1e-3 for good (or divergence, or being stuck near
the saddle) and plots the parameter paths.

Usage: ``python examples/convergence_1d.py [--out DIR] [--quick]``
"""

from __future__ import annotations

import _common
import numpy as np

X_MIN = -9.0 / 8.0
START = 2.0
LRS = (1e-3, 1e-2, 1e-1)
TOL = 1e-3


def loss(x):
    """``2 x^4 + 3 x^3 + 2``."""
    return 2 * x**4 + 3 * x**3 + 2


def grad(x):
    """``8 x^3 + 9 x^2``."""
    return 8 * x**3 + 9 * x**2


def run(label, lr, iters):
    """Path of optimizer `label` from :data:`START` (stops early on divergence).

    Returns
    -------
    ndarray
        x after every iteration, `START` first.
    """
    p = np.array([START])
    g = np.zeros(1)
    opt = _common.make_optimizer(label, (p, g), lr=lr)
    path = [START]
    with np.errstate(all="ignore"):
        for _ in range(iters):
            g[0] = grad(p[0])
            opt.step()
            path.append(p[0])
            if not abs(p[0]) < 1e6:
                break
    return np.array(path)


def outcome(path, iters):
    """Classify a path: ``(text, iterations or None)``.

    Converged means ``|x + 9/8| < TOL`` from that iteration to the end of the run.
    """
    x = path[-1]
    if not abs(x) < 1e6:
        return f"diverged (it {len(path) - 1})", None
    outside = np.flatnonzero(~(np.abs(path - X_MIN) < TOL))
    if outside.size == 0 or outside[-1] < len(path) - 1:
        n = int(outside[-1]) + 1 if outside.size else 0
        return f"{n} it", n
    if abs(x) < 0.1:
        return f"stuck at saddle (x={x:.3g})", None
    if abs(x - X_MIN) < 0.1:
        return f"oscillates (|x+9/8|={abs(x - X_MIN):.1g})", None
    return f"not converged (x={x:.3g})", None


def plot(paths, out, iters):
    """Loss curve plus one panel per learning rate with every optimizer's x(t); return the PNG path."""
    fig = _common.figure(figsize=(17, 4.5))
    axes = fig.subplots(1, len(LRS) + 1)
    xs = np.linspace(-1.8, 2.2, 400)
    axes[0].plot(xs, loss(xs), "k")
    axes[0].plot([X_MIN, 0, START], loss(np.array([X_MIN, 0, START])), "o", color="tab:red")
    for x, text in ((X_MIN, "minimum -9/8"), (0.0, "saddle 0"), (START, "start 2")):
        axes[0].annotate(text, (x, loss(x)), textcoords="offset points", xytext=(5, 8), fontsize=8)
    axes[0].set_title(r"$L(x)=2x^4+3x^3+2$")
    axes[0].set_xlabel("x")
    axes[0].set_ylim(0, 50)
    for ax, lr in zip(axes[1:], LRS, strict=True):
        for label in _common.labels():
            path = paths[label, lr]
            t = np.arange(len(path))
            shown = np.clip(path, -3, 3)
            ax.plot(t + 1, shown, lw=1.3, color=_common.COLORS[label], label=label)
            if not abs(path[-1]) < 1e6:
                ax.plot(t[-1] + 1, shown[-1], "x", ms=8, color=_common.COLORS[label])
        ax.axhline(X_MIN, color="k", ls="--", lw=0.8)
        ax.axhline(0.0, color="k", ls=":", lw=0.8)
        ax.set_xscale("log")
        ax.set_ylim(-3.1, 3.1)
        ax.set_xlabel("iteration + 1")
        ax.set_ylabel("x (clipped to [-3, 3]; x marks divergence)")
        ax.set_title(f"lr = {lr:g}, {iters} iterations")
    handles, names = axes[1].get_legend_handles_labels()
    axes[0].legend(handles, names, fontsize=8, loc="upper left", ncols=2)
    return _common.save(fig, out, "convergence_1d.png")


def main(argv=None) -> int:
    args = _common.parser(__doc__.splitlines()[0]).parse_args(argv)
    iters = 300 if args.quick else 10_000
    paths = {(label, lr): run(label, lr, iters) for label in _common.labels() for lr in LRS}
    print(f"iterations to |x + 9/8| < {TOL:g} (for good) from x = {START:g}, at most {iters}:")
    print(f"{'optimizer':<10}" + "".join(f"{'lr=' + format(lr, 'g'):>30}" for lr in LRS))
    for label in _common.labels():
        cells = [outcome(paths[label, lr], iters)[0] for lr in LRS]
        print(f"{label:<10}" + "".join(f"{c:>30}" for c in cells))
    plot(paths, args.out, iters)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
