"""An optimizer's state in and out: torch's layout (``{"state": {id: {...}},
"param_groups": [...]}``), host copies out, checked private copies in."""

from __future__ import annotations

import numpy as np

from ._layout import blockwise_size
from ._plan import hyperparameters
from ._precision import MASTER, SCALE, loaded, saved
from .backends.blockfloat import BLOCK, blocks, dequantize, quantize


def state_dict(opt) -> dict:
    """A snapshot of ``opt``'s hyperparameters and state (host copies,
    param-shaped; low-precision states as their stored bits, so that loading
    it back is exact; ``state_dtype`` says which codec made them)."""
    state = {}
    for plan in opt._plans:
        for b in plan.buffers:
            entry = {}
            for k, v in opt.state[b.id].items():
                if k == "step" or isinstance(v, (int, float)):
                    entry[k] = v
                    continue
                host = saved(plan.backend.to_host(v))
                # param-shaped, but for 8-bit codes (padded blocks) and their scales
                entry[k] = host.reshape(b.shape) if host.size == b.p.size and host.dtype != np.uint8 else host
            state[b.id] = entry
    groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": [b.id for b in plan.buffers]}
              for g, plan in zip(opt.param_groups, opt._plans)]
    out = {"optimizer": opt.spec.name, "state": state, "param_groups": groups,
           "skipped_steps": opt.skipped_steps, "pending": opt._pending,
           "state_dtype": opt.precision.state_dtype}
    if opt.precision.state_dtype == "int8":
        out["block_size"] = BLOCK
    return out


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
    if codec not in (None, "float32", "float64", "bfloat16", "int8"):
        raise ValueError(f"state_dict has state_dtype {codec!r}, which this optimizer cannot read")
    mine = opt.precision.state_dtype
    if {codec, mine} == {"bfloat16", "int8"}:
        raise ValueError(f"state_dict holds {codec} state and this optimizer keeps {mine} state; "
                         "convert through float32 (load it into a float32 optimizer first)")
    if codec == "int8" and state_dict.get("block_size", BLOCK) != BLOCK:
        raise ValueError(f"state_dict has 8-bit blocks of {state_dict.get('block_size')} elements; "
                         f"fastopt reads blocks of {BLOCK}")
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
    eight_bit = opt.precision.blockwise(blockwise_size(buffer))
    for key, value in entry.items():
        if key == "step" or key.endswith(SCALE):
            continue  # scales travel with their codes
        if key not in known:
            raise ValueError(f"{where} has unknown entry {key!r}; expected some of {sorted(known)}")
        if isinstance(value, float):
            out[key] = value
            continue
        arr = _host(value)
        if arr.ndim == 0:
            out[key] = float(arr)
            continue
        fmt = opt.precision.format(key, opt.spec) if key not in ("ema", MASTER) else None
        codes_in = codec == "int8" and arr.dtype == np.uint8
        if codes_in:
            if fmt is None:
                raise ValueError(f"{where}[{key!r}] holds 8-bit codes, which only states can")
            scales = entry.get(key + SCALE)
            if scales is None:
                raise ValueError(f"{where} has 8-bit codes for {key!r} but no {key + SCALE!r}")
            codes, scales = arr.reshape(-1), _host(scales).reshape(-1)
            nb = blocks(buffer.p.size)
            if codes.size != nb * BLOCK or scales.size != nb or scales.dtype != np.float32:
                raise ValueError(f"{where}[{key!r}] holds {codes.size} codes and {scales.size} scales; "
                                 f"{buffer.p.size} elements need {nb * BLOCK} codes and {nb} float32 scales")
            if eight_bit:
                out[key], out[key + SCALE] = _device_copy(backend, codes), _device_copy(backend, scales)
                continue
            arr = dequantize(codes, scales, buffer.p.size, fmt)
            source_codec = "float32"
        else:
            if arr.shape != shape and arr.shape != (p.size,):
                raise ValueError(f"{where}[{key!r}] has shape {arr.shape}, param has {shape}")
            source_codec = codec
        if eight_bit and fmt is not None:
            numbers = loaded(arr.reshape(-1), source_codec, np.float32 if arr.dtype != np.float64 else np.float64,
                             f"{where}[{key!r}]")
            codes, scales = quantize(numbers, fmt)
            out[key], out[key + SCALE] = _device_copy(backend, codes), _device_copy(backend, scales)
            continue
        target = p.dtype if fmt is None else opt.precision.storage_dtype(key, buffer.p.dtype, opt.spec,
                                                                         blockwise_size(buffer))
        arr = loaded(arr.reshape(-1), source_codec, target, f"{where}[{key!r}]")
        out[key] = _device_copy(backend, arr)
    return out


def _host(value) -> np.ndarray:
    return np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value)


def _device_copy(backend, array: np.ndarray):
    copy = backend.zeros(array.size, array.dtype)
    backend.copy_(copy, array)
    return copy


def known_state_names(spec, defaults: dict) -> set:
    """Every state entry any variant of optimizer ``spec`` can hold."""
    names = {"ema", MASTER} | set(spec.carry_names)
    states: set = set()
    probes = [dict(defaults)]
    for key, value in spec.defaults.items():
        if isinstance(value, bool):
            probes += [{**h, key: not value} for h in probes]
    if "momentum" in spec.defaults:
        probes += [{**h, "momentum": 0.9, "nesterov": False} for h in probes]
    for h in probes:
        states.update(spec.variant(hyperparameters(spec, h)).state_names)
    return names | states | {name + SCALE for name in states}
