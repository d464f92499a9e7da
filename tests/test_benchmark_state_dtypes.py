"""The benchmark with low-precision optimizer states: byte counts, the twins
that move those bytes, the contenders and the CLI option. Tiny sizes, no
timing assertions."""

from __future__ import annotations

import numpy as np
import pytest

import fastopt
from fastopt.backends.blockfloat import BLOCK, MIN_ELEMENTS
from fastopt.benchmark import roofline, runner, state_dtypes
from fastopt.benchmark.problems import hyperparameters
from fastopt.cli import main

ADAM = hyperparameters("adam")


def test_adam_moves_20_bytes_with_bfloat16_states_and_16_plus_scales_with_int8():
    n = 1 << 16
    assert state_dtypes.bytes_per_element("adam", ADAM, n, "float32", None) == 28
    assert state_dtypes.bytes_per_element("adam", ADAM, n, "float32", "bfloat16") == 20
    assert state_dtypes.bytes_per_element("adam", ADAM, n, "float32", "int8") == 16 + 4 * 4 / BLOCK
    # under MIN_ELEMENTS the 8-bit optimizer keeps float32 state, and so does the count
    assert state_dtypes.bytes_per_element("adam", ADAM, MIN_ELEMENTS - 1, "float32", "int8") == 28


@pytest.mark.parametrize("state_dtype,expected", [(None, 8.0), ("bfloat16", 4.0), ("int8", 2 + 2 * 4 / BLOCK)])
def test_state_bytes_are_counted_from_the_allocated_arrays(state_dtype, expected):
    n = 64 * BLOCK
    opt = fastopt.Adam([(np.zeros(n, np.float32), np.zeros(n, np.float32))], state_dtype=state_dtype)
    assert state_dtypes.state_bytes_per_parameter(opt) == pytest.approx(expected)


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("serial_below", [0, 2**62])
def test_byte_twin_reads_and_writes_every_code_and_scale(k, serial_below):
    n = 3 * BLOCK + 17  # a padded last block
    rng = np.random.default_rng(k)
    p = rng.standard_normal(n).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32)
    nb = 4
    codes = tuple(np.full(nb * BLOCK, 10 * (j + 1), np.uint8) for j in range(k))
    scales = tuple(np.full(nb, float(j + 1), np.float32) for j in range(k))
    before_p = p.copy()
    roofline.byte_twin_step(p, g, codes, scales, serial_below)
    np.testing.assert_array_equal(p, before_p + g + np.float32(10))  # the first code array was read
    for j in range(k - 1):  # rotated: every array written from the next one
        np.testing.assert_array_equal(codes[j][:n], 10 * (j + 2))
        np.testing.assert_array_equal(scales[j], float(j + 2))
    np.testing.assert_array_equal(scales[k - 1], 1.0)
    truncated = (np.trunc(before_p * np.float32(16)).astype(np.int32) & 0xFF).astype(np.uint8)
    np.testing.assert_array_equal(codes[k - 1][:n], truncated)  # the params were read into the last one
    np.testing.assert_array_equal(codes[k - 1][n:], 10 * k if k > 1 else 10)  # padding untouched


@pytest.mark.parametrize("state_dtype", ["bfloat16", "int8"])
def test_runner_times_low_precision_states_against_their_own_twin(state_dtype):
    n = 2 * MIN_ELEMENTS
    result = runner.run_benchmark(["adam", "lamb"], sizes=[n], rounds=2, progress=False, state_dtype=state_dtype)
    assert result["settings"]["state_dtype"] == state_dtype
    adam = result["results"][0]
    assert adam["optimizer"] == "adam" and adam["state_dtype"] == state_dtype
    assert adam["bytes_per_step"] == round(state_dtypes.bytes_per_element("adam", ADAM, n, "float32", state_dtype)
                                           * n)
    assert {"fastopt", "fastopt_full_states", "roofline"} <= set(adam["contenders"])
    assert "numpy_naive" in adam["skipped"]
    if state_dtype == "int8":
        assert ("bnb_8bit" in adam["contenders"]) == state_dtypes.bnb_available()
        assert "lamb" in result["left_out"] and "8-bit" in result["left_out"]["lamb"]["why"]
    else:
        assert [e["optimizer"] for e in result["results"]] == ["adam", "lamb"]


def test_runner_rejects_state_dtypes_it_cannot_benchmark():
    with pytest.raises(ValueError, match="state_dtype must be one of"):
        runner.run_benchmark(["adam"], sizes=[10], progress=False, state_dtype="int4")
    with pytest.raises(ValueError, match="float64"):
        runner.run_benchmark(["adam"], sizes=[10], progress=False, state_dtype="float64")


def test_cli_bench_state_dtype(capsys):
    code = main(["bench", "--optimizer", "adamw", "--sizes", "5000", "--rounds", "2", "--state-dtype", "int8",
                 "--no-progress", "--no-plot"])
    out = capsys.readouterr().out
    assert code == 0
    assert "float32 params, int8 states" in out and "x full st." in out
    assert main(["bench", "--device", "cuda", "--state-dtype", "int8", "--no-plot"]) == 2
    assert "CPU-only" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "--state-dtype", "int4"])
