"""Tests of fastopt.schedules: values, torch equivalence, validation, Scheduler."""

import math
import warnings
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastopt import schedules as S
from fastopt.schedules import (
    Constant,
    ExponentialDecay,
    InverseTimeDecay,
    LambdaSchedule,
    OneCycle,
    Scheduler,
    StepDecay,
    WarmupCosine,
)


def _close(a, b, rel=1e-12):
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-300)


def _assert_seq_close(ours, theirs, rel=1e-12):
    assert len(ours) == len(theirs)
    bad = [(t, a, b) for t, (a, b) in enumerate(zip(ours, theirs)) if not _close(a, b, rel)]
    assert not bad, bad[:5]


# -- values at known points ----------------------------------------------------

def test_constant():
    s = Constant(0.1)
    assert s(0) == s(10**6) == 0.1
    assert isinstance(s(3), float)


def test_inverse_time_decay():
    s = InverseTimeDecay(0.1, decay=0.5)
    assert s(0) == 0.1
    assert s(2) == pytest.approx(0.05, rel=1e-15)
    assert s(6) == pytest.approx(0.025, rel=1e-15)


def test_step_decay():
    s = StepDecay(1.0, step_size=3, gamma=0.5)
    assert s.values(8) == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25]


def test_exponential_decay():
    s = ExponentialDecay(2.0, gamma=0.9)
    assert s(0) == 2.0
    assert s(3) == pytest.approx(2.0 * 0.729, rel=1e-15)


def test_warmup_cosine_known_points():
    s = WarmupCosine(1.0, total_steps=110, warmup_steps=10, min_lr=0.1)
    assert s(0) == 0.0
    assert s(5) == pytest.approx(0.5)
    assert s(10) == 1.0
    assert s(60) == pytest.approx(0.55, rel=1e-15)  # halfway: (1 + 0.1) / 2
    assert s(110) == s(500) == 0.1
    vals = s.values(111)
    assert all(b >= a for a, b in pairwise(vals[:11]))  # rises
    assert all(b <= a for a, b in pairwise(vals[10:]))  # then falls


def test_onecycle_known_points():
    s = OneCycle(max_lr=1.0, total_steps=101, pct_start=0.5, div_factor=10.0, final_div_factor=100.0)
    # phase 1 ends at 0.5 * 101 - 1 = 49.5 (torch's float boundary)
    assert s(0) == pytest.approx(0.1, rel=1e-15)
    assert s(49.5) == pytest.approx(1.0, rel=1e-15)
    assert s(100) == pytest.approx(0.1 / 100, rel=1e-12)
    assert s(1000) == s(100)  # clamped after the cycle
    assert max(s.values(101)) <= 1.0
    lin = OneCycle(1.0, 11, pct_start=0.5, div_factor=10.0, anneal="linear")
    assert lin(2.25) == pytest.approx(0.1 + 0.9 * 2.25 / 4.5)


def test_onecycle_degenerate_phases():
    # 1-step warm-up phase (torch divides by zero here); pct_start=0 and 1.
    assert OneCycle(1.0, 2, pct_start=0.5)(0) == 1.0
    assert OneCycle(1.0, 10, pct_start=0.0)(9) == pytest.approx(1.0 / 25 / 1e4)
    assert OneCycle(1.0, 10, pct_start=1.0)(9) == pytest.approx(1.0)
    assert OneCycle(1.0, 1)(0) == pytest.approx(1.0 / 25 / 1e4)


def test_lambda_schedule():
    s = LambdaSchedule(0.5, lambda t: 1.0 / (t + 1))
    assert s(0) == 0.5 and s(4) == 0.1


def test_schedules_are_pure():
    s = OneCycle(0.3, 50)
    forward = s.values(50)
    backward = [s(t) for t in reversed(range(50))][::-1]
    assert forward == backward


# -- agreement with torch.optim.lr_scheduler -------------------------------------

def _torch_lrs(make_scheduler, steps, lr=0.1):
    torch = pytest.importorskip("torch")
    p = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([p], lr=lr)
    sched = make_scheduler(torch.optim.lr_scheduler, opt)
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(steps):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
    return out


