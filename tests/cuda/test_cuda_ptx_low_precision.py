"""The low-precision CUDA kernels' machine code, read from their PTX for sm_90
and from ptxas (no GPU needed), as the backend compiles them:

- bfloat16 states (element-wise kernels): the memory path of the float32
  kernels (one vector load per array, the gradient through the read-only
  cache, one vector store per written array) with 4 x 16-bit vectors for the
  states; the bit work stays in 32-bit integers: no float64 instruction; no
  local memory;
- bfloat16 params written from a float32 master in the same pass: the same,
  the bfloat16 gradient and params as 4 x 16-bit vectors;
- 8-bit block-float states (a thread block per quantization block): the
  block's largest magnitude through shared memory and barriers, codes stored
  as bytes, no local memory; float64 only in the running maximum's exact
  square check (AMSGrad);
- with ptxas: no spills, and registers within the launch bounds.
"""

from __future__ import annotations

import importlib.util
import re

import numpy as np
import pytest

if importlib.util.find_spec("numba_cuda") is None:
    pytest.skip('numba-cuda is not installed (pip install "fastopt[cuda]")', allow_module_level=True)

from numba import config  # noqa: E402

if config.ENABLE_CUDASIM:
    pytest.skip("the CUDA simulator compiles nothing to PTX", allow_module_level=True)

from numba import cuda  # noqa: E402

from fastopt.backends.blockfloat import BLOCK  # noqa: E402
from fastopt.backends.cuda.occupancy import THREADS, blocks_per_sm, launch_bounds  # noqa: E402
from fastopt.benchmark import ptx as P  # noqa: E402
from fastopt.rules import SPECS  # noqa: E402


def _compiler_problem() -> str | None:
    def probe(x):
        x[0] = 1.0

    try:
        cuda.compile_ptx(probe, "void(float32[::1])", cc=P.CC)
    except Exception as exc:  # noqa: BLE001 - any loader error means "no NVVM/NVRTC here"
        return f"NVVM/NVRTC not usable here ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})"
    return None


_PROBLEM = _compiler_problem()
pytestmark = pytest.mark.skipif(_PROBLEM is not None, reason=_PROBLEM or "")


def _ptxas_problem() -> str | None:
    try:
        P.ptxas_path()
    except ImportError as exc:
        return f"no ptxas here, registers and spills not checked: {exc}"
    return None


needs_ptxas = pytest.mark.skipif(_ptxas_problem() is not None, reason=_ptxas_problem() or "")

CASES = {
    "adam": {},
    "adamw": {},
    "sgd-momentum": {"momentum": 0.9},
    "adamax": {},
    "adagrad": {},
    "amsgrad": {"amsgrad": True},
}
INT8_CASES = ["adam", "adamw", "sgd-momentum", "adamax", "amsgrad", "adagrad"]

LOAD = re.compile(r"^\s*ld\.global(\.nc)?(\.v[24])?\.(\w+)\s", re.MULTILINE)
STORE = re.compile(r"^\s*st\.global(\.v[24])?\.(\w+)\s", re.MULTILINE)
# inline-asm loads (the read-only gradient) sit inside braces on one line
NC_LOAD = re.compile(r"ld\.global\.nc(\.v[24])?\.(\w+)")


def _spec_and_variant(case: str):
    name = "adam" if case == "amsgrad" else case.split("-")[0]
    spec = SPECS[name]
    return spec, spec.variant_of({**spec.defaults, **CASES[case]})


def bfloat16_kernel(case: str, stochastic: bool = False, mirror: bool = False, states: str | None = "bfloat16"):
    """The PTX of the vectorized update kernel the backend builds for these
    storages (bfloat16 states and/or bfloat16 params over a float32 master)."""
    spec, variant = _spec_and_variant(case)
    code = P.low_precision_kernel_code(spec.name, states, stochastic, CASES[case], bfloat16_params=mirror)
    return code.ptx, variant


