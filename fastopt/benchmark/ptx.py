"""The CUDA kernels' machine code, read without a GPU: PTX for sm_90 from
``numba.cuda.compile_ptx``, resources from ``ptxas -v`` (the
``nvidia-cuda-nvcc-cu12`` wheel of the ``cuda`` extra), and what the PTX says
about the memory path: vector or scalar loads per array, float64
instructions in float32 kernels, registers, spills and resident blocks per SM.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

CC = (9, 0)
"""Compute capability the PTX is compiled for (H100)."""

INSTALL_HINT = 'pip install "fastopt[cuda]"'

F64_OPS = re.compile(r"^\s*(?!ld\.param|st\.param|mov)[a-z]+[.a-z0-9]*\.f64\b", re.MULTILINE)
_LOAD = re.compile(r"\bld\.global(?:\.nc)?(\.v[24])?\.([fubs]\d+)")
_STORE = re.compile(r"\bst\.global(\.v[24])?\.([fubs]\d+)")


def require_cuda() -> Any:
    """The ``numba.cuda`` module, or ImportError naming the extra."""
    import importlib.util

    if importlib.util.find_spec("numba_cuda") is None:
        raise ImportError(f"reading the CUDA kernels needs numba-cuda; install it with: {INSTALL_HINT}")
    from numba import cuda

    return cuda


@contextlib.contextmanager
def _compute_capability_without_gpu() -> Iterator[None]:
    """numba-cuda compiles a called ``@njit`` function (a rule) for the current
    device's compute capability, even inside ``compile_ptx(cc=...)``; without a
    GPU there is none. Stand in an sm_90 device for that lookup only."""
    from types import SimpleNamespace

    import numba.cuda.dispatcher as dispatcher

    real = dispatcher.get_current_device
    dispatcher.get_current_device = lambda: SimpleNamespace(compute_capability=CC)
    try:
        yield
    finally:
        dispatcher.get_current_device = real


@dataclass(frozen=True)
class KernelCode:
    """One compiled update kernel."""

    optimizer: str
    variant: str
    dtype: str
    vectorized: bool
    ptx: str

    @property
    def vector_loads(self) -> int:
        return len([m for m in _LOAD.finditer(self.ptx) if m.group(1)])

    @property
    def scalar_loads(self) -> int:
        return len([m for m in _LOAD.finditer(self.ptx) if not m.group(1)])

    @property
    def vector_stores(self) -> int:
        return len([m for m in _STORE.finditer(self.ptx) if m.group(1)])

    @property
    def nc_loads(self) -> int:
        return self.ptx.count("ld.global.nc")

    @property
    def f64_instructions(self) -> int:
        return len(F64_OPS.findall(self.ptx))


def update_kernel_code(optimizer: str, dtype: DTypeLike = "float32", vectorized: bool = True, with_ema: bool = False,
                       hyperparameters: dict | None = None) -> KernelCode:
    """The PTX of ``optimizer``'s element-wise update kernel."""
    cuda = require_cuda()
    from ..backends.cuda import kernels as K
    from ..backends.cuda.occupancy import launch_bounds
    from ..rules import SPECS

    if optimizer not in SPECS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose from {', '.join(SPECS)}")
    spec = SPECS[optimizer]
    if spec.segmented is not None:
        raise ValueError(f"{optimizer} runs on the two-pass segmented driver; see segmented_kernel_code")
    variant = spec.variant_of({**spec.defaults, **(hyperparameters or {})})
    dtype = np.dtype(dtype)
    n_states = len(variant.state_names) + with_ema
    signature = K.update_signature(dtype, n_states, K.HEAD + len(spec.record._fields))  # type: ignore[attr-defined]
    with _compute_capability_without_gpu():
        ptx, _ = cuda.compile_ptx(K.elementwise_source(variant.rule, spec.record, with_ema, vectorized), signature,
                                  cc=CC, launch_bounds=launch_bounds(dtype))
    return KernelCode(optimizer, variant.rule.__name__, dtype.name, vectorized, ptx)


