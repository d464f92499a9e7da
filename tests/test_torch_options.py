"""fastopt's training-loop and precision options through torch's constructor:
bfloat16 params with float32 master weights, bfloat16 and 8-bit states,
stochastic rounding, parameter EMA, the NaN/inf guard, value clipping,
accumulation; and the optimizers torch does not have (Lion, LAMB), checked
against fastopt's own classes."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch_cases import assert_same_params, batch, make_pair, train_step  # noqa: E402

import fastopt  # noqa: E402
import fastopt.torch as ft  # noqa: E402


def test_import_fastopt_does_not_import_torch_and_every_spec_has_a_class():
    code = ("import sys, fastopt; fastopt.Adam; assert 'torch' not in sys.modules; "
            "import fastopt.torch as ft; assert sorted(ft.OPTIMIZERS) == sorted(fastopt.rules.SPECS); "
            "assert fastopt.torch.AdamW is ft.OPTIMIZERS['adamw']")
    subprocess.run([sys.executable, "-c", code], check=True)
    for name, spec in fastopt.rules.SPECS.items():
        cls = ft.OPTIMIZERS[name]
        assert cls.__name__ == spec.class_name and issubclass(cls, torch.optim.Optimizer)
        assert ".. math::" in cls.__doc__  # the update equations


def test_bfloat16_model_keeps_float32_master_weights():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 32), torch.nn.Tanh(), torch.nn.Linear(32, 3)).to(torch.bfloat16)
    opt = ft.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for t in range(30):
        model.zero_grad()
        x, y = batch(t, torch.bfloat16)
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    for p in model.parameters():
        master = opt.state[p]["master_param"]
        assert master.dtype == torch.float32 and p.dtype == torch.bfloat16
        assert torch.equal(p.detach(), master.to(torch.bfloat16))  # written from the master in the same pass


def test_bfloat16_state_loads_into_torch_optim_and_tracks_float32():
    ours_model, theirs_model = make_pair(seed=1)
    ours = ft.Adam(ours_model.parameters(), lr=1e-2, state_dtype="bfloat16")
    theirs = torch.optim.Adam(theirs_model.parameters(), lr=1e-2)
    for t in range(20):
        train_step(ours_model, ours, t)
        train_step(theirs_model, theirs, t)
    sd = ours.state_dict()
    assert sd["state"][1]["exp_avg"].dtype == torch.bfloat16
    assert_same_params(ours_model, theirs_model, rtol=0.05, atol=5e-3)  # bfloat16 moments: close, not equal
    fresh = torch.optim.Adam(theirs_model.parameters(), lr=1e-2)
    fresh.load_state_dict(sd)  # torch casts the bfloat16 moments to the params' float32
    assert fresh.state[theirs_model.a.weight]["exp_avg"].dtype == torch.float32


def test_stochastic_rounding_is_reproducible_from_its_seed():
    runs = []
    for _ in range(2):
        model, _ = make_pair(seed=2)
        opt = ft.Adam(model.parameters(), lr=1e-2, state_dtype="bfloat16", stochastic_rounding=True,
                      rounding_seed=7)
        for t in range(5):
            train_step(model, opt, t)
        runs.append([p.detach().clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*runs))


def test_int8_state_aligns_tensors_on_256_elements_and_trains():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 100), torch.nn.Tanh(), torch.nn.Linear(100, 64))
    opt = ft.Adam(model.parameters(), lr=1e-3, state_dtype="int8")
    assert all(start % 256 == 0 for start, _ in opt._buffers[0].ranges)
    assert opt._buffers[0].data.numel() % 256 == 0  # the last tensor is padded too
    x = torch.randn(64, 64, generator=torch.Generator().manual_seed(0))
    losses = []
    for _ in range(20):
        model.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), x)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    sd = opt.state_dict()
    assert sd["state"][0]["exp_avg"].dtype == torch.uint8 and "exp_avg_scale" in sd["state"][0]


def _int8_model(seed: int = 0) -> torch.nn.Module:
    """Two 6144-element weights and two small biases: one flat buffer above
    the 8-bit threshold (4096 elements)."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(64, 96), torch.nn.Tanh(), torch.nn.Linear(96, 64))


def _int8_steps(model, opt, steps: range) -> None:
    for t in steps:
        x = torch.randn(32, 64, generator=torch.Generator().manual_seed(t))
        model.zero_grad()
        torch.nn.functional.mse_loss(model(x), x.flip(1)).backward()
        opt.step()


def _clone(model: torch.nn.Module) -> torch.nn.Module:
    twin = _int8_model(seed=99)
    twin.load_state_dict(model.state_dict())
    return twin


