"""Every optimizer x option x dtype x size against the float64 reference."""

from __future__ import annotations

import numpy as np
import pytest
from cases import ALL, case_id
from helpers import random_problem, tolerance
from reference import run_reference

import fastopt
from fastopt.backends import cpu as _cpu

STEPS = 20
SIZES = [1, 7, 1000, 4099, _cpu.SERIAL_BELOW + 4097]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("case", ALL, ids=case_id)
def test_matches_reference(case, n, dtype):
    name, hyper = case
    p0, grads = random_problem(n, STEPS, seed=n)
    expected = run_reference(name, p0, grads, hyper)
    params = fastopt.FlatParams({"x": (n,)}, dtype=dtype)
    params.data[:] = p0
    opt = fastopt.OPTIMIZERS[name](params, **hyper)
    rtol, atol = tolerance(dtype, STEPS)
    for t, g in enumerate(grads):
        params.grad[:] = g
        opt.step()
        np.testing.assert_allclose(params.data, expected[t], rtol=rtol, atol=atol,
                                   err_msg=f"{name} {hyper} step {t + 1}")


@pytest.mark.parametrize("case", ALL, ids=case_id)
def test_serial_and_parallel_paths_agree_bitwise(case, monkeypatch):
    """The serial branch and the prange branch run the same rule: identical bits."""
    name, hyper = case
    n = 5003
    p0, grads = random_problem(n, 5, seed=3)
    results = []
    for serial_below in (n + 1, 0):
        monkeypatch.setattr(_cpu, "SERIAL_BELOW", serial_below)
        params = fastopt.FlatParams({"x": (n,)}, dtype=np.float32)
        params.data[:] = p0
        opt = fastopt.OPTIMIZERS[name](params, **hyper)
        for g in grads:
            params.grad[:] = g
            opt.step()
        results.append(params.data.copy())
    np.testing.assert_array_equal(results[0], results[1])


@pytest.mark.parametrize("case", ALL, ids=case_id)
def test_functional_matches_class(case):
    name, hyper = case
    p0, grads = random_problem(513, 6, seed=5)
    a = p0.astype(np.float32)
    b = a.copy()
    gb = np.empty_like(b)
    opt = fastopt.OPTIMIZERS[name]([(b, gb)], **hyper)
    state = fastopt.functional.init_state(name, a, **hyper)
    for t, g in enumerate(grads, start=1):
        g32 = g.astype(np.float32)
        fastopt.functional.apply(name, a, g32, state, step=t, **hyper)
        gb[:] = g32
        opt.step()
    np.testing.assert_array_equal(a, b)
