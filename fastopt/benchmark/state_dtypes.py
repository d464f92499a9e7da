"""Low-precision optimizer states in the benchmark: their byte counts, their
roofline twins and bitsandbytes' 8-bit optimizers as a contender.

A run with ``state_dtype="bfloat16"`` or ``"int8"`` times fastopt with that
state storage against:

- its own roofline twin, which moves the same bytes as the real step: for
  bfloat16, uint16 states through fastopt's own loop (loads widen, stores
  round to nearest: a shift and a few integer operations, no optimizer math);
  for int8, one byte per element and state plus one float32 scale per block
  of 256, read and written by blocks as the block-float loop goes, with no
  quantization;
- fastopt with float32 states (what the low-precision states save);
- torch.optim (float32 states: torch refuses lower-precision states for
  float32 params);
- bitsandbytes' blockwise 8-bit Adam/AdamW on the CPU (``int8`` runs, when
  bitsandbytes is installed).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from .._precision import MASTER
from ..backends import cpu
from ..backends.blockfloat import BLOCK, MIN_ELEMENTS, blocks
from ..backends.codecs import BFLOAT16
from ..backends.host_arrays import aligned_zeros
from ..optim import OPTIMIZERS
from ..rules import SPECS
from . import roofline
from .problems import aligned_copy, state_names
from .roofline import byte_twin_step
from .timing import Contender

LOW_PRECISION = ("bfloat16", "int8")
"""State dtypes narrower than the params (the ones with their own twin)."""

BNB_CLASSES = {"adam": "Adam8bit", "adamw": "AdamW8bit"}
"""fastopt optimizer -> bitsandbytes' 8-bit class with the same update."""


def check_state_dtype(name: str, state_dtype: str | None) -> str | None:
    """Why optimizer ``name`` cannot run with ``state_dtype`` (None: it can)."""
    if state_dtype == "int8" and SPECS[name].segmented is not None:
        return f"{SPECS[name].class_name} has no 8-bit states (its two-pass step reads each state twice)"
    return None


def state_itemsize(state_dtype: str | None, n: int, param_itemsize: int) -> float:
    """Bytes per element of one state array, block scales included."""
    if state_dtype == "bfloat16":
        return 2.0
    if state_dtype == "int8":
        return 1.0 + 4.0 / BLOCK if n >= MIN_ELEMENTS else 4.0
    if state_dtype in ("float32", "float64"):
        return float(np.dtype(state_dtype).itemsize)
    return float(param_itemsize)


def bytes_per_element(name: str, h: dict, n: int, dtype: DTypeLike, state_dtype: str | None) -> float:
    """Bytes one step moves per element: param read and written, grad read,
    every state read and written (a two-pass step reads param and states once
    more, see :func:`.roofline.traffic`)."""
    itemsize = np.dtype(dtype).itemsize
    k = len(state_names(name, h))
    accesses = 3 if roofline.two_passes(name) else 2  # of the param, and of each state
    return (accesses + 1) * itemsize + accesses * k * state_itemsize(state_dtype, n, itemsize)


def state_bytes_per_parameter(optimizer: Any) -> float:
    """Bytes of optimizer state per parameter that ``optimizer`` (a fastopt
    optimizer) really allocated, counted from the arrays: every state array
    and block scale (see :func:`.accuracy.state_summary`) plus the float32
    master copy of bfloat16 params."""
    from .accuracy import state_summary

    params = sum(b.p.size for plan in optimizer._plans for b in plan.buffers)
    master = sum(entry[MASTER].nbytes for entry in optimizer.state.values() if MASTER in entry)
    return state_summary(optimizer, params)[1] + master / params


def twin_contender(name: str, h: dict, p0: np.ndarray, g: np.ndarray, state_dtype: str) -> Contender:
    """The roofline twin of ``name`` with ``state_dtype`` states (see the module docs)."""
    k = len(state_names(name, h))
    n = p0.size
    if state_dtype == "int8" and n >= MIN_ELEMENTS:
        p = aligned_copy(p0)
        nb = blocks(n)
        codes = tuple(aligned_zeros(nb * BLOCK, np.uint8) for _ in range(k))
        scales = tuple(np.ones(nb, np.float32) for _ in range(k))
        threshold = cpu.threshold_for(n)

        def run(steps: int) -> None:
            for _ in range(steps):
                byte_twin_step(p, g, codes, scales, threshold)

        return Contender("roofline", run, f"8-bit twin (p, g, {k} code arrays and block scales; no quantization)")
    twin = roofline.twin_contender(name, h, p0, g, BFLOAT16 if state_dtype == "bfloat16" else p0.dtype)
    kind = "bfloat16" if state_dtype == "bfloat16" else p0.dtype.name
    return Contender("roofline", twin.run, f"{kind} twin ({k} state arrays, no math)")


def float32_states_contender(name: str, h: dict, p0: np.ndarray, g: np.ndarray) -> Contender:
    """fastopt's step with states of the params' dtype."""
    step = OPTIMIZERS[name]((aligned_copy(p0), g), **h).step

    def run(k: int) -> None:
        for _ in range(k):
            step()

    return Contender("fastopt_full_states", run, f"fastopt {OPTIMIZERS[name].__name__}, {p0.dtype.name} states")


def bnb_available() -> bool:
    """Whether bitsandbytes (and torch) can be imported."""
    try:
        import bitsandbytes  # noqa: F401
    except Exception:  # bitsandbytes raises more than ImportError when its native library is missing
        return False
    return True


def bnb_contender(name: str, h: dict, p0: np.ndarray, g: np.ndarray) -> Contender:
    """bitsandbytes' 8-bit ``Adam8bit``/``AdamW8bit`` on CPU tensors that share
    ``p0``'s copy and ``g`` (blockwise quantization, its default; states for
    tensors of at least 4096 elements, as fastopt's)."""
    if name not in BNB_CLASSES:
        raise ValueError(f"bitsandbytes has no 8-bit {name}")
    if h.get("amsgrad") or h.get("maximize"):
        raise ValueError("bitsandbytes' 8-bit Adam has no amsgrad/maximize")
    import bitsandbytes as bnb
    import torch

    param = torch.nn.Parameter(torch.from_numpy(aligned_copy(p0)))
    param.grad = torch.from_numpy(g)
    cls = getattr(bnb.optim, BNB_CLASSES[name])
    opt = cls([param], lr=h["lr"], betas=h["betas"], eps=h["eps"], weight_decay=h["weight_decay"],
              min_8bit_size=MIN_ELEMENTS)

    def run(k: int) -> None:
        with torch.no_grad():
            for _ in range(k):
                opt.step()

    return Contender("bnb_8bit", run, f"bitsandbytes {BNB_CLASSES[name]} (CPU, blockwise 8-bit states)")
