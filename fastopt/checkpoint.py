"""Crash-safe checkpoints: an optimizer's state (and optionally the params)
written atomically to one ``.npz`` file, with no pickle inside."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

_META = "__fastopt_meta__"


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
    payload = json.dumps(meta, default=_json_default).encode()
    arrays[_META] = np.frombuffer(payload, dtype=np.uint8)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"checkpoint metadata cannot hold {type(value).__name__}")


def load(path: str | os.PathLike[str]) -> dict:
    """Read a checkpoint written by :func:`save`.

    Returns
    -------
    dict with ``"optimizer"`` (a state dict for ``load_state_dict``, or None),
    ``"params"`` (name -> array, or None) and ``"extra"``.
    """
    with np.load(path, allow_pickle=False) as data:
        if _META not in data:
            raise ValueError(f"{path} is not a fastopt checkpoint")
        meta = json.loads(data[_META].tobytes().decode())
        arrays = {k: data[k] for k in data.files if k != _META}
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
