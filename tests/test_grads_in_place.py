"""Gradients read where they lie: ``Optimizer.apply_step(grads=...)`` (the
scattered kernel) and ``fastopt.torch``'s default loop, which hands it the
``.grad`` tensors backward made instead of copying them into the flat buffer.

The reference is the flat kernel over the same params with the same
gradients copied into the chain's gradient buffer: the same per-element
function at the same index, so the same bits.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastopt
from fastopt import ParamChain
from fastopt.backends import cpu

# Three tensors with alignment gaps between them, as fastopt.torch lays them out.
RANGES = [(0, 1000), (1024, 1431), (1536, 6536)]
N = 6536

PLAIN = {
    "sgd": dict(lr=0.05, momentum=0.8, weight_decay=0.01, nesterov=True),
    "adagrad": dict(lr=0.05, lr_decay=0.01, weight_decay=0.1),
    "rmsprop": dict(centered=True, momentum=0.5, weight_decay=0.05),
    "adadelta": dict(rho=0.5, weight_decay=0.1, maximize=True),
    "adam": dict(lr=1e-2, amsgrad=True, weight_decay=0.05),
    "adamw": dict(lr=1e-2, weight_decay=0.1),
    "adamax": dict(lr=5e-3, weight_decay=0.05),
    "radam": dict(lr=1e-2, weight_decay=0.1),
    "lion": dict(lr=1e-3, weight_decay=0.1),
}


def _chain(dtype, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.standard_normal(N).astype(dtype)
    for (_, stop), (start, _) in zip(RANGES[:-1], RANGES[1:]):
        p[stop:start] = 0  # gaps hold zeros, as in fastopt.torch's buffers
    return p, np.zeros(N, dtype)


def _grads(dtype, step):
    rng = np.random.default_rng(100 + step)
    return [rng.standard_normal(b - a).astype(dtype) for a, b in RANGES]


def _addresses(opt, grads):
    return {key: g.ctypes.data for key, g in zip(sorted(opt.state), grads)}


@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", sorted(PLAIN))
def test_reading_gradients_in_place_gives_the_flat_kernels_bits(name, dtype, parallel, monkeypatch):
    monkeypatch.setattr(cpu, "SERIAL_BELOW", 0 if parallel else 2**62)
    cls = fastopt.OPTIMIZERS[name]
    (p_flat, g_flat), (p_read, g_read) = _chain(dtype), _chain(dtype)
    flat = cls(ParamChain(p_flat, g_flat, RANGES), **PLAIN[name])
    read = cls(ParamChain(p_read, g_read, RANGES), **PLAIN[name])
    assert read.reads_grads_in_place()
    for step in range(4):
        grads = _grads(dtype, step)
        for (a, b), g in zip(RANGES, grads):
            g_flat[a:b] = g
        flat.step()
        assert read.apply_step(grads=_addresses(read, grads))
    np.testing.assert_array_equal(p_read, p_flat)
    for key in flat.state:
        for state_name, value in flat.state[key].items():
            np.testing.assert_array_equal(read.state[key][state_name], value, err_msg=f"{name} {state_name}")
    assert not g_read.any(), "the chain's own gradient buffer is not read or written"


@pytest.mark.parametrize("name,options", [
    ("lamb", {}),                                    # two passes per tensor: the segmented driver
    ("nadam", {}),                                   # a carried product: tensors may step apart
    ("adam", {"state_dtype": "int8"}),               # 8-bit blocks
    ("adam", {"max_grad_norm": 1.0}),                # a pass over the gradients first
    ("adam", {"nonfinite": "skip"}),                 # the non-finite scan
    ("adam", {"accumulate": 2}),                     # gradients summed over steps
    ("adam", {"state_dtype": "bfloat16", "stochastic_rounding": True}),  # keyed launches
])
def test_what_cannot_read_gradients_in_place_says_so_and_refuses_them(name, options):
    p, g = _chain(np.float32)
    opt = fastopt.OPTIMIZERS[name](ParamChain(p, g, RANGES), **options)
    assert not opt.reads_grads_in_place()
    before = p.copy()
    with pytest.raises(ValueError, match="grads="):
        opt.apply_step(grads=_addresses(opt, _grads(np.float32, 0)))
    np.testing.assert_array_equal(p, before)


def test_grads_must_cover_every_param_and_not_come_with_active():
    p, g = _chain(np.float32)
    opt = fastopt.Adam(ParamChain(p, g, RANGES), lr=1e-2)
    addresses = _addresses(opt, _grads(np.float32, 0))
    before = p.copy()
    with pytest.raises(ValueError, match="no gradient address for param key"):
        opt.apply_step(grads={k: v for k, v in addresses.items() if k != min(addresses)})
    with pytest.raises(ValueError, match="grads="):
        opt.apply_step(grads=addresses, active=[min(addresses)])
    np.testing.assert_array_equal(p, before)
    assert all(st["step"] == 0 for st in opt.state.values())


# -- fastopt.torch's default loop ----------------------------------------------------------

torch = pytest.importorskip("torch")

from torch_cases import assert_same_params, batch, make_pair  # noqa: E402

import fastopt.torch as ft  # noqa: E402


def _every_param_gets_a_grad(model, t):
    x, y = batch(t)
    loss = torch.nn.functional.mse_loss(model(x, 0), y) + model.unused.sum() + model.side(x).sum()
    loss.backward()


def test_torch_default_loop_reads_the_new_grads_without_copying(monkeypatch):
    ours_model, theirs_model = make_pair(seed=5)
    ours = ft.AdamW(ours_model.parameters(), lr=1e-2, weight_decay=0.1)
    theirs = torch.optim.AdamW(theirs_model.parameters(), lr=1e-2, weight_decay=0.1)

    def no_copy(*args, **kwargs):
        raise AssertionError("the step copied gradients into the flat buffer")

    monkeypatch.setattr(torch, "_foreach_copy_", no_copy)
    for t in range(6):
        for model in (ours_model, theirs_model):
            model.zero_grad()  # set_to_none: backward makes new .grad tensors
            _every_param_gets_a_grad(model, t)
        made = [p.grad for p in ours_model.parameters()]
        ours.step()
        theirs.step()
        # the .grad tensors stay those backward made (torch's zero_grad frees them)
        assert all(p.grad is g for p, g in zip(ours_model.parameters(), made))
    assert_same_params(ours_model, theirs_model)


def test_torch_grads_that_cannot_be_read_in_place_are_copied_in():
    """A gradient laid out differently from its param's view (here: a
    transposed copy's strides) goes through the copy, with the same result."""
    ours_model, theirs_model = make_pair(seed=6)
    ours = ft.Adam(ours_model.parameters(), lr=1e-2)
    theirs = torch.optim.Adam(theirs_model.parameters(), lr=1e-2)
    for t in range(4):
        for model in (ours_model, theirs_model):
            model.zero_grad()
            _every_param_gets_a_grad(model, t)
        weight = ours_model.a.weight
        weight.grad = weight.grad.t().contiguous().t()  # same values, column-major
        assert weight.grad.stride() != weight.stride()
        ours.step()
        theirs.step()
        assert ours_model.a.weight.grad.stride() == weight.stride()  # copied in: the flat view now
    assert_same_params(ours_model, theirs_model)


def test_torch_zero_grad_without_none_after_an_in_place_step_accumulates_into_the_views():
    ours_model, theirs_model = make_pair(seed=7)
    ours = ft.SGD(ours_model.parameters(), lr=0.05, momentum=0.9)
    theirs = torch.optim.SGD(theirs_model.parameters(), lr=0.05, momentum=0.9)
    for t in range(5):
        for model, opt in ((ours_model, ours), (theirs_model, theirs)):
            opt.zero_grad(set_to_none=(t == 0))  # new tensors first, then zeroed in place
            _every_param_gets_a_grad(model, t)
            _every_param_gets_a_grad(model, t + 100)  # accumulated
            opt.step()
    assert_same_params(ours_model, theirs_model)
