"""Low-precision state and bfloat16 params on the (simulated) GPU against the
CPU backend: bfloat16 states rounded to nearest and stochastically, 8-bit
block-float states (codes and scales), and bfloat16 params written from their
float32 master, for the same steps with the same seeds.

The stored state must be the same bits on both backends. The params may
differ by float32 rounding at each step: the CPU kernels are compiled with fast-math
``arcp``, which turns a division by a per-step constant (Adam's
``sqrt(v) / bc2_sqrt``) into a multiplication by its reciprocal; the
simulator divides. No state here depends on the params (no L2 decay), so
such a difference never reaches the state.

Runs only in a process started with NUMBA_ENABLE_CUDASIM=1 (see
tests/test_cuda_simulator.py). Sizes are small and launches tiny, so that
every grid-stride loop wraps.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":  # pragma: no cover - collected only with it
    pytest.skip("needs NUMBA_ENABLE_CUDASIM=1 set before numba is imported", allow_module_level=True)

import reference_codecs as R  # noqa: E402
from helpers import tolerance  # noqa: E402
from numba import cuda  # noqa: E402

import fastopt  # noqa: E402
from fastopt import _precision  # noqa: E402
from fastopt.backends.bits import split  # noqa: E402
from fastopt.backends.blockfloat import BLOCK  # noqa: E402
from fastopt.backends.codecs import MAX_STATES  # noqa: E402
from fastopt.backends.cpu import CPU  # noqa: E402
from fastopt.backends.cuda import CUDA  # noqa: E402
from fastopt.rules import SPECS  # noqa: E402

N = 603
"""150 four-element vectors and a scalar tail of 3; for 8-bit state, 3 blocks
of 256 (the last one partial) over a grid of 2 blocks, so the block loop wraps."""
STEPS = 4
SEED = 77

CASES = [
    ("adam", dict(lr=1e-2)),
    ("adamw", dict(lr=1e-2, weight_decay=0.1)),
    ("sgd", dict(lr=0.05, momentum=0.9)),
    ("adamax", dict(lr=1e-2)),
    ("adagrad", dict(lr=0.05)),
    ("adam", dict(lr=1e-2, amsgrad=True)),
]
IDS = ["adam", "adamw", "sgd-momentum", "adamax", "adagrad", "amsgrad"]


@pytest.fixture(autouse=True)
def small_launches(monkeypatch):
    monkeypatch.setattr(CUDA, "threads_per_block", 4)
    monkeypatch.setattr(CUDA, "max_blocks", 2)
    monkeypatch.setattr(CUDA, "reduction_threads", 4)
    monkeypatch.setattr(CUDA, "reduction_chunk", 8)
    monkeypatch.setattr(CUDA, "segment_block", 8)
    # 8-bit state from one block on (not 4096 elements): the simulator runs
    # each of a block's 256 threads as Python, and 3 blocks show every case.
    monkeypatch.setattr(_precision, "MIN_ELEMENTS", BLOCK)


def problem(n=N, steps=STEPS, seed=0):
    rng = np.random.default_rng(seed)
    p0 = rng.standard_normal(n).astype(np.float32)
    grads = [(rng.standard_normal(n) * (1 + rng.random())).astype(np.float32) for _ in range(steps)]
    return p0, grads


def run_both(name, hyper, **options):
    """The same steps on the simulated GPU and on the CPU backend:
    ``[(params, state dict entry), ...]`` for (GPU, CPU)."""
    p0, grads = problem()
    out = []
    for gpu in (True, False):
        p, g = (cuda.to_device(p0), cuda.to_device(grads[0])) if gpu else (p0.copy(), np.zeros_like(p0))
        opt = fastopt.OPTIMIZERS[name]([(p, g)], **hyper, **options)
        assert opt._plans[0].backend.name == ("cuda" if gpu else "cpu")
        for grad in grads:
            if gpu:
                g.copy_to_device(grad)
            else:
                g[:] = grad
            opt.step()
        out.append((p.copy_to_host() if gpu else p, opt.state_dict()["state"][0]))
    return out


def assert_params_agree(gpu, cpu, steps=STEPS) -> None:
    """Within float32 rounding of each step (see the module docs)."""
    rtol, atol = tolerance(np.float32, steps)
    np.testing.assert_allclose(gpu, cpu, rtol=rtol, atol=atol)


def assert_state_bits_equal(gpu: dict, cpu: dict, stored) -> None:
    assert set(gpu) == set(cpu)
    assert gpu["step"] == cpu["step"]
    names = [k for k in cpu if k != "step"]
    assert names, "no state to compare"
    for key in names:
        a, b = np.asarray(gpu[key]), np.asarray(cpu[key])
        assert a.dtype == b.dtype and a.shape == b.shape, key
        if not key.endswith("_scale"):
            assert a.dtype == stored, f"{key} is stored as {a.dtype}"
        raw = np.dtype(f"u{a.dtype.itemsize}")
        differ = np.flatnonzero(a.reshape(-1).view(raw) != b.reshape(-1).view(raw))
        assert differ.size == 0, f"{key}: {differ.size} of {a.size} stored values differ, first at {differ[:5]}"


@pytest.mark.parametrize("stochastic", [False, True], ids=["nearest", "stochastic"])
@pytest.mark.parametrize("name, hyper", CASES, ids=IDS)
def test_bfloat16_states_are_the_cpus_bits(name, hyper, stochastic):
    (gp, gs), (cp, cs) = run_both(name, hyper, state_dtype="bfloat16", stochastic_rounding=stochastic,
                                  rounding_seed=SEED)
    assert_state_bits_equal(gs, cs, np.uint16)
    assert_params_agree(gp, cp)


def test_stochastic_rounding_follows_the_seed_on_the_gpu():
    """The control for the test above: another seed gives other bits."""
    (_, a), _ = run_both("adam", dict(lr=1e-2), state_dtype="bfloat16", stochastic_rounding=True,
                         rounding_seed=SEED)
    (_, b), _ = run_both("adam", dict(lr=1e-2), state_dtype="bfloat16", stochastic_rounding=True,
                         rounding_seed=SEED + 1)
    assert np.mean(a["exp_avg"] != b["exp_avg"]) > 0.1


@pytest.mark.parametrize("name, hyper", CASES, ids=IDS)
def test_int8_codes_and_scales_are_the_cpus_bits(name, hyper):
    (gp, gs), (cp, cs) = run_both(name, hyper, state_dtype="int8", rounding_seed=SEED)
    assert_state_bits_equal(gs, cs, np.uint8)
    names = SPECS[name].variant_of({**SPECS[name].defaults, **hyper}).state_names
    assert all(cs[k].size == 3 * BLOCK and cs[k + "_scale"].size == 3 for k in names)
    assert_params_agree(gp, cp)


def test_bfloat16_states_on_the_scalar_path():
    """A param view at an odd offset takes the one-element-per-trip kernel
    (the states fastopt allocates stay aligned)."""
    p0, grads = problem(N + 1)
    base_p, g = cuda.to_device(p0), cuda.to_device(np.zeros(N, np.float32))
    gpu = fastopt.Adam([(base_p[1:], g)], lr=1e-2, state_dtype="bfloat16", stochastic_rounding=True,
                       rounding_seed=SEED)
    cp, cg = p0[1:].copy(), np.zeros(N, np.float32)
    cpu = fastopt.Adam([(cp, cg)], lr=1e-2, state_dtype="bfloat16", stochastic_rounding=True, rounding_seed=SEED)
    for grad in grads:
        g.copy_to_device(grad[1:])
        cg[:] = grad[1:]
        gpu.step()
        cpu.step()
    assert_state_bits_equal(gpu.state_dict()["state"][0], cpu.state_dict()["state"][0], np.uint16)
    assert_params_agree(base_p.copy_to_host()[1:], cp)
    assert base_p.copy_to_host()[0] == p0[0]


@pytest.mark.parametrize("stochastic", [False, True], ids=["nearest", "stochastic"])
def test_lamb_bfloat16_states_are_the_cpus_bits(stochastic):
    """LAMB's two passes with one trust ratio per tensor of a FlatParams."""
    shapes = {"w": (20, 25), "b": (103,)}
    p0, grads = problem()
    out = []
    for device in ("cuda", "cpu"):
        fp = fastopt.FlatParams(shapes, device=device)
        fastopt.backends.get(device).copy_(fp.data, p0)
        opt = fastopt.LAMB(fp, lr=1e-2, weight_decay=0.1, state_dtype="bfloat16", stochastic_rounding=stochastic,
                           rounding_seed=SEED)
        for grad in grads:
            fastopt.backends.get(device).copy_(fp.grad, grad)
            opt.step()
        out.append((fp.state_arrays(), opt.state_dict()["state"][0]))
    (gp, gs), (cp, cs) = out
    assert_state_bits_equal(gs, cs, np.uint16)
    for key in shapes:
        # the trust ratio's float64 sums are added in another order on the GPU
        np.testing.assert_allclose(gp[key], cp[key], rtol=1e-6, atol=1e-7)


