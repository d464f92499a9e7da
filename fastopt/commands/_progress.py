"""A tiny text progress bar (no dependencies).

On a terminal the bar redraws in place (``\\r``) at most every `interval`
seconds; on anything else (a pipe, a log file, a test's captured stream) it
writes only the final line, so logs stay readable.
"""

from __future__ import annotations

import sys
import time

__all__ = ["ProgressBar"]


def _format_seconds(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:4.1f}s"
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes}m{seconds:02d}s"


class ProgressBar:
    """Count work items and draw ``desc [#####.....] 12/40 3.1s loss 0.123``.

    Parameters
    ----------
    total : int
        Number of items the bar counts to (>= 0).
    desc : str, default ""
        Label written before the bar.
    width : int, default 30
        Characters inside the brackets.
    stream : file-like, default sys.stderr
        Where to write.
    enabled : bool or None, default None
        False draws nothing. None draws live on a terminal and writes only the
        final line elsewhere; True always redraws live.
    interval : float, default 0.1
        Minimum seconds between two live redraws.

    Examples
    --------
    >>> import io
    >>> bar = ProgressBar(4, "train", width=4, stream=io.StringIO(), enabled=True)
    >>> for _ in range(4):
    ...     bar.update(loss=0.5)
    >>> bar.close()
    """

    def __init__(self, total, desc="", width=30, stream=None, enabled=None, interval=0.1):
        if isinstance(total, bool) or not isinstance(total, int) or total < 0:
            raise ValueError(f"total must be an integer >= 0, got {total!r}")
        self.total = total
        self.desc = desc
        self.width = max(1, int(width))
        self.stream = sys.stderr if stream is None else stream
        isatty = getattr(self.stream, "isatty", None)
        self.live = bool(enabled) if enabled is not None else bool(isatty and isatty())
        self.quiet = enabled is False
        self.interval = interval
        self.count = 0
        self.postfix = {}
        self._start = time.perf_counter()
        self._last_draw = -float("inf")
        self._closed = False

    def update(self, n=1, **postfix):
        """Advance by `n` items and remember `postfix` values (shown after the bar).

        Parameters
        ----------
        n : int, default 1
        **postfix
            Name/value pairs such as ``loss=0.12``; floats print with 4 significant digits.
        """
        self.count = min(self.total, self.count + n) if self.total else self.count + n
        self.postfix.update(postfix)
        now = time.perf_counter()
        if self.live and (now - self._last_draw >= self.interval or self.count >= self.total):
            self._draw(now, end="")
            self._last_draw = now

    def render(self, now=None) -> str:
        """The current bar as a string (without ``\\r`` or newline)."""
        now = time.perf_counter() if now is None else now
        fraction = self.count / self.total if self.total else 1.0
        filled = int(round(fraction * self.width))
        bar = "#" * filled + "." * (self.width - filled)
        digits = len(str(self.total))
        text = f"{self.desc} [{bar}] {self.count:>{digits}}/{self.total} {_format_seconds(now - self._start)}"
        for key, value in self.postfix.items():
            text += f" {key} {value:.4g}" if isinstance(value, float) else f" {key} {value}"
        return text.lstrip()

    def _draw(self, now, end):
        self.stream.write(("\r" if self.live else "") + self.render(now) + end)
        self.stream.flush()

    def close(self):
        """Write the final state and a newline (once)."""
        if self._closed:
            return
        self._closed = True
        if not self.quiet:
            self._draw(time.perf_counter(), end="\n")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
