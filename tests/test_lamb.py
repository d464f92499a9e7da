"""LAMB's two-pass segmented driver (through fastopt.functional.lamb_ and the
LAMB class) against the float64 reference, with and without per-tensor
segments."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from helpers import random_problem, tolerance
from reference import run_reference

from fastopt import functional
from fastopt.backends import cpu as _cpu
from fastopt.backends import segments as _segments
from fastopt.backends.cpu import CPU
from fastopt.rules.lamb import SPEC


def lamb_step(p, g, m, v, *, step, segments=None, **hyper):
    functional.lamb_(p, g, {"exp_avg": m, "exp_avg_sq": v}, step=step, segments=segments, **hyper)

STEPS = 12
SIZES = [1, 7, 1000, 4099, _cpu.SERIAL_BELOW + 4097]
HYPERS = [
    dict(),
    dict(lr=1e-2, weight_decay=0.1),
    dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-4, bias_correction=False, maximize=True),
    dict(lr=5e-3, weight_decay=0.01, maximize=True),
]


def segments_for(n: int, kind: str):
    if kind == "whole":
        return None
    if kind == "tensors":  # a FlatParams-like partition, with an empty tensor
        cuts = sorted({0, n // 5, n // 5, n // 2, n - min(n, 3), n})
        return list(zip(cuts[:-1], cuts[1:], strict=True)) + [(n // 2, n // 2)]
    # gaps and an unsorted list: uncovered elements keep their values
    return [(n // 2 + 1, n), (0, n // 3)]


def run_fast(p0, grads, dtype, hyper, segments):
    p = p0.astype(dtype)
    m, v = np.zeros_like(p), np.zeros_like(p)
    out = []
    for t, g in enumerate(grads, start=1):
        lamb_step(p, g.astype(dtype), m, v, step=t, segments=segments, **hyper)
        out.append(p.copy())
    return out, m, v


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("kind", ["whole", "tensors", "gaps"])
@pytest.mark.parametrize("hyper", HYPERS, ids=lambda h: "-".join(f"{k}={v}" for k, v in h.items()) or "defaults")
def test_matches_reference(hyper, kind, n, dtype):
    segments = segments_for(n, kind)
    p0, grads = random_problem(n, STEPS, seed=n + 1)
    expected = run_reference("lamb", p0, grads, dict(hyper, segments=segments))
    got, _, _ = run_fast(p0, grads, dtype, hyper, segments)
    rtol, atol = tolerance(dtype, STEPS)
    for t in range(STEPS):
        np.testing.assert_allclose(got[t], expected[t], rtol=rtol, atol=atol,
                                   err_msg=f"lamb {hyper} {kind} step {t + 1}")


def test_segments_equal_separate_calls():
    """A segment of a flat buffer is updated exactly as that tensor on its own."""
    n = 3000
    p0, grads = random_problem(n, 5, seed=2)
    segs = [(0, 1000), (1000, 2500), (2500, 3000)]
    joint, mj, vj = run_fast(p0, grads, np.float64, dict(lr=1e-2), segs)
    for a, b in segs:
        alone, ma, va = run_fast(p0[a:b], [g[a:b] for g in grads], np.float64, dict(lr=1e-2), None)
        np.testing.assert_array_equal(joint[-1][a:b], alone[-1])
        np.testing.assert_array_equal(mj[a:b], ma)
        np.testing.assert_array_equal(vj[a:b], va)


@pytest.mark.parametrize("kind", ["whole", "tensors", "gaps"])
def test_serial_parallel_and_thread_count_agree_bitwise(kind, monkeypatch):
    n = 3 * _segments.BLOCK + 123
    segments = segments_for(n, kind)
    p0, grads = random_problem(n, 4, seed=9)
    results = []
    threads = numba.get_num_threads()
    for serial_below, n_threads in ((n + 1, threads), (0, threads), (0, 1)):
        monkeypatch.setattr(_cpu, "SERIAL_BELOW", serial_below)
        numba.set_num_threads(n_threads)
        try:
            results.append(run_fast(p0, grads, np.float32, dict(lr=1e-2, weight_decay=0.1), segments))
        finally:
            numba.set_num_threads(threads)
    for other in results[1:]:
        for a, b in zip(results[0][0] + [results[0][1], results[0][2]], other[0] + [other[1], other[2]], strict=True):
            np.testing.assert_array_equal(a, b)


def test_nan_gradient_propagates():
    p = np.linspace(1, 2, 10).astype(np.float32)
    g = np.ones(10, np.float32)
    g[3] = np.nan
    m, v = np.zeros_like(p), np.zeros_like(p)
    lamb_step(p, g, m, v, step=1, lr=0.1, segments=[(0, 5), (5, 10)])
    assert np.isnan(p[3]) and np.isnan(m[3]) and np.isnan(v[3])
    assert np.isfinite(p[5:]).all()


def test_zero_gradient_and_no_decay_moves_nothing():
    p = np.arange(1, 9, dtype=np.float64)
    before = p.copy()
    z = np.zeros_like(p)
    lamb_step(p, z, z.copy(), z.copy(), step=1, lr=0.1)
    np.testing.assert_array_equal(p, before)


@pytest.mark.parametrize("segments, exc, match", [
    ([(0, 5), (4, 8)], ValueError, "overlap"),
    ([(0, 9)], ValueError, "inside"),
    ([(3, 2)], ValueError, "inside"),
    ([(0,)], TypeError, "segments"),
])
def test_bad_segments_raise_before_touching_anything(segments, exc, match):
    p = np.ones(8, np.float32)
    g = np.ones(8, np.float32)
    m, v = np.zeros_like(p), np.zeros_like(p)
    with pytest.raises(exc, match=match):
        lamb_step(p, g, m, v, step=1, segments=segments)
    np.testing.assert_array_equal(p, 1.0)
    np.testing.assert_array_equal(m, 0.0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(step=0), "step"),
    (dict(step=1, lr=-1.0), "lr"),
    (dict(step=1, betas=(1.0, 0.9)), "betas"),
    (dict(step=1, bias_correction="no"), "bias_correction"),
])
def test_bad_arguments_raise(kwargs, match):
    p = np.ones(8, np.float32)
    with pytest.raises((ValueError, TypeError), match=match):
        lamb_step(p, p.copy(), np.zeros_like(p), np.zeros_like(p), **kwargs)


def test_bad_arrays_raise():
    p = np.ones(8, np.float32)
    with pytest.raises(ValueError, match="exp_avg_sq'. must have"):
        lamb_step(p, p.copy(), np.zeros_like(p), np.zeros(8), step=1)
    with pytest.raises(ValueError, match="share memory"):
        lamb_step(p, p.copy(), p, np.zeros_like(p), step=1)


def test_launcher_with_ema_as_the_optimizer_calls_it():
    """``launch(head + coefficients)`` with the EMA's (decay, 1 - decay) in the head."""
    from fastopt._plan import hyperparameters

    n = 2000
    p0, grads = random_problem(n, 3, seed=4)
    segs = [(0, 700), (700, 2000)]
    h = {**SPEC.defaults, "lr": 1e-2}
    p = p0.copy()
    g = np.zeros(n)
    m, v = np.zeros(n), np.zeros(n)
    ema = p0.copy()
    launch = CPU.segmented_launcher(SPEC.segmented, SPEC.record, p, g, (m, v), ema, segs)
    expected = run_reference("lamb", p0, grads, dict(h, segments=segs))
    ema_expected = p0.copy()
    for t, grad in enumerate(grads, start=1):
        g[:] = grad
        launch((1.0, np.inf, 0.9, 0.1, 0.0, 0.0, 0.0, 0.0) + SPEC.coefficients(hyperparameters(SPEC, h), t, ())[0])
        ema_expected = 0.9 * ema_expected + 0.1 * expected[t - 1]
    np.testing.assert_allclose(p, expected[-1], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ema, ema_expected, rtol=1e-12, atol=1e-12)


