"""What every fastopt plot shares: the lazy matplotlib import (extra
``fastopt[plot]``) and a palette of clearly different colours."""

from __future__ import annotations

from types import ModuleType

__all__ = ["INSTALL_HINT", "PALETTE", "distinct_colours", "require_matplotlib"]

INSTALL_HINT = 'pip install "fastopt[plot]"'

PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#000000", "#000080", "#ff00ff", "#7cfc00", "#ffd700", "#8b0000",
)
"""Line colours, most distinct first: matplotlib's ten ``tab10`` colours, then
black, navy, magenta, lawn green, gold and dark red."""


def distinct_colours(n: int) -> list[str]:
    """``n`` different colours from :data:`PALETTE`.

    Parameters
    ----------
    n : int
        How many lines need a colour (0 to ``len(PALETTE)``).

    Returns
    -------
    list of str
        Hex colours, no two alike.
    """
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= len(PALETTE):
        raise ValueError(f"n must be an int in [0, {len(PALETTE)}], got {n!r}")
    return list(PALETTE[:n])


def require_matplotlib(option: str = "--plot") -> ModuleType:
    """Return the ``matplotlib.figure`` module, or raise ImportError naming the fix.

    Call it before a long run so that a missing dependency fails fast.

    Parameters
    ----------
    option : str, default "--plot"
        What asked for the plot, named in the message.
    """
    try:
        import matplotlib.figure
    except ImportError as exc:
        raise ImportError(f"{option} needs matplotlib, which is not installed; install it with: "
                          f"{INSTALL_HINT}") from exc
    return matplotlib.figure
