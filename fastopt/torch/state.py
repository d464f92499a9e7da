"""Optimizer state in torch's layout: ``optimizer.state`` (live views of the
engine's flat state arrays, keyed by param), and ``state_dict()`` /
``load_state_dict()`` exactly as ``torch.optim`` lays them out.

A state dict is ``{"state": {index: {...}}, "param_groups": [{..., "params":
[index, ...]}]}`` with params numbered in group order; a param has an entry
once it has been stepped (Adagrad: from construction), holding ``"step"`` (a
0-d float tensor; SGD keeps none) and its state tensors under torch's names
(``exp_avg``, ``exp_avg_sq``, ``momentum_buffer``...). fastopt's extras sit
beside them: ``ema`` (``ema_decay``), ``master_param`` (bfloat16 params),
and low-precision states keep their storage dtype (bfloat16 tensors; 8-bit
codes with ``<name>_scale`` block scales). ``state_dict()`` returns copies (a
snapshot; torch returns its live tensors), so saving it or loading it into
another optimizer never aliases this one's memory.

Loading is checked whole before anything changes: a dict of another
optimizer, the wrong number of groups or params, a state entry with an
unknown name, shape or dtype raises ``ValueError`` naming it.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

import numpy as np
import torch

from .._precision import MASTER, SCALE
from .._state_io import known_state_names
from ..backends.blockfloat import BLOCK, blocks
from ..backends.codecs import BFLOAT16
from ..rules import SPECS, Spec

NUMPY_DTYPES = {torch.float32: np.dtype(np.float32), torch.float64: np.dtype(np.float64), torch.bfloat16: BFLOAT16}


def scalar_dtype() -> torch.dtype:
    """The dtype torch.optim gives scalar state (``step``, ``mu_product``)."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def as_tensor(array: Any, like: torch.Tensor) -> torch.Tensor:
    """A torch tensor sharing ``array``'s memory (a host array, or a GPU
    array through ``__cuda_array_interface__``): bfloat16 bits as bfloat16,
    8-bit codes as uint8; param-shaped (``like``'s shape and strides) when it
    holds one value per element of ``like``."""
    if isinstance(array, np.ndarray):
        t = torch.from_numpy(array.view(np.int16)).view(torch.bfloat16) if array.dtype == BFLOAT16 \
            else torch.from_numpy(array)
    else:  # pragma: no cover - GPU arrays (no GPU on the development machines)
        t = torch.as_tensor(array, device=like.device)
        if t.dtype == torch.uint16:
            t = t.view(torch.bfloat16)
    t = t.reshape(-1)
    if t.numel() == like.numel() and t.dtype != torch.uint8:
        t = t.as_strided(like.shape, like.stride()) if not like.is_contiguous() else t.view(like.shape)
    return t


def visible(spec: Spec, step: int, entry: dict) -> bool:
    """Whether torch would hold state for a param at ``step``: once stepped
    (torch creates state lazily), from the start for Adagrad; SGD only when it
    keeps a momentum buffer."""
    if spec.name == "sgd":
        return step > 0 and "momentum_buffer" in entry
    return step > 0 or spec.name == "adagrad"


def torch_entry(spec: Spec, entry: dict | None, param: torch.Tensor, copy: bool) -> dict:
    """One param's engine state in torch's layout (copies with ``copy``, else
    live views of the engine's arrays)."""
    if entry is None or not visible(spec, entry["step"], entry):
        return {}
    scalar = scalar_dtype()
    out: dict[str, Any] = {}
    if spec.name != "sgd":
        out["step"] = torch.tensor(float(entry["step"]), dtype=scalar)
    for key, value in entry.items():
        if key == "step":
            continue
        if isinstance(value, (int, float)):
            out[key] = torch.tensor(float(value), dtype=scalar)
            continue
        t = as_tensor(value, param)
        out[key] = t.clone(memory_format=torch.preserve_format) if copy else t
    return out


