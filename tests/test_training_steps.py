"""Clipping, the non-finite guard, loss scaling, accumulation, EMA,
torch state interop and checkpoints."""

from __future__ import annotations

import warnings

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastopt
from fastopt.backends import cpu as _cpu

torch_or_skip = pytest.importorskip


def problem(n=300, steps=10, seed=0, dtype=np.float64, scale=3.0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(n).astype(dtype), [(scale * rng.standard_normal(n)).astype(dtype)
                                                  for _ in range(steps)]


def run(opt_factory, p0, grads):
    p = p0.copy()
    g = np.empty_like(p)
    opt = opt_factory([(p, g)])
    for grad in grads:
        g[:] = grad
        opt.step()
    return p, opt


# -- clipping -----------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("max_norm", [0.5, 1e9])
def test_max_grad_norm_matches_torch_clip_then_adam(dtype, max_norm):
    torch = torch_or_skip("torch")
    p0, grads = problem(dtype=dtype)
    ours, opt = run(lambda pairs: fastopt.Adam(pairs, lr=0.01, max_grad_norm=max_norm), p0, grads)
    tp = torch.tensor(p0, requires_grad=True)
    topt = torch.optim.Adam([tp], lr=0.01, foreach=False)
    for grad in grads:
        tp.grad = torch.tensor(grad)
        norm = torch.nn.utils.clip_grad_norm_([tp], max_norm)
        topt.step()
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(ours, tp.detach().numpy(), rtol=rtol, atol=rtol)
    assert opt.last_grad_norm == pytest.approx(float(norm), rel=1e-6)


def test_grad_norm_is_bit_identical_whatever_the_thread_count():
    g = np.random.default_rng(1).standard_normal(1_000_003).astype(np.float32)
    before = numba.get_num_threads()
    results = []
    try:
        for threads in sorted({1, before}):
            numba.set_num_threads(threads)
            results.append(_cpu.CPU.sum_of_squares(g))
    finally:
        numba.set_num_threads(before)
    assert len(set(results)) == 1
    # float32 blocks (as torch's norm accumulates), combined in float64
    assert results[0] == pytest.approx(float((g.astype(np.float64) ** 2).sum()), rel=1e-5)


def test_float32_squares_that_overflow_are_summed_in_float64():
    g = np.full(40_000, 1e20, np.float32)
    g[::3] = -3e25
    expected = float((g.astype(np.float64) ** 2).sum())
    assert np.isfinite(expected)
    assert _cpu.CPU.sum_of_squares(g) == pytest.approx(expected, rel=1e-6)


def test_max_grad_value_matches_torch_clip_value_then_sgd():
    torch = torch_or_skip("torch")
    p0, grads = problem()
    ours, _ = run(lambda pairs: fastopt.SGD(pairs, lr=0.1, momentum=0.9, max_grad_value=0.7), p0, grads)
    tp = torch.tensor(p0, requires_grad=True)
    topt = torch.optim.SGD([tp], lr=0.1, momentum=0.9, foreach=False)
    for grad in grads:
        tp.grad = torch.tensor(grad)
        torch.nn.utils.clip_grad_value_([tp], 0.7)
        topt.step()
    np.testing.assert_allclose(ours, tp.detach().numpy(), rtol=1e-12, atol=1e-12)


def test_standalone_clip_grad_norm_matches_torch():
    torch = torch_or_skip("torch")
    grads = [np.random.default_rng(k).standard_normal(s) for k, s in enumerate((10, 33, 7))]
    tgrads = [torch.tensor(g.copy(), requires_grad=False) for g in grads]
    params = [torch.zeros_like(t, requires_grad=True) for t in tgrads]
    for p, t in zip(params, tgrads):
        p.grad = t
    tnorm = torch.nn.utils.clip_grad_norm_(params, 1.5)
    norm = fastopt.clip_grad_norm_(grads, 1.5)
    assert norm == pytest.approx(float(tnorm), rel=1e-12)
    for g, p in zip(grads, params):
        np.testing.assert_allclose(g, p.grad.numpy(), rtol=1e-12)


# -- non-finite guard ------------------------------------------------------------

def _state_copy(opt):
    return {i: {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in s.items()} for i, s in opt.state.items()}


def _assert_same_state(a, b):
    assert a.keys() == b.keys()
    for i in a:
        assert a[i].keys() == b[i].keys()
        for k in a[i]:
            np.testing.assert_array_equal(a[i][k], b[i][k])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_skip_leaves_everything_bit_identical(bad):
    p0, grads = problem(dtype=np.float32)
    p, g = p0.copy(), grads[0].copy()
    opt = fastopt.Adam([(p, g)], lr=0.01, nonfinite="skip")
    opt.step()
    before_p, before_state = p.copy(), _state_copy(opt)
    g[:] = grads[1]
    g[17] = bad
    with pytest.warns(RuntimeWarning, match="non-finite gradient"):
        opt.step()
    np.testing.assert_array_equal(p, before_p)
    _assert_same_state(_state_copy(opt), before_state)
    assert opt.skipped_steps == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once only
        opt.step()
    assert opt.skipped_steps == 2


def test_nonfinite_raise_and_ignore():
    p0, grads = problem(dtype=np.float32)
    p, g = p0.copy(), grads[0].copy()
    g[3] = np.nan
    with pytest.raises(fastopt.NonFiniteGradientError):
        fastopt.SGD([(p, g)], lr=0.1, nonfinite="raise").step()
    np.testing.assert_array_equal(p, p0)
    fastopt.SGD([(p, g)], lr=0.1, nonfinite="ignore").step()
    assert np.isnan(p[3]) and np.isfinite(np.delete(p, 3)).all()


def test_huge_but_finite_float64_gradients_are_not_called_nonfinite():
    p = np.zeros(4)
    g = np.array([1e200, -1e200, 1.0, 2.0])
    opt = fastopt.SGD([(p, g)], lr=1e-200, nonfinite="raise", max_grad_norm=1.0)
    opt.step()  # the squared norm overflows to inf, yet every element is finite
    assert np.isfinite(p).all()


GUARD_NAMES = sorted(fastopt.OPTIMIZERS)


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(GUARD_NAMES), n=st.integers(1, 300), seed=st.integers(0, 2**31),
       bad_fraction=st.sampled_from([0.0, 0.01, 0.5]), huge=st.booleans(),
       lr=st.floats(1e-6, 1.0), clip=st.sampled_from([None, 0.1, 10.0]))