@pytest.mark.parametrize("step_size, gamma", [(1, 0.5), (7, 0.1), (30, 0.93)])
def test_step_decay_matches_torch_steplr(step_size, gamma):
    theirs = _torch_lrs(lambda L, o: L.StepLR(o, step_size=step_size, gamma=gamma), 200, lr=0.3)
    _assert_seq_close(StepDecay(0.3, step_size, gamma).values(200), theirs)


@pytest.mark.parametrize("gamma", [0.99, 0.9, 1.01])
def test_exponential_matches_torch_exponentiallr(gamma):
    theirs = _torch_lrs(lambda L, o: L.ExponentialLR(o, gamma=gamma), 300, lr=0.05)
    _assert_seq_close(ExponentialDecay(0.05, gamma).values(300), theirs)


@pytest.mark.parametrize("anneal", ["cos", "linear"])
@pytest.mark.parametrize(
    "total, pct, div, final",
    [(100, 0.3, 25.0, 1e4), (1000, 0.25, 10.0, 100.0), (37, 0.45, 5.0, 1e3), (7, 0.3, 25.0, 1e4), (1, 0.3, 25.0, 1e4)],
)
def test_onecycle_matches_torch_onecyclelr(total, pct, div, final, anneal):
    theirs = _torch_lrs(
        lambda L, o: L.OneCycleLR(
            o, max_lr=0.4, total_steps=total, pct_start=pct, div_factor=div,
            final_div_factor=final, anneal_strategy=anneal, cycle_momentum=False,
        ),
        total,
    )
    ours = OneCycle(0.4, total, pct_start=pct, div_factor=div, final_div_factor=final, anneal=anneal)
    _assert_seq_close(ours.values(total), theirs)


def test_cosine_without_warmup_matches_torch_cosineannealinglr():
    theirs = _torch_lrs(lambda L, o: L.CosineAnnealingLR(o, T_max=500, eta_min=1e-3), 501, lr=0.1)
    ours = WarmupCosine(0.1, total_steps=500, min_lr=1e-3).values(501)
    # torch's recursive form accumulates rounding: compare with an absolute bound
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12 * 0.1)


def test_cosine_with_warmup_matches_torch_lambdalr():
    lr, total, warm = 0.2, 300, 30

    def factor(t):  # Hugging Face's cosine-with-warmup factor, held at 0 after total
        if t < warm:
            return t / warm
        progress = min(1.0, (t - warm) / (total - warm))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    theirs = _torch_lrs(lambda L, o: L.LambdaLR(o, factor), total + 20, lr=lr)
    _assert_seq_close(WarmupCosine(lr, total, warmup_steps=warm).values(total + 20), theirs)


def test_inverse_time_matches_torch_lambdalr():
    theirs = _torch_lrs(lambda L, o: L.LambdaLR(o, lambda t: 1.0 / (1.0 + 0.01 * t)), 400, lr=0.5)
    _assert_seq_close(InverseTimeDecay(0.5, 0.01).values(400), theirs)


def test_lambda_schedule_matches_torch_lambdalr():
    fn = lambda t: 0.95 ** t + 0.01 * (t % 3)
    theirs = _torch_lrs(lambda L, o: L.LambdaLR(o, fn), 100, lr=0.3)
    _assert_seq_close(LambdaSchedule(0.3, fn).values(100), theirs)


def test_constant_matches_torch_lambdalr():
    theirs = _torch_lrs(lambda L, o: L.LambdaLR(o, lambda t: 1.0), 10, lr=0.3)
    assert Constant(0.3).values(10) == theirs


# -- properties ----------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(
    lr=st.floats(0, 10),
    frac=st.floats(0, 1),
    total=st.integers(1, 500),
    warm_frac=st.floats(0, 1),
    t=st.integers(0, 1000),
)
def test_cosine_stays_between_min_and_peak(lr, frac, total, warm_frac, t):
    s = WarmupCosine(lr, total, warmup_steps=int(warm_frac * total), min_lr=lr * frac)
    v = s(t)
    assert 0 <= v <= lr * (1 + 1e-12)
    if t >= s.warmup_steps:
        assert v >= s.min_lr * (1 - 1e-12)