def low_precision_kernel_code(optimizer: str, state_dtype: str | None, stochastic_rounding: bool = False,
                              hyperparameters: dict | None = None, bfloat16_params: bool = False) -> KernelCode:
    """The PTX of ``optimizer``'s update kernel over a float32 buffer with
    low-precision storages, built as the CUDA backend builds it:
    ``state_dtype="bfloat16"`` (or None: float32 states) the element-wise
    kernel, vectorized path, and with ``bfloat16_params`` a bfloat16 gradient
    and params written from the float32 master; ``"int8"`` the block-float
    kernel (a thread block per quantization block)."""
    cuda = require_cuda()
    from .._precision import Precision
    from ..backends.codecs import BFLOAT16
    from ..backends.cuda import kernels as K
    from ..backends.cuda.blocks import blockwise_signature, blockwise_source
    from ..backends.cuda.occupancy import launch_bounds
    from ..rules import SPECS

    if optimizer not in SPECS or SPECS[optimizer].segmented is not None:
        raise ValueError(f"{optimizer!r} is not an element-wise optimizer")
    spec = SPECS[optimizer]
    variant = spec.variant_of({**spec.defaults, **(hyperparameters or {})})
    n_values = K.HEAD + len(spec.record._fields)  # type: ignore[attr-defined]
    f32 = np.dtype(np.float32)
    if state_dtype == "int8" and not bfloat16_params:
        formats = tuple(Precision.format(name, spec) for name in variant.state_names)
        source = blockwise_source(variant.rule, spec.record, formats, False, False)
        signature = blockwise_signature(f32, f32, len(formats), (), n_values)
        bounds = None
    elif state_dtype in (None, "bfloat16"):
        precision = Precision.checked(state_dtype, stochastic_rounding)
        roundings = tuple(precision.rounding(name, spec) for name in variant.state_names)
        source = K.elementwise_source(variant.rule, spec.record, False, True, False, f32, bfloat16_params,
                                      roundings, precision.mirror_rounding)
        kinds = [BFLOAT16 if state_dtype else f32] * len(variant.state_names) + [BFLOAT16] * bfloat16_params
        signature = K.update_signature(f32, kinds, n_values, grad_dtype=BFLOAT16 if bfloat16_params else f32)
        bounds = launch_bounds(f32)
    else:
        raise ValueError(f"state_dtype must be None, 'bfloat16' or 'int8' (int8 without bfloat16 params), "
                         f"got {state_dtype!r}")
    with _compute_capability_without_gpu():
        ptx, _ = cuda.compile_ptx(source, signature, cc=CC, launch_bounds=bounds)
    storages = f"{state_dtype or 'float32'} states" + (", bfloat16 params" if bfloat16_params else "")
    return KernelCode(optimizer, variant.rule.__name__, f"float32, {storages}", True, ptx)


def ptxas_path() -> Path:
    """``ptxas`` from the ``nvidia-cuda-nvcc-cu12`` wheel."""
    try:
        import nvidia.cuda_nvcc as nvcc
    except ImportError:
        raise ImportError(f"ptxas comes with the nvidia-cuda-nvcc-cu12 wheel; install: {INSTALL_HINT}") from None
    path = Path(next(iter(nvcc.__path__))) / "bin" / "ptxas"
    if not path.exists():
        raise ImportError(f"no ptxas in {path.parent}; reinstall with: {INSTALL_HINT}")
    return path


def resources(ptx: str) -> dict:
    """``ptxas -v`` for sm_90: ``registers``, ``spill_stores``, ``spill_loads``
    (bytes) and ``stack`` (bytes), plus ``blocks_per_sm`` at the update
    kernels' block size."""
    from ..backends.cuda.occupancy import THREADS, blocks_per_sm

    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "kernel.ptx"
        source.write_text(ptx)
        result = subprocess.run([str(ptxas_path()), f"-arch=sm_{CC[0]}{CC[1]}", "-v", str(source), "-o",
                                 str(Path(folder) / "kernel.cubin")], capture_output=True, text=True, timeout=300)
    if result.returncode:
        raise RuntimeError(f"ptxas failed: {result.stderr.strip()}")
    text = result.stderr
    used = re.search(r"Used (\d+) registers", text)
    if used is None:
        raise RuntimeError(f"ptxas -v reported no register count: {text.strip()[:200]}")
    registers = int(used.group(1))
    spills = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", text)
    stack, stores, loads = (int(x) for x in spills.groups()) if spills else (0, 0, 0)
    return {"registers": registers, "spill_stores": stores, "spill_loads": loads, "stack": stack,
            "blocks_per_sm": blocks_per_sm(registers, THREADS)}