# -- bfloat16 params written from a float32 master, kernel by kernel ------------------------
#
# The optimizers take bfloat16 params as ml_dtypes or torch CPU arrays; on the
# GPU the arrays do not come in that way, so these tests drive the backends'
# launchers directly: the kernels update the float32 master (``master_param``)
# and write the bfloat16 params ("mirror") in the same pass.

MIRRORED = [
    ("adamw", dict(lr=1e-2, weight_decay=0.1), None, "nearest"),
    ("adam", dict(lr=1e-2, amsgrad=True), "bfloat16", "stochastic"),
    ("sgd", dict(lr=0.05, momentum=0.9), "int8", "nearest"),
    ("adamax", dict(lr=1e-2), "int8", "stochastic"),
    ("lamb", dict(lr=1e-2), "bfloat16", "nearest"),
]


def _launch(backend, spec, hyper, state_dtype, mirror_rounding, master, grad_bits, mirror, states, steps):
    """``steps`` launches of ``spec``'s kernel on ``backend`` over these arrays."""
    h = spec.hyperparameters({**spec.defaults, **hyper})
    variant = spec.variant(h)
    precision = _precision.Precision.checked(state_dtype, mirror_rounding == "stochastic", SEED)
    if state_dtype == "int8":
        formats = tuple(precision.format(name, spec) for name in variant.state_names)
        codes, scales = zip(*states)
        launch = backend.blockwise_launcher(variant.rule, spec.record, master, grad_bits, codes, scales, None,
                                            mirror=mirror, formats=formats, mirror_rounding=mirror_rounding)
    else:
        roundings = tuple(precision.rounding(name, spec) for name in variant.state_names)
        options = dict(mirror=mirror, roundings=roundings, mirror_rounding=mirror_rounding)
        if spec.segmented is not None:
            launch = backend.segmented_launcher(spec.segmented, spec.record, master, grad_bits, tuple(states), None,
                                                ((0, 250), (250, N)), **options)
        else:
            launch = backend.elementwise_launcher(variant.rule, spec.record, master, grad_bits, tuple(states), None,
                                                  **options)
    for step in range(1, steps + 1):
        record, _ = spec.coefficients(h, step, spec.carry_initial)
        launch((1.0, math.inf, 0.0, 1.0, *split(SEED), *split(step)) + tuple(record))


