"""Helpers shared by the example scripts: command line, figures, optimizer styles.

Importing this module also makes ``import fastopt`` work when an example is run
from a source checkout that is not installed (``python examples/NAME.py``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
try:  # pragma: no cover - depends on how fastopt is installed
    import fastopt  # noqa: F401
except ImportError:  # pragma: no cover
    sys.path.insert(0, str(ROOT))

#: Colour per optimizer label, so that every example draws them alike.
COLORS = {
    "sgd": "tab:blue",
    "momentum": "tab:orange",
    "nesterov": "tab:brown",
    "adagrad": "tab:green",
    "rmsprop": "tab:red",
    "adadelta": "tab:purple",
    "adam": "tab:pink",
    "adamw": "tab:gray",
    "adamax": "tab:olive",
    "nadam": "tab:cyan",
    "radam": "gold",
    "lion": "black",
    "lamb": "darkred",
}

#: The optimizers every example runs: label -> (fastopt registry name, fixed hyperparameters).
OPTIMIZERS = {
    "sgd": ("sgd", {}),
    "momentum": ("sgd", {"momentum": 0.9}),
    "adagrad": ("adagrad", {}),
    "rmsprop": ("rmsprop", {}),
    "adadelta": ("adadelta", {}),
    "adam": ("adam", {}),
    "adamw": ("adamw", {}),
    "adamax": ("adamax", {}),
    "nadam": ("nadam", {}),
    "radam": ("radam", {}),
    "lion": ("lion", {}),
    "lamb": ("lamb", {}),
}


def labels():
    """The labels of :data:`OPTIMIZERS` whose optimizer this fastopt provides."""
    import fastopt

    return [label for label, (name, _) in OPTIMIZERS.items() if name in fastopt.OPTIMIZERS]


def make_optimizer(label, params, **hyperparameters):
    """Build the optimizer `label` of :data:`OPTIMIZERS` with extra hyperparameters.

    Parameters
    ----------
    label : str
        A key of :data:`OPTIMIZERS`.
    params
        Anything a fastopt optimizer accepts.
    **hyperparameters
        E.g. ``lr=0.1``; they override the fixed ones.

    Returns
    -------
    fastopt.Optimizer
    """
    import fastopt

    name, fixed = OPTIMIZERS[label]
    return fastopt.OPTIMIZERS[name](params, **{**fixed, **hyperparameters})


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every example takes: ``--out DIR`` and ``--quick``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", default="examples_output", help="directory for the PNGs (default examples_output)")
    p.add_argument("--quick", action="store_true", help="tiny run (for tests): fewer steps, same outputs")
    return p


def figure(*args, **kwargs):
    """A matplotlib ``Figure`` (no GUI backend needed); exits with an install hint without matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        sys.exit('this example needs matplotlib: pip install "fastopt[plot]"')
    kwargs.setdefault("layout", "constrained")
    return Figure(*args, **kwargs)


def save(fig, out, name: str) -> Path:
    """Save `fig` as ``out/name`` (creating `out`), print and return the path."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")
    return path