def test_fuzz_guard_guarantees(name, n, seed, bad_fraction, huge, lr, clip):
    """Random NaN/inf/huge gradients and hyperparameters: a step with any
    non-finite gradient changes nothing; any other step is applied."""
    rng = np.random.default_rng(seed)
    p = rng.standard_normal(n).astype(np.float32)
    g = np.empty_like(p)
    opt = fastopt.OPTIMIZERS[name]([(p, g)], lr=lr, nonfinite="skip", max_grad_norm=clip)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for _ in range(4):
            g[:] = rng.standard_normal(n) * (1e30 if huge else 1.0)
            mask = rng.random(n) < bad_fraction
            g[mask] = rng.choice([np.nan, np.inf, -np.inf], size=int(mask.sum()))
            before_p, before_state, skipped = p.copy(), _state_copy(opt), opt.skipped_steps
            opt.step()
            if mask.any():
                assert opt.skipped_steps == skipped + 1
                np.testing.assert_array_equal(p, before_p)
                _assert_same_state(_state_copy(opt), before_state)
            else:
                assert opt.skipped_steps == skipped
                assert all(s["step"] == before_state[i]["step"] + 1 for i, s in opt.state.items())


# -- loss scaling -------------------------------------------------------------

def test_loss_scaler_unscales_inside_the_update_and_backs_off():
    p0, grads = problem(steps=6)
    plain, _ = run(lambda pairs: fastopt.Adam(pairs, lr=0.01), p0, grads)
    p, g = p0.copy(), np.empty_like(p0)
    opt = fastopt.Adam([(p, g)], lr=0.01)
    scaler = fastopt.LossScaler(init_scale=1024.0, growth_interval=3)
    scales = []
    for k, grad in enumerate(grads):
        g[:] = grad * scaler.get_scale()
        if k == 2:  # an overflowing micro-batch: skipped, the scale halves
            g[0] = np.inf
            assert scaler.step(opt) is False
            scaler.update()
            scales.append(scaler.get_scale())
            g[:] = grad * scaler.get_scale()
        assert scaler.step(opt) is True
        scaler.update()
        scales.append(scaler.get_scale())
    np.testing.assert_allclose(p, plain, rtol=1e-12, atol=1e-14)
    assert scales == [1024.0, 1024.0, 512.0, 512.0, 512.0, 1024.0, 1024.0]
    assert scaler.scale(2.0) == 2048.0


# -- accumulation -------------------------------------------------------------

def test_accumulate_applies_the_mean_every_nth_call():
    p0, grads = problem(steps=6)
    means = [np.mean(grads[k:k + 3], axis=0) for k in (0, 3)]
    expected, _ = run(lambda pairs: fastopt.AdamW(pairs, lr=0.01), p0, means)
    p, g = p0.copy(), np.zeros_like(p0)
    opt = fastopt.AdamW([(p, g)], lr=0.01, accumulate=3)
    for grad in grads:
        g += grad  # backward accumulates into the grad buffer, as torch's does
        opt.step()
        opt.zero_grad()  # no-op mid-cycle
    np.testing.assert_allclose(p, expected, rtol=1e-12, atol=1e-14)
    assert opt.state[0]["step"] == 2


# -- EMA ----------------------------------------------------------------------