@settings(max_examples=60, deadline=None)
@given(
    max_lr=st.floats(0, 10),
    total=st.integers(1, 500),
    pct=st.floats(0, 1),
    div=st.floats(1, 100),
    final=st.floats(1, 1e4),
    t=st.integers(0, 1000),
)
def test_onecycle_stays_between_min_and_max(max_lr, total, pct, div, final, t):
    s = OneCycle(max_lr, total, pct_start=pct, div_factor=div, final_div_factor=final)
    v = s(t)
    assert math.isfinite(v)
    assert s.min_lr * (1 - 1e-12) <= v <= max_lr * (1 + 1e-12)


# -- get / validation ----------------------------------------------------------

def test_get_builds_by_name_and_alias():
    assert isinstance(S.get("cosine", lr=0.1, total_steps=10, warmup_steps=2), WarmupCosine)
    assert isinstance(S.get("One-Cycle", max_lr=0.1, total_steps=10), OneCycle)
    assert isinstance(S.get("inverse_time", lr=0.1, decay=0.1), InverseTimeDecay)
    assert S.get("step", lr=1.0, step_size=2)(2) == pytest.approx(0.1)
    assert set(S.SCHEDULES) >= {"constant", "inverse_time", "step", "exponential", "cosine", "onecycle"}
    fn = lambda t: 0.1
    assert S.get(fn) is fn


def test_get_rejects_unknown_names_and_arguments():
    with pytest.raises(ValueError, match="name must be one of"):
        S.get("warmup_linear_magic", lr=0.1)
    with pytest.raises(ValueError, match="bad arguments"):
        S.get("constant", lr=0.1, gamma=0.5)
    with pytest.raises(ValueError, match="keyword"):
        S.get(lambda t: 0.1, lr=0.1)


