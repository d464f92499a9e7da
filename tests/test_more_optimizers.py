"""Edge semantics of Adamax, NAdam, RAdam and Lion beyond the reference
trajectories (those run from tests/cases.py in test_kernels_reference.py)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import random_problem

import fastopt
from fastopt.rules import nadam, radam


@pytest.mark.parametrize("cls, name", [(fastopt.Adamax, "adamax"), (fastopt.NAdam, "nadam"),
                                       (fastopt.RAdam, "radam"), (fastopt.Lion, "lion")])
def test_exported_classes(cls, name):
    assert fastopt.OPTIMIZERS[name] is cls
    assert cls.__name__ in fastopt.__all__
    assert "math::" in cls.__doc__


@pytest.mark.parametrize("name", ["adamax", "nadam", "radam", "lion"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_gradient_makes_only_that_element_nan(name, dtype):
    p = np.linspace(-1, 1, 9).astype(dtype)
    g = np.full(9, 0.5, dtype)
    g[4] = np.nan
    opt = fastopt.OPTIMIZERS[name]([(p, g)], lr=0.01)
    opt.step()
    assert np.isnan(p[4])
    assert np.isfinite(np.delete(p, 4)).all()
    g[4] = 0.5
    opt.step()  # NaN state keeps the element NaN (max/sign do not swallow it)
    assert np.isnan(p[4])


def test_lion_sign_of_zero_is_zero_and_step_is_lr():
    p = np.array([1.0, -2.0, 3.0, 0.5])
    g = np.array([0.0, 0.3, -0.2, 1e-30])
    opt = fastopt.Lion([(p, g)], lr=0.1, weight_decay=0.5)
    opt.step()
    np.testing.assert_allclose(p, [0.95, -1.9 - 0.1, 2.85 + 0.1, 0.475 - 0.1], rtol=0, atol=1e-15)
    q0 = np.random.default_rng(0).standard_normal(100)
    q = q0.copy()
    gq = np.random.default_rng(1).standard_normal(100)
    fastopt.Lion([(q, gq)], lr=3e-3).step()
    np.testing.assert_allclose(np.abs(q - q0), 3e-3, rtol=1e-12)


def test_adamax_eps_floor():
    p = np.ones(3)
    g = np.zeros(3)
    opt = fastopt.Adamax([(p, g)], eps=0.25)
    opt.step()
    np.testing.assert_array_equal(opt.state[0]["exp_inf"], 0.25)
    np.testing.assert_array_equal(p, 1.0)


def test_radam_zero_gradient_with_zero_eps_stays_finite():
    """Before rho_t > 5 the step is lr * m_hat: no 0/0 from the unused adaptive term."""
    p = np.ones(4)
    g = np.zeros(4)
    opt = fastopt.RAdam([(p, g)], eps=0.0)
    for _ in range(5):
        opt.step()
    np.testing.assert_array_equal(p, 1.0)


def test_radam_switch_step():
    assert radam.rectification(0.999, 5) == 0.0  # 0.0: the un-adapted phase
    assert radam.rectification(0.999, 6) > 0.0
    assert all(radam.rectification(0.5, t) == 0.0 for t in range(1, 100))  # rho_inf = 3


def test_nadam_mu_product_is_host_state_and_round_trips():
    n = 64
    p0, grads = random_problem(n, 8, seed=3)
    h = dict(lr=1e-2, momentum_decay=0.01)

    def fresh():
        p = p0.copy()
        g = np.zeros(n)
        return p, g, fastopt.NAdam([(p, g)], **h)

    p, g, opt = fresh()
    for grad in grads:
        g[:] = grad
        opt.step()
    mus = [nadam._mu(0.9, 0.01, t) for t in range(1, 9)]
    assert opt.state[0]["mu_product"] == pytest.approx(np.prod(mus), rel=1e-15)

    q, gq, first = fresh()
    for grad in grads[:4]:
        gq[:] = grad
        first.step()
    saved = first.state_dict()
    assert isinstance(saved["state"][0]["mu_product"], float)
    r = q.copy()
    gr = np.zeros(n)
    second = fastopt.NAdam([(r, gr)], **h)
    second.load_state_dict(saved)
    for grad in grads[4:]:
        gr[:] = grad
        second.step()
    np.testing.assert_array_equal(r, p)


def test_nadam_functional_keeps_mu_product_in_the_state_dict():
    p = np.ones(5, np.float32)
    g = np.full(5, 0.1, np.float32)
    state = fastopt.functional.init_state("nadam", p)
    for t in (1, 2):
        fastopt.functional.apply("nadam", p, g, state, step=t)
    assert state["mu_product"] == pytest.approx(nadam._mu(0.9, 4e-3, 1) * nadam._mu(0.9, 4e-3, 2))