def int8_kernel(case: str) -> str:
    spec, _ = _spec_and_variant(case)
    return P.low_precision_kernel_code(spec.name, "int8", hyperparameters=CASES[case]).ptx


def loads(code: str) -> list[tuple[bool, str, str]]:
    """``(read-only, vector width, type)`` of every global load."""
    plain = [(False, m.group(2) or "", m.group(3)) for m in LOAD.finditer(code) if not m.group(1)]
    return plain + [(True, m.group(1) or "", m.group(2)) for m in NC_LOAD.finditer(code)]


def stores(code: str) -> list[tuple[str, str]]:
    return [(m.group(1) or "", m.group(2)) for m in STORE.finditer(code)]


def assert_no_float64(code: str) -> None:
    assert P.F64_OPS.findall(code) == [] and "cvt.f64" not in code and ".f64" not in code, \
        [line for line in code.splitlines() if ".f64" in line][:5]


def assert_no_local_memory(code: str) -> None:
    assert ".local" not in code, [line for line in code.splitlines() if ".local" in line][:5]


# -- bfloat16 states --------------------------------------------------------------------


@pytest.mark.parametrize("stochastic", [False, True], ids=["nearest", "stochastic"])
@pytest.mark.parametrize("case", list(CASES))
def test_bfloat16_state_kernel_keeps_the_float32_memory_path(case, stochastic):
    code, variant = bfloat16_kernel(case, stochastic)
    n_states = len(variant.state_names)
    vector_loads = [x for x in loads(code) if x[1] == ".v4"]
    # one vector load per array: params, the gradient read-only, each state as 4 x 16 bits
    assert sorted(vector_loads) == sorted([(False, ".v4", "f32"), (True, ".v4", "f32")]
                                          + [(False, ".v4", "u16")] * n_states)
    assert sorted(x for x in stores(code) if x[0] == ".v4") == sorted([(".v4", "f32")] + [(".v4", "u16")] * n_states)
    # the float32 kernel of the same rule reads as many arrays with vector loads
    assert len(vector_loads) == P.update_kernel_code(_spec_and_variant(case)[0].name, "float32",
                                                     hyperparameters=CASES[case]).vector_loads
    assert_no_float64(code)
    assert_no_local_memory(code)


def test_the_float64_and_local_memory_checks_can_fail():
    """The controls: a float64 constant, and a per-thread array indexed at run time."""
    def promoting(p):
        i = cuda.grid(1)
        if i < p.size:
            p[i] = p[i] * 0.1

    def local_array(p, k):
        scratch = cuda.local.array(64, np.float32)
        for j in range(64):
            scratch[j] = p[j]
        p[0] = scratch[k]

    with P._compute_capability_without_gpu():
        f64, _ = cuda.compile_ptx(promoting, "void(float32[::1])", cc=P.CC)
        local, _ = cuda.compile_ptx(local_array, "void(float32[::1], int64)", cc=P.CC)
    with pytest.raises(AssertionError):
        assert_no_float64(f64)
    with pytest.raises(AssertionError):
        assert_no_local_memory(local)


def test_bfloat16_params_kernel_reads_and_writes_16_bit_vectors():
    """bfloat16 params over a float32 master: the master in 4 x 32 bits, the
    bfloat16 gradient read-only and the bfloat16 params written in 4 x 16 bits."""
    code, variant = bfloat16_kernel("adamw", stochastic=True, mirror=True, states=None)
    assert sorted(x for x in loads(code) if x[1] == ".v4") == sorted(
        [(False, ".v4", "f32"), (True, ".v4", "u16")] + [(False, ".v4", "f32")] * len(variant.state_names))
    assert sorted(x for x in stores(code) if x[0] == ".v4") == sorted(
        [(".v4", "f32"), (".v4", "u16")] + [(".v4", "f32")] * len(variant.state_names))
    assert_no_float64(code)
    assert_no_local_memory(code)


