"""Low-precision states through fastopt.functional: a loop of functional
steps and an optimizer class over one buffer, with the same state_dtype and
rounding seed, give bit-identical params and states; init_state stores what
the optimizer stores; inconsistent states raise, naming the entry, and change
nothing."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import random_problem

import fastopt
from fastopt import functional as F
from fastopt.backends.blockfloat import BLOCK, MIN_ELEMENTS

N = MIN_ELEMENTS + 300  # 8-bit states for "int8", with a partial last block
BLOCKS = -(-N // BLOCK)
STEPS = 5
SEED = 1234

CASES = [
    ("adam", dict(lr=1e-2)),
    ("adamw", dict(lr=1e-2, weight_decay=0.1)),
    ("sgd", dict(lr=1e-2, momentum=0.9)),
    ("adagrad", dict(lr=1e-2, initial_accumulator_value=0.1)),
    ("adamax", dict(lr=1e-2)),
    ("adam", dict(lr=1e-2, amsgrad=True)),
]
MODES = [("bfloat16", False), ("bfloat16", True), ("int8", False)]


def case_id(case):
    name, hyper = case
    return name + ("-amsgrad" if hyper.get("amsgrad") else "")


def arrays_of(state: dict) -> dict:
    return {k: np.asarray(v).reshape(-1) for k, v in state.items() if isinstance(v, np.ndarray)}


def assert_same_state(functional_state: dict, optimizer_state: dict) -> None:
    mine, theirs = arrays_of(functional_state), arrays_of(optimizer_state)
    assert set(mine) == set(theirs)
    for key in mine:
        assert mine[key].dtype == theirs[key].dtype, key
        np.testing.assert_array_equal(mine[key], theirs[key], err_msg=key)


def run_both(name, hyper, state_dtype, stochastic, n=N, seed=SEED, params=None, segments=None, dtype=np.float32):
    """``(functional params, functional state, optimizer)`` after STEPS steps
    of the same gradients."""
    p0, grads = random_problem(n, STEPS, seed=3)
    a = p0.astype(dtype)
    if params is None:
        b, gb = a.copy(), np.zeros_like(a)
        params = [(b, gb)]
    else:
        b, gb = params.data, params.grad
        b[:] = a
    opt = fastopt.OPTIMIZERS[name](params, state_dtype=state_dtype, stochastic_rounding=stochastic,
                                   rounding_seed=seed, **hyper)
    state = F.init_state(name, a, state_dtype=state_dtype, **hyper)
    assert_same_state(state, opt.state[0])  # the fresh state: fills encoded alike
    extra = {} if segments is None else {"segments": segments}
    for t, g in enumerate(grads, start=1):
        g = g.astype(dtype)
        F.apply(name, a, g, state, step=t, stochastic_rounding=stochastic, rounding_seed=seed, **extra, **hyper)
        gb[:] = g
        opt.step()
    np.testing.assert_array_equal(a, b)
    assert_same_state(state, opt.state[0])
    return a, state, opt


def mode_id(mode):
    state_dtype, stochastic = mode
    if state_dtype == "int8":  # 8-bit states always round stochastically
        return state_dtype
    return f"{state_dtype}-{'stochastic' if stochastic else 'nearest'}"


@pytest.mark.parametrize("mode", MODES, ids=mode_id)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_functional_loop_is_the_optimizer_bit_for_bit(case, mode):
    name, hyper = case
    state_dtype, stochastic = mode
    _, state, _ = run_both(name, hyper, state_dtype, stochastic)
    expected = np.uint8 if state_dtype == "int8" else np.uint16
    names = [k for k in state if not k.endswith("_scale") and isinstance(state[k], np.ndarray)]
    assert names and all(state[k].dtype == expected for k in names)
    if state_dtype == "int8":
        assert all(state[k].shape == (BLOCKS * BLOCK,) for k in names)
        assert all(state[k + "_scale"].dtype == np.float32 for k in names)
    else:
        assert all(state[k].shape == (N,) for k in names)


@pytest.mark.parametrize("stochastic", [False, True])
def test_functional_lamb_with_bfloat16_states_and_segments_is_the_optimizer(stochastic):
    fp = fastopt.FlatParams({"w": (40, 50), "b": (50,), "v": (7,)})
    run_both("lamb", dict(lr=1e-2, weight_decay=0.01), "bfloat16", stochastic, n=fp.data.size, params=fp,
             segments=list(fp.ranges))


def test_float64_states_of_float32_params_and_small_int8_buffers_are_the_optimizer():
    _, state, _ = run_both("adam", dict(lr=1e-2), "float64", False, n=300)
    assert state["exp_avg"].dtype == np.float64
    # under MIN_ELEMENTS an "int8" optimizer keeps float32 states, float64 params too
    _, state, _ = run_both("adam", dict(lr=1e-2), "int8", True, n=300, dtype=np.float64)
    assert state["exp_avg"].dtype == np.float32 and "exp_avg_scale" not in state


def test_the_seed_decides_the_stochastic_rounding():
    a, s1, _ = run_both("adam", dict(lr=1e-2), "bfloat16", True, n=1000, seed=1)
    b, s2, _ = run_both("adam", dict(lr=1e-2), "bfloat16", True, n=1000, seed=2)
    assert not np.array_equal(s1["exp_avg"], s2["exp_avg"])


def test_small_buffers_given_8_bit_codes_step_blockwise():
    """Codes for a buffer under MIN_ELEMENTS (init_state makes float32 ones,
    but codes are taken as given): each block is independent, so the first
    block matches an optimizer's over a larger buffer that starts the same."""
    n = 300
    p0, grads = random_problem(MIN_ELEMENTS, STEPS, seed=4)
    a = p0[:n].astype(np.float32)
    state = {key: np.zeros(2 * BLOCK, np.uint8) for key in ("exp_avg", "exp_avg_sq")}
    state.update({key + "_scale": np.zeros(2, np.float32) for key in ("exp_avg", "exp_avg_sq")})
    b, gb = p0.astype(np.float32), np.zeros(MIN_ELEMENTS, np.float32)
    opt = fastopt.Adam([(b, gb)], lr=1e-2, state_dtype="int8", rounding_seed=SEED)
    for t, g in enumerate(grads, start=1):
        F.adam_(a, g[:n].astype(np.float32), state, step=t, lr=1e-2, rounding_seed=SEED)
        gb[:] = g
        opt.step()
    np.testing.assert_array_equal(a[:BLOCK], b[:BLOCK])
    for key in ("exp_avg", "exp_avg_sq"):
        np.testing.assert_array_equal(state[key][:BLOCK], opt.state[0][key][:BLOCK])
        assert state[key + "_scale"][0] == opt.state[0][key + "_scale"][0]
        assert not state[key][n:].any()  # padding stays zero