@pytest.mark.parametrize("n", [5, _cpu.SERIAL_BELOW + 11])
def test_ema_is_updated_in_the_same_pass_and_swaps(n):
    p0, grads = problem(n=n, steps=5, dtype=np.float32)
    p, g = p0.copy(), np.empty_like(p0)
    opt = fastopt.SGD([(p, g)], lr=0.1, momentum=0.9, ema_decay=0.8)
    ema = p0.astype(np.float64)
    for grad in grads:
        g[:] = grad
        opt.step()
        ema = 0.8 * ema + 0.2 * p
    np.testing.assert_allclose(opt.state[0]["ema"], ema, rtol=1e-5, atol=1e-5)
    current = p.copy()
    with opt.ema_weights():
        np.testing.assert_allclose(p, ema, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(p, current)
    plain, _ = run(lambda pairs: fastopt.SGD(pairs, lr=0.1, momentum=0.9), p0, grads)
    np.testing.assert_array_equal(p, plain)  # the EMA never disturbs the trajectory


# -- torch interop ----------------------------------------------------------------

@pytest.mark.parametrize("name, hyper", [
    ("adam", dict(lr=0.01)), ("adamw", dict(lr=0.01, amsgrad=True)), ("sgd", dict(lr=0.05, momentum=0.9)),
    ("rmsprop", dict(lr=0.01, centered=True, momentum=0.5)), ("adagrad", dict(lr=0.1)),
    ("adadelta", dict()), ("nadam", dict(lr=0.01)), ("radam", dict(lr=0.01)), ("adamax", dict(lr=0.01)),
])
def test_switch_from_torch_and_back_keeps_the_trajectory(name, hyper):
    torch = torch_or_skip("torch")
    from test_vs_torch import torch_class

    p0, grads = problem(steps=20)
    tp = torch.tensor(p0, requires_grad=True)
    topt = torch_class(name)([tp], foreach=False, **hyper)
    reference = []
    for grad in grads:
        tp.grad = torch.tensor(grad)
        topt.step()
        reference.append(tp.detach().numpy().copy())

    tp = torch.tensor(p0, requires_grad=True)
    topt = torch_class(name)([tp], foreach=False, **hyper)
    for grad in grads[:10]:
        tp.grad = torch.tensor(grad)
        topt.step()
    p, g = tp.detach().numpy().copy(), np.empty_like(p0)
    opt = fastopt.OPTIMIZERS[name]([(p, g)], **hyper)
    fastopt.interop.load_torch_state_dict(opt, topt.state_dict())
    for grad in grads[10:15]:
        g[:] = grad
        opt.step()
    np.testing.assert_allclose(p, reference[14], rtol=1e-10, atol=1e-12)

    back = torch.tensor(p, requires_grad=True)
    topt2 = torch_class(name)([back], foreach=False, **hyper)
    topt2.load_state_dict(fastopt.interop.to_torch_state_dict(opt))
    for grad in grads[15:]:
        back.grad = torch.tensor(grad)
        topt2.step()
    np.testing.assert_allclose(back.detach().numpy(), reference[19], rtol=1e-10, atol=1e-12)


def test_loading_decoupled_torch_adam_into_adam_is_refused():
    torch = torch_or_skip("torch")
    tp = torch.zeros(3, requires_grad=True)
    sd = torch.optim.Adam([tp], decoupled_weight_decay=True).state_dict()
    opt = fastopt.Adam([(np.zeros(3), np.zeros(3))])
    with pytest.raises(ValueError, match="AdamW"):
        fastopt.interop.load_torch_state_dict(opt, sd)


# -- checkpoints --------------------------------------------------------------------

def test_checkpoint_round_trip(tmp_path):
    fp = fastopt.FlatParams({"w": (3, 4), "b": (4,)})
    fp.data[:] = np.arange(16)
    fp.grad[:] = 0.5
    opt = fastopt.NAdam(fp, lr=0.01)
    opt.step()
    path = fastopt.checkpoint.save(tmp_path / "ckpt", opt, params=fp, extra={"epoch": 3})
    loaded = fastopt.checkpoint.load(path)
    assert loaded["extra"] == {"epoch": 3}
    np.testing.assert_array_equal(loaded["params"]["w"], fp["w"])
    fp2 = fastopt.FlatParams.from_arrays(loaded["params"])
    opt2 = fastopt.NAdam(fp2, lr=0.01)
    opt2.load_state_dict(loaded["optimizer"])
    fp2.grad[:] = fp.grad
    opt.step()
    opt2.step()
    np.testing.assert_array_equal(fp.data, fp2.data)


def test_checkpoint_crash_mid_save_keeps_the_previous_file(tmp_path, monkeypatch):
    p, g = np.ones(5), np.ones(5)
    opt = fastopt.Adam([(p, g)])
    path = fastopt.checkpoint.save(tmp_path / "ckpt.npz", opt)
    good = path.read_bytes()
    opt.step()

    def crash(*args, **kwargs):
        args[0].write(b"partial garbage")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        fastopt.checkpoint.save(path, opt)
    assert path.read_bytes() == good
    assert [f.name for f in tmp_path.iterdir()] == ["ckpt.npz"]


def test_checkpoint_refuses_a_state_for_another_optimizer(tmp_path):
    p, g = np.ones(5), np.ones(5)
    path = fastopt.checkpoint.save(tmp_path / "c.npz", fastopt.Adam([(p, g)]))
    with pytest.raises(ValueError, match="for optimizer 'adam'"):
        fastopt.SGD([(p, g)], lr=0.1).load_state_dict(fastopt.checkpoint.load(path)["optimizer"])
