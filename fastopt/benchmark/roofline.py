"""The roofline twin: a kernel with the optimizer kernel's memory traffic and
no math, giving the fastest a step over these arrays can be on this machine.

The twin is built by fastopt's own CPU kernel factory (``_cpu.cpu_kernel``)
from a trivial rule, so it has the optimizer kernel's dispatcher, call
signature, serial branch below ``SERIAL_BELOW`` and ``prange`` loop above it:
only the per-element work differs. For an optimizer with ``k`` state arrays
the rule reads ``p``, ``g`` and every state and writes ``p`` and every state,
rotating the values (``p <- s0 + g``, ``s0 <- s1``, ..., ``s_last <- p``) so
that no load or store can be optimised away and every array really changes.
"""

from __future__ import annotations

import numpy as np

from .. import _cpu
from ..rules._common import rule_jit
from .problems import aligned_copy, state_names
from .timing import Contender


@rule_jit
def _twin0(i, p, g, s, c):
    p[i] = p[i] + g[i]


@rule_jit
def _twin1(i, p, g, s, c):
    (a,) = s
    t = p[i]
    p[i] = a[i] + g[i]
    a[i] = t


@rule_jit
def _twin2(i, p, g, s, c):
    a, b = s
    t = p[i]
    p[i] = a[i] + g[i]
    a[i] = b[i]
    b[i] = t


@rule_jit
def _twin3(i, p, g, s, c):
    a, b, d = s
    t = p[i]
    p[i] = a[i] + g[i]
    a[i] = b[i]
    b[i] = d[i]
    d[i] = t


TWIN_RULES = (_twin0, _twin1, _twin2, _twin3)
"""Twin rule by number of state arrays."""


def traffic(name: str, h: dict) -> tuple[int, int]:
    """(arrays read, arrays written) by one step of optimizer ``name``:
    param, grad and every state read; param and every state written."""
    k = len(state_names(name, h))
    return 2 + k, 1 + k


def bytes_per_step(name: str, h: dict, n: int, dtype) -> int:
    """Bytes one step moves over ``n`` elements: (reads + writes) * itemsize * n.

    The same count is used for every contender (the minimum any of them must
    move), so GB/s figures compare like with like.
    """
    reads, writes = traffic(name, h)
    return (reads + writes) * np.dtype(dtype).itemsize * n


def twin_kernel(n_states: int):
    """The compiled twin ``kernel(p, g, states, coefficients, serial_below)``."""
    if not 0 <= n_states < len(TWIN_RULES):
        raise ValueError(f"no roofline twin for {n_states} state arrays (have 0..{len(TWIN_RULES) - 1})")
    return _cpu.cpu_kernel(TWIN_RULES[n_states], 1)


def twin_step(p: np.ndarray, g: np.ndarray, states: tuple, serial_below: int | None = None) -> None:
    """One twin pass over ``p``, ``g`` and ``states`` (all 1-D, one dtype).

    ``serial_below`` defaults to ``fastopt._cpu.SERIAL_BELOW``, as the
    optimizers' ``step`` does.
    """
    kernel = twin_kernel(len(states))
    threshold = _cpu.SERIAL_BELOW if serial_below is None else serial_below
    kernel(p, g, tuple(states), np.zeros(1, p.dtype), threshold)


def twin_contender(name: str, h: dict, p0: np.ndarray, g: np.ndarray) -> Contender:
    """The roofline twin of optimizer ``name`` as a timed contender."""
    k = len(state_names(name, h))
    kernel = twin_kernel(k)
    p = aligned_copy(p0)
    states = tuple(aligned_copy(p0) for _ in range(k))
    c = np.zeros(1, p.dtype)

    def run(steps: int) -> None:
        threshold = _cpu.SERIAL_BELOW
        for _ in range(steps):
            kernel(p, g, states, c, threshold)

    reads, writes = traffic(name, h)
    return Contender("roofline", run, f"roofline twin ({reads} reads + {writes} writes per element, no math)")