def test_init_state_int8_for_lamb_raises_the_optimizers_error():
    p = np.zeros(N, np.float32)
    with pytest.raises(ValueError, match="not available for LAMB") as functional_error:
        F.init_state("lamb", p, state_dtype="int8")
    with pytest.raises(ValueError) as optimizer_error:
        fastopt.LAMB([(p, p.copy())], state_dtype="int8")
    assert str(functional_error.value) == str(optimizer_error.value)
    codes = F.init_state("adam", p, state_dtype="int8")
    before = {k: v.copy() for k, v in codes.items()}
    with pytest.raises(ValueError, match="not available for LAMB"):
        F.lamb_(p, np.ones_like(p), codes, step=1)
    assert_same_state(codes, before)
    with pytest.raises(ValueError, match="state_dtype must be one of"):
        F.init_state("adam", p, state_dtype="float16")


def bad_states():
    """(description, state edit, error type, match) of inconsistent states."""
    def drop_scale(s):
        del s["exp_avg_scale"]

    def short_scale(s):
        s["exp_avg_scale"] = s["exp_avg_scale"][:-1].copy()

    def float64_scale(s):
        s["exp_avg_scale"] = s["exp_avg_scale"].astype(np.float64)

    def unpadded_codes(s):
        s["exp_avg"] = s["exp_avg"][:N].copy()

    def stray_scale(s):
        s["exp_avg"] = np.zeros(N, np.float32)
        s["exp_avg_sq"] = np.zeros(N, np.float32)
        del s["exp_avg_scale"]  # the other state's scales stay

    def mixed(s):
        s["exp_avg"] = np.zeros(N, np.uint16)
        s["exp_avg_sq"] = np.zeros(N, np.float32)
        for key in ("exp_avg_scale", "exp_avg_sq_scale"):
            del s[key]

    def codes_and_bfloat16(s):
        s["exp_avg_sq"] = np.zeros(N, np.uint16)
        del s["exp_avg_sq_scale"]

    def short_bfloat16(s):
        s["exp_avg"] = np.zeros(N - 1, np.uint16)
        s["exp_avg_sq"] = np.zeros(N - 1, np.uint16)
        for key in ("exp_avg_scale", "exp_avg_sq_scale"):
            del s[key]

    def integer_state(s):
        s["exp_avg"] = np.zeros(N, np.int32)

    def shared_scales(s):
        s["exp_avg_sq_scale"] = s["exp_avg_scale"]

    def read_only_codes(s):
        s["exp_avg"].flags.writeable = False

    return [
        ("codes without scales", drop_scale, ValueError, r"state\['exp_avg_scale'\] is missing"),
        ("wrong scale length", short_scale, ValueError, rf"state\['exp_avg_scale'\] must have {BLOCKS} elements"),
        ("float64 scales", float64_scale, ValueError,
         rf"state\['exp_avg_scale'\] must have {BLOCKS} elements of float32"),
        ("unpadded codes", unpadded_codes, ValueError, rf"state\['exp_avg'\] must hold {BLOCKS * BLOCK} 8-bit codes"),
        ("scales of float states", stray_scale, ValueError, r"state\['exp_avg_sq_scale'\] holds block scales"),
        ("bfloat16 and float32", mixed, ValueError,
         r"state\['exp_avg_sq'\] must have the storage of state\[.exp_avg.\] \(bfloat16 bits .*, got float32"),
        ("codes and bfloat16", codes_and_bfloat16, ValueError,
         r"state\['exp_avg_sq'\] must have the storage .*, got bfloat16 bits"),
        ("short bfloat16", short_bfloat16, ValueError, rf"state\['exp_avg'\] must have {N} elements"),
        ("int32 state", integer_state, ValueError, r"state\['exp_avg'\] has dtype int32"),
        ("shared scales", shared_scales, ValueError, "share memory"),
        ("read-only codes", read_only_codes, ValueError, r"state\['exp_avg'\] is read-only"),
    ]


