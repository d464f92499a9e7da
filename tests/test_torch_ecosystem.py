"""fastopt.torch inside torch's own machinery, unchanged: every LR scheduler,
GradScaler (its fused-optimizer protocol, with and without unscale_),
clip_grad_norm_, torch.compile'd models, step hooks, closures, named params
and add_param_group. Each one runs next to the same loop on torch.optim."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from torch_cases import assert_same_params, batch, make_pair, train_step  # noqa: E402

import fastopt.torch as ft  # noqa: E402

lr_scheduler = torch.optim.lr_scheduler

SCHEDULERS = {
    "LambdaLR": lambda o: lr_scheduler.LambdaLR(o, lambda t: 1 / (1 + t)),
    "MultiplicativeLR": lambda o: lr_scheduler.MultiplicativeLR(o, lambda t: 0.97),
    "StepLR": lambda o: lr_scheduler.StepLR(o, step_size=7, gamma=0.5),
    "MultiStepLR": lambda o: lr_scheduler.MultiStepLR(o, milestones=[5, 15], gamma=0.3),
    "ConstantLR": lambda o: lr_scheduler.ConstantLR(o, factor=0.5, total_iters=10),
    "LinearLR": lambda o: lr_scheduler.LinearLR(o, start_factor=0.1, total_iters=10),
    "ExponentialLR": lambda o: lr_scheduler.ExponentialLR(o, gamma=0.95),
    "PolynomialLR": lambda o: lr_scheduler.PolynomialLR(o, total_iters=20, power=2.0),
    "CosineAnnealingLR": lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=12),
    "CosineAnnealingWarmRestarts": lambda o: lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=6, T_mult=2),
    "CyclicLR": lambda o: lr_scheduler.CyclicLR(o, base_lr=1e-3, max_lr=2e-2, step_size_up=5),
    "OneCycleLR": lambda o: lr_scheduler.OneCycleLR(o, max_lr=3e-2, total_steps=30),
    "SequentialLR": lambda o: lr_scheduler.SequentialLR(o, [lr_scheduler.LinearLR(o, 0.1, total_iters=5),
                                                            lr_scheduler.ExponentialLR(o, 0.9)], milestones=[5]),
    "ChainedScheduler": lambda o: lr_scheduler.ChainedScheduler([lr_scheduler.ConstantLR(o, 0.5, total_iters=4),
                                                                  lr_scheduler.ExponentialLR(o, 0.9)]),
    "ReduceLROnPlateau": lambda o: lr_scheduler.ReduceLROnPlateau(o, patience=1, factor=0.5, threshold=0.5),
    "SWALR": lambda o: torch.optim.swa_utils.SWALR(o, swa_lr=5e-3, anneal_epochs=5),
}


@pytest.mark.parametrize("optimizer", [("Adam", {"lr": 1e-2}), ("SGD", {"lr": 1e-2, "momentum": 0.9})],
                         ids=["Adam", "SGD"])
@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
def test_every_lr_scheduler_drives_fastopt_as_torch(scheduler, optimizer):
    name, kwargs = optimizer
    ours_model, theirs_model = make_pair(seed=5)
    ours = getattr(ft, name)(ours_model.parameters(), **kwargs)
    theirs = getattr(torch.optim, name)(theirs_model.parameters(), **kwargs)
    s_ours, s_theirs = SCHEDULERS[scheduler](ours), SCHEDULERS[scheduler](theirs)
    for t in range(30):
        a = train_step(ours_model, ours, t)
        b = train_step(theirs_model, theirs, t)
        if scheduler == "ReduceLROnPlateau":
            s_ours.step(a)
            s_theirs.step(b)
        else:
            s_ours.step()
            s_theirs.step()
        for g_ours, g_theirs in zip(ours.param_groups, theirs.param_groups):
            for key in ("lr", "betas", "momentum"):
                if key in g_theirs:
                    assert g_ours[key] == g_theirs[key], (t, key)
    assert_same_params(ours_model, theirs_model, msg=scheduler)
    assert ours.state_dict()["param_groups"] == theirs.state_dict()["param_groups"]


def test_one_cycle_beta_cycling_writes_go_straight_into_the_engine_record():
    model, _ = make_pair()
    opt = ft.Adam(model.parameters(), lr=1e-2)
    sched = lr_scheduler.OneCycleLR(opt, max_lr=3e-2, total_steps=10)
    record = opt.engine._plans[0].hyper
    for t in range(5):
        train_step(model, opt, t)
        sched.step()
        group = opt.param_groups[0]
        assert (record.lr, record.betas) == (group["lr"], tuple(group["betas"]))
        assert opt.engine._plans[0].hyper is record  # updated in place: no re-plan


def test_tensor_lr_filled_in_place_by_a_scheduler_is_followed():
    ours_model, theirs_model = make_pair(seed=6)
    ours = ft.SGD(ours_model.parameters(), lr=torch.tensor(0.05))
    theirs = torch.optim.SGD(theirs_model.parameters(), lr=torch.tensor(0.05))
    s1, s2 = lr_scheduler.ExponentialLR(ours, 0.8), lr_scheduler.ExponentialLR(theirs, 0.8)
    for t in range(12):
        train_step(ours_model, ours, t)
        train_step(theirs_model, theirs, t)
        s1.step()
        s2.step()
    assert isinstance(ours.param_groups[0]["lr"], torch.Tensor)
    assert_same_params(ours_model, theirs_model)


def _scaled_run(model, opt, steps, unscale_and_clip):
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12, growth_interval=3)
    scales = []
    for t in range(steps):
        opt.zero_grad()
        x, y = batch(t)
        loss = torch.nn.functional.mse_loss(model(x, t), y)
        if t == 4:
            loss = loss * float("inf")  # an overflowing step: skipped, scale backs off
        scaler.scale(loss).backward()
        if unscale_and_clip:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        scaler.step(opt)
        scaler.update()
        scales.append(scaler.get_scale())
    return scales


@pytest.mark.parametrize("unscale_and_clip", [False, True], ids=["scaled-step", "unscale_-clip-step"])
def test_grad_scaler_folds_the_unscale_into_the_fused_step(unscale_and_clip):
    ours_model, theirs_model = make_pair(seed=7)
    ours = ft.AdamW(ours_model.parameters(), lr=1e-2)
    theirs = torch.optim.AdamW(theirs_model.parameters(), lr=1e-2)
    assert ours._step_supports_amp_scaling
    scales_ours = _scaled_run(ours_model, ours, 12, unscale_and_clip)
    scales_theirs = _scaled_run(theirs_model, theirs, 12, unscale_and_clip)
    assert scales_ours == scales_theirs and scales_ours[4] < scales_ours[3]
    assert_same_params(ours_model, theirs_model)
    assert not hasattr(ours, "grad_scale") and not hasattr(ours, "found_inf")  # the scaler removed them


def test_fused_max_grad_norm_matches_clip_grad_norm():
    ours_model, theirs_model = make_pair(seed=8)
    ours = ft.Adam(ours_model.parameters(), lr=1e-2, max_grad_norm=0.3)
    theirs = torch.optim.Adam(theirs_model.parameters(), lr=1e-2)
    for t in range(25):
        train_step(ours_model, ours, t)
        theirs_model.zero_grad()
        x, y = batch(t)
        torch.nn.functional.mse_loss(theirs_model(x, t), y).backward()
        norm = torch.nn.utils.clip_grad_norm_(theirs_model.parameters(), 0.3)
        theirs.step()
        assert ours.last_grad_norm == pytest.approx(norm.item(), rel=1e-5)
    assert_same_params(ours_model, theirs_model)


def test_torch_compiled_model_trains_as_with_torch_optim():
    ours_model, theirs_model = make_pair(seed=9)
    ours = ft.AdamW(ours_model.parameters(), lr=1e-2)  # flatten first, then compile
    theirs = torch.optim.AdamW(theirs_model.parameters(), lr=1e-2)
    compiled = torch.compile(ours_model)  # the reference runs eagerly: one compilation, not two
    for t in range(6):
        for model, opt in ((compiled, ours), (theirs_model, theirs)):
            opt.zero_grad()
            x, y = batch(t)
            torch.nn.functional.mse_loss(model(x, 1), y).backward()
            opt.step()
    assert_same_params(ours_model, theirs_model)
    buffer = ours._buffers[0]
    k = next(k for k, p in enumerate(buffer.params) if p is ours_model.a.weight)
    assert ours_model.a.weight.grad is buffer.grad_views[k]  # copied in and re-pointed to the flat view


def test_step_hooks_and_closure():
    model, _ = make_pair()
    opt = ft.SGD(model.parameters(), lr=0.1)
    calls = []
    opt.register_step_pre_hook(lambda o, args, kwargs: calls.append(("pre", o)))
    opt.register_step_post_hook(lambda o, args, kwargs: calls.append(("post", o)))
    from torch.optim.optimizer import register_optimizer_step_post_hook

    handle = register_optimizer_step_post_hook(lambda o, a, k: calls.append(("global", o)))
    try:
        def closure():
            opt.zero_grad()
            x, y = batch(0)
            loss = torch.nn.functional.mse_loss(model(x, 1), y)
            loss.backward()
            return loss
        before = model.a.weight.detach().clone()
        loss = opt.step(closure)
    finally:
        handle.remove()
    assert [c[0] for c in calls] == ["pre", "post", "global"] and all(c[1] is opt for c in calls)
    assert isinstance(loss, torch.Tensor)
    torch.testing.assert_close(model.a.weight.detach(), before - 0.1 * model.a.weight.grad)


def test_named_parameters_and_add_param_group_as_torch():
    ours_model, theirs_model = make_pair(seed=10)
    body = lambda m: [(n, p) for n, p in m.named_parameters() if not n.startswith(("c.", "side", "unused"))]
    head = lambda m: [(n, p) for n, p in m.named_parameters() if n.startswith("c.")]
    ours = ft.Adam(body(ours_model), lr=1e-2)
    theirs = torch.optim.Adam(body(theirs_model), lr=1e-2)
    for t in range(5):
        train_step(ours_model, ours, t)
        train_step(theirs_model, theirs, t)
    ours.add_param_group({"params": head(ours_model), "lr": 3e-3})
    theirs.add_param_group({"params": head(theirs_model), "lr": 3e-3})
    for t in range(5, 15):
        train_step(ours_model, ours, t)
        train_step(theirs_model, theirs, t)
    assert_same_params(ours_model, theirs_model)
    sd_ours, sd_theirs = ours.state_dict(), theirs.state_dict()
    assert sd_ours["param_groups"] == sd_theirs["param_groups"]
    assert sd_ours["param_groups"][1]["param_names"] == ["c.weight", "c.bias"]
    assert sorted(sd_ours["state"]) == sorted(sd_theirs["state"])