def test_int8_state_dict_resumes_bit_identically():
    uninterrupted, resumed = _int8_model(), _int8_model()
    a = ft.AdamW(uninterrupted.parameters(), lr=1e-2, state_dtype="int8", amsgrad=True)
    b = ft.AdamW(resumed.parameters(), lr=1e-2, state_dtype="int8", amsgrad=True)
    _int8_steps(uninterrupted, a, range(4))
    _int8_steps(resumed, b, range(4))
    saved = b.state_dict()
    assert saved["state"][0]["exp_avg"].dtype == torch.uint8
    assert saved["state"][0]["max_exp_avg_sq_scale"].shape == (24,)  # 6144 elements: 24 blocks
    assert saved["state"][1]["exp_avg"].numel() == 256  # a 96-element bias: one block
    model = _clone(resumed)
    c = ft.AdamW(model.parameters(), lr=1e-2, state_dtype="int8", amsgrad=True)
    broken = {**saved, "state": {k: dict(v) for k, v in saved["state"].items()}}
    del broken["state"][2]["exp_avg_scale"]
    with pytest.raises(ValueError, match=r"state\[2\]\['exp_avg'\].*'exp_avg_scale'"):
        c.load_state_dict(broken)
    broken["state"][2]["exp_avg_scale"] = saved["state"][2]["exp_avg_scale"][:-1]
    with pytest.raises(ValueError, match="6144 elements need 6144 codes and 24 float32 scales"):
        c.load_state_dict(broken)
    assert not c.state  # nothing loaded
    c.load_state_dict(saved)
    for p, q in zip(resumed.parameters(), model.parameters()):
        for key, value in b.state[p].items():
            assert torch.equal(c.state[q][key], value), key
    _int8_steps(uninterrupted, a, range(4, 8))
    _int8_steps(model, c, range(4, 8))
    for p, q in zip(uninterrupted.parameters(), model.parameters()):
        assert torch.equal(p, q)
        for key, value in a.state[p].items():
            assert torch.equal(c.state[q][key], value), key


def test_torch_float32_state_dict_quantizes_into_int8_and_int8_expands_into_float32():
    import reference_codecs as R

    model = _int8_model()
    reference = torch.optim.AdamW(model.parameters(), lr=1e-2)
    _int8_steps(model, reference, range(3))
    low_model = _clone(model)
    low = ft.AdamW(low_model.parameters(), lr=1e-2, state_dtype="int8")
    low.load_state_dict(reference.state_dict())
    for p, q in zip(model.parameters(), low_model.parameters()):
        theirs, ours = reference.state[p], low.state[q]
        assert float(ours["step"]) == 3.0
        codes, scales = R.blockfloat_quantize(theirs["exp_avg"].numpy(), R.E4M3, 256, "nearest")
        assert np.array_equal(ours["exp_avg"].numpy(), codes) and np.array_equal(ours["exp_avg_scale"].numpy(),
                                                                                 scales)
        codes, scales = R.encode_second_moment(theirs["exp_avg_sq"].numpy(), 256, "nearest")
        assert np.array_equal(ours["exp_avg_sq"].numpy(), codes)
        assert np.array_equal(ours["exp_avg_sq_scale"].numpy(), scales)
    # fastopt's 8-bit state dict into a float32 fastopt.torch optimizer: the codes are expanded.
    full_model = _clone(low_model)
    full = ft.AdamW(full_model.parameters(), lr=1e-2)
    full.load_state_dict(low.state_dict())
    for p, q in zip(low_model.parameters(), full_model.parameters()):
        expected = R.blockfloat_dequantize(low.state[p]["exp_avg"].numpy(), low.state[p]["exp_avg_scale"].numpy(),
                                           p.numel(), R.E4M3, 256)
        assert np.array_equal(full.state[q]["exp_avg"].reshape(-1).numpy(), expected)
    _int8_steps(low_model, low, range(3, 6))  # the quantized state steps on
    assert all(torch.isfinite(p).all() for p in low_model.parameters())


def test_int8_add_param_group_after_a_step_carries_the_8bit_state():
    model, extra = _int8_model(), torch.nn.Linear(64, 80)
    twin = _clone(model)
    opt = ft.AdamW(model.parameters(), lr=1e-2, state_dtype="int8")
    _int8_steps(model, opt, range(2))
    before = {p: {k: v.clone() for k, v in opt.state[p].items()} for p in model.parameters()}
    opt.add_param_group({"params": extra.parameters(), "lr": 1e-3})
    for p, entry in before.items():
        for key, value in entry.items():
            assert torch.equal(opt.state[p][key], value), key
    reference = ft.AdamW(twin.parameters(), lr=1e-2, state_dtype="int8")
    _int8_steps(twin, reference, range(2))
    _int8_steps(model, opt, range(2, 4))
    _int8_steps(twin, reference, range(2, 4))
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.equal(p, q)


