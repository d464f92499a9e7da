"""Bad input gets a clear exception naming the argument, and changes nothing."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastopt


def pair(n=8, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)


def snapshot(*arrays):
    return [a.copy() for a in arrays]


@pytest.mark.parametrize("make, match, exc", [
    (lambda p, g: [(p.astype(np.int64), g)], "dtype int64", TypeError),
    (lambda p, g: [(p, g.astype(np.float64))], "dtype", TypeError),
    (lambda p, g: [(p, g[:-1])], "shape", ValueError),
    (lambda p, g: [(p[::2], g[::2])], "not contiguous", ValueError),
    (lambda p, g: [(p, p)], "share memory", ValueError),
    (lambda p, g: [(p, g), (p, g)], "share memory", ValueError),
    (lambda p, g: [(p[:4], p[2:6])], "share memory", ValueError),
    (lambda p, g: [(p.astype(np.float16), g.astype(np.float16))], "float16", TypeError),
    (lambda p, g: [([1.0, 2.0], [0.1, 0.2])], "must be an array", TypeError),
    (lambda p, g: [p], "pair", TypeError),
    (lambda p, g: [], "empty", ValueError),
    (lambda p, g: "params", "FlatParams", TypeError),
])
def test_bad_arrays_raise(make, match, exc):
    p, g = pair()
    before = snapshot(p, g)
    with pytest.raises(exc, match=match):
        fastopt.Adam(make(p, g))
    np.testing.assert_array_equal(p, before[0])
    np.testing.assert_array_equal(g, before[1])


def test_read_only_param_raises_naming_it():
    p, g = pair()
    p.flags.writeable = False
    with pytest.raises(ValueError, match=r"params param is read-only"):
        fastopt.SGD([(p, g)], lr=0.1)


def test_read_only_grad_is_fine_to_read_but_not_to_zero():
    p, g = pair()
    g.flags.writeable = False
    opt = fastopt.SGD([(p, g)], lr=0.1)
    opt.step()
    with pytest.raises(ValueError, match="read-only"):
        opt.zero_grad()


@pytest.mark.parametrize("name, kwargs, match", [
    ("adam", dict(lr=-1e-3), "lr must be >= 0"),
    ("adam", dict(lr=math.nan), "lr must not be NaN"),
    ("adam", dict(lr=math.inf), "lr must be finite"),
    ("adam", dict(eps=-1.0), "eps must be >= 0"),
    ("adam", dict(betas=(1.0, 0.9)), r"betas\[0\] must be in \[0, 1\)"),
    ("adam", dict(betas=(0.9, -0.1)), r"betas\[1\]"),
    ("adam", dict(betas=0.9), "pair"),
    ("adamw", dict(weight_decay=-0.1), "weight_decay must be >= 0"),
    ("sgd", dict(lr=0.1, nesterov=True), "nesterov"),
    ("sgd", dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "nesterov"),
    ("sgd", dict(lr=0.1, momentum=-0.5), "momentum must be >= 0"),
    ("rmsprop", dict(alpha=-0.5), "alpha"),
    ("adadelta", dict(rho=1.5), "rho must be in"),
    ("adagrad", dict(lr_decay=-1.0), "lr_decay"),
    ("adagrad", dict(initial_accumulator_value=-1.0), "initial_accumulator_value"),
    ("adam", dict(amsgrad="yes"), "amsgrad must be a bool"),
    ("adam", dict(lr="0.1"), "lr must be a real number"),
    ("adam", dict(momentum=0.9), "unknown"),
])
def test_bad_hyperparameters_raise(name, kwargs, match):
    p, g = pair()
    with pytest.raises((ValueError, TypeError), match=match):
        fastopt.OPTIMIZERS[name]([(p, g)], **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(max_grad_norm=-1.0), "max_grad_norm"),
    (dict(max_grad_value=0.0), "max_grad_value"),
    (dict(nonfinite="drop"), "nonfinite"),
    (dict(accumulate=0), "accumulate"),
    (dict(ema_decay=1.0), "ema_decay"),
])
def test_bad_step_options_raise(kwargs, match):
    p, g = pair()
    with pytest.raises(ValueError, match=match):
        fastopt.Adam([(p, g)], **kwargs)


def test_bad_lr_set_between_steps_raises_before_touching_anything():
    p, g = pair()
    opt = fastopt.Adam([(p, g)], lr=0.1)
    opt.step()
    before = snapshot(p, g, opt.state[0]["exp_avg"], opt.state[0]["exp_avg_sq"])
    opt.param_groups[0]["lr"] = -1.0
    with pytest.raises(ValueError, match="lr"):
        opt.step()
    for a, b in zip(before, (p, g, opt.state[0]["exp_avg"], opt.state[0]["exp_avg_sq"])):
        np.testing.assert_array_equal(a, b)
    assert opt.state[0]["step"] == 1


def test_param_group_errors_name_the_group():
    p1, g1 = pair(seed=1)
    p2, g2 = pair(seed=2)
    with pytest.raises(ValueError, match=r"param_groups\[1\]: lr"):
        fastopt.SGD([{"params": [(p1, g1)]}, {"params": [(p2, g2)], "lr": -1.0}], lr=0.1)
    with pytest.raises(TypeError, match=r"param_groups\[0\] has unknown key"):
        fastopt.SGD([{"params": [(p1, g1)], "betas": (0.9, 0.9)}], lr=0.1)


@pytest.mark.parametrize("mutate, match", [
    (lambda sd: sd.update(optimizer="sgd"), "for optimizer 'sgd'"),
    (lambda sd: sd["param_groups"].append(dict(sd["param_groups"][0])), "param groups"),
    (lambda sd: sd["state"][0].update(exp_avg=np.zeros(3, np.float32)), "shape"),
    (lambda sd: sd["state"][0].update(exp_avg=sd["state"][0]["exp_avg"].astype(np.float64)), "dtype"),
    (lambda sd: sd["state"][0].update(bogus=np.zeros(8, np.float32)), "unknown entry 'bogus'"),
    (lambda sd: sd["state"][0].update(step=-2), "step"),
    (lambda sd: sd["param_groups"][0].update(lr=-1.0), "lr"),
    (lambda sd: sd["param_groups"][0].update(params=[0, 1]), "params"),
    (lambda sd: sd.pop("state"), "state"),
])
def test_bad_state_dict_raises_and_changes_nothing(mutate, match):
    p, g = pair()
    opt = fastopt.Adam([(p, g)], lr=0.1)
    opt.step()
    good = opt.state_dict()
    bad = opt.state_dict()
    mutate(bad)
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(bad)
    after = opt.state_dict()
    assert after["param_groups"] == good["param_groups"]
    for key in ("exp_avg", "exp_avg_sq", "step"):
        np.testing.assert_array_equal(after["state"][0][key], good["state"][0][key])


def test_functional_validates_state_and_step():
    p, g = pair()
    state = fastopt.functional.init_state("adam", p)
    with pytest.raises(ValueError, match="step"):
        fastopt.functional.adam_(p, g, state, step=0)
    with pytest.raises(ValueError, match="exp_avg_sq"):
        fastopt.functional.adam_(p, g, {"exp_avg": state["exp_avg"]}, step=1)
    with pytest.raises(ValueError, match="share memory"):
        fastopt.functional.adam_(p, g, {"exp_avg": state["exp_avg"], "exp_avg_sq": state["exp_avg"]}, step=1)
    with pytest.raises(ValueError, match="unknown optimizer"):
        fastopt.functional.apply("adamm", p, g, state, step=1)
