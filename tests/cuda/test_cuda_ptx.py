"""Every CUDA kernel compiles to PTX for sm_90 (float32 and float64), on a
machine without a GPU, and float32 kernels do their math in float32.

Needs numba-cuda with NVVM and NVRTC (``pip install "fastopt[cuda]"`` brings
both as wheels); skips with the reason when they cannot be loaded.
"""

from __future__ import annotations

import importlib.util
import re
from types import SimpleNamespace

import numpy as np
import pytest

if importlib.util.find_spec("numba_cuda") is None:
    pytest.skip('numba-cuda is not installed (pip install "fastopt[cuda]")', allow_module_level=True)

from numba import config  # noqa: E402

if config.ENABLE_CUDASIM:
    pytest.skip("the CUDA simulator compiles nothing to PTX", allow_module_level=True)

from cuda_cases import rule_variants, segmented_specs  # noqa: E402
from numba import cuda  # noqa: E402

from fastopt.backends.cuda import kernels as K  # noqa: E402

CC = (9, 0)
F64_OPS = re.compile(r"^\s*(?!ld\.param|st\.param|mov)[a-z]+[.a-z0-9]*\.f64\b", re.MULTILINE)


def _compiler_problem() -> str | None:
    def probe(x):
        x[0] = 1.0

    try:
        cuda.compile_ptx(probe, "void(float32[::1])", cc=CC)
    except Exception as exc:  # noqa: BLE001 - any loader error means "no NVVM/NVRTC here"
        return f"NVVM/NVRTC not usable here ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})"
    return None


_PROBLEM = _compiler_problem()
pytestmark = pytest.mark.skipif(_PROBLEM is not None, reason=_PROBLEM or "")


@pytest.fixture(autouse=True)
def no_gpu_needed(monkeypatch):
    """numba-cuda compiles a called ``@njit`` function (a rule and its helpers)
    as a device function for the *current device's* compute capability, even
    inside ``compile_ptx(cc=...)``; without a GPU there is none. Stand in an
    sm_90 device for that lookup only."""
    import numba.cuda.dispatcher as dispatcher

    monkeypatch.setattr(dispatcher, "get_current_device", lambda: SimpleNamespace(compute_capability=CC))


def _ptx(pyfunc, signature) -> str:
    ptx, _ = cuda.compile_ptx(pyfunc, signature, cc=CC)
    assert f".target sm_{CC[0]}{CC[1]}" in ptx
    return ptx


VARIANTS = rule_variants()


def _assert_float32_math(ptx: str) -> None:
    # A Python float (float64) constant or np.sqrt would show up as f64
    # arithmetic or a cvt.f64.f32: none may be there.
    assert F64_OPS.findall(ptx) == [], "float32 kernel does float64 math"
    assert "cvt.f64.f32" not in ptx


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("with_ema", [False, True], ids=["plain", "ema"])
@pytest.mark.parametrize("variant", VARIANTS, ids=[v[2] for v in VARIANTS])
def test_update_kernel_compiles(variant, with_ema, dtype):
    spec, v, _ = variant
    signature = K.update_signature(dtype, len(v.state_names) + with_ema, K.HEAD + len(spec.record._fields))
    ptx = _ptx(K.elementwise_source(v.rule, spec.record, with_ema), signature)
    if dtype == np.float32:
        _assert_float32_math(ptx)
    assert "ld.global" in ptx and "st.global" in ptx


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("with_ema", [False, True], ids=["plain", "ema"])
@pytest.mark.parametrize("spec", segmented_specs(), ids=lambda s: s.name)
def test_segmented_kernels_compile(spec, with_ema, dtype):
    n_states = len(spec.variant_of(spec.defaults).state_names) + with_ema
    sources = K.segmented_sources(spec.segmented, spec.record, with_ema, 256)
    signatures = K.segmented_signatures(dtype, n_states, K.HEAD + len(spec.record._fields))
    for name, source, signature in zip(("pass one", "per tensor", "pass two"), sources, signatures):
        ptx = _ptx(source, signature)
        assert "st.global" in ptx, name
        if dtype == np.float32 and name == "pass two":
            _assert_float32_math(ptx)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["sum_of_squares", "combine", "all_finite", "fill", "scale"])
def test_helper_kernel_compiles(name, dtype):
    source, signature = K.helper_kernels(dtype)[name]
    ptx = _ptx(source, signature)
    if dtype == np.float32 and name in ("fill", "scale", "all_finite"):
        assert F64_OPS.findall(ptx) == []


def test_the_check_catches_float64_promotion():
    """The control for the float32 check above: a bare Python float does promote."""
    def promoting(p):
        i = cuda.grid(1)
        if i < p.size:
            p[i] = p[i] * 0.1

    assert F64_OPS.findall(_ptx(promoting, "void(float32[::1])"))


@pytest.mark.parametrize("guarded", [False, True], ids=["plain", "guarded"])
@pytest.mark.parametrize("name", sorted(__import__("fastopt.rules", fromlist=["SPECS"]).SPECS))
def test_device_prologue_compiles_every_coefficient_function(name, guarded):
    """Device-resident steps run each spec's own coefficient function on the GPU."""
    from numba import types

    from fastopt.backends.cuda import device_steps
    from fastopt.rules import SPECS

    f64, i64 = types.Array(types.float64, 1, "C"), types.Array(types.int64, 1, "C")
    f64_2d = types.Array(types.float64, 2, "C")
    signature = types.void(f64, i64, f64_2d, f64, types.float64, types.float64, types.float64, types.float64,
                           f64_2d)
    ptx = _ptx(device_steps.prologue_source(SPECS[name], guarded), signature)
    assert "st.global.f64" in ptx


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("variant", VARIANTS[:3], ids=[v[2] for v in VARIANTS[:3]])
def test_device_values_update_kernel_compiles(variant, dtype):
    spec, v, _ = variant
    n_values = K.HEAD + len(spec.record._fields)
    signature = K.update_signature(dtype, len(v.state_names), n_values, device_values=True)
    ptx = _ptx(K.elementwise_source(v.rule, spec.record, False, True, True, dtype), signature)
    assert ptx.count("ld.global.v4") + ptx.count("ld.global.v2") >= 1
    if dtype == np.float32:
        # the values arrive in float64 and are cast once (and the skip flag
        # is compared once per thread): no f64 arithmetic on elements
        arithmetic = [op for op in F64_OPS.findall(ptx) if not op.strip().startswith(("ld.", "cvt", "setp"))]
        assert arithmetic == []


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_guard_kernels_compile(dtype):
    from numba import types

    from fastopt.backends.cuda import device_steps

    f64 = types.Array(types.float64, 1, "C")
    _ptx(device_steps.flagged_sums_source(256, 1 << 16), types.void(K.vector(dtype), f64, f64))
    _ptx(device_steps.finalize_source(256),
         types.void(f64, f64, types.float64, types.float64, types.float64, f64))
