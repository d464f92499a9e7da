"""ParamChain edge cases of the engine's flat state: flat buffers that extend
past the last tensor (trailing padding), and 8-bit states through state dicts
(one entry per tensor: codes and ``<name>_scale``)."""

from __future__ import annotations

import numpy as np
import pytest
import reference_codecs as R

import fastopt
from fastopt.params import ParamChain

RANGES = [(0, 1000), (1024, 1300), (1536, 6000)]
"""Three tensors, each starting on a 256-element block, the last ending mid-block."""


def _chain(dtype, end: int, seed: int = 0, ranges=RANGES):
    """A chain over buffers of ``end`` elements (past the last tensor's stop:
    trailing padding), params random in the ranges and zero elsewhere."""
    rng = np.random.default_rng(seed)
    data, grad = np.zeros(end, dtype), np.zeros(end, dtype)
    for a, b in ranges:
        data[a:b] = rng.standard_normal(b - a).astype(dtype)
    return ParamChain(data, grad, ranges)


def _steps(opt, chain, steps: int, seed: int, ranges=RANGES) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        for a, b in ranges:
            chain.grad[a:b] = rng.standard_normal(b - a).astype(chain.grad.dtype)
        opt.step()


@pytest.mark.parametrize("case", ["bfloat16_master", "ema", "int8"])
def test_trailing_padding_after_the_last_tensor_steps_like_no_padding(case):
    if case == "bfloat16_master":
        ml_dtypes = pytest.importorskip("ml_dtypes")
        dtype, options = ml_dtypes.bfloat16, {}
    else:
        dtype = np.float32
        options = {"ema_decay": 0.9} if case == "ema" else {"state_dtype": "int8"}
    stop = RANGES[-1][1]
    exact, padded = _chain(dtype, stop), _chain(dtype, stop + 144)  # padded to a multiple of 256 elements
    runs = [fastopt.AdamW([c], lr=1e-2, **options) for c in (exact, padded)]
    for opt, c in zip(runs, (exact, padded)):
        _steps(opt, c, 4, seed=1)
    np.testing.assert_array_equal(padded.data[:stop], exact.data)
    np.testing.assert_array_equal(padded.data[stop:], 0)
    for k in range(len(RANGES)):
        mine, theirs = runs[1].state[k], runs[0].state[k]
        assert mine.keys() == theirs.keys()
        for key, value in theirs.items():
            np.testing.assert_array_equal(mine[key], value, err_msg=key)
    if case == "ema":
        with runs[1].ema_weights(), runs[0].ema_weights():
            np.testing.assert_array_equal(padded.data[:stop], exact.data)
            np.testing.assert_array_equal(padded.data[stop:], 0)
        np.testing.assert_array_equal(padded.data[:stop], exact.data)


def test_int8_chain_state_dict_round_trips_and_the_run_continues_identically():
    uninterrupted, resumed = _chain(np.float32, 6144), _chain(np.float32, 6144)
    a = fastopt.AdamW([uninterrupted], lr=1e-2, state_dtype="int8", amsgrad=True)
    b = fastopt.AdamW([resumed], lr=1e-2, state_dtype="int8", amsgrad=True)
    _steps(a, uninterrupted, 3, seed=2)
    _steps(b, resumed, 3, seed=2)
    saved = b.state_dict()
    entry = saved["state"][1]
    assert entry["exp_avg"].dtype == np.uint8 and entry["exp_avg"].size == 512  # 300 elements: two blocks
    assert entry["exp_avg_scale"].shape == (2,) and entry["exp_avg_scale"].dtype == np.float32
    fresh = ParamChain(resumed.data.copy(), np.zeros_like(resumed.grad), RANGES)
    c = fastopt.AdamW([fresh], lr=1e-2, state_dtype="int8", amsgrad=True)
    c.load_state_dict(saved)
    for k in range(len(RANGES)):
        for key, value in b.state[k].items():
            np.testing.assert_array_equal(c.state[k][key], value, err_msg=key)
    _steps(a, uninterrupted, 3, seed=3)
    _steps(c, fresh, 3, seed=3)
    np.testing.assert_array_equal(fresh.data, uninterrupted.data)
    for k in range(len(RANGES)):
        for key, value in a.state[k].items():
            np.testing.assert_array_equal(c.state[k][key], value, err_msg=key)


def test_float32_state_dict_quantizes_into_an_int8_chain_and_expands_back():
    full_chain = _chain(np.float32, 6144)
    full = fastopt.AdamW([full_chain], lr=1e-2)
    _steps(full, full_chain, 3, seed=4)
    low_chain = ParamChain(full_chain.data.copy(), np.zeros_like(full_chain.grad), RANGES)
    low = fastopt.AdamW([low_chain], lr=1e-2, state_dtype="int8")
    low.load_state_dict(full.state_dict())
    for k, (a, b) in enumerate(RANGES):
        codes, scales = R.encode_second_moment(full.state[k]["exp_avg_sq"].ravel(), 256, "nearest")
        np.testing.assert_array_equal(low.state[k]["exp_avg_sq"], codes)
        np.testing.assert_array_equal(low.state[k]["exp_avg_sq_scale"], scales)
        assert low.state[k]["exp_avg"].size == -(-(b - a) // 256) * 256
    back = fastopt.AdamW([ParamChain(low_chain.data.copy(), np.zeros_like(low_chain.grad), RANGES)], lr=1e-2)
    back.load_state_dict(low.state_dict())
    for k, (a, b) in enumerate(RANGES):
        expected = R.blockfloat_dequantize(low.state[k]["exp_avg"], low.state[k]["exp_avg_scale"], b - a, R.E4M3,
                                           256)
        np.testing.assert_array_equal(back.state[k]["exp_avg"].ravel(), expected)
    _steps(low, low_chain, 2, seed=5)  # the loaded 8-bit state steps
    assert np.isfinite(low_chain.data).all()
