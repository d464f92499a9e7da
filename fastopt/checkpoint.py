"""Crash-safe checkpoints: an optimizer's state (and optionally the params)
written atomically to one ``.npz`` file, with no pickle inside.

Reading checks what it reads: a missing, empty, truncated or corrupt file, or
one that is not a fastopt checkpoint, raises :class:`CheckpointError` naming
the file and what is wrong with it (the zip container's CRC-32 of every array
catches flipped bytes). Sharded checkpoints of data-parallel runs (a folder of
shards plus a manifest) are :mod:`fastopt.distributed`'s.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CheckpointError", "load", "save"]

_META = "__fastopt_meta__"
_ZIP_MAGIC = b"PK\x03\x04"


class CheckpointError(ValueError):
    """A checkpoint cannot be read; the message names the file and what is wrong."""


def _flatten(state_dict: dict) -> tuple[dict, dict]:
    arrays, meta_state = {}, {}
    for i, entry in state_dict["state"].items():
        meta_entry = {}
        for key, value in entry.items():
            if isinstance(value, np.ndarray):
                name = f"state/{i}/{key}"
                arrays[name] = value
                meta_entry[key] = {"array": name}
            else:
                meta_entry[key] = {"value": value}
        meta_state[str(i)] = meta_entry
    meta = {k: v for k, v in state_dict.items() if k != "state"}
    meta["state"] = meta_state
    return arrays, meta


def save(path: str | os.PathLike[str], optimizer: Any = None, params: Any = None,
         extra: dict | None = None) -> Path:
    """Write a checkpoint atomically: to a temporary file in the same folder,
    flushed to disk, then renamed over ``path``. A crash mid-save leaves the
    previous checkpoint intact.

    Parameters
    ----------
    path : str or Path
        Destination (``.npz`` is appended if missing).
    optimizer : Optimizer, optional
        Its :meth:`~fastopt.Optimizer.state_dict` is saved.
    params : FlatParams or mapping of str to array, optional
        Parameter values to save alongside.
    extra : dict, optional
        JSON-serialisable metadata (epoch, config...).
    """
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {"extra": extra or {}}
    if optimizer is not None:
        opt_arrays, opt_meta = _flatten(optimizer.state_dict())
        arrays.update(opt_arrays)
        meta["optimizer"] = opt_meta
    if params is not None:
        names = list(params.names if hasattr(params, "names") else params)
        meta["params"] = names
        arrays.update({f"params/{name}": np.asarray(params[name]) for name in names})
    return write_npz_atomic(path, arrays, meta)


def write_npz_atomic(path: str | os.PathLike[str], arrays: dict, meta: dict) -> Path:
    """Write ``arrays`` and the JSON-serialisable ``meta`` to ``path``
    atomically: a temporary file in the same folder, flushed to disk, renamed
    over ``path``, then the folder flushed so that the rename is durable too.
    Read it back with :func:`read_npz`."""
    path = Path(path)
    payload = json.dumps(meta, default=json_default).encode()
    arrays = {**arrays, _META: np.frombuffer(payload, dtype=np.uint8)}
    write_atomic(path, lambda f: np.savez(f, **arrays))
    return path


def write_atomic(path: Path, write: Any, binary: bool = True) -> None:
    """Write ``path`` all or nothing: ``write(file)`` fills a temporary file in
    the same folder, which is flushed to disk and renamed over ``path`` (then
    the folder entry is flushed too); on any error the temporary file is
    removed and ``path`` is untouched."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


def json_default(value: Any) -> Any:
    """``json.dumps``' ``default`` for checkpoint metadata: NumPy scalars and tuples."""
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"checkpoint metadata cannot hold {type(value).__name__}")


def fsync_folder(folder: str | os.PathLike[str]) -> None:
    """Flush a folder's entries (a rename in it) to disk, where the platform allows."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without folder descriptors
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def read_npz(path: str | os.PathLike[str], what: str = "fastopt checkpoint") -> tuple[dict, dict]:
    """``(meta, arrays)`` of a file written by :func:`write_npz_atomic`, every
    array read (and so CRC-checked) now.

    Raises
    ------
    CheckpointError
        Naming ``path`` and the problem: a folder, empty, not an ``.npz``
        archive, an ``.npz`` of something else, truncated, corrupt.
    FileNotFoundError
        When ``path`` does not exist.
    """
    path = Path(path)
    if path.is_dir():
        hint = (": it holds a manifest.json, so it is a sharded checkpoint; read it with "
                "fastopt.distributed.load_checkpoint") if (path / "manifest.json").exists() else ""
        raise CheckpointError(f"{path} is a folder, not a {what} file{hint}")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, f"no such file (missing {what})", str(path)) from None
    except OSError as exc:
        raise CheckpointError(f"{path} cannot be read: {exc.strerror or exc}") from None
    if not head:
        raise CheckpointError(f"{path} is empty (0 bytes), not a {what}: an interrupted write or copy?")
    if head != _ZIP_MAGIC:
        raise CheckpointError(f"{path} is not a {what}: not an .npz archive (it starts with {head!r}; "
                              f"an .npz starts with {_ZIP_MAGIC!r})")
    try:
        with np.load(path, allow_pickle=False) as data:
            if _META not in data.files:
                raise CheckpointError(f"{path} is an .npz archive but not a {what} (it has no {_META} entry)")
            arrays = {k: data[k] for k in data.files}
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path} is truncated or corrupt ({_describe(exc)}); it cannot be loaded") from None
    try:
        meta = json.loads(arrays.pop(_META).tobytes().decode())
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: its metadata is corrupt ({exc})") from None
    return meta, arrays


def _describe(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, zipfile.BadZipFile) and text == "File is not a zip file":
        return "the archive's directory at its end is missing: the file was cut short"
    if isinstance(exc, zipfile.BadZipFile) and text.startswith("Bad CRC-32"):
        return f"checksum mismatch: {text}"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def load(path: str | os.PathLike[str]) -> dict:
    """Read a checkpoint written by :func:`save`.

    Returns
    -------
    dict with ``"optimizer"`` (a state dict for ``load_state_dict``, or None),
    ``"params"`` (name -> array, or None) and ``"extra"``.

    Raises
    ------
    CheckpointError
        (a ``ValueError``) naming the file when it is empty, truncated,
        corrupt, or not a fastopt checkpoint.
    FileNotFoundError
        When there is no such file.
    """
    meta, arrays = read_npz(path)
    try:
        return _unflatten(meta, arrays)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{path}: its contents do not match its metadata ({type(exc).__name__}: {exc}); "
                              "not a checkpoint written by fastopt.checkpoint.save") from None


def _unflatten(meta: dict, arrays: dict) -> dict:
    out = {"extra": meta.get("extra", {}), "optimizer": None, "params": None}
    if "optimizer" in meta:
        om = meta["optimizer"]
        state = {int(i): {k: (arrays[v["array"]] if "array" in v else v["value"]) for k, v in entry.items()}
                 for i, entry in om["state"].items()}
        groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in om["param_groups"]]
        out["optimizer"] = {**{k: v for k, v in om.items() if k not in ("state", "param_groups")},
                            "state": state, "param_groups": groups}
    if "params" in meta:
        out["params"] = {name: arrays[f"params/{name}"] for name in meta["params"]}
    return out