def report(dtypes: Sequence[str] = ("float32", "float64")) -> list[dict]:
    """One row per distinct element-wise update kernel and dtype (vectorized path)."""
    from ..rules import SPECS

    rows, seen = [], set()
    variants = []
    for name, spec in SPECS.items():
        if spec.segmented is not None:
            continue
        for probe in _variant_probes(spec):
            variant = spec.variant_of({**spec.defaults, **probe})
            if variant.rule not in seen:
                seen.add(variant.rule)
                variants.append((name, probe, variant))
    for dtype in dtypes:
        for name, probe, variant in variants:
            code = update_kernel_code(name, dtype, hyperparameters=probe)
            rows.append({"optimizer": name, "kernel": variant.rule.__name__, "dtype": dtype,
                         "arrays_read": 2 + len(variant.state_names), "vector_loads": code.vector_loads,
                         "nc_loads": code.nc_loads, "vector_stores": code.vector_stores,
                         "scalar_loads_tail": code.scalar_loads, "f64_instructions": code.f64_instructions,
                         **resources(code.ptx)})
    return rows


LOW_PRECISION_CASES: tuple[tuple[str, dict], ...] = (
    ("sgd", {"momentum": 0.9}), ("adagrad", {}), ("adam", {}), ("adam", {"amsgrad": True}), ("adamax", {}),
    ("lion", {}))
"""The kernels :func:`low_precision_report` reads (AdamW shares Adam's rule)."""


def low_precision_report() -> list[dict]:
    """One row per kernel of :data:`LOW_PRECISION_CASES` and state dtype:
    global loads and stores by width and type, f64 instructions, resources."""
    rows = []
    for state_dtype, stochastic in (("bfloat16", False), ("bfloat16", True), ("int8", False)):
        for name, probe in LOW_PRECISION_CASES:
            code = low_precision_kernel_code(name, state_dtype, stochastic, probe)
            loads = [(m.group(1) or "", m.group(2)) for m in _LOAD.finditer(code.ptx)]
            stores = [(m.group(1) or "", m.group(2)) for m in _STORE.finditer(code.ptx)]
            rows.append({"optimizer": name, "kernel": code.variant,
                         "states": state_dtype + (", stochastic rounding" if stochastic else ""),
                         "vector_loads_16": sum(1 for w, t in loads if w == ".v4" and t in ("u16", "b16")),
                         "vector_loads_32": sum(1 for w, t in loads if w == ".v4" and t in ("f32", "u32", "b32")),
                         "byte_loads": sum(1 for w, t in loads if not w and t in ("u8", "s8")),
                         "byte_stores": sum(1 for w, t in stores if not w and t in ("u8", "s8")),
                         "vector_stores": sum(1 for w, _ in stores if w),
                         "f64_instructions": code.f64_instructions, **resources(code.ptx)})
    return rows


LOW_PRECISION_COLUMNS = (("kernel", "kernel"), ("states", "states"), ("4 x 32-bit loads", "vector_loads_32"),
                         ("4 x 16-bit loads", "vector_loads_16"), ("byte loads", "byte_loads"),
                         ("4-wide stores", "vector_stores"), ("byte stores", "byte_stores"))


def low_precision_markdown(rows: list[dict]) -> str:
    """The table of :func:`low_precision_report` as markdown."""
    return _table(LOW_PRECISION_COLUMNS, rows)


def _variant_probes(spec: Any) -> list[dict]:
    """Hyperparameters reaching every variant of ``spec`` (flipping each bool, momentum on)."""
    probes: list[dict[str, Any]] = [{}]
    for key, value in spec.defaults.items():
        if isinstance(value, bool) and key != "maximize":
            probes += [{**p, key: not value} for p in probes]
    if "momentum" in spec.defaults:
        probes += [{**p, "momentum": 0.9} for p in probes if not p.get("nesterov")]
    return probes


COLUMNS = (("kernel", "kernel"), ("dtype", "dtype"), ("arrays read", "arrays_read"),
           ("4-wide loads", "vector_loads"), ("of them .nc", "nc_loads"), ("4-wide stores", "vector_stores"),
           ("scalar loads (tail)", "scalar_loads_tail"))


def to_markdown(rows: list[dict]) -> str:
    """The table of :func:`report` as markdown."""
    return _table(COLUMNS, rows)


def _table(columns: tuple, rows: list[dict]) -> str:
    """``columns`` (heading, key), then the resources every row has."""
    headings = [h for h, _ in columns] + ["f64 ops", "registers", "spills (B)", "blocks/SM"]
    lines = ["| " + " | ".join(headings) + " |", "|" + " --- |" * len(headings)]
    for r in rows:
        cells = [r[k] for _, k in columns] + [r["f64_instructions"], r["registers"],
                                              r["spill_stores"] + r["spill_loads"], r["blocks_per_sm"]]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines) + "\n"
