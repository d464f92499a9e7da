"""The one text progress bar of fastopt's commands and benchmarks (no dependencies).

On a terminal the bar redraws in place (``\\r``) at most every `interval`
seconds; on anything else (a pipe, a log file, a test's captured stream) it
writes only the final line, so logs stay readable.

A hand-written bar rather than tqdm: fastopt's runtime dependencies are NumPy
and Numba only, so a fallback would be needed without tqdm anyway, and one
code path is simpler than two.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any, Literal

__all__ = ["ProgressBar"]


def _format_seconds(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:4.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s"


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

    def __init__(self, total: int, desc: str = "", width: int = 30, stream: IO[str] | None = None,
                 enabled: bool | None = None, interval: float = 0.1) -> None:
        if isinstance(total, bool) or not isinstance(total, int) or total < 0:
            raise ValueError(f"total must be an integer >= 0, got {total!r}")
        self.total = total
        self.desc = desc
        self.width = max(1, int(width))
        self.stream: IO[str] = sys.stderr if stream is None else stream
        isatty = getattr(self.stream, "isatty", None)
        self.live = bool(enabled) if enabled is not None else bool(isatty and isatty())
        self.quiet = enabled is False
        self.interval = interval
        self.count = 0
        self.postfix: dict[str, Any] = {}
        self._start = time.perf_counter()
        self._last_draw = -float("inf")
        self._last_width = 0
        self._closed = False

    def update(self, n: int = 1, **postfix: Any) -> None:
        """Advance by `n` items (0 only redraws) and remember `postfix` values.

        Parameters
        ----------
        n : int, default 1
        **postfix
            Name/value pairs shown after the bar, such as ``loss=0.12``;
            floats print with 4 significant digits.
        """
        self.count = min(self.total, self.count + n) if self.total else self.count + n
        self.postfix.update(postfix)
        now = time.perf_counter()
        if self.live and (now - self._last_draw >= self.interval or self.count >= self.total or n == 0):
            self._draw(now, end="")
            self._last_draw = now

    def render(self, now: float | None = None) -> str:
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

    def _draw(self, now: float, end: str) -> None:
        text = self.render(now)
        padded = text.ljust(self._last_width) if self.live else text
        self._last_width = len(text)
        self.stream.write(("\r" if self.live else "") + padded + end)
        self.stream.flush()

    def close(self) -> None:
        """Write the final state and a newline (once)."""
        if self._closed:
            return
        self._closed = True
        if not self.quiet:
            self._draw(time.perf_counter(), end="\n")

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> Literal[False]:
        self.close()
        return False