def state_dict(opt: Any) -> dict:
    """``opt``'s state dict in torch's layout (see the module docs)."""
    engine = opt._engine
    spec = opt._spec
    if engine is not None and any(b.data.device.type != "cpu" for b in opt._buffers):  # pragma: no cover - GPU
        engine.state_dict()  # brings device-resident step counts back into engine.state
    state = {}
    for index, param in enumerate(opt._params):
        entry = engine.state[opt._eids[index]] if engine is not None else None
        converted = torch_entry(spec, entry, param, copy=True)
        if param.device.type != "cpu":  # pragma: no cover - GPU
            converted = {k: (v.to(param.device) if k not in ("step", *spec.carry_names) else v)
                         for k, v in converted.items()}
        if converted:
            state[index] = converted
    groups, start = [], 0
    for group in opt.param_groups:
        packed = {k: v for k, v in group.items() if k != "params"}
        packed["params"] = list(range(start, start + len(group["params"])))
        start += len(group["params"])
        groups.append(packed)
    return {"state": state, "param_groups": groups}


# -- loading ------------------------------------------------------------------

def target_spec(opt: Any, groups: list) -> Spec:
    """The spec a state dict's groups ask for: torch's Adam and AdamW are one
    class with a ``decoupled_weight_decay`` flag, fastopt's two rules."""
    spec = opt._spec
    if spec.name not in ("adam", "adamw"):
        return spec
    flags = {bool(g["decoupled_weight_decay"]) for g in groups if "decoupled_weight_decay" in g}
    if len(flags) > 1:
        raise ValueError("state_dict param_groups mix decoupled_weight_decay=True and False; fastopt.torch needs "
                         "one value for every group")
    return SPECS["adamw" if flags == {True} or (not flags and spec.name == "adamw") else "adam"]


def native_state_dict(opt: Any, state_dict: Any, spec: Spec) -> dict:
    """Check ``state_dict`` (torch's layout, or fastopt's own) against
    ``opt`` and return it in the engine's layout (arrays per engine id)."""
    if not isinstance(state_dict, dict) or "state" not in state_dict or "param_groups" not in state_dict:
        raise ValueError("state_dict must be a dict with 'state' and 'param_groups' (an optimizer's state_dict())")
    name = state_dict.get("optimizer")
    if name is not None and name != spec.name and {name, spec.name} != {"adam", "adamw"}:
        raise ValueError(f"state_dict is for optimizer {name!r}, not {spec.name!r}")
    saved_groups, groups = state_dict["param_groups"], opt.param_groups
    if not isinstance(saved_groups, (list, tuple)) or len(saved_groups) != len(groups):
        count = len(saved_groups) if isinstance(saved_groups, (list, tuple)) else saved_groups
        raise ValueError(f"loaded state dict has a different number of parameter groups ({count}, optimizer has "
                         f"{len(groups)})")
    id_map: dict[Any, int] = {}
    index = 0
    native_groups = []
    for k, (saved, group) in enumerate(zip(saved_groups, groups)):
        where = f"state_dict param_groups[{k}]"
        if not isinstance(saved, dict) or "params" not in saved:
            raise ValueError(f"{where} must be a dict with 'params'")
        if len(saved["params"]) != len(group["params"]):
            raise ValueError(f"loaded state dict contains a parameter group that doesn't match the size of "
                             f"optimizer's group ({where} has {len(saved['params'])} params, optimizer's group "
                             f"{len(group['params'])})")
        missing = [key for key, default in spec.defaults.items() if not isinstance(default, bool) and key not in saved]
        if missing:
            raise ValueError(f"{where} has no {missing[0]!r}: a state dict of another optimizer? "
                             f"({type(opt).__name__} groups hold {sorted(spec.defaults)})")
        hyper = {key: _plain(saved.get(key, group.get(key, spec.defaults[key]))) for key in spec.defaults}
        for key, check in spec.checks.items():
            try:
                check(key, hyper[key])
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"{where}: {exc}") from None
        if spec.cross_check is not None:
            try:
                spec.cross_check(spec.hyperparameters(hyper))
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
        for saved_id in saved["params"]:
            id_map[saved_id] = index
            index += 1
        native_groups.append((k, hyper))
    known = known_state_names(spec, spec.defaults) | {"step"}
    native_state: dict[int, dict] = {}
    saved_state = state_dict["state"]
    if not isinstance(saved_state, dict):
        raise ValueError("state_dict['state'] must be a dict")
    for saved_id, entry in saved_state.items():
        if saved_id not in id_map:
            raise ValueError(f"state_dict state has an entry for param {saved_id!r}, which no param group lists")
        index = id_map[saved_id]
        param = opt._params[index]
        where = f"state_dict state[{saved_id!r}]"
        if entry is None:
            continue
        if not isinstance(entry, dict):
            raise ValueError(f"{where} must be a dict, got {type(entry).__name__}")
        native_state[opt._eids[index]] = _native_entry(opt, spec, entry, param, known, where)
    native = {"optimizer": spec.name, "state": native_state,
              "param_groups": [{**hyper, "params": [opt._eids[i] for i in opt._group_indices[k]]}
                               for k, hyper in native_groups if opt._group_indices[k]]}
    if any(value.dtype == np.uint8 for entry in native_state.values() for value in entry.values()
           if isinstance(value, np.ndarray)):
        native["state_dtype"] = "int8"  # 8-bit codes: the engine loads them, or expands them into floats
    return native


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return float(value.reshape(-1)[0]) if value.numel() == 1 else value
    if isinstance(value, (tuple, list)) and any(isinstance(v, torch.Tensor) for v in value):
        return tuple(_plain(v) for v in value)
    return value


