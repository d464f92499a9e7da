"""The CUDA backend under numba's CUDA simulator (kernels run on the CPU as
Python). Runs only in a process started with NUMBA_ENABLE_CUDASIM=1 (see
tests/test_cuda_simulator.py); tiny sizes and tiny blocks so that every
grid-stride loop wraps several times."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":  # pragma: no cover - collected only with it
    pytest.skip("needs NUMBA_ENABLE_CUDASIM=1 set before numba is imported", allow_module_level=True)

from cases import case_id  # noqa: E402
from cuda_cases import element_wise_cases, rule_variants  # noqa: E402
from helpers import random_problem, tolerance  # noqa: E402
from numba import cuda, njit, types  # noqa: E402
from reference import run_reference  # noqa: E402

import fastopt  # noqa: E402
from fastopt.backends.cuda import CUDA  # noqa: E402

N = 37
"""Elements per buffer: 4 threads x 3 blocks = 12 per sweep, so the loop wraps."""
STEPS = 6


@pytest.fixture(autouse=True)
def small_launches(monkeypatch):
    monkeypatch.setattr(CUDA, "threads_per_block", 4)
    monkeypatch.setattr(CUDA, "max_blocks", 3)
    monkeypatch.setattr(CUDA, "reduction_threads", 4)
    monkeypatch.setattr(CUDA, "reduction_chunk", 8)
    monkeypatch.setattr(CUDA, "segment_block", 8)


def _device(a, dtype):
    return cuda.to_device(np.ascontiguousarray(a, dtype=dtype))


def _run(name, hyper, p0, grads, dtype, gpu, **options):
    """Params after each step, on the GPU (simulated) or the CPU backend."""
    if gpu:
        p, g = _device(p0, dtype), _device(grads[0], dtype)
    else:
        p, g = p0.astype(dtype), np.empty(p0.shape, dtype)
    opt = fastopt.OPTIMIZERS[name]([(p, g)], **hyper, **options)
    out = []
    for grad in grads:
        if gpu:
            g.copy_to_device(grad.astype(dtype))
        else:
            g[:] = grad
        opt.step()
        out.append(p.copy_to_host() if gpu else p.copy())
    return out, opt


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", element_wise_cases(), ids=case_id)
def test_matches_reference_and_cpu(case, dtype):
    name, hyper = case
    p0, grads = random_problem(N, STEPS, seed=11)
    expected = run_reference(name, p0, grads, hyper)
    gpu, opt = _run(name, hyper, p0, grads, dtype, gpu=True)
    cpu, _ = _run(name, hyper, p0, grads, dtype, gpu=False)
    assert all(plan.backend.name == "cuda" for plan in opt._plans)
    rtol, atol = tolerance(dtype, STEPS)
    for t in range(STEPS):
        assert gpu[t].dtype == dtype
        np.testing.assert_allclose(gpu[t], expected[t], rtol=rtol, atol=atol, err_msg=f"reference, step {t + 1}")
        np.testing.assert_allclose(gpu[t], cpu[t], rtol=rtol, atol=atol, err_msg=f"CPU backend, step {t + 1}")


@pytest.mark.parametrize("case", [("adam", {}), ("sgd", dict(lr=0.05, momentum=0.9)), ("lion", {})],
                         ids=case_id)
def test_ema_matches_cpu(case):
    name, hyper = case
    p0, grads = random_problem(N, STEPS, seed=2)
    gpu, gopt = _run(name, hyper, p0, grads, np.float32, gpu=True, ema_decay=0.9)
    cpu, copt = _run(name, hyper, p0, grads, np.float32, gpu=False, ema_decay=0.9)
    rtol, atol = tolerance(np.float32, STEPS)
    np.testing.assert_allclose(gpu[-1], cpu[-1], rtol=rtol, atol=atol)
    gema = gopt.state_dict()["state"][0]["ema"]
    cema = copt.state_dict()["state"][0]["ema"]
    assert isinstance(gema, np.ndarray)
    np.testing.assert_allclose(gema, cema, rtol=rtol, atol=atol)
    # swap_ema puts the average into the params and back.
    p = gopt._plans[0].buffers[0].p
    with gopt.ema_weights():
        np.testing.assert_array_equal(p.copy_to_host(), gema)
    np.testing.assert_array_equal(p.copy_to_host(), gpu[-1])


def test_state_dict_round_trip_through_host():
    p0, grads = random_problem(N, 8, seed=4)
    straight, _ = _run("adam", dict(lr=1e-2, amsgrad=True), p0, grads, np.float32, gpu=True)

    p, g = _device(p0, np.float32), _device(grads[0], np.float32)
    opt = fastopt.Adam([(p, g)], lr=1e-2, amsgrad=True)
    for grad in grads[:4]:
        g.copy_to_device(grad.astype(np.float32))
        opt.step()
    saved = opt.state_dict()
    for value in saved["state"][0].values():
        assert isinstance(value, (int, np.ndarray))
    p2, g2 = _device(p.copy_to_host(), np.float32), _device(grads[0], np.float32)
    resumed = fastopt.Adam([(p2, g2)], lr=1e-2, amsgrad=True)
    resumed.load_state_dict(saved)
    for name in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
        assert type(resumed.state[0][name]).__name__ == "FakeCUDAArray"
    for grad in grads[4:]:
        g2.copy_to_device(grad.astype(np.float32))
        resumed.step()
    np.testing.assert_array_equal(p2.copy_to_host(), straight[-1])


def test_flat_params_on_device_matches_cpu():
    shapes = {"w": (3, 5), "b": (5,), "s": ()}
    rng = np.random.default_rng(0)
    init = {k: rng.standard_normal(s) for k, s in shapes.items()}
    gpu = fastopt.FlatParams.from_arrays(init, dtype=np.float32, device="cuda")
    cpu = fastopt.FlatParams.from_arrays(init, dtype=np.float32)
    assert gpu.device == "cuda" and "cuda" in repr(gpu)
    assert type(gpu["w"]).__name__ == "FakeCUDAArray" and gpu["w"].shape == (3, 5)
    assert type(gpu.grad_of("b")).__name__ == "FakeCUDAArray"
    opts = [fastopt.AdamW(fp, lr=1e-2, max_grad_norm=1.0) for fp in (gpu, cpu)]
    for _ in range(4):
        grad = rng.standard_normal(len(cpu)).astype(np.float32)
        gpu.grad.copy_to_device(grad)
        cpu.grad[:] = grad
        for opt in opts:
            opt.step()
        # the CPU sums float32 blocks (~1e-6 relative), the GPU sums in float64
        assert opts[0].last_grad_norm == pytest.approx(opts[1].last_grad_norm, rel=1e-6)
    rtol, atol = tolerance(np.float32, 4)
    for name, value in gpu.state_arrays().items():
        np.testing.assert_allclose(value, cpu[name], rtol=rtol, atol=atol)
    gpu["b"] = 2.0
    np.testing.assert_array_equal(gpu["b"].copy_to_host(), np.full(5, 2.0, np.float32))
    opts[0].zero_grad()
    assert not gpu.grad.copy_to_host().any()


def test_mixing_cpu_and_gpu_arrays_raises():
    p, g = _device(np.ones(4), np.float32), np.ones(4, np.float32)
    with pytest.raises(TypeError, match="CPU and GPU arrays are mixed"):
        fastopt.SGD([(p, g)], lr=0.1)
    pairs = [(np.ones(4, np.float32), np.ones(4, np.float32)), (_device(np.ones(4), np.float32),
                                                                  _device(np.ones(4), np.float32))]
    with pytest.raises(TypeError, match="CPU and GPU arrays are mixed"):
        fastopt.SGD(pairs, lr=0.1)


def _bad_pairs():
    """(label, param, grad) host arrays that the CPU backend rejects."""
    ok = np.ones((4, 6), np.float32)
    return [
        ("int dtype", np.ones(4, np.int32), np.ones(4, np.int32)),
        ("dtype mismatch", np.ones(4, np.float32), np.ones(4, np.float64)),
        ("shape mismatch", np.ones(4, np.float32), np.ones(5, np.float32)),
        ("strided param", ok[:, ::2], np.ones((4, 3), np.float32)),
        ("strided grad", np.ones((4, 3), np.float32), ok[:, ::2]),
        ("C vs F", np.ones((4, 6), np.float32), np.asfortranarray(ok)),
    ]


@pytest.mark.parametrize("bad", _bad_pairs(), ids=lambda b: b[0])
def test_bad_arrays_fail_as_on_the_cpu(bad):
    _, p, g = bad
    with pytest.raises((TypeError, ValueError)) as on_cpu:
        fastopt.Adam([(p, g)])

    def device(a):
        # to_device copies into a contiguous buffer: slice on the device to
        # get the same strided view.
        if a.flags.c_contiguous or a.flags.f_contiguous:
            return cuda.to_device(a)
        return cuda.to_device(np.ones((4, 6), a.dtype))[:, ::2]

    with pytest.raises(type(on_cpu.value)) as on_gpu:
        fastopt.Adam([(device(p), device(g))])
    assert str(on_gpu.value) == str(on_cpu.value)


def test_fortran_order_updates_in_place():
    a = np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4))
    p, g = cuda.to_device(a), cuda.to_device(np.asfortranarray(np.ones((3, 4), np.float32)))
    fastopt.SGD([(p, g)], lr=0.5).step()
    np.testing.assert_array_equal(p.copy_to_host(), a - 0.5)


def test_sum_of_squares_is_deterministic_and_exact_enough(monkeypatch):
    rng = np.random.default_rng(7)
    g64 = rng.standard_normal(203) * 10.0 ** rng.integers(-3, 4, 203)
    for dtype in (np.float32, np.float64):
        g = _device(g64, dtype)
        exact = float(np.sum(g64.astype(dtype).astype(np.float64) ** 2))
        bits = set()
        for max_blocks in (1, 2, 5, 64):
            monkeypatch.setattr(CUDA, "max_blocks", max_blocks)
            for _ in range(2):
                value = CUDA.sum_of_squares(g)
                bits.add(value)
        assert len(bits) == 1, f"{dtype}: result depends on the grid: {bits}"
        assert bits.pop() == pytest.approx(exact, rel=1e-13)
    assert CUDA.sum_of_squares(CUDA.zeros(0, np.float32)) == 0.0


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # the simulator's float64 inf
def test_sum_of_squares_and_all_finite_see_inf_and_nan():
    for bad, check in ((np.inf, np.isinf), (np.nan, np.isnan)):
        a = np.ones(50, np.float32)
        a[41] = bad
        g = _device(a, np.float32)
        assert check(CUDA.sum_of_squares(g))
        assert CUDA.all_finite(g) is False
    huge = _device(np.full(30, 1e300), np.float64)
    assert np.isinf(CUDA.sum_of_squares(huge)) and CUDA.all_finite(huge) is True


def test_nonfinite_gradient_skips_the_step():
    p0 = np.linspace(-1, 1, N).astype(np.float32)
    grad = np.ones(N, np.float32)
    grad[N - 1] = np.nan
    p, g = _device(p0, np.float32), _device(grad, np.float32)
    opt = fastopt.Adam([(p, g)], nonfinite="skip")
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        opt.step()
    assert opt.skipped_steps == 1
    np.testing.assert_array_equal(p.copy_to_host(), p0)


def test_standalone_clip_scales_device_grads():
    g = _device(np.full(N, 3.0), np.float32)
    norm = fastopt.clip_grad_norm_(g, 1.0)
    assert norm == pytest.approx(3.0 * np.sqrt(N))
    assert np.linalg.norm(g.copy_to_host()) == pytest.approx(1.0, rel=1e-5)


def test_coefficients_reach_the_kernel_in_the_buffer_dtype(monkeypatch):
    """What the launch hands the kernel: a tuple of float32 scalars for a
    float32 buffer (numba's launcher does this cast on a real GPU; the
    simulator path casts on the host). The compiled side is checked by
    tests/cuda/test_cuda_ptx.py (no f64 instruction in float32 kernels)."""
    from fastopt.backends import cuda as backend

    seen = []
    real = backend.configured

    def spy(kernel, blocks, threads, stream):
        launch = real(kernel, blocks, threads, stream)

        def call(*args):
            if isinstance(args[-1], tuple):  # the update's values (fills take a scalar)
                seen.append(args[-1])
            launch(*args)

        return call

    monkeypatch.setattr(backend, "configured", spy)
    p, g = _device(np.ones(5), np.float32), _device(np.ones(5), np.float32)
    fastopt.Adam([(p, g)]).step()
    assert seen and all(type(v) is np.float32 for v in seen[0])


def test_rules_type_in_the_buffer_dtype():
    """Numba's own typing of each rule for float32 values and a float32
    coefficient record: no float64 anywhere (a bare Python float literal such
    as ``0.5 * x`` would type as float64 and show up here)."""
    f32 = types.float32

    def float64_vars(dispatcher, sig):
        dispatcher.compile(sig)
        typemap = dispatcher.overloads[sig.args].type_annotation.typemap
        return sorted(name for name, ty in typemap.items() if ty == types.float64)

    for spec, variant, label in rule_variants():
        n_states = len(variant.state_names)
        states = types.UniTuple(f32, n_states) if n_states else types.Tuple(())
        record = types.NamedUniTuple(f32, len(spec.record._fields), spec.record)
        sig = types.Tuple((f32, states))(f32, f32, states, record)
        assert float64_vars(variant.rule, sig) == [], label

    @njit
    def promoting(p, g, s, c):  # the control: the check must catch this one
        return 0.5 * p, s

    sig = types.Tuple((types.float64, types.Tuple(())))(f32, f32, types.Tuple(()), types.UniTuple(f32, 2))
    assert float64_vars(promoting, sig)


@pytest.mark.parametrize("segmented", [False, True], ids=["one tensor", "flat params"])
def test_lamb_runs_on_the_gpu_with_one_ratio_per_tensor(segmented):
    shapes = {"w": (5, 4), "b": (4,), "empty": (0,), "v": (13,)}
    n = 37
    p0, grads = random_problem(n, STEPS, seed=5)
    hyper = dict(lr=1e-2, weight_decay=0.1)
    if segmented:
        gpu = fastopt.FlatParams(shapes, dtype=np.float32, device="cuda")
        gpu.data.copy_to_device(p0.astype(np.float32))
        opt = fastopt.LAMB(gpu, **hyper)
        segments = list(gpu.ranges)
        p, g = gpu.data, gpu.grad
    else:
        p, g = _device(p0, np.float32), _device(grads[0], np.float32)
        opt = fastopt.LAMB([(p, g)], **hyper)
        segments = None
    expected = run_reference("lamb", p0, grads, dict(hyper, segments=segments))
    rtol, atol = tolerance(np.float32, STEPS)
    for t, grad in enumerate(grads):
        g.copy_to_device(grad.astype(np.float32))
        opt.step()
        np.testing.assert_allclose(p.copy_to_host(), expected[t], rtol=rtol, atol=atol, err_msg=f"step {t + 1}")


# -- device-resident steps (guard, step count and coefficients on the GPU) ------------------


def _pair(p0, dtype=np.float32):
    return _device(p0, dtype), _device(np.zeros_like(p0), dtype)


@pytest.mark.parametrize("name, hyper", [("adam", dict(lr=1e-2)), ("nadam", dict(lr=1e-2)),
                                         ("sgd", dict(lr=0.05, momentum=0.9)), ("lamb", dict(lr=1e-2)),
                                         ("radam", {})], ids=lambda x: x if isinstance(x, str) else "")
def test_capturable_steps_match_the_host_steps(name, hyper):
    """Coefficients computed on the device by the spec's own function, a
    scheduler changing lr between steps, EMA on: the same trajectory."""
    p0, grads = random_problem(N, STEPS + 3, seed=8)
    runs = []
    for capturable in (False, True):
        p, g = _pair(p0)
        opt = fastopt.OPTIMIZERS[name]([(p, g)], capturable=capturable, ema_decay=0.8, **hyper)
        assert (opt._device is not None) == capturable
        for t, grad in enumerate(grads):
            opt.param_groups[0]["lr"] = hyper.get("lr", 1e-3) / (1 + t)
            g.copy_to_device(grad.astype(np.float32))
            opt.step()
        runs.append((p.copy_to_host(), opt.state_dict()))
    rtol, atol = tolerance(np.float32, STEPS + 3)
    np.testing.assert_allclose(runs[1][0], runs[0][0], rtol=rtol, atol=atol)
    host, device = runs[0][1]["state"][0], runs[1][1]["state"][0]
    assert device["step"] == host["step"] == STEPS + 3
    if "mu_product" in host:
        assert device["mu_product"] == pytest.approx(host["mu_product"], rel=1e-12)
    np.testing.assert_allclose(device["ema"], host["ema"], rtol=rtol, atol=atol)


def test_clipped_step_keeps_the_factor_on_the_device():
    p0, grads = random_problem(N, STEPS, seed=9)
    grads = [5.0 * g for g in grads]  # every step clips
    gpu_p, gpu_g = _pair(p0)
    gpu = fastopt.Adam([(gpu_p, gpu_g)], lr=1e-2, max_grad_norm=1.0)
    assert gpu._device is not None  # guarded steps are device-resident on the GPU
    cpu_p, cpu_g = p0.astype(np.float32), np.zeros(N, np.float32)
    cpu = fastopt.Adam([(cpu_p, cpu_g)], lr=1e-2, max_grad_norm=1.0)
    for grad in grads:
        gpu_g.copy_to_device(grad.astype(np.float32))
        cpu_g[:] = grad
        gpu.step()
        cpu.step()
        assert gpu.last_grad_norm == pytest.approx(cpu.last_grad_norm, rel=1e-6)
    rtol, atol = tolerance(np.float32, STEPS)
    np.testing.assert_allclose(gpu_p.copy_to_host(), cpu_p, rtol=rtol, atol=atol)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_nonfinite_step_is_skipped_on_the_device_and_not_counted():
    p0, grads = random_problem(N, 6, seed=10)
    grads[2] = grads[2].copy()
    grads[2][5] = np.nan
    grads[4] = grads[4].copy()
    grads[4][0] = np.inf
    p, g = _pair(p0)
    opt = fastopt.Adam([(p, g)], lr=1e-2, nonfinite="skip", capturable=True)
    after = []
    for grad in grads:
        g.copy_to_device(grad.astype(np.float32))
        opt.step()
        after.append(p.copy_to_host())
    np.testing.assert_array_equal(after[2], after[1])
    np.testing.assert_array_equal(after[4], after[3])
    assert opt.skipped_steps == 2
    assert opt.state_dict()["state"][0]["step"] == 4
    kept = [grads[k] for k in (0, 1, 3, 5)]
    expected = run_reference("adam", p0, kept, dict(lr=1e-2))
    rtol, atol = tolerance(np.float32, 6)
    np.testing.assert_allclose(after[-1], expected[-1], rtol=rtol, atol=atol)


def test_device_state_round_trips_through_load_state_dict():
    p0, grads = random_problem(N, 8, seed=12)
    p, g = _pair(p0)
    opt = fastopt.NAdam([(p, g)], lr=1e-2, capturable=True)
    for grad in grads[:4]:
        g.copy_to_device(grad.astype(np.float32))
        opt.step()
    saved = opt.state_dict()
    p2, g2 = _pair(p.copy_to_host())
    resumed = fastopt.NAdam([(p2, g2)], lr=1e-2, capturable=True)
    resumed.load_state_dict(saved)
    for grad in grads[4:]:
        for opt_, g_ in ((opt, g), (resumed, g2)):
            g_.copy_to_device(grad.astype(np.float32))
            opt_.step()
    np.testing.assert_array_equal(p2.copy_to_host(), p.copy_to_host())
    assert resumed.state_dict()["state"][0]["step"] == 8


def test_capturable_needs_gpu_arrays():
    with pytest.raises(ValueError, match="capturable=True needs GPU arrays"):
        fastopt.Adam([(np.ones(4, np.float32), np.ones(4, np.float32))], capturable=True)


@pytest.mark.parametrize("offset", [0, 1, 4], ids=["aligned", "odd view", "aligned view"])
def test_vectorized_and_scalar_paths_agree_with_the_reference(offset):
    """An aligned buffer takes the vectorized kernel (4 elements per thread,
    scalar tail); a view at an odd offset the one-element kernel."""
    from fastopt.backends.cuda import kernels as K

    n = N + offset
    p0, grads = random_problem(n, STEPS, seed=14)
    base_p, base_g = _device(p0, np.float32), _device(np.zeros(n), np.float32)
    p, g = base_p[offset:], base_g[offset:]
    assert K.vector_aligned(p, g) == (offset % 4 == 0)
    opt = fastopt.Adam([(p, g)], lr=1e-2, amsgrad=True)
    expected = run_reference("adam", p0[offset:], [gr[offset:] for gr in grads], dict(lr=1e-2, amsgrad=True))
    rtol, atol = tolerance(np.float32, STEPS)
    for t, grad in enumerate(grads):
        g.copy_to_device(grad[offset:].astype(np.float32))
        opt.step()
        np.testing.assert_allclose(p.copy_to_host(), expected[t], rtol=rtol, atol=atol)
    np.testing.assert_array_equal(base_p.copy_to_host()[:offset], p0[:offset].astype(np.float32))
