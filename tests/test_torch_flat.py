"""fastopt.torch's flat buffers: params and grads as views of one aligned
buffer per (group, dtype, device), one launch per buffer, gradients never
read stale (replaced, None, set_to_none or not), bad input refused with the
argument named and nothing changed."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")

from torch_cases import assert_same_params, batch, make_pair, train_step  # noqa: E402

import fastopt.torch as ft  # noqa: E402


def test_params_and_grads_become_aligned_views_of_one_buffer_per_group_and_dtype():
    torch.manual_seed(0)
    a = torch.nn.Linear(5, 3)
    b = torch.nn.Linear(3, 2, dtype=torch.float64)
    a.weight.grad = torch.ones_like(a.weight)
    values = [p.detach().clone() for p in (*a.parameters(), *b.parameters())]
    opt = ft.SGD([{"params": [a.weight, b.weight, a.bias]}, {"params": [b.bias], "lr": 0.5}], lr=0.1)
    assert [len(bs) for bs in opt._group_buffers] == [2, 1]  # (float32, float64) in group 0
    f32, f64 = opt._group_buffers[0]
    assert f32.params == [a.weight, a.bias] and f64.params == [b.weight]
    for buffer in opt._buffers:
        for p, (start, _) in zip(buffer.params, buffer.ranges):
            assert p.untyped_storage().data_ptr() == buffer.data.untyped_storage().data_ptr()
            assert (p.data_ptr() - buffer.data.data_ptr()) % 64 == 0 and start % 16 == 0
            assert buffer.data.data_ptr() % 64 == 0
        assert buffer.data.numel() % 16 == 0 and 0 <= buffer.data.numel() - buffer.ranges[-1][1] < 16  # padded end
    for p, v in zip((*a.parameters(), *b.parameters()), values):
        assert torch.equal(p.detach(), v)  # same values, same Parameter objects
    assert a.weight.grad is f32.grad_views[0] and torch.equal(a.weight.grad, torch.ones(3, 5))
    assert a.bias.grad is None  # no gradient yet: stays None (torch would skip it)


def test_one_kernel_launch_per_buffer_per_step():
    model, _ = make_pair()
    opt = ft.Adam(model.parameters(), lr=1e-3)
    calls = []
    for t in range(4):
        opt.zero_grad(set_to_none=False)
        x, y = batch(t)
        torch.nn.functional.mse_loss(model(x, 0) + model.unused.sum(), y).backward()  # every param gets a grad
        opt.step()
        if t == 0:  # (this first step read torch's new gradients in place: chain.full may not be built yet)
            plan = opt.engine._plans[0]
            chain = plan.chains[0]
            original = chain.full or opt.engine._full_launcher(0, plan, chain)
            chain.full = lambda values, original=original: (calls.append(1), original(values))
    assert len(calls) == 3


def test_replaced_grads_are_copied_in_and_none_grads_skipped():
    ours_model, theirs_model = make_pair(seed=3)
    ours = ft.Adam(ours_model.parameters(), lr=1e-2)
    theirs = torch.optim.Adam(theirs_model.parameters(), lr=1e-2)
    for model, opt in ((ours_model, ours), (theirs_model, theirs)):
        g = torch.Generator().manual_seed(0)
        for t in range(6):
            for k, p in enumerate(model.parameters()):  # a hook or the user replaces .grad; some are None
                p.grad = None if (t + k) % (k + 2) == 0 else torch.randn(p.shape, generator=g)
            opt.step()
    assert_same_params(ours_model, theirs_model)
    steps_ours = {k: v["step"].item() for k, v in ours.state_dict()["state"].items()}
    steps_theirs = {k: v["step"].item() for k, v in theirs.state_dict()["state"].items()}
    assert steps_ours == steps_theirs and len(set(steps_ours.values())) > 1


def test_a_step_without_any_gradient_changes_nothing():
    model, _ = make_pair()
    opt = ft.Adam(model.parameters(), lr=1e-2)
    before = [p.detach().clone() for p in model.parameters()]
    opt.step()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))
    assert opt.state_dict()["state"] == {} and len(opt.state) == 0


def test_zero_grad_follows_torch_semantics():
    model, _ = make_pair()
    opt = ft.SGD(model.parameters(), lr=0.1)
    train_step(model, opt, 0)
    held = model.a.weight.grad
    opt.zero_grad()  # torch's default: set_to_none=True
    assert all(p.grad is None for p in model.parameters())
    train_step(model, opt, 1)  # new grads, copied in by the step
    model.a.weight.grad = held.clone().fill_(3.0)  # something else than the view
    stranger = model.a.weight.grad
    opt.zero_grad(set_to_none=False)
    assert torch.count_nonzero(stranger) == 0  # zeroed in place, as torch would
    buffer = opt._buffers[0]
    for p, view in zip(buffer.params, buffer.grad_views):
        assert p.grad is None or p.grad is view  # views again (side and unused got no grad: stay None)
    assert torch.count_nonzero(buffer.grad) == 0


def test_replacing_param_data_is_followed_and_a_dtype_change_refused():
    model, _ = make_pair()
    opt = ft.SGD(model.parameters(), lr=0.1)
    model.a.bias.data = torch.full((16,), 2.0)  # re-initialised after the optimizer was built
    model.zero_grad()
    x, y = batch(0)
    torch.nn.functional.mse_loss(model(x, 1), y).backward()
    grad = model.a.bias.grad.clone()
    with pytest.warns(RuntimeWarning, match="was replaced after the optimizer was built"):
        opt.step()
    torch.testing.assert_close(model.a.bias.detach(), 2.0 - 0.1 * grad)
    buffer = opt._buffers[0]
    k = next(k for k, p in enumerate(buffer.params) if p is model.a.bias)
    assert model.a.bias.data_ptr() == buffer.views[k].data_ptr()
    model.double()
    with pytest.raises(RuntimeError, match="build the optimizer after moving the model"):
        opt.step()


def test_bad_input_names_the_argument_and_changes_nothing():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(4, 3))
    before = w.data
    cases = [
        ([w, w * 2], ValueError, "can't optimize a non-leaf Tensor"),
        ([w, torch.nn.Parameter(w.data[0])], ValueError, r"param_groups\[0\]\['params'\]\[[01]\] and .* share memory"),
        ([w, torch.nn.Parameter(torch.zeros(2, dtype=torch.complex64))], TypeError, r"\[1\] is a complex tensor"),
        ([w, torch.nn.Parameter(torch.zeros(2, dtype=torch.float16))], TypeError, r"\[1\] has dtype torch.float16"),
        ([w, torch.nn.Parameter(torch.zeros(6, 2).t())], None, None),  # a transposed (dense) param is fine
        ([w, torch.nn.Parameter(torch.zeros(3).expand(4, 3))], ValueError, r"\[1\] is not dense"),
    ]
    for params, error, match in cases:
        if error is None:
            ft.SGD(params, lr=0.1)
            w.data = before
            continue
        with pytest.raises(error, match=match):
            ft.SGD(params, lr=0.1)
        assert w.data is before or w.data.data_ptr() == before.data_ptr()  # nothing moved
    with pytest.raises(ValueError, match=r"param_groups\[1\]: weight_decay must be >= 0"):
        ft.SGD([{"params": [w]}, {"params": [torch.nn.Parameter(torch.zeros(2))], "weight_decay": -1.0}], lr=0.1)
    assert w.data.data_ptr() == before.data_ptr()
    with pytest.raises(ValueError, match="Invalid learning rate: -1"):
        ft.Adam([w], lr=-1)
    with pytest.raises(TypeError, match="max_grad_norm must be a finite number"):
        ft.Adam([w], max_grad_norm="big")
    with pytest.raises(TypeError, match="unexpected keyword argument 'momentum'"):
        ft.Adam([w], momentum=0.9)
    with pytest.raises(ValueError, match="master_weights=True is for bfloat16 params"):
        ft.Adam([w], master_weights=True)  # the engine's check, after the params moved: moved back
    assert w.data.data_ptr() == before.data_ptr()


def test_sparse_and_complex_grads_are_refused_at_the_step():
    emb = torch.nn.Embedding(10, 4, sparse=True)
    opt = ft.Adam(emb.parameters())
    emb(torch.tensor([1, 2])).sum().backward()
    before = emb.weight.detach().clone()
    message = r"Adam does not support sparse gradients \(param_groups\[0\]\['params'\]\[0\]"
    with pytest.raises(RuntimeError, match=message):
        opt.step()
    assert torch.equal(emb.weight.detach(), before)


def test_a_state_dict_of_another_optimizer_is_refused_and_nothing_changes():
    model, other = make_pair()
    opt = ft.Adam(model.parameters(), lr=1e-2)
    train_step(model, opt, 0)
    saved = opt.state_dict()
    sgd = torch.optim.SGD(other.parameters(), lr=0.1, momentum=0.9)
    train_step(other, sgd, 0)
    with pytest.raises(ValueError, match="has no 'betas': a state dict of another optimizer"):
        opt.load_state_dict(sgd.state_dict())
    wrong = copy.deepcopy(saved)
    wrong["state"][1]["momentum_buffer"] = wrong["state"][1].pop("exp_avg")
    with pytest.raises(ValueError, match=r"state\[1\] has unknown entry 'momentum_buffer'"):
        opt.load_state_dict(wrong)
    wrong = copy.deepcopy(saved)
    wrong["state"][1]["exp_avg"] = torch.zeros(7)
    with pytest.raises(ValueError, match=r"state\[1\]\['exp_avg'\] has shape \(7,\)"):
        opt.load_state_dict(wrong)
    with pytest.raises(ValueError, match="different number of parameter groups"):
        opt.load_state_dict({"state": {}, "param_groups": []})
    native = opt.engine.state_dict()
    with pytest.raises(ValueError, match="state_dict is for optimizer 'adam', not 'sgd'"):
        ft.SGD(other.parameters(), lr=0.1).load_state_dict(native)
    after = opt.state_dict()
    for index, entry in saved["state"].items():
        for key, value in entry.items():
            assert torch.equal(after["state"][index][key], value)


def test_live_state_views_and_assignment():
    model, _ = make_pair()
    opt = ft.Adam(model.parameters(), lr=1e-2)
    train_step(model, opt, 0)
    p = model.a.weight
    st = opt.state[p]
    assert set(st) == {"step", "exp_avg", "exp_avg_sq"} and st["exp_avg"].shape == p.shape
    st["exp_avg"].zero_()  # a view: acts at once
    assert torch.count_nonzero(opt.state_dict()["state"][opt._index[p]]["exp_avg"]) == 0
    opt.state[p] = {"step": torch.tensor(10.0), "exp_avg": torch.ones_like(p), "exp_avg_sq": torch.ones_like(p)}
    assert opt.state[p]["step"].item() == 10.0  # pending until the next step, readable
    train_step(model, opt, 1)
    assert opt.state[p]["step"].item() == 11.0
    assert p in opt.state and model.unused not in opt.state
    del opt.state[p]
    train_step(model, opt, 2)
    assert opt.state[p]["step"].item() == 1.0
    with pytest.raises(TypeError, match="cannot be pickled"):
        copy.deepcopy(opt)
