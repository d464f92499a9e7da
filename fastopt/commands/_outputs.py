"""Checks on the files a command will write, made before any work starts."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["check_output_path"]


def check_output_path(option: str, path: str | os.PathLike[str]) -> Path:
    """Raise ValueError (one line naming `option` and the fix) unless `path` can be written.

    The folder must exist and be writable, and `path` must not be a folder.
    Nothing is created.

    Parameters
    ----------
    option : str
        The command-line option that gave the path (``"--json"``).
    path : str or path-like

    Returns
    -------
    pathlib.Path
    """
    out = Path(path)
    if str(path) == "":
        raise ValueError(f"{option} needs a file name")
    if out.is_dir():
        raise ValueError(f"{option} {path}: is a folder; give a file name inside it")
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise ValueError(f"{option} {path}: the folder {folder} does not exist; create it first "
                         f"(mkdir -p {folder}) or choose another path")
    if not os.access(folder, os.W_OK | os.X_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise ValueError(f"{option} {path}: no permission to write there; choose another path")
    return out