@pytest.mark.parametrize("name, hyper, state_dtype, mirror_rounding", MIRRORED,
                         ids=[f"{m[0]}-{m[2] or 'float32'}-states-{m[3]}" for m in MIRRORED])
def test_bfloat16_params_follow_their_float32_master_like_the_cpu(name, hyper, state_dtype, mirror_rounding):
    spec = SPECS[name]
    variant = spec.variant_of({**spec.defaults, **hyper})
    p0, grads = problem()
    master0 = R.bf16_decode(R.bf16_encode(p0))  # the model's bfloat16 params, widened
    grad_bits = R.bf16_encode(grads[0])
    precision = _precision.Precision.checked(state_dtype)
    results = []
    for backend in (CUDA, CPU):
        on = (lambda a: cuda.to_device(np.ascontiguousarray(a))) if backend is CUDA else np.copy
        master, g, mirror = on(master0), on(grad_bits), on(R.bf16_encode(master0))
        if state_dtype == "int8":
            states = [tuple(on(x) for x in _precision.allocate_blocks(CPU, N, precision.format(s, spec)))
                      for s in variant.state_names]
        else:
            dtype = np.uint16 if state_dtype == "bfloat16" else np.float32
            states = [on(np.zeros(N, dtype)) for _ in variant.state_names]
        _launch(backend, spec, hyper, state_dtype, mirror_rounding, master, g, mirror, states, STEPS)
        host = (lambda a: a.copy_to_host()) if backend is CUDA else np.copy
        flat_states = [host(x) for s in states for x in (s if isinstance(s, tuple) else (s,))]
        results.append((host(master), host(mirror), flat_states))
    (gm, gmirror, gstates), (cm, cmirror, cstates) = results
    for a, b in zip(gstates, cstates):
        np.testing.assert_array_equal(a.view(f"u{a.dtype.itemsize}"), b.view(f"u{b.dtype.itemsize}"))
    if name == "lamb":  # its trust ratio's sums run in another order on the GPU
        np.testing.assert_allclose(gm, cm, rtol=1e-6, atol=1e-7)
    else:
        assert_params_agree(gm, cm)
    assert not np.array_equal(gm, master0), "the master did not move"
    # each backend's bfloat16 params are its master, rounded as asked (the
    # stochastic bits: the last step's stream, slot MAX_STATES, by element)
    noise = R.random16(SEED, STEPS, N, MAX_STATES) if mirror_rounding == "stochastic" else None
    for m, mirror in ((gm, gmirror), (cm, cmirror)):
        np.testing.assert_array_equal(mirror, R.bf16_encode(m, mirror_rounding, noise))
