"""Small device functions whose shape depends on a count known only at
runtime (a record's length, a spec's hyperparameter layout), written out as
source and compiled, because numba has no loop that builds a tuple.

Each is cached per shape.
"""

from __future__ import annotations

from collections import namedtuple
from functools import cache

import numpy as np

from .runtime import cuda


def compile_source(source: str, name: str, namespace: dict):
    exec(compile(source, f"<fastopt generated {name}>", "exec"), namespace)  # noqa: S102 - our own source
    return cuda.jit(device=True)(namespace[name])


@cache
def row_reader(n: int, dtype: str):
    """``read(values, row) -> tuple``: the first ``n`` entries of ``values[row]``
    (a float64 device array), each cast to ``dtype``."""
    items = ", ".join(f"cast(values[row, {k}])" for k in range(n))
    source = f"def read(values, row):\n    return ({items}{',' if n == 1 else ''})\n"
    return compile_source(source, "read", {"cast": np.dtype(dtype).type})


def hyperparameter_layout(defaults: dict) -> list[tuple[str, str, int]]:
    """``(name, kind, width)`` per hyperparameter, in order: kind is
    ``"bool"``, ``"pair"`` (two floats) or ``"float"``; the flat float64
    array holding them has ``sum(width)`` entries."""
    layout = []
    for name, value in defaults.items():
        if isinstance(value, bool):
            layout.append((name, "bool", 1))
        elif isinstance(value, tuple):
            layout.append((name, "pair", len(value)))
        else:
            layout.append((name, "float", 1))
    return layout


def flatten_hyperparameters(defaults: dict, hyper) -> list[float]:
    """``hyper`` (a spec's hyperparameter record) as the flat floats of
    :func:`hyperparameter_layout`."""
    out = []
    for name, kind, _ in hyperparameter_layout(defaults):
        value = getattr(hyper, name)
        out += [float(v) for v in value] if kind == "pair" else [float(value)]
    return out


@cache
def _hyper_maker(class_name: str, keys: tuple, kinds: tuple):
    record = namedtuple(f"{class_name}DeviceHyperparameters", keys)
    items, k = [], 0
    for kind, width in kinds:
        if kind == "pair":
            items.append("(" + ", ".join(f"values[{k + j}]" for j in range(width)) + ")")
        elif kind == "bool":
            items.append(f"values[{k}] != 0.0")
        else:
            items.append(f"values[{k}]")
        k += width
    source = f"def make(values):\n    return record({', '.join(items)})\n"
    return compile_source(source, "make", {"record": record})


def hyper_maker(spec):
    """``make(values) -> record``: a device record of ``spec``'s hyperparameters
    (same attribute names as the host's) from their flat float64 array."""
    layout = hyperparameter_layout(spec.defaults)
    return _hyper_maker(spec.class_name, tuple(name for name, _, _ in layout),
                        tuple((kind, width) for _, kind, width in layout))
