"""What the compiled CUDA update kernels do with memory, read from their PTX
for sm_90 and from ptxas (no GPU needed): one 128-bit load per array on the
aligned path (the gradient through the read-only cache), no float64 in
float32 kernels, no spills, and grids sized to what is resident."""

from __future__ import annotations

import importlib.util

import pytest

if importlib.util.find_spec("numba_cuda") is None:
    pytest.skip('numba-cuda is not installed (pip install "fastopt[cuda]")', allow_module_level=True)

from numba import config  # noqa: E402

if config.ENABLE_CUDASIM:
    pytest.skip("the CUDA simulator compiles nothing to PTX", allow_module_level=True)

from fastopt.backends.cuda import occupancy  # noqa: E402
from fastopt.benchmark import ptx  # noqa: E402
from fastopt.rules import SPECS  # noqa: E402

ELEMENT_WISE = [name for name, spec in SPECS.items() if spec.segmented is None]


@pytest.mark.parametrize("name", ELEMENT_WISE)
def test_float32_kernels_load_each_array_once_with_128_bit_loads(name):
    spec = SPECS[name]
    code = ptx.update_kernel_code(name, "float32")
    arrays_read = 2 + len(spec.variant_of(spec.defaults).state_names)
    assert code.vector_loads == arrays_read, code.ptx
    assert "ld.global.v4.f32" in code.ptx
    assert code.nc_loads == 1  # the gradient, through the read-only path
    assert code.vector_stores == arrays_read - 1  # everything but the gradient is written back
    assert code.f64_instructions == 0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["adam", "sgd", "adamw"])
def test_kernels_fit_their_launch_bounds_without_spills(name, dtype):
    for hyper in ({}, {"amsgrad": True} if name.startswith("adam") else {"momentum": 0.9}):
        r = ptx.resources(ptx.update_kernel_code(name, dtype, hyperparameters=hyper).ptx)
        threads, min_blocks = occupancy.launch_bounds(dtype)
        assert 0 < r["registers"] <= 65536 // (threads * min_blocks)
        assert r["spill_stores"] == r["spill_loads"] == 0
        assert r["blocks_per_sm"] >= min_blocks


def test_scalar_kernel_has_no_signed_index_wrap_around():
    """Unsigned indices: no compare-and-select fixing up negative indices."""
    code = ptx.update_kernel_code("adam", "float32", vectorized=False)
    assert code.vector_loads == 0 and code.scalar_loads == 4
    assert "selp.b64" not in code.ptx and "setp.lt.s64" not in code.ptx


@pytest.mark.parametrize("registers, threads, expected", [
    (32, 256, 8), (40, 256, 6), (64, 256, 4), (65, 256, 3), (128, 256, 2), (255, 256, 1),
    (16, 128, 16), (32, 1024, 2),
])
def test_blocks_per_sm_follows_the_register_file(registers, threads, expected):
    assert occupancy.blocks_per_sm(registers, threads) == expected


def test_resident_blocks_without_a_driver_uses_the_register_count():
    class Compiled:
        overloads = {}

        @staticmethod
        def get_regs_per_thread():
            return 40

    assert occupancy.resident_blocks(Compiled(), 256, sms=132, max_threads_per_sm=2048) == 132 * 6


def test_grid_never_exceeds_what_is_resident(monkeypatch):
    from fastopt.backends import cuda as backend

    monkeypatch.setattr(backend, "device_blocks", lambda threads, device, kernel=None: 792)
    huge = 10**9
    assert backend.CUDA._blocks(huge, per_thread=4) == 792
    assert backend.CUDA._blocks(1000, per_thread=4) == 1  # 1000 elements, 4 per thread, 256 threads
    assert backend.CUDA._blocks(1025, per_thread=4) == 2
