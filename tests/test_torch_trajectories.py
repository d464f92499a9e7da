"""fastopt.torch against torch.optim on a real model: 100 steps with
``model.zero_grad()`` (set_to_none) and a scheduler running, a branch some
steps skip (grads None, so per-param step counts differ) and a param that
never gets a gradient; state dicts swapped both ways mid-run."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from torch_cases import CASES, assert_same_params, case_id, make_pair, train_step  # noqa: E402

import fastopt.torch as ft  # noqa: E402

STEPS = 100


def schedulers(opt):
    return [torch.optim.lr_scheduler.StepLR(opt, step_size=30, gamma=0.5)]


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_trajectory_matches_torch_with_scheduler_and_skipped_params(case):
    name, kwargs = case
    ours_model, theirs_model = make_pair(seed=1)
    ours = getattr(ft, name)(ours_model.parameters(), **kwargs)
    theirs = getattr(torch.optim, name)(theirs_model.parameters(), **kwargs)
    scheds = schedulers(ours) + schedulers(theirs)
    unused_before = ours_model.unused.detach().clone()
    for t in range(STEPS):
        a = train_step(ours_model, ours, t)
        b = train_step(theirs_model, theirs, t)
        assert a == pytest.approx(b, rel=1e-4, abs=1e-6), f"step {t}"
        for s in scheds:
            s.step()
    assert_same_params(ours_model, theirs_model, msg=f"{name} {kwargs} after {STEPS} steps")
    assert torch.equal(ours_model.unused.detach(), unused_before)  # never stepped, as in torch
    assert ours.param_groups[0]["lr"] == theirs.param_groups[0]["lr"]
    # Same state, same layout (torch creates no state for a param never stepped).
    sd_ours, sd_theirs = ours.state_dict(), theirs.state_dict()
    assert sd_ours["param_groups"] == sd_theirs["param_groups"]
    assert sd_ours["state"].keys() == sd_theirs["state"].keys()
    for index, entry in sd_theirs["state"].items():
        assert list(sd_ours["state"][index]) == list(entry), index
        for key, value in entry.items():
            torch.testing.assert_close(sd_ours["state"][index][key], value, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", CASES[1::2], ids=case_id)
def test_state_dicts_swap_both_ways_mid_run(case):
    """torch -> fastopt after 30 steps, fastopt -> torch after 60: the runs still agree."""
    name, kwargs = case
    ours_model, theirs_model = make_pair(seed=2)
    ours = getattr(ft, name)(ours_model.parameters(), **kwargs)
    theirs = getattr(torch.optim, name)(theirs_model.parameters(), **kwargs)
    for t in range(30):
        train_step(theirs_model, theirs, t)
    ours_model.load_state_dict(theirs_model.state_dict())  # in-place copies into the flat buffer
    ours.load_state_dict(theirs.state_dict())
    for t in range(30, 60):
        train_step(ours_model, ours, t)
        train_step(theirs_model, theirs, t)
    assert_same_params(ours_model, theirs_model, msg="after torch -> fastopt")
    fresh_model = make_pair(seed=3)[0]
    fresh_model.load_state_dict(ours_model.state_dict())
    fresh = getattr(torch.optim, name)(fresh_model.parameters(), **kwargs)
    fresh.load_state_dict(ours.state_dict())
    for t in range(60, 90):
        train_step(ours_model, ours, t)
        train_step(fresh_model, fresh, t)
        train_step(theirs_model, theirs, t)
    assert_same_params(ours_model, fresh_model, msg="after fastopt -> torch")
    assert_same_params(ours_model, theirs_model, msg="against the torch run")


def test_set_to_none_false_keeps_the_flat_views_and_matches():
    ours_model, theirs_model = make_pair(seed=4)
    ours = ft.Adam(ours_model.parameters(), lr=1e-2)
    theirs = torch.optim.Adam(theirs_model.parameters(), lr=1e-2)
    for t in range(20):
        for model, opt in ((ours_model, ours), (theirs_model, theirs)):
            opt.zero_grad(set_to_none=False)
            x = torch.randn(8, 6, generator=torch.Generator().manual_seed(t))
            model(x, 1).pow(2).mean().backward()
            opt.step()
    assert_same_params(ours_model, theirs_model)
    buffer = ours.engine and ours._buffers[0]
    for p, view in zip(buffer.params, buffer.grad_views):
        if p.grad is not None:
            assert p.grad is view  # backward accumulated into the flat buffer
    # Params that got gradients are views of the flat buffer; side/unused never had one.
    assert ours_model.side.weight.grad is None and ours_model.unused.grad is None
