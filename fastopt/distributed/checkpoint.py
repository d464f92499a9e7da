"""Sharded checkpoints: each rank writes its part of the optimizer state (and
of the params) to a file of its own, atomically, and rank 0 then writes one
``manifest.json`` naming every shard; loading reads whichever shards overlap
the part of the buffer a rank needs, so a checkpoint written by N ranks loads
into any number of ranks (or into one process, see :func:`read_checkpoint`).

Layout of a checkpoint folder::

    manifest.json                          format, optimizer, sizes, hyperparameters, shards
    shard-<token>-00000-of-00002.npz       state/<name> and params over [start, stop)
    shard-<token>-00001-of-00002.npz

The manifest is written last (atomically: a temporary file renamed over the
old one) and is the commit point: a crash mid-save leaves the previous
manifest and its shards in place. Each save has a new random token in its
shard names; shards of older saves are deleted once the new manifest is in
place. Reading checks everything: a missing manifest or shard, a shard cut
short, flipped bytes (each array's CRC-32), a shard from another save or
another checkpoint, and a single-file checkpoint given to the sharded
reader (or the reverse) raise :class:`~fastopt.checkpoint.CheckpointError`
naming the file and what is wrong, on every rank, before anything changes.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import numpy as np

from ..checkpoint import CheckpointError, json_default, read_npz, write_atomic, write_npz_atomic
from . import _mpi

FORMAT = "fastopt-sharded-checkpoint"
VERSION = 1
MANIFEST = "manifest.json"

__all__ = ["FORMAT", "MANIFEST", "load_checkpoint", "read_checkpoint", "read_manifest", "save_checkpoint"]


def _shard_name(token: str, rank: int, world: int) -> str:
    return f"shard-{token}-{rank:05d}-of-{world:05d}.npz"


def save_checkpoint(path, optimizer, params: bool = True, extra: dict | None = None) -> Path:
    """Write a sharded checkpoint of a distributed optimizer (call on every rank).

    Parameters
    ----------
    path : str or Path
        The checkpoint folder (created if missing; a previous checkpoint in
        it is replaced only once the new one is complete).
    optimizer : DataParallel or ZeRO1
        Each rank writes the state it owns (data parallel: an equal slice of
        its full copy, so the ranks share the writing).
    params : bool
        Also save the params (each rank its slice).
    extra : dict, optional
        JSON-serialisable metadata (epoch, config...), taken from rank 0.

    Returns
    -------
    Path
        The folder.
    """
    comm = optimizer.comm
    rank, world = comm.Get_rank(), comm.Get_size()
    path = Path(path)

    def prepare():
        if path.exists() and not path.is_dir():
            raise CheckpointError(f"{path} exists and is a file; a sharded checkpoint is a folder")
        if rank == 0:
            path.mkdir(parents=True, exist_ok=True)
            json.dumps(extra or {})  # fail now, on every rank, if extra cannot be written
        return secrets.token_hex(6) if rank == 0 else None

    token = comm.bcast(_mpi.agree(comm, prepare, "save_checkpoint"), root=0)
    start, stop = _write_range(optimizer)
    owned = optimizer.owned
    state = optimizer.local_state()

    def write_shard():
        lo, hi = start - owned[0], stop - owned[0]
        arrays = {f"state/{k}": v[lo:hi] for k, v in state["arrays"].items()}
        if params:
            arrays["params"] = optimizer.data[start:stop]
        meta = {"format": FORMAT, "version": VERSION, "kind": "shard", "token": token, "rank": rank,
                "world_size": world, "start": start, "stop": stop}
        file = write_npz_atomic(path / _shard_name(token, rank, world), arrays, meta)
        return {"file": file.name, "start": start, "stop": stop, "bytes": file.stat().st_size}

    shard = _mpi.agree(comm, write_shard, "save_checkpoint (shard)")
    shards = comm.gather(shard, root=0)
    scalars = [s for s in comm.gather(state["scalars"], root=0) or [] if s is not None]

    def write_manifest():
        if rank != 0:
            return None
        manifest = {
            "format": FORMAT, "version": VERSION, "token": token, "mode": optimizer.mode,
            "world_size": world, "optimizer": optimizer.spec.name, "elements": int(optimizer.data.size),
            "dtype": str(optimizer.data.dtype), "ranges": [list(r) for r in optimizer.ranges],
            "state_names": optimizer.state_names(), "scalars": scalars[0] if scalars else {"step": 0},
            "hyperparameters": state["hyperparameters"], "skipped_steps": state["skipped_steps"],
            "pending": state["pending"], "params": bool(params), "extra": extra or {}, "shards": shards,
        }
        _write_json_atomic(path / MANIFEST, manifest)
        keep = {s["file"] for s in shards}
        for old in path.glob("shard-*.npz"):
            if old.name not in keep:
                old.unlink(missing_ok=True)
        return None

    _mpi.agree(comm, write_manifest, "save_checkpoint (manifest)")
    return path


def _write_range(optimizer) -> tuple[int, int]:
    """The slice of the flat buffer this rank writes: what it owns (ZeRO-1),
    or its aligned share of the full copy every rank holds (data parallel)."""
    start, stop = optimizer.owned
    if (start, stop) == (0, optimizer.data.size) and optimizer.world_size > 1:
        return optimizer.layout.bounds[optimizer.rank] if optimizer.mode == "ddp" else (start, stop)
    return start, stop


def _write_json_atomic(path: Path, obj: dict) -> None:
    text = json.dumps(obj, indent=1, default=json_default)
    write_atomic(path, lambda f: f.write(text), binary=False)


# -- reading ---------------------------------------------------------------------

def read_manifest(path) -> dict:
    """The checked manifest of the sharded checkpoint in folder ``path``.

    Raises
    ------
    CheckpointError
        Naming the file: a single-file checkpoint, no manifest, a corrupt or
        foreign manifest, or shards that do not tile the buffer.
    """
    path = Path(path)
    if path.is_file():
        with open(path, "rb") as f:
            head = f.read(4)
        kind = ("a single-file checkpoint (read it with fastopt.checkpoint.load)" if head == b"PK\x03\x04"
                else "a file")
        raise CheckpointError(f"{path} is {kind}, not a sharded checkpoint folder")
    file = path / MANIFEST
    if not path.is_dir():
        raise FileNotFoundError(2, "no such sharded checkpoint folder", str(path))
    if not file.is_file():
        raise CheckpointError(f"{file} is missing: {path} is not a sharded checkpoint folder, or its save never "
                              "completed")
    try:
        manifest = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{file} is corrupt or truncated ({type(exc).__name__}: {exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{file} is not a fastopt sharded checkpoint manifest (format "
                              f"{manifest.get('format') if isinstance(manifest, dict) else None!r})")
    if manifest.get("version") != VERSION:
        raise CheckpointError(f"{file} has format version {manifest.get('version')!r}; this fastopt reads "
                              f"version {VERSION}")
    try:
        n = int(manifest["elements"])
        at = 0
        for s in manifest["shards"]:
            if int(s["start"]) != at or int(s["stop"]) < at:
                raise ValueError(f"shard {s['file']} covers [{s['start']}, {s['stop']}), expected to start at {at}")
            at = int(s["stop"])
        if at != n:
            raise ValueError(f"the shards cover [0, {at}), the buffer has {n} elements")
        for key in ("optimizer", "dtype", "state_names", "scalars", "hyperparameters", "token"):
            manifest[key]  # noqa: B018 - presence check
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{file} is inconsistent ({type(exc).__name__}: {exc})") from None
    return manifest


def _read_range(path: Path, manifest: dict, lo: int, hi: int, params: bool) -> tuple[dict, np.ndarray | None]:
    """State arrays (and params) over ``[lo, hi)``, from the shards that overlap it."""
    dtype = np.dtype(manifest["dtype"])
    names = manifest["state_names"]
    arrays = {k: np.empty(hi - lo, dtype) for k in names}
    values = np.empty(hi - lo, dtype) if params else None
    for s in manifest["shards"]:
        a, b = max(lo, s["start"]), min(hi, s["stop"])
        if a >= b:
            continue
        file = path / s["file"]
        if not file.is_file():
            raise CheckpointError(f"{file} is missing: shard of elements [{s['start']}, {s['stop']}) of the "
                                  f"checkpoint in {path}")
        size = file.stat().st_size
        if size != s["bytes"]:
            raise CheckpointError(f"{file} has {size} bytes, the manifest says {s['bytes']}: "
                                  f"{'truncated' if size < s['bytes'] else 'overwritten or padded'}")
        meta, data = read_npz(file, "fastopt checkpoint shard")
        if meta.get("format") != FORMAT or meta.get("kind") != "shard":
            raise CheckpointError(f"{file} is not a shard of a fastopt sharded checkpoint")
        if meta.get("token") != manifest["token"] or (meta.get("start"), meta.get("stop")) != (s["start"], s["stop"]):
            raise CheckpointError(f"{file} belongs to another save (token {meta.get('token')!r}, elements "
                                  f"[{meta.get('start')}, {meta.get('stop')})) than {path / MANIFEST} "
                                  f"(token {manifest['token']!r}, [{s['start']}, {s['stop']}))")
        wanted = [f"state/{k}" for k in names] + (["params"] if params else [])
        for key in wanted:
            if key not in data:
                what = "params (saved with params=False?)" if key == "params" else repr(key)
                raise CheckpointError(f"{file} has no {what}")
            arr = data[key]
            if arr.shape != (s["stop"] - s["start"],) or arr.dtype != dtype:
                raise CheckpointError(f"{file}: {key!r} has shape {arr.shape} and dtype {arr.dtype}, expected "
                                      f"({s['stop'] - s['start']},) {dtype}")
            piece = arr[a - s["start"]:b - s["start"]]
            if key == "params":
                assert values is not None
                values[a - lo:b - lo] = piece
            else:
                arrays[key[6:]][a - lo:b - lo] = piece
    return arrays, values


def _hyperparameters(saved: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()}


def load_checkpoint(path, optimizer, params: bool = True) -> dict:
    """Restore a :func:`save_checkpoint` folder into a distributed optimizer
    (call on every rank), whatever the number of ranks that wrote it.

    Everything is read and checked on every rank before anything changes; a
    problem on any rank raises on every rank (the rank that found it raises
    :class:`~fastopt.checkpoint.CheckpointError` naming the file, the others
    :class:`~fastopt.distributed.RankMismatchError` quoting it).

    Parameters
    ----------
    path : str or Path
        The checkpoint folder.
    optimizer : DataParallel or ZeRO1
        Built over the same number of elements, dtype and optimizer.
    params : bool
        Also restore the params (the checkpoint must hold them).

    Returns
    -------
    dict
        The ``extra`` metadata saved with it.
    """
    comm = optimizer.comm
    path = Path(path)

    def read():
        manifest = read_manifest(path)
        problems = []
        if manifest["optimizer"] != optimizer.spec.name:
            problems.append(f"optimizer {manifest['optimizer']!r}, not {optimizer.spec.name!r}")
        if int(manifest["elements"]) != optimizer.data.size:
            problems.append(f"{manifest['elements']} elements, not {optimizer.data.size}")
        if manifest["dtype"] != str(optimizer.data.dtype):
            problems.append(f"dtype {manifest['dtype']}, not {optimizer.data.dtype}")
        if sorted(manifest["state_names"]) != sorted(optimizer.state_names()):
            problems.append(f"state {manifest['state_names']}, not {optimizer.state_names()}")
        if params and not manifest.get("params"):
            problems.append("no params (saved with params=False); load with params=False")
        if problems:
            raise CheckpointError(f"{path / MANIFEST} was saved for " + "; ".join(problems))
        lo, hi = optimizer.owned
        arrays, values = _read_range(path, manifest, lo, hi, params)
        state = {"arrays": arrays, "scalars": manifest["scalars"],
                 "hyperparameters": _hyperparameters(manifest["hyperparameters"]),
                 "skipped_steps": manifest.get("skipped_steps", 0), "pending": manifest.get("pending", 0)}
        optimizer.check_local_state(state)
        optimizer._probe().load_state_dict(_probe_state(optimizer, state))  # hyperparameters checked too
        return manifest, state, values, (lo, hi)

    manifest, state, values, (lo, hi) = _mpi.agree(comm, read, "load_checkpoint")
    optimizer.load_local_state(state)
    if params:
        optimizer.data[lo:hi] = values
        if (lo, hi) != (0, optimizer.data.size):
            optimizer._allgather_params()
    return manifest.get("extra", {})


def _probe_state(optimizer, state: dict) -> dict:
    """A one-element state dict with ``state``'s scalars and hyperparameters."""
    dtype = optimizer.data.dtype
    entry = {**(state["scalars"] or {"step": 0}), **{k: np.zeros(1, dtype) for k in state["arrays"]}}
    return {"optimizer": optimizer.spec.name, "state": {0: entry},
            "param_groups": [{**state["hyperparameters"], "params": [0]}]}


def read_checkpoint(path) -> dict:
    """A sharded checkpoint as one process's checkpoint: what
    :func:`fastopt.checkpoint.load` returns for a single-file one.

    Returns
    -------
    dict
        ``"optimizer"``: a state dict for a (non-distributed) fastopt
        optimizer built over the whole flat buffer (a FlatParams, or one
        (param, grad) pair); ``"params"``: the flat params (None if not
        saved); ``"extra"``; ``"manifest"``.
    """
    path = Path(path)
    manifest = read_manifest(path)
    n = int(manifest["elements"])
    arrays, values = _read_range(path, manifest, 0, n, bool(manifest.get("params")))
    entry = {**manifest["scalars"], **arrays}
    groups = [{**_hyperparameters(manifest["hyperparameters"]), "params": [0]}]
    state_dict = {"optimizer": manifest["optimizer"], "state": {0: entry}, "param_groups": groups,
                  "skipped_steps": manifest.get("skipped_steps", 0), "pending": manifest.get("pending", 0)}
    return {"optimizer": state_dict, "params": values, "extra": manifest.get("extra", {}), "manifest": manifest}
