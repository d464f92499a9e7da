"""Step-by-step trajectories against torch.optim (CPU build): same defaults,
same semantics, within float tolerance."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from cases import ALL, case_id
from helpers import random_problem, tolerance

import fastopt

torch = pytest.importorskip("torch")

TORCH_NAMES = {"sgd": "SGD", "adagrad": "Adagrad", "rmsprop": "RMSprop", "adadelta": "Adadelta",
               "adam": "Adam", "adamw": "AdamW", "adamax": "Adamax", "nadam": "NAdam", "radam": "RAdam"}
TORCH_CASES = [case for case in ALL if case[0] in TORCH_NAMES]
STEPS = 25


def torch_class(name):
    return getattr(torch.optim, TORCH_NAMES[name])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", TORCH_CASES, ids=case_id)
def test_trajectory_matches_torch(case, dtype):
    name, hyper = case
    n = 1031
    p0, grads = random_problem(n, STEPS, seed=11)
    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    # torch keeps scalar state (NAdam's mu_product) in the default dtype.
    previous = torch.get_default_dtype()
    torch.set_default_dtype(tdtype)
    try:
        _compare(name, hyper, dtype, tdtype, p0, grads)
    finally:
        torch.set_default_dtype(previous)


def _compare(name, hyper, dtype, tdtype, p0, grads):
    n = p0.size
    tp = torch.tensor(p0, dtype=tdtype, requires_grad=True)
    topt = torch_class(name)([tp], foreach=False, **hyper)
    params = fastopt.FlatParams({"x": (n,)}, dtype=dtype)
    params.data[:] = p0
    opt = fastopt.OPTIMIZERS[name](params, **hyper)
    rtol, atol = tolerance(dtype, STEPS)
    for t, g in enumerate(grads, start=1):
        tp.grad = torch.tensor(g, dtype=tdtype)
        topt.step()
        params.grad[:] = g
        opt.step()
        np.testing.assert_allclose(params.data, tp.detach().numpy(), rtol=4 * rtol, atol=4 * atol,
                                   err_msg=f"{name} {hyper} step {t}")


@pytest.mark.parametrize("name", sorted(TORCH_NAMES))
def test_defaults_match_torch(name):
    if name not in fastopt.OPTIMIZERS:
        pytest.skip(f"{name} not registered")
    ours = fastopt.OPTIMIZERS[name].spec.defaults
    theirs = inspect.signature(torch_class(name).__init__).parameters
    for key, value in ours.items():
        assert key in theirs, f"{name}: torch has no {key!r}"
        default = theirs[key].default
        assert default == value, f"{name}.{key}: ours {value!r}, torch {default!r}"


def test_torch_tensor_views_are_updated_in_place():
    """The embedding recipe: params as detach().numpy() views of torch tensors."""
    w = torch.randn(5, 3, requires_grad=True)
    w.grad = torch.randn(5, 3)
    before = w.detach().clone()
    opt = fastopt.Adam([(w.detach().numpy(), w.grad.numpy())], lr=0.1)
    opt.step()
    assert not torch.equal(before, w.detach())
    ref = torch.optim.Adam([before.requires_grad_()], lr=0.1)
    before.grad = w.grad.clone()
    ref.step()
    torch.testing.assert_close(w.detach(), before.detach())


def test_torch_cpu_tensors_accepted_directly():
    w = torch.randn(8, requires_grad=True)
    g = torch.randn(8)
    expected = w.detach().clone()
    opt = fastopt.SGD([(w, g)], lr=0.5)
    opt.step()
    torch.testing.assert_close(w.detach(), expected - 0.5 * g)
