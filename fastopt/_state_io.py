"""An optimizer's state in and out: torch's layout (``{"state": {id: {...}},
"param_groups": [...]}``), host copies out, checked private copies in."""

from __future__ import annotations

import numpy as np

from ._plan import hyperparameters
from ._precision import MASTER, loaded, saved


def state_dict(opt) -> dict:
    """A snapshot of ``opt``'s hyperparameters and state (host copies,
    param-shaped; low-precision states as their stored bits, so that loading
    it back is exact; ``state_dtype`` says which codec made them)."""
    state = {}
    for plan in opt._plans:
        for b in plan.buffers:
            state[b.id] = {k: (v if k == "step" or isinstance(v, (int, float)) else
                               saved(plan.backend.to_host(v)).reshape(b.shape))
                           for k, v in opt.state[b.id].items()}
    groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": [b.id for b in plan.buffers]}
              for g, plan in zip(opt.param_groups, opt._plans)]
    return {"optimizer": opt.spec.name, "state": state, "param_groups": groups,
            "skipped_steps": opt.skipped_steps, "pending": opt._pending,
            "state_dtype": opt.precision.state_dtype}


def load_state_dict(opt, state_dict: dict) -> None:
    """Restore a :func:`state_dict` into ``opt``. Everything is checked before
    anything changes; a mismatch raises ``ValueError`` naming what differs."""
    spec = opt.spec
    if not isinstance(state_dict, dict) or "state" not in state_dict or "param_groups" not in state_dict:
        raise ValueError("state_dict must be a dict with 'state' and 'param_groups'")
    name = state_dict.get("optimizer", spec.name)
    if name != spec.name:
        raise ValueError(f"state_dict is for optimizer {name!r}, not {spec.name!r}")
    groups = state_dict["param_groups"]
    if len(groups) != len(opt._plans):
        raise ValueError(f"state_dict has {len(groups)} param groups, optimizer has {len(opt._plans)}")
    known = known_state_names(spec, opt.defaults)
    codec = state_dict.get("state_dtype")
    if codec not in (None, "float32", "float64", "bfloat16"):
        raise ValueError(f"state_dict has state_dtype {codec!r}, which this optimizer cannot read")
    new_hyper, new_state = [], {}
    for gi, (saved_group, plan) in enumerate(zip(groups, opt._plans)):
        where = f"state_dict param_groups[{gi}]"
        ids = list(saved_group.get("params", []))
        if len(ids) != len(plan.buffers):
            raise ValueError(f"{where} has {len(ids)} params, optimizer has {len(plan.buffers)}")
        hyper = {k: v for k, v in saved_group.items() if k != "params"}
        unknown = set(hyper) - set(spec.defaults)
        if unknown:
            raise ValueError(f"{where} has unknown key(s) {sorted(unknown)}")
        opt._check_hyperparameters({**opt.defaults, **hyper}, f"{where}: ")
        new_hyper.append(hyper)
        for saved_id, b in zip(ids, plan.buffers):
            entry = state_dict["state"].get(saved_id, {})
            new_state[b.id] = _checked_state(opt, entry, b, plan.backend, known, codec,
                                             f"state_dict state[{saved_id!r}]")
    pending = int(state_dict.get("pending", 0))
    if not 0 <= pending < opt.accumulate:
        raise ValueError(f"state_dict 'pending' must be in [0, {opt.accumulate}), got {pending}")
    for group, hyper in zip(opt.param_groups, new_hyper):
        group.update(hyper)
    for my_id, st in new_state.items():
        for kept in ("ema", MASTER):  # not in a state dict from elsewhere: keep the current one
            if kept in opt.state[my_id] and kept not in st:
                st[kept] = opt.state[my_id][kept]
        opt.state[my_id] = st
    opt.skipped_steps = int(state_dict.get("skipped_steps", opt.skipped_steps))
    opt._pending = pending
    for plan in opt._plans:
        plan.group = plan.hyper = None  # state arrays were replaced: re-plan
        plan.laid_out = False


def _checked_state(opt, entry: dict, buffer, backend, known: set, codec, where: str) -> dict:
    """A private copy of one saved per-parameter state, checked against
    ``buffer`` and converted to the optimizer's storage of each state."""
    if not isinstance(entry, dict):
        raise ValueError(f"{where} must be a dict, got {type(entry).__name__}")
    p, shape = opt._updated(buffer), buffer.shape
    step = entry.get("step", 0)
    step = step.item() if hasattr(step, "item") else step
    if isinstance(step, bool) or not isinstance(step, (int, float, np.integer, np.floating)) \
            or not step >= 0 or step != int(step):
        raise ValueError(f"{where}['step'] must be a non-negative integer, got {step!r}")
    out = {"step": int(step)}
    for key, value in entry.items():
        if key == "step":
            continue
        if key not in known:
            raise ValueError(f"{where} has unknown entry {key!r}; expected some of {sorted(known)}")
        if isinstance(value, float):
            out[key] = value
            continue
        arr = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value)
        if arr.ndim == 0:
            out[key] = float(arr)
            continue
        if arr.shape != shape and arr.shape != (p.size,):
            raise ValueError(f"{where}[{key!r}] has shape {arr.shape}, param has {shape}")
        if key in ("ema", MASTER):
            target = p.dtype
        else:
            target = opt.precision.storage_dtype(key, buffer.p.dtype, opt.spec)
        arr = loaded(arr.reshape(-1), codec, target, f"{where}[{key!r}]")
        copy = backend.zeros(p.size, arr.dtype)
        backend.copy_(copy, arr)
        out[key] = copy
    return out


def known_state_names(spec, defaults: dict) -> set:
    """Every state entry any variant of optimizer ``spec`` can hold."""
    names = {"ema", MASTER} | set(spec.carry_names)
    probes = [dict(defaults)]
    for key, value in spec.defaults.items():
        if isinstance(value, bool):
            probes += [{**h, key: not value} for h in probes]
    if "momentum" in spec.defaults:
        probes += [{**h, "momentum": 0.9, "nesterov": False} for h in probes]
    for h in probes:
        names.update(spec.variant(hyperparameters(spec, h)).state_names)
    return names
