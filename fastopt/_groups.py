"""Turning the ``params`` argument of an optimizer into param groups: the
public dicts (torch's layout) and, per group, the validated flat buffers the
kernels run over."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import backends
from .backends.host_arrays import check_disjoint
from .params import FlatParams, ParamChain

ACCEPTED = ("a FlatParams, a (param, grad) pair, a list of (param, grad) pairs or FlatParams, "
            "or a list of param-group dicts")


@dataclass(frozen=True)
class Buffer:
    """One (param, grad) pair as the kernels see it.

    Attributes
    ----------
    id : int
        Its key in ``optimizer.state`` (numbered across groups, as torch).
    param : object
        What the user passed (listed in ``param_groups[k]["params"]``).
    p, g : array
        Flat views (same memory) of the param and its gradient.
    shape : tuple
        The param's shape (state dicts hold param-shaped arrays).
    segments : tuple or None
        The tensors of a FlatParams as ``(start, stop)`` ranges; None when the
        buffer is one tensor.
    chain : tuple or None
        ``(flat param, flat grad, start)`` for a tensor of a
        :class:`~fastopt.params.ParamChain`: the chain's flat views and where
        this tensor starts in them; None otherwise.
    """

    id: int
    param: Any
    p: Any
    g: Any
    shape: tuple
    segments: tuple | None
    chain: tuple | None = None


def _is_array_like(obj) -> bool:
    return hasattr(obj, "shape") and hasattr(obj, "dtype")


def _is_pair(obj) -> bool:
    return isinstance(obj, (tuple, list)) and len(obj) == 2 and not any(
        isinstance(x, (tuple, list, dict, FlatParams)) for x in obj)


def _looks_like_pair(obj) -> bool:
    return isinstance(obj, tuple) and _is_pair(obj)


def _bad_params(params, where: str) -> TypeError:
    kind = type(params).__name__
    if _is_array_like(params):
        hint = (f"a bare {kind} has no gradient to step with: pass (param, grad)"
                + ("; for torch parameters use fastopt.torch" if type(params).__module__.startswith("torch") else ""))
    elif kind in ("generator", "list_iterator", "dict_values"):
        hint = ("an iterator of parameters (such as model.parameters()) carries no gradients: "
                "use fastopt.torch.<Optimizer>(model.parameters()) for torch models")
    else:
        hint = f"got {kind}"
    return TypeError(f"{where} must be {ACCEPTED}; {hint}")


def _pairs_of(params, where: str) -> list[tuple[Any, Any, Any]]:
    """The (param, grad, tensor ranges or None) triples of one group's ``params``
    entry (a ParamChain stays whole: its tensors are split by the caller)."""
    if isinstance(params, (FlatParams, ParamChain)):
        params = [params]
    if _looks_like_pair(params):
        return [(*params, None)]
    if isinstance(params, (list, tuple)):
        pairs: list[tuple[Any, Any, Any]] = []
        for k, item in enumerate(params):
            if isinstance(item, FlatParams):
                pairs.append((item.data, item.grad, item.ranges))
            elif isinstance(item, ParamChain):
                pairs.append((item.data, item.grad, item))
            elif isinstance(item, (tuple, list)) and len(item) == 2 and not any(
                    isinstance(x, (dict, FlatParams)) for x in item):
                pairs.append((*item, None))
            else:
                raise _bad_params(item, f"{where}[{k}]")
        return pairs
    raise _bad_params(params, where)


def _raw_groups(params) -> list[dict]:
    if isinstance(params, dict):
        return [params]
    if isinstance(params, list) and params and all(isinstance(x, dict) for x in params):
        return params
    return [{"params": params}]


def build_groups(params, defaults: dict, check) -> tuple[list[dict], list[list[Buffer]], Any]:
    """Validate ``params``; return ``(param_groups, buffers per group, backend)``.

    ``check(group, prefix)`` validates one group's hyperparameters. Raises
    before anything is allocated when an array or hyperparameter is bad, when
    two buffers share memory, or when CPU and GPU arrays are mixed.
    """
    if _is_array_like(params):
        raise _bad_params(params, "params")
    raw_groups = _raw_groups(params)
    if not raw_groups or (len(raw_groups) == 1 and isinstance(raw_groups[0].get("params"), list)
                          and not raw_groups[0]["params"]):
        raise ValueError("params must not be empty")
    named, groups, buffers, next_id = [], [], [], 0
    devices = set()
    many_groups = raw_groups is params or isinstance(params, dict)  # the user wrote group dicts
    for gi, raw in enumerate(raw_groups):
        where = f"param_groups[{gi}]" if many_groups else "params"
        if "params" not in raw:
            raise ValueError(f"{where} has no 'params' entry")
        unknown = set(raw) - set(defaults) - {"params"}
        if unknown:
            raise TypeError(f"{where} has unknown key(s) {sorted(unknown)}; accepted: {sorted(defaults)}")
        group = {**defaults, **{k: v for k, v in raw.items() if k != "params"}}
        check(group, f"{where}: " if many_groups else "")
        pairs = _pairs_of(raw["params"], f"{where}['params']" if many_groups else "params")
        if not pairs:
            raise ValueError(f"{where} holds no parameters")
        devices |= {backends.backend_for(x).name for pair in pairs for x in pair[:2]}
        if len(devices) > 1:
            raise TypeError(f"{where}: CPU and GPU arrays are mixed in one optimizer; use one optimizer per device")
        backend = backends.backend_for(pairs[0][0])
        group_buffers, listed = [], []
        for k, (p, g, ranges) in enumerate(pairs):
            label = f"{where}[{k}]" if len(pairs) > 1 or many_groups else "params"
            pf, gf = backend.pair(p, g, label)
            named += [(f"{label} param", pf), (f"{label} grad", gf)]
            if isinstance(ranges, ParamChain):
                chain = ranges
                for j, ((a, b), shape) in enumerate(zip(chain.ranges, chain.shapes)):
                    param = chain.params[j] if chain.params is not None else pf[a:b]
                    group_buffers.append(Buffer(next_id, param, pf[a:b], gf[a:b], shape, None, (pf, gf, a)))
                    listed.append(param)
                    next_id += 1
                continue
            group_buffers.append(Buffer(next_id, p, pf, gf, tuple(p.shape), ranges))
            listed.append(p)
            next_id += 1
        group["params"] = listed
        groups.append(group)
        buffers.append(group_buffers)
    check_disjoint(named)
    return groups, buffers, backend