def _native_entry(opt: Any, spec: Spec, entry: dict, param: torch.Tensor, known: set, where: str) -> dict:
    """One param's saved state, checked, as the engine loads it: ``step`` an
    int, carried scalars floats, arrays flat in the param's memory order and
    in the dtype of their storage."""
    out: dict[str, Any] = {}
    for key, value in entry.items():
        if value is None:
            continue
        if key not in known:
            raise ValueError(f"{where} has unknown entry {key!r}: a state dict of another optimizer? "
                             f"({type(opt).__name__} keeps {sorted(known - {'ema', MASTER})})")
        if key == "step" or key in spec.carry_names:
            number = value.item() if hasattr(value, "item") else value
            if isinstance(number, bool) or not isinstance(number, (int, float)) or number != number:
                raise ValueError(f"{where}[{key!r}] must be a number, got {value!r}")
            if key == "step" and (number < 0 or number != int(number)):
                raise ValueError(f"{where}['step'] must be a non-negative integer, got {number!r}")
            out[key] = int(number) if key == "step" else float(number)
            continue
        if key.endswith(SCALE) or _is_codes(value):
            out[key] = _block_values(key, entry, param, f"{where}[{key!r}]")
            continue
        out[key] = _flat_values(opt, spec, key, value, param, f"{where}[{key!r}]")
    if "step" not in out:
        # torch's SGD keeps no step count: a momentum buffer means it has stepped.
        out["step"] = 1 if (spec.name == "sgd" and "momentum_buffer" in out) else 0
    return out


def _is_codes(value: Any) -> bool:
    return isinstance(value, (torch.Tensor, np.ndarray)) and value.dtype in (torch.uint8, np.uint8)


def _block_values(key: str, entry: dict, param: torch.Tensor, where: str) -> np.ndarray:
    """An 8-bit state's codes (uint8, whole blocks) or its block scales
    (``<name>_scale``, float32), flat, as the engine loads them."""
    name = key[:-len(SCALE)] if key.endswith(SCALE) else key
    codes, scales = entry.get(name), entry.get(name + SCALE)
    if not _is_codes(codes) or not isinstance(scales, (torch.Tensor, np.ndarray)):
        raise ValueError(f"{where}: an 8-bit state needs its uint8 codes in {name!r} and its float32 block "
                         f"scales in {name + SCALE!r}")
    codes, scales = (torch.as_tensor(v).detach().to("cpu").reshape(-1) for v in (codes, scales))
    nb = blocks(param.numel())
    if codes.numel() != nb * BLOCK or scales.numel() != nb or scales.dtype != torch.float32:
        raise ValueError(f"{where}: {name!r} holds {codes.numel()} codes and {scales.numel()} {scales.dtype} "
                         f"scales; {param.numel()} elements need {nb * BLOCK} codes and {nb} float32 scales")
    return np.ascontiguousarray((scales if key.endswith(SCALE) else codes).numpy())


