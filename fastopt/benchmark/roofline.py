"""The roofline twin: a kernel with the optimizer kernel's memory traffic and
no math, giving the fastest a step over these arrays can be on this machine.

The twin is a rule like any other, run by fastopt's own CPU loop factory
(:func:`fastopt.backends.cpu_loops.elementwise_kernel`), so it has the
optimizer kernel's dispatcher, call signature, serial branch below
``SERIAL_BELOW`` and ``prange`` loop above it: only the per-element work
differs. For an optimizer with ``k`` state arrays the rule reads ``p``, ``g``
and every state and writes ``p`` and every state, rotating the values
(``p <- s0 + g``, ``s0 <- s1``, ..., ``s_last <- p``) so that no load or
store can be optimised away and every array really changes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import prange
from numpy.typing import DTypeLike

from ..backends import cpu, cpu_loops
from ..backends.blockfloat import BLOCK
from ..backends.host_arrays import aligned_zeros
from ..config import element_jit, loop_jit
from ..rules import SPECS
from ..rules._spec import coefficient_record
from .problems import aligned_copy, state_names
from .timing import Contender

TwinCoefficients = coefficient_record("TwinCoefficients", "unused")

TWIN_VALUES = (1.0, np.inf, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0)
"""The twin's per-step values: unit gradient scale, no clipping, no EMA, no
rounding key, one unused coefficient."""


@element_jit
def _twin0(p: float, g: float, s: tuple, c: Any) -> tuple:
    return p + g, s


@element_jit
def _twin1(p: float, g: float, s: tuple, c: Any) -> tuple:
    (a,) = s
    return a + g, (p,)


@element_jit
def _twin2(p: float, g: float, s: tuple, c: Any) -> tuple:
    a, b = s
    return a + g, (b, p)


@element_jit
def _twin3(p: float, g: float, s: tuple, c: Any) -> tuple:
    a, b, d = s
    return a + g, (b, d, p)


TWIN_RULES = (_twin0, _twin1, _twin2, _twin3)
"""Twin rule by number of state arrays."""


def two_passes(name: str) -> bool:
    """Whether optimizer ``name`` steps in two passes (a per-tensor rule: LAMB)."""
    return SPECS[name].segmented is not None


def traffic(name: str, h: dict) -> tuple[int, int]:
    """(arrays read, arrays written) by one step of optimizer ``name``:
    param, grad and every state read; param and every state written. A
    two-pass step (LAMB) reads param, grad and the states, writes the states,
    then reads param and the states again and writes param."""
    k = len(state_names(name, h))
    if two_passes(name):
        return 3 + 2 * k, 1 + k
    return 2 + k, 1 + k


def bytes_per_step(name: str, h: dict, n: int, dtype: DTypeLike) -> int:
    """Bytes one step moves over ``n`` elements: (reads + writes) * itemsize * n.

    The same count is used for every contender (the minimum any of them must
    move), so GB/s figures compare like with like.
    """
    reads, writes = traffic(name, h)
    return (reads + writes) * np.dtype(dtype).itemsize * n


def twin_kernel(n_states: int) -> Any:
    """The compiled twin ``kernel(p, g, states, ema, mirror, values, serial_below)``."""
    if not 0 <= n_states < len(TWIN_RULES):
        raise ValueError(f"no roofline twin for {n_states} state arrays (have 0..{len(TWIN_RULES) - 1})")
    return cpu_loops.elementwise_kernel(TWIN_RULES[n_states], TwinCoefficients)


def twin_step(p: np.ndarray, g: np.ndarray, states: tuple, serial_below: int | None = None) -> None:
    """One twin pass over ``p``, ``g`` and ``states`` (all 1-D, one dtype).

    ``serial_below`` defaults to the CPU backend's threshold, as the
    optimizers' ``step`` does.
    """
    kernel = twin_kernel(len(states))
    threshold = cpu.threshold_for(p.size) if serial_below is None else serial_below
    kernel(p, g, tuple(states), None, None, TWIN_VALUES, threshold)


def twin_contender(name: str, h: dict, p0: np.ndarray, g: np.ndarray,
                   state_dtype: DTypeLike | None = None) -> Contender:
    """The roofline twin of optimizer ``name`` as a timed contender (states of
    ``state_dtype``, default the params'; uint16 for bfloat16 bits)."""
    k = len(state_names(name, h))
    p = aligned_copy(p0)
    states = tuple(aligned_zeros(p0.size, state_dtype or p0.dtype) for _ in range(k))
    if two_passes(name):
        threshold = cpu.threshold_for(p.size)

        def run(steps: int) -> None:
            for _ in range(steps):
                _two_pass_twin(p, g, states, threshold)
    else:
        launch = cpu.CPU.elementwise_launcher(TWIN_RULES[k], TwinCoefficients, p, g, states, None)

        def run(steps: int) -> None:
            for _ in range(steps):
                launch(TWIN_VALUES)

    reads, writes = traffic(name, h)
    return Contender("roofline", run, f"roofline twin ({reads} reads + {writes} writes per element, no math)")


@element_jit
def _first_pass(i: int, p: np.ndarray, g: np.ndarray, states: tuple) -> None:
    last = len(states) - 1
    first = states[0][i]
    for k in range(last):
        states[k][i] = states[k + 1][i]
    states[last][i] = p[i] + g[i] + first


@element_jit
def _second_pass(i: int, p: np.ndarray, states: tuple) -> None:
    total = p[i]
    for k in range(len(states)):
        total += states[k][i]
    p[i] = total


@loop_jit()
def _two_pass_twin(p: np.ndarray, g: np.ndarray, states: tuple, serial_below: int) -> None:
    # The bytes of a two-pass step (LAMB): p, g and the states read, the states
    # written; then p and the states read, p written. Unsigned indices, as the
    # optimizer loops.
    n = p.size
    if n < serial_below:
        for i in range(n):
            _first_pass(np.uint64(i), p, g, states)
        for i in range(n):
            _second_pass(np.uint64(i), p, states)
    else:
        for i in prange(n):
            _first_pass(np.uint64(i), p, g, states)
        for i in prange(n):
            _second_pass(np.uint64(i), p, states)


@element_jit
def _byte_twin_block(b: int, p: np.ndarray, g: np.ndarray, codes: tuple, scales: tuple) -> None:
    # Unsigned indices: no negative-index wrap-around code, so the loop vectorizes.
    lo = np.uint64(b) * np.uint64(BLOCK)
    count = min(np.uint64(BLOCK), np.uint64(p.size) - lo)
    last = len(codes) - 1
    for j in range(count):
        i = lo + j
        first = codes[0][i]
        for k in range(last):
            codes[k][i] = codes[k + 1][i]
        x = p[i]
        codes[last][i] = np.uint8(np.int32(x * np.float32(16.0)) & 0xFF)
        p[i] = x + g[i] + np.float32(first)
    first_scale = scales[0][b]
    for k in range(last):
        scales[k][b] = scales[k + 1][b]
    scales[last][b] = first_scale


@loop_jit()
def _byte_twin(p: np.ndarray, g: np.ndarray, codes: tuple, scales: tuple, serial_below: int) -> None:
    blocks = (p.size + BLOCK - 1) // BLOCK
    if p.size < serial_below:
        for b in range(blocks):
            _byte_twin_block(b, p, g, codes, scales)
    else:
        for b in prange(blocks):
            _byte_twin_block(b, p, g, codes, scales)


def byte_twin_step(p: np.ndarray, g: np.ndarray, codes: tuple, scales: tuple, serial_below: int | None = None) -> None:
    """One pass of the 8-bit state twin: ``p`` and ``g`` read, ``p`` written,
    every uint8 code array and float32 per-block scale array read and
    written (rotated), by blocks of ``BLOCK`` as the block-float kernel
    goes; no quantization."""
    threshold = cpu.threshold_for(p.size) if serial_below is None else serial_below
    _byte_twin(p, g, tuple(codes), tuple(scales), threshold)
