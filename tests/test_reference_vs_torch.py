"""Check tests/reference.py against torch.optim (float64, foreach=False), and
hand-checked cases for the optimizers torch lacks (lion, lamb)."""

import math

import numpy as np
import pytest
from reference import DEFAULTS, NAMES, init_state, reference_step, run_reference

N_STEPS = 25
SIZE = 37

# (name, torch class, hyper) -- hyper in torch keyword names.
TORCH_CASES = [
    ("sgd", "SGD", dict(lr=0.05)),
    ("sgd", "SGD", dict(lr=0.05, momentum=0.9)),
    ("sgd", "SGD", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("sgd", "SGD", dict(lr=0.05, momentum=0.8, nesterov=True)),
    ("sgd", "SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1, maximize=True)),
    ("adagrad", "Adagrad", dict()),
    ("adagrad", "Adagrad", dict(lr=0.1, lr_decay=0.05, weight_decay=0.02)),
    ("adagrad", "Adagrad", dict(lr=0.1, initial_accumulator_value=0.5, eps=1e-6, maximize=True)),
    ("rmsprop", "RMSprop", dict()),
    ("rmsprop", "RMSprop", dict(lr=0.01, centered=True)),
    ("rmsprop", "RMSprop", dict(lr=0.01, momentum=0.9, weight_decay=0.01)),
    ("rmsprop", "RMSprop", dict(lr=0.01, alpha=0.9, centered=True, momentum=0.5, maximize=True)),
    ("adadelta", "Adadelta", dict()),
    ("adadelta", "Adadelta", dict(lr=0.5, rho=0.8, eps=1e-4, weight_decay=0.05)),
    ("adadelta", "Adadelta", dict(maximize=True)),
    ("adam", "Adam", dict()),
    ("adam", "Adam", dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1)),
    ("adam", "Adam", dict(lr=0.01, amsgrad=True, eps=1e-6)),
    ("adam", "Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.05, maximize=True)),
    ("adam", "Adam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
    ("adamw", "AdamW", dict()),
    ("adamw", "AdamW", dict(lr=0.01, weight_decay=0.1)),
    ("adamw", "AdamW", dict(lr=0.01, weight_decay=0.1, amsgrad=True, maximize=True)),
    ("adamax", "Adamax", dict()),
    ("adamax", "Adamax", dict(lr=0.01, betas=(0.8, 0.95), weight_decay=0.1)),
    ("adamax", "Adamax", dict(eps=1e-3, maximize=True)),
    ("nadam", "NAdam", dict()),
    ("nadam", "NAdam", dict(lr=0.01, momentum_decay=0.01, weight_decay=0.1)),
    ("nadam", "NAdam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True, maximize=True)),
    ("radam", "RAdam", dict()),  # rho_t > 5 only from step 6: both branches covered
    ("radam", "RAdam", dict(lr=0.01, weight_decay=0.1)),
    ("radam", "RAdam", dict(lr=0.01, betas=(0.8, 0.9), weight_decay=0.1,
                            decoupled_weight_decay=True, maximize=True)),
]


def _data(seed, size=SIZE, steps=N_STEPS):
    rng = np.random.default_rng(seed)
    p0 = rng.standard_normal(size)
    p0[np.abs(p0) < 0.05] = 0.5  # nonzero params
    grads = [rng.standard_normal(size) * rng.uniform(0.1, 3.0) for _ in range(steps)]
    return p0, grads


@pytest.mark.parametrize(
    "name,cls,hyper", TORCH_CASES,
    ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(TORCH_CASES)])
def test_matches_torch(name, cls, hyper):
    torch = pytest.importorskip("torch")
    # torch keeps scalar state (step, NAdam's mu_product) in the default dtype;
    # float32 there costs ~1e-10 relative, so run torch with float64 scalars.
    old_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        _compare_with_torch(torch, name, cls, hyper)
    finally:
        torch.set_default_dtype(old_dtype)


def _compare_with_torch(torch, name, cls, hyper):
    p0, grads = _data(seed=len(name) * 1000 + len(hyper) * 17 + TORCH_CASES.index((name, cls, hyper)))
    ref = run_reference(name, p0, grads, hyper)

    tp = torch.nn.Parameter(torch.tensor(p0, dtype=torch.float64))
    th = dict(hyper)
    if name == "sgd" and "lr" not in th:
        th["lr"] = DEFAULTS["sgd"]["lr"]
    opt = getattr(torch.optim, cls)([tp], foreach=False, **th)
    for k, g in enumerate(grads):
        tp.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        np.testing.assert_allclose(ref[k], tp.detach().numpy(), rtol=1e-10, atol=1e-12,
                                   err_msg=f"{name} {hyper} step {k + 1}")
    assert not np.array_equal(ref[-1], p0)


def test_every_torch_optimizer_is_covered():
    covered = {n for n, _, _ in TORCH_CASES}
    assert covered == set(NAMES) - {"lion", "lamb"}


def test_step_counter_and_inputs_untouched():
    p0, grads = _data(seed=1, steps=3)
    for name in NAMES:
        p, g = p0.copy(), grads[0].copy()
        st = init_state(name, p, {})
        assert st["step"] == 0
        new = reference_step(name, p, g, st, {})
        assert st["step"] == 1 and new.dtype == np.float64
        np.testing.assert_array_equal(p, p0)
        np.testing.assert_array_equal(g, grads[0])
        assert len(run_reference(name, p0, grads, {})) == 3


def test_unknown_hyper_rejected():
    with pytest.raises(ValueError):
        init_state("adam", np.zeros(3), {"betta": (0.9, 0.99)})
    with pytest.raises(ValueError):
        init_state("nosuch", np.zeros(3), {})


# ---------------------------------------------------------------- lion


def test_lion_one_step_by_hand():
    p = np.array([1.0, -2.0, 0.5])
    g = np.array([0.3, -0.1, 0.0])
    hyper = dict(lr=0.1, betas=(0.9, 0.99), weight_decay=0.5)
    st = init_state("lion", p, hyper)
    st["exp_avg"][:] = [0.2, 0.4, -1.0]
    new = reference_step("lion", p, g, st, hyper)
    # c = 0.9*m + 0.1*g = [0.21, 0.35, -0.9] -> sign [1, 1, -1]
    # p*(1 - 0.1*0.5) = [0.95, -1.9, 0.475]; minus 0.1*sign
    np.testing.assert_allclose(new, [0.85, -2.0, 0.575], rtol=0, atol=1e-15)
    # m = 0.99*m + 0.01*g = [0.201, 0.395, -0.99]
    np.testing.assert_allclose(st["exp_avg"], [0.201, 0.395, -0.99], rtol=0, atol=1e-15)
    assert st["step"] == 1


def test_lion_update_magnitude_is_lr():
    p0, grads = _data(seed=7)
    lr = 3e-3
    out = run_reference("lion", p0, grads, dict(lr=lr))
    prev = p0
    for p in out:
        np.testing.assert_allclose(np.abs(p - prev), lr, rtol=1e-9)
        prev = p


def test_lion_maximize_flips_direction():
    p0, grads = _data(seed=8, steps=1)
    a = run_reference("lion", p0, grads, dict(lr=0.01))[0]
    b = run_reference("lion", p0, grads, dict(lr=0.01, maximize=True))[0]
    np.testing.assert_allclose(a - p0, -(b - p0), rtol=1e-12)
    np.testing.assert_allclose(a - p0, -0.01 * np.sign(grads[0]), rtol=1e-12)


# ---------------------------------------------------------------- lamb


def test_lamb_one_step_by_hand():
    p = np.array([3.0, 0.0, 4.0])            # ||p|| = 5
    g = np.array([0.5, -2.0, 0.0])
    eps, lr, wd = 1e-6, 0.1, 0.0
    hyper = dict(lr=lr, eps=eps, weight_decay=wd)
    st = init_state("lamb", p, hyper)
    new = reference_step("lamb", p, g, st, hyper)
    # step 1 with bias correction: m_hat = g, v_hat = g^2, r = g / (|g| + eps)
    r = np.array([0.5 / (0.5 + eps), -2.0 / (2.0 + eps), 0.0])
    ratio = 5.0 / math.sqrt(r[0] ** 2 + r[1] ** 2)   # ~ 5 / sqrt(2)
    np.testing.assert_allclose(new, p - lr * ratio * r, rtol=1e-14)
    np.testing.assert_allclose(new, [3.0 - 0.5 / math.sqrt(2) * 1.0, 0.5 / math.sqrt(2), 4.0],
                               rtol=1e-5)


def test_lamb_weight_decay_and_no_bias_correction_by_hand():
    p = np.array([1.0, 2.0, 2.0])            # ||p|| = 3
    g = np.array([1.0, 1.0, -1.0])
    hyper = dict(lr=0.01, eps=0.0, weight_decay=0.5, bias_correction=False, betas=(0.5, 0.75))
    st = init_state("lamb", p, hyper)
    new = reference_step("lamb", p, g, st, hyper)
    # m = 0.5 g, v = 0.25 g^2 -> m / sqrt(v) = sign(g) = [1, 1, -1]; r = [1.5, 2, 0]
    r = np.array([1.5, 2.0, 0.0])            # ||r|| = 2.5, ratio = 1.2
    np.testing.assert_allclose(new, p - 0.01 * 1.2 * r, rtol=1e-14)


def test_lamb_zero_norm_ratio_is_one():
    p = np.zeros(3)
    g = np.array([1.0, -1.0, 2.0])
    hyper = dict(lr=0.1, eps=0.0)
    new = reference_step("lamb", p, g, init_state("lamb", p, hyper), hyper)
    np.testing.assert_allclose(new, -0.1 * np.sign(g), rtol=1e-14)
    # zero grad and no decay -> r = 0 -> ratio 1, nothing moves
    hyper = dict(lr=0.1)
    p = np.array([1.0, 2.0, 3.0])
    new = reference_step("lamb", p, np.zeros(3), init_state("lamb", p, hyper), hyper)
    np.testing.assert_array_equal(new, p)


def test_lamb_segments_equal_separate_tensors():
    p0, grads = _data(seed=11, size=10, steps=5)
    hyper = dict(lr=0.01, weight_decay=0.1)
    segs = [(0, 4), (4, 10)]
    joint = run_reference("lamb", p0, grads, dict(hyper, segments=segs))
    a = run_reference("lamb", p0[:4], [g[:4] for g in grads], hyper)
    b = run_reference("lamb", p0[4:], [g[4:] for g in grads], hyper)
    for k in range(5):
        np.testing.assert_allclose(joint[k], np.concatenate([a[k], b[k]]), rtol=1e-14)
    whole = run_reference("lamb", p0, grads, hyper)
    assert not np.allclose(whole[-1], joint[-1])
    # default == single explicit segment
    one = run_reference("lamb", p0, grads, dict(hyper, segments=[(0, 10)]))
    np.testing.assert_array_equal(one[-1], whole[-1])