needs_hook = pytest.mark.skipif("lamb" not in __import__("fastopt").OPTIMIZERS,
                                reason="LAMB is registered once optim.py has the Spec.launcher hook")


@needs_hook
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_class_over_flat_params_uses_one_ratio_per_tensor(dtype):
    import fastopt

    shapes = {"w1": (30, 20), "b1": (20,), "empty": (0,), "w2": (20, 401), "b2": (401,)}
    fp = fastopt.FlatParams(shapes, dtype=dtype)
    n = fp.data.size
    p0, grads = random_problem(n, 6, seed=21)
    fp.data[:] = p0
    hyper = dict(lr=1e-2, weight_decay=0.1)
    segments = [(a, b) for a, b, _ in fp._slices.values()]
    expected = run_reference("lamb", p0, grads, dict(hyper, segments=segments))
    opt = fastopt.OPTIMIZERS["lamb"](fp, **hyper)
    rtol, atol = tolerance(dtype, 6)
    for t, g in enumerate(grads):
        fp.grad[:] = g
        opt.step()
        np.testing.assert_allclose(fp.data, expected[t], rtol=rtol, atol=atol)


@needs_hook
def test_class_over_pairs_treats_each_array_as_a_tensor():
    import fastopt

    p0, grads = random_problem(300, 4, seed=22)
    a, b = p0[:100].copy(), p0[100:].copy()
    ga, gb = np.zeros(100), np.zeros(200)
    opt = fastopt.OPTIMIZERS["lamb"]([(a, ga), (b, gb)], lr=1e-2, ema_decay=0.5)
    expected = run_reference("lamb", p0, grads, dict(lr=1e-2, segments=[(0, 100), (100, 300)]))
    for g in grads:
        ga[:], gb[:] = g[:100], g[100:]
        opt.step()
    np.testing.assert_allclose(np.concatenate([a, b]), expected[-1], rtol=1e-12, atol=1e-12)