@pytest.mark.parametrize("bad", bad_states(), ids=lambda b: b[0])
def test_inconsistent_states_raise_naming_the_entry_and_change_nothing(bad):
    _, edit, error, match = bad
    p0, (g,) = random_problem(N, 1, seed=6)
    p, g = p0.astype(np.float32), g.astype(np.float32)
    state = F.init_state("adam", p, state_dtype="int8")
    F.adam_(p, g, state, step=1)  # non-trivial codes and scales
    edit(state)
    p_before = p.copy()
    before = {k: np.array(v, copy=True) for k, v in state.items()}
    with pytest.raises(error, match=match):
        F.adam_(p, g, state, step=2)
    np.testing.assert_array_equal(p, p_before)
    for key, value in before.items():
        np.testing.assert_array_equal(state[key], value, err_msg=key)


def test_bad_rounding_options_and_bfloat16_params_raise():
    p, g = np.ones(8, np.float32), np.ones(8, np.float32)
    state = F.init_state("adam", p, state_dtype="bfloat16")
    with pytest.raises(TypeError, match="stochastic_rounding must be a bool"):
        F.adam_(p, g, state, step=1, stochastic_rounding=1)
    with pytest.raises(ValueError, match="rounding_seed must be an int >= 0"):
        F.adam_(p, g, state, step=1, rounding_seed=-1)
    assert (p == 1).all() and not state["exp_avg"].any()
    ml_dtypes = pytest.importorskip("ml_dtypes")
    pb = p.astype(ml_dtypes.bfloat16)
    with pytest.raises(TypeError, match="float32 and float64 params"):
        F.init_state("adam", pb)
    with pytest.raises(TypeError, match="float32 and float64 params"):
        F.adam_(pb, pb.copy(), state, step=1)