def _flat_values(opt: Any, spec: Spec, key: str, value: Any, param: torch.Tensor, where: str) -> np.ndarray:
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value.view(np.int16)).view(torch.bfloat16) if value.dtype == BFLOAT16 \
            else torch.from_numpy(value)
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{where} must be a tensor, got {type(value).__name__}")
    if not (value.is_floating_point()) or value.is_complex():
        raise ValueError(f"{where} holds {value.dtype} values; expected floating point state")
    if value.numel() != param.numel() or (value.dim() != 1 and tuple(value.shape) != tuple(param.shape)):
        raise ValueError(f"{where} has shape {tuple(value.shape)}, param has {tuple(param.shape)}")
    value = value.detach().to("cpu")
    if value.dim() == 1 and param.dim() != 1:
        value = value.reshape(param.shape) if param.is_contiguous() else value.as_strided(param.shape,
                                                                                           param.stride())
    # The param's memory order (its strides), flat, as the flat state holds it.
    ordered = torch.empty_strided(param.shape, param.stride(), dtype=torch.float64)
    ordered.copy_(value)
    flat = ordered.as_strided((param.numel(),), (1,)).numpy()
    target: Any
    if key in ("ema", MASTER):
        target = np.dtype(np.float32) if param.dtype == torch.bfloat16 else NUMPY_DTYPES[param.dtype]
    else:
        target = opt._engine.precision.storage_dtype(key, NUMPY_DTYPES[param.dtype], spec) \
            if opt._engine is not None else NUMPY_DTYPES[param.dtype]
        if target == BFLOAT16 or target.kind != "f":
            target = np.dtype(np.float32)  # the engine rounds into its bfloat16 storage
    return np.ascontiguousarray(flat.astype(target))


# -- optimizer.state ----------------------------------------------------------

class ParamState(dict):
    """``optimizer.state[p]``: torch-layout state of one param whose tensors
    are views of the engine's flat state (in-place changes such as
    ``state[p]["exp_avg"].zero_()`` act at once). Assigning an entry
    (``state[p]["step"] = ...``) records the whole dict as the param's new
    state, loaded (checked) before the next step."""

    __slots__ = ("owner", "index")

    def __init__(self, values: dict, owner: Any = None, index: int = -1) -> None:
        super().__init__(values)
        self.owner = owner
        self.index = index

    def __setitem__(self, key: Any, value: Any) -> None:
        dict.__setitem__(self, key, value)
        if self.owner is not None:
            self.owner._state_writes[self.index] = self

    def __delitem__(self, key: Any) -> None:
        dict.__delitem__(self, key)
        if self.owner is not None:
            self.owner._state_writes[self.index] = self


class LiveState(MutableMapping):
    """``optimizer.state``: param -> :class:`ParamState`, like torch's
    ``defaultdict(dict)`` (a tensor the optimizer does not hold gets a plain
    dict of its own)."""

    def __init__(self, owner: Any) -> None:
        self.owner = owner
        self.others: dict = {}

    def _index(self, key: Any) -> int | None:
        return self.owner._index.get(key) if isinstance(key, torch.Tensor) else None

    def __getitem__(self, key: Any) -> Any:
        index = self._index(key)
        if index is None:
            return self.others.setdefault(key, {}) if isinstance(key, torch.Tensor) else self.others[key]
        owner = self.owner
        pending = owner._state_writes.get(index)
        if pending is not None:
            return pending
        engine = owner._engine
        entry = engine.state[owner._eids[index]] if engine is not None else None
        return ParamState(torch_entry(owner._spec, entry, key, copy=False), owner, index)

    def __setitem__(self, key: Any, value: Any) -> None:
        index = self._index(key)
        if index is None:
            self.others[key] = value
            return
        if not isinstance(value, dict):
            raise TypeError(f"optimizer.state[param] must be a dict of that param's state, got {type(value).__name__}")
        self.owner._state_writes[index] = ParamState(value, self.owner, index)

    def __delitem__(self, key: Any) -> None:
        index = self._index(key)
        if index is None:
            del self.others[key]
            return
        self.owner._state_writes[index] = ParamState({}, self.owner, index)

    def _held(self) -> list:
        owner = self.owner
        owner._flush_state()
        engine = owner._engine
        if engine is None:
            return []
        return [p for k, p in enumerate(owner._params)
                if visible(owner._spec, engine.state[owner._eids[k]]["step"], engine.state[owner._eids[k]])]

    def __iter__(self) -> Iterator:
        return iter(self._held() + list(self.others))

    def __len__(self) -> int:
        return len(self._held()) + len(self.others)

    def __contains__(self, key: object) -> bool:
        if self._index(key) is not None:
            return any(p is key for p in self._held())
        return key in self.others

    def __repr__(self) -> str:
        return repr(dict(self.items()))