@needs_ptxas
@pytest.mark.parametrize("mirror", [False, True], ids=["states", "states-and-params"])
@pytest.mark.parametrize("case", list(CASES))
def test_bfloat16_kernels_fit_their_launch_bounds_without_spills(case, mirror):
    code, _ = bfloat16_kernel(case, stochastic=True, mirror=mirror)
    r = P.resources(code)
    threads, min_blocks = launch_bounds(np.float32)
    assert r["spill_stores"] == r["spill_loads"] == 0 and r["stack"] == 0, r
    assert 0 < r["registers"] <= 65536 // (threads * min_blocks), r
    assert r["blocks_per_sm"] >= min_blocks


# -- 8-bit block-float states -----------------------------------------------------------


@pytest.mark.parametrize("case", INT8_CASES)
def test_int8_kernel_compiles_without_local_memory(case):
    code = int8_kernel(case)
    _, variant = _spec_and_variant(case)
    n_states = len(variant.state_names)
    assert_no_local_memory(code)
    # the block's largest magnitude: one int64 per thread in shared memory, a barrier per tree level
    assert re.search(rf"\.shared \.align 8 \.b8 \w+\[{8 * BLOCK}\]", code)
    assert code.count("bar.sync") >= n_states * int(np.log2(BLOCK))
    # each state: codes read and written as bytes, its scale read and written as 32 bits
    # (a signed code may be loaded sign-extended, as s8: the compiler reads its sign bit that way)
    assert sum(1 for x in loads(code) if x[2] in ("u8", "s8")) >= n_states
    assert sum(1 for x in stores(code) if x[1] == "u8") >= n_states
    assert sum(1 for x in stores(code) if x[1] in ("f32", "u32")) >= n_states + 1  # the scales and the params
    if "max_exp_avg_sq" in variant.state_names:
        # the running maximum is stored as the square root rounded up: float64
        # only to check that its square does not fall short of the value
        ops = {line.split()[0] for line in code.splitlines() if ".f64" in line and not line.strip().startswith(".reg")}
        assert ops and ops <= {"cvt.f64.f32", "mul.f64", "mul.rn.f64", "setp.lt.f64", "setp.gt.f64"}, ops
    else:
        assert_no_float64(code)


@needs_ptxas
@pytest.mark.parametrize("case", INT8_CASES)
def test_int8_kernel_has_no_spills_and_fits_a_block_of_256_threads(case):
    r = P.resources(int8_kernel(case))
    assert r["spill_stores"] == r["spill_loads"] == 0 and r["stack"] == 0, r
    assert THREADS == BLOCK  # the kernel runs one quantization block per thread block
    assert 0 < r["registers"] <= 64 and blocks_per_sm(r["registers"], BLOCK) >= 4, r


@needs_ptxas
def test_the_low_precision_table_counts_each_storage_by_its_width(monkeypatch):
    """What `fastopt kernels --markdown` reports for Adam: bfloat16 states as
    two 4 x 16-bit loads, int8 states as two byte loads, no spills."""
    monkeypatch.setattr(P, "LOW_PRECISION_CASES", (("adam", {}),))
    rows = P.low_precision_report()
    assert [r["states"] for r in rows] == ["bfloat16", "bfloat16, stochastic rounding", "int8"]
    for r in rows[:2]:
        assert (r["vector_loads_32"], r["vector_loads_16"], r["byte_loads"]) == (2, 2, 0), r
    assert (rows[2]["vector_loads_16"], rows[2]["byte_loads"]) == (0, 2), rows[2]
    assert all(r["spill_stores"] == r["spill_loads"] == 0 for r in rows)
    table = P.low_precision_markdown(rows)
    assert table.count("\n") == 2 + len(rows) and "| adam | int8 |" in table


@pytest.mark.parametrize("name,state_dtype", [("adam", "float16"), ("lamb", "bfloat16")])
def test_low_precision_kernel_code_refuses_what_the_backend_does_not_build(name, state_dtype):
    with pytest.raises(ValueError, match="state_dtype|element-wise"):
        P.low_precision_kernel_code(name, state_dtype)