def test_parameter_ema_and_swap():
    model, _ = make_pair(seed=3)
    opt = ft.SGD(model.parameters(), lr=0.05, ema_decay=0.9)
    ema = [p.detach().clone() for p in model.parameters()]
    for t in range(5):
        model.zero_grad()
        x, y = batch(t)
        torch.nn.functional.mse_loss(model(x, 0), y).backward()  # every param but `unused` steps
        opt.step()
        ema = [0.9 * e + 0.1 * p.detach() for e, p in zip(ema, model.parameters())]
    trained = [p.detach().clone() for p in model.parameters()]
    with opt.ema_weights():
        for p, e in zip(model.parameters(), ema):
            torch.testing.assert_close(p.detach(), e, rtol=1e-5, atol=1e-6)
    assert all(torch.equal(p.detach(), q) for p, q in zip(model.parameters(), trained))


def test_nonfinite_skip_leaves_everything_unchanged():
    model, _ = make_pair(seed=4)
    opt = ft.Adam(model.parameters(), lr=1e-2, nonfinite="skip")
    train_step(model, opt, 0)
    before = [p.detach().clone() for p in model.parameters()]
    state = opt.state_dict()
    model.zero_grad()
    x, y = batch(1)
    (torch.nn.functional.mse_loss(model(x, 1), y) * float("nan")).backward()
    with pytest.warns(RuntimeWarning, match="non-finite gradient, step skipped"):
        opt.step()
    assert opt.skipped_steps == 1
    assert all(torch.equal(p.detach(), q) for p, q in zip(model.parameters(), before))
    assert opt.state_dict()["state"][1]["step"] == state["state"][1]["step"]


def test_max_grad_value_matches_clip_grad_value():
    ours_model, theirs_model = make_pair(seed=5)
    ours = ft.RMSprop(ours_model.parameters(), lr=1e-3, max_grad_value=0.05)
    theirs = torch.optim.RMSprop(theirs_model.parameters(), lr=1e-3)
    for t in range(10):
        train_step(ours_model, ours, t)
        theirs_model.zero_grad()
        x, y = batch(t)
        torch.nn.functional.mse_loss(theirs_model(x, t), y).backward()
        torch.nn.utils.clip_grad_value_(theirs_model.parameters(), 0.05)
        theirs.step()
    assert_same_params(ours_model, theirs_model)


def test_accumulate_applies_the_mean_of_micro_batches():
    ours_model, theirs_model = make_pair(seed=6)
    ours = ft.Adam(ours_model.parameters(), lr=1e-2, accumulate=2)
    theirs = torch.optim.Adam(theirs_model.parameters(), lr=1e-2)
    for t in range(8):
        ours.zero_grad()  # no-op mid-cycle: the micro-batch gradients add up
        x, y = batch(t)
        torch.nn.functional.mse_loss(ours_model(x, 1), y).backward()
        ours.step()
        if t % 2 == 0:
            theirs.zero_grad()
        torch.nn.functional.mse_loss(theirs_model(x, 1), y).div(2).backward()
        if t % 2 == 1:
            theirs.step()
    assert_same_params(ours_model, theirs_model)


@pytest.mark.parametrize("name", ["Lion", "LAMB"])
def test_optimizers_torch_lacks_match_fastopt_own(name):
    """The torch classes drive the same engine as fastopt's array API."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    arrays = [p.detach().numpy().copy() for p in model.parameters()]
    grads = [np.zeros_like(a) for a in arrays]
    ours = getattr(ft, name)(model.parameters(), lr=1e-3, weight_decay=0.1)
    native = getattr(fastopt, name)(list(zip(arrays, grads)), lr=1e-3, weight_decay=0.1)
    for t in range(5):
        model.zero_grad()
        x, y = batch(t)
        torch.nn.functional.mse_loss(model(x), y).backward()
        for g, p in zip(grads, model.parameters()):
            g[...] = p.grad.numpy()
        ours.step()
        native.step()
    for p, a in zip(model.parameters(), arrays):
        np.testing.assert_allclose(p.detach().numpy(), a, rtol=1e-6, atol=1e-7)
    assert "exp_avg" in ours.state_dict()["state"][0]
