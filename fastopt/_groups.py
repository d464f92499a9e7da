"""Turning the ``params`` argument of an optimizer into param groups: the
public dicts (torch's layout) and the private per-group slots that hold the
validated flat views and the compiled launch plan."""

from __future__ import annotations

from typing import Any

from ._arrays import check_disjoint
from ._cpu import CPU
from .params import FlatParams


class Slot:
    """Private bookkeeping of one param group."""

    __slots__ = ("backend", "pairs", "shapes", "ids", "segments", "snapshot", "hyper", "variant", "states",
                 "launches")

    def __init__(self, backend, pairs, shapes, ids, segments):
        self.backend = backend
        self.pairs = pairs
        self.shapes = shapes
        self.ids = ids
        self.segments = segments  # per pair: FlatParams tensors as (start, stop) ranges, or None
        self.snapshot = None
        self.hyper = None  # the group's hyperparameters as plain floats, as the kernels see them
        self.variant = None
        self.states = None
        self.launches = None  # per pair: launch(p, g, states, values)


def is_gpu_array(obj) -> bool:
    """True for torch CUDA tensors, CuPy arrays and numba device arrays."""
    if type(obj).__module__.startswith("torch") and hasattr(obj, "device"):
        return obj.device.type == "cuda"
    if type(obj).__name__ == "FakeCUDAArray":  # numba's CUDA simulator (tests)
        return True
    return hasattr(type(obj), "__cuda_array_interface__") or hasattr(obj, "__cuda_array_interface__")


def backend_for(obj):
    """The backend that owns ``obj`` (importing the CUDA one only when needed)."""
    if is_gpu_array(obj):
        from ._cuda import CUDA

        return CUDA
    return CPU


def _looks_like_pair(obj) -> bool:
    return (
        isinstance(obj, tuple)
        and len(obj) == 2
        and not isinstance(obj[0], (tuple, list, dict, FlatParams))
        and not isinstance(obj[1], (tuple, list, dict, FlatParams))
    )


def _tensor_ranges(fp: FlatParams) -> tuple[tuple[int, int], ...]:
    """The (start, stop) range of each named tensor of ``fp`` in its buffer."""
    return tuple((start, stop) for start, stop, _ in fp._slices.values())


def _pairs_of(params, where: str) -> list[tuple[Any, Any, Any]]:
    """The (param, grad, tensor ranges or None) triples of one group's ``params`` entry."""
    if isinstance(params, FlatParams):
        return [(params.data, params.grad, _tensor_ranges(params))]
    if _looks_like_pair(params):
        return [(*params, None)]
    if isinstance(params, (list, tuple)):
        pairs = []
        for k, item in enumerate(params):
            if isinstance(item, FlatParams):
                pairs.append((item.data, item.grad, _tensor_ranges(item)))
            elif isinstance(item, (tuple, list)) and len(item) == 2:
                pairs.append((*item, None))
            else:
                raise TypeError(f"{where}[{k}] must be a (param, grad) pair or a FlatParams, "
                                f"got {type(item).__name__}")
        return pairs
    raise TypeError(f"{where} must be a FlatParams, a (param, grad) pair, a list of pairs or a list of "
                    f"param-group dicts, got {type(params).__name__}")


def _raw_groups(params) -> list[dict]:
    if isinstance(params, dict):
        return [params]
    if isinstance(params, list) and params and all(isinstance(x, dict) for x in params):
        return params
    return [{"params": params}]


def build_groups(params, defaults: dict, check) -> tuple[list[dict], list[Slot]]:
    """Validate ``params`` and return (param_groups, slots).

    ``check(group, prefix)`` validates one group's hyperparameters. Raises
    before anything is allocated when an array or hyperparameter is bad, when
    two buffers share memory, or when CPU and GPU arrays are mixed.
    """
    raw_groups = _raw_groups(params)
    if not raw_groups or raw_groups == [{"params": []}]:
        raise ValueError("params must not be empty")
    named_buffers, groups, slots, next_id = [], [], [], 0
    backends = set()
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
        group_backends = {backend_for(p).name for pair in pairs for p in pair[:2]}
        backends |= group_backends
        if len(backends) > 1:
            raise TypeError(f"{where}: CPU and GPU arrays are mixed in one optimizer; "
                            "use one optimizer per device")
        backend = backend_for(pairs[0][0])
        flat_pairs, shapes, ids, segments = [], [], [], []
        for k, (p, g, ranges) in enumerate(pairs):
            label = f"{where}[{k}]" if len(pairs) > 1 or many_groups else "params"
            pf, gf = backend.pair(p, g, label)
            named_buffers += [(f"{label} param", pf), (f"{label} grad", gf)]
            flat_pairs.append((pf, gf))
            shapes.append(tuple(p.shape))
            ids.append(next_id)
            segments.append(ranges)
            next_id += 1
        group["params"] = [p for p, _, _ in pairs]
        groups.append(group)
        slots.append(Slot(backend, flat_pairs, shapes, ids, segments))
    check_disjoint(named_buffers)
    return groups, slots
