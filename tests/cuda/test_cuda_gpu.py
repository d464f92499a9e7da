"""The CUDA backend on a real GPU: numba device arrays, torch CUDA tensors
(caller's stream), CuPy arrays, FlatParams(device="cuda"). No timings.
Skips when no GPU (or driver) is present, and under the simulator."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

if importlib.util.find_spec("numba_cuda") is None:
    pytest.skip('numba-cuda is not installed (pip install "fastopt[cuda]")', allow_module_level=True)

from numba import config  # noqa: E402

if config.ENABLE_CUDASIM:
    pytest.skip("real-GPU tests do not run under the simulator", allow_module_level=True)

from numba import cuda  # noqa: E402

if not cuda.is_available():
    pytest.skip("no CUDA GPU (or driver) on this machine", allow_module_level=True)

from cases import case_id  # noqa: E402
from cuda_cases import element_wise_cases  # noqa: E402
from helpers import random_problem, tolerance  # noqa: E402
from reference import run_reference  # noqa: E402

import fastopt  # noqa: E402
from fastopt.backends.cuda import CUDA  # noqa: E402
from fastopt.backends.cuda.arrays import _numba_stream, stream_of  # noqa: E402

N = 100_003
"""Odd, and larger than one block: several blocks, a partial last one."""
STEPS = 5


def _torch_cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here")
    return torch


def _cpu_run(name, hyper, p0, grads, dtype, **options):
    p, g = p0.astype(dtype), np.empty(p0.shape, dtype)
    opt = fastopt.OPTIMIZERS[name]([(p, g)], **hyper, **options)
    out = []
    for grad in grads:
        g[:] = grad
        opt.step()
        out.append(p.copy())
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", element_wise_cases(), ids=case_id)
def test_device_arrays_match_reference_and_cpu(case, dtype):
    name, hyper = case
    p0, grads = random_problem(N, STEPS, seed=1)
    expected = run_reference(name, p0, grads, hyper)
    cpu = _cpu_run(name, hyper, p0, grads, dtype)
    p, g = cuda.to_device(p0.astype(dtype)), cuda.device_array(N, dtype)
    opt = fastopt.OPTIMIZERS[name]([(p, g)], **hyper)
    rtol, atol = tolerance(dtype, STEPS)
    for t, grad in enumerate(grads):
        g.copy_to_device(grad.astype(dtype))
        opt.step()
        got = p.copy_to_host()
        np.testing.assert_allclose(got, expected[t], rtol=rtol, atol=atol, err_msg=f"reference, step {t + 1}")
        np.testing.assert_allclose(got, cpu[t], rtol=rtol, atol=atol, err_msg=f"CPU, step {t + 1}")


def test_grid_stride_loop_covers_everything(monkeypatch):
    monkeypatch.setattr(CUDA, "max_blocks", 3)
    p0, grads = random_problem(N, 2, seed=3)
    p, g = cuda.to_device(p0.astype(np.float32)), cuda.to_device(grads[0].astype(np.float32))
    fastopt.SGD([(p, g)], lr=0.5).step()
    expected = p0.astype(np.float32) - np.float32(0.5) * grads[0].astype(np.float32)
    np.testing.assert_allclose(p.copy_to_host(), expected, rtol=1e-6, atol=1e-6)


def test_torch_tensors_on_the_callers_stream():
    torch = _torch_cuda()
    torch.manual_seed(0)
    param = torch.nn.Parameter(torch.randn(N, device="cuda"))
    ref = torch.nn.Parameter(param.detach().clone())
    param.grad = torch.zeros_like(param)
    ours = fastopt.Adam([(param, param.grad)], lr=1e-2, weight_decay=0.1)
    theirs = torch.optim.Adam([ref], lr=1e-2, weight_decay=0.1)
    side = torch.cuda.Stream()
    for _ in range(STEPS):
        with torch.cuda.stream(side):
            # Produced on the side stream and consumed by the step queued on
            # the same stream, with no synchronisation in between.
            grad = torch.randn(N, device="cuda")
            param.grad.copy_(grad)
            ours.step()
            assert stream_of(ours._plans[0].buffers[0].p) is _numba_stream(side.cuda_stream)
        side.synchronize()
        ref.grad = grad.clone()
        theirs.step()
    torch.testing.assert_close(param.detach(), ref.detach(), rtol=1e-5, atol=1e-6)


def test_torch_state_dict_round_trip():
    torch = _torch_cuda()
    param = torch.randn(1000, device="cuda")
    grad = torch.randn(1000, device="cuda")
    opt = fastopt.AdamW([(param, grad)], lr=1e-2, amsgrad=True, ema_decay=0.99)
    opt.step()
    saved = opt.state_dict()
    assert all(isinstance(v, np.ndarray) for k, v in saved["state"][0].items() if k != "step")
    param2 = param.clone()
    other = fastopt.AdamW([(param2, grad)], lr=1e-2, amsgrad=True, ema_decay=0.99)
    other.load_state_dict(saved)
    opt.step()
    other.step()
    torch.testing.assert_close(param, param2, rtol=0, atol=0)


def test_mixing_torch_cpu_and_cuda_raises():
    torch = _torch_cuda()
    with pytest.raises(TypeError, match="mixed"):
        fastopt.SGD([(torch.zeros(3, device="cuda"), torch.zeros(3))], lr=0.1)


def test_cupy_arrays():
    cupy = pytest.importorskip("cupy")
    p0, grads = random_problem(N, STEPS, seed=5)
    p, g = cupy.asarray(p0.astype(np.float32)), cupy.empty(N, np.float32)
    opt = fastopt.RMSprop([(p, g)], momentum=0.5)
    cpu = _cpu_run("rmsprop", dict(momentum=0.5), p0, grads, np.float32)
    for grad in grads:
        g[...] = cupy.asarray(grad.astype(np.float32))
        opt.step()
    rtol, atol = tolerance(np.float32, STEPS)
    np.testing.assert_allclose(cupy.asnumpy(p), cpu[-1], rtol=rtol, atol=atol)


def test_flat_params_on_the_gpu():
    fp = fastopt.FlatParams({"w": (300, 40), "b": (40,)}, device="cuda")
    fp["w"] = 1.0
    fp.grad.copy_to_device(np.ones(len(fp), np.float32))
    opt = fastopt.SGD(fp, lr=0.25, max_grad_norm=1e9)
    opt.step()
    np.testing.assert_allclose(fp.state_arrays()["w"], np.full((300, 40), 0.75, np.float32))
    np.testing.assert_allclose(fp.state_arrays()["b"], np.full(40, -0.25, np.float32))
    assert opt.last_grad_norm == pytest.approx(np.sqrt(len(fp)))
    opt.zero_grad()
    assert not fp.grad.copy_to_host().any()


def test_sum_of_squares_is_deterministic(monkeypatch):
    rng = np.random.default_rng(0)
    g = cuda.to_device(rng.standard_normal(3_000_017).astype(np.float32))
    values = set()
    for max_blocks in (1, 7, None):
        monkeypatch.setattr(CUDA, "max_blocks", max_blocks)
        values |= {CUDA.sum_of_squares(g) for _ in range(3)}
    assert len(values) == 1
    exact = float(np.sum(g.copy_to_host().astype(np.float64) ** 2))
    assert values.pop() == pytest.approx(exact, rel=1e-12)
