"""A one-line text progress bar on stderr."""

from __future__ import annotations

import sys


class ProgressBar:
    """``[#####-----]  5/10 label`` redrawn in place; silent when disabled.

    Parameters
    ----------
    total : int
        Number of units of work.
    enabled : bool
    stream : file, optional
        Where to draw (stderr by default).
    width : int
        Characters in the bar.
    """

    def __init__(self, total: int, enabled: bool = True, stream=None, width: int = 30):
        self.total, self.enabled, self.width, self.done = max(total, 1), enabled, width, 0
        self.stream = stream if stream is not None else sys.stderr
        self._last = 0

    def show(self, label: str) -> None:
        """Redraw the bar with ``label`` (the unit now running)."""
        if not self.enabled:
            return
        filled = self.width * self.done // self.total
        line = f"[{'#' * filled}{'-' * (self.width - filled)}] {self.done}/{self.total} {label}"
        self.stream.write("\r" + line.ljust(self._last))
        self.stream.flush()
        self._last = len(line)

    def advance(self, label: str = "") -> None:
        """Mark one unit done and redraw."""
        self.done += 1
        self.show(label)

    def close(self) -> None:
        """Finish the line."""
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