@pytest.mark.parametrize(
    "cls, kwargs, name",
    [
        (Constant, {"lr": -0.1}, "lr"),
        (Constant, {"lr": float("nan")}, "lr"),
        (Constant, {"lr": "0.1"}, "lr"),
        (InverseTimeDecay, {"lr": 0.1, "decay": -1.0}, "decay"),
        (StepDecay, {"lr": 0.1, "step_size": 0}, "step_size"),
        (StepDecay, {"lr": 0.1, "step_size": 2.5}, "step_size"),
        (StepDecay, {"lr": 0.1, "step_size": 2, "gamma": 0.0}, "gamma"),
        (ExponentialDecay, {"lr": -1.0, "gamma": 0.9}, "lr"),
        (ExponentialDecay, {"lr": 0.1, "gamma": -0.9}, "gamma"),
        (WarmupCosine, {"lr": 0.1, "total_steps": 0}, "total_steps"),
        (WarmupCosine, {"lr": 0.1, "total_steps": 10, "warmup_steps": 11}, "warmup_steps"),
        (WarmupCosine, {"lr": 0.1, "total_steps": 10, "warmup_steps": -1}, "warmup_steps"),
        (WarmupCosine, {"lr": 0.1, "total_steps": 10, "min_lr": 0.2}, "min_lr"),
        (OneCycle, {"max_lr": -0.1, "total_steps": 10}, "max_lr"),
        (OneCycle, {"max_lr": 0.1, "total_steps": 10, "pct_start": 1.5}, "pct_start"),
        (OneCycle, {"max_lr": 0.1, "total_steps": 10, "div_factor": 0.0}, "div_factor"),
        (OneCycle, {"max_lr": 0.1, "total_steps": 10, "final_div_factor": -1.0}, "final_div_factor"),
        (OneCycle, {"max_lr": 0.1, "total_steps": 10, "anneal": "cosine"}, "anneal"),
        (LambdaSchedule, {"lr": 0.1, "fn": 3}, "fn"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(cls, kwargs, name):
    with pytest.raises(ValueError, match=name):
        cls(**kwargs)


@pytest.mark.parametrize("t", [-1, float("inf"), "3", None])
def test_bad_step_raises(t):
    with pytest.raises(ValueError, match="t must be"):
        Constant(0.1)(t)


def test_repr_names_arguments():
    assert repr(StepDecay(0.1, 5, 0.5)) == "StepDecay(lr=0.1, step_size=5, gamma=0.5)"


# -- Scheduler -----------------------------------------------------------------

class _FakeOptimizer:
    def __init__(self, lrs):
        self.param_groups = [{"lr": lr, "params": None} for lr in lrs]


def test_scheduler_sets_lr_on_construction_and_each_step():
    opt = _FakeOptimizer([1.0, 2.0])
    sched = Scheduler(opt, StepDecay(0.1, step_size=2, gamma=0.5))
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.1] and sched.last_step == 0
    seen = []
    for _ in range(5):
        sched.step()
        seen.append(opt.param_groups[1]["lr"])
    assert seen == [0.1, 0.05, 0.05, 0.025, 0.025]
    assert sched.get_last_lr() == [0.025, 0.025] and sched.last_step == 5


def test_scheduler_per_group_schedules_and_state_dict():
    opt = _FakeOptimizer([0.0, 0.0])
    sched = Scheduler(opt, [Constant(0.3), ExponentialDecay(1.0, 0.5)])
    sched.step()
    sched.step()
    assert sched.get_last_lr() == [0.3, 0.25]
    state = sched.state_dict()
    other = Scheduler(_FakeOptimizer([0.0, 0.0]), [Constant(0.3), ExponentialDecay(1.0, 0.5)])
    other.load_state_dict(state)
    assert other.get_last_lr() == [0.3, 0.25] and other.last_step == 2
    assert Scheduler(_FakeOptimizer([0.0]), ExponentialDecay(1.0, 0.5), last_step=3).get_last_lr() == [0.125]


@pytest.mark.parametrize(
    "optimizer, schedule",
    [
        (object(), Constant(0.1)),
        (_FakeOptimizer([0.1]), 0.1),
        (_FakeOptimizer([0.1, 0.2]), [Constant(0.1)]),
    ],
)
def test_scheduler_rejects_bad_arguments(optimizer, schedule):
    with pytest.raises(ValueError, match="optimizer|schedule"):
        Scheduler(optimizer, schedule)


def test_scheduler_invalid_lr_changes_nothing():
    opt = _FakeOptimizer([0.1, 0.1])
    sched = Scheduler(opt, [ExponentialDecay(1.0, 0.5), lambda t: 0.2 - 0.15 * t])
    sched.step()
    with pytest.raises(ValueError, match="invalid lr"):
        sched.step()  # the second group would get -0.1
    assert sched.last_step == 1
    assert [g["lr"] for g in opt.param_groups] == [0.5, pytest.approx(0.05)]


def test_scheduler_drives_a_torch_optimizer_like_torch():
    torch = pytest.importorskip("torch")
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.3)
    sched = Scheduler(opt, OneCycle(0.3, 50, div_factor=10.0))
    ours = []
    for _ in range(50):
        ours.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    theirs = _torch_lrs(
        lambda L, o: L.OneCycleLR(o, max_lr=0.3, total_steps=50, div_factor=10.0, cycle_momentum=False), 50
    )
    _assert_seq_close(ours, theirs)


def test_scheduler_drives_fastopt_sgd():
    fastopt = pytest.importorskip("fastopt")
    if not hasattr(fastopt, "SGD") or not hasattr(fastopt, "FlatParams"):
        pytest.skip("fastopt optimizer core not available")
    fp = fastopt.FlatParams({"w": (5,)}, dtype=np.float64)
    opt = fastopt.SGD(fp, lr=1.0)
    sched = Scheduler(opt, ExponentialDecay(0.5, 0.5))
    fp.grad[:] = 1.0
    expected = 0.0
    for t in range(4):
        opt.step()
        expected -= 0.5 * 0.5**t
        sched.step()
        np.testing.assert_allclose(fp.data, expected, rtol=1e-15)
    assert opt.param_groups[0]["lr"] == 0.5 * 0.5**4
