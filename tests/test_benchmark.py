"""The benchmark harness: shape of its results, the roofline twin's traffic,
the NumPy baselines' math, and the CLI. Tiny sizes, no timing assertions."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import fastopt
from fastopt.benchmark import baselines, roofline, runner
from fastopt.benchmark.problems import hyperparameters, make_data, state_names
from fastopt.benchmark.timing import Contender, interleaved
from fastopt.cli import main
from fastopt.rules import SPECS

NAMES = list(fastopt.OPTIMIZERS)

# Hyperparameter sets that visit every state arity the twins cover (0..3).
VARIANTS = [
    ("sgd", {}),
    ("sgd", {"momentum": 0.9}),
    ("adam", {}),
    ("adam", {"amsgrad": True}),
    ("rmsprop", {"centered": True, "momentum": 0.5}),
    ("adadelta", {}),
]


@pytest.mark.parametrize("name,overrides", VARIANTS)
def test_byte_count_follows_the_variant(name, overrides):
    h = {**SPECS[name].defaults, **overrides}
    k = len(SPECS[name].variant_of(h).state_names)
    assert roofline.traffic(name, h) == (2 + k, 1 + k)
    assert roofline.bytes_per_step(name, h, 1000, "float32") == (3 + 2 * k) * 4 * 1000
    assert roofline.bytes_per_step(name, h, 10, np.float64) == (3 + 2 * k) * 8 * 10


def test_adam_float32_moves_28_bytes_per_element():
    assert roofline.bytes_per_step("adam", hyperparameters("adam"), 1, "float32") == 28


@pytest.mark.parametrize("n_states", range(len(roofline.TWIN_RULES)))
@pytest.mark.parametrize("serial_below", [0, 2**62])
def test_twin_writes_every_array_it_claims(n_states, serial_below):
    n = 257
    rng = np.random.default_rng(n_states)
    p = rng.standard_normal(n).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32)
    states = tuple(np.full(n, 100.0 + k, np.float32) for k in range(n_states))  # poison: distinct values
    before = [a.copy() for a in (p, g, *states)]
    roofline.twin_step(p, g, states, serial_below)
    after = (p, g, *states)
    np.testing.assert_array_equal(after[1], before[1])  # grad is read only
    for k, (a, b) in enumerate(zip(after, before, strict=True)):
        if k != 1:
            assert np.all(a != b), f"array {k} not written everywhere"
    # ... and read: every value written comes from another array (+ g for p).
    if n_states:
        np.testing.assert_array_equal(p, before[2] + g)
        np.testing.assert_array_equal(states[-1], before[0])
    else:
        np.testing.assert_array_equal(p, before[0] + g)


@pytest.mark.parametrize("name", [n for n in NAMES if n in baselines.NAIVE])
@pytest.mark.parametrize("style", ["naive", "out"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_baselines_compute_fastopts_update(name, style, dtype):
    h = hyperparameters(name)
    p0, g = make_data(1001, dtype, seed=3)
    ours = baselines.NumpyStepper(name, h, p0, g, style)
    p = p0.copy()
    opt = fastopt.OPTIMIZERS[name]((p, g), **h)
    for _ in range(8):  # RAdam leaves its un-adapted phase at step 6
        ours.step()
        opt.step()
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(ours.p, p, rtol=tol, atol=tol)
    for key in state_names(name, h):
        np.testing.assert_allclose(ours.state[key], opt.state[0][key], rtol=tol, atol=tol)


def test_numpy_baselines_refuse_what_they_do_not_implement():
    h = {**hyperparameters("adam"), "amsgrad": True}
    assert not baselines.numpy_supports("adam", h)
    with pytest.raises(ValueError, match="do not implement"):
        baselines.NumpyStepper("adam", h, *make_data(10), "naive")


def test_interleaved_rotates_and_counts():
    calls = []
    contenders = [Contender(name, lambda k, name=name: calls.append((name, k))) for name in "abc"]
    out = interleaved(contenders, rounds=4, warmup=1, target_s=0.0, max_batch=3)
    assert out["rounds"] == 4
    assert all(len(t) == 4 for t in out["times"].values())
    assert out["batch"] == {"a": 1, "b": 1, "c": 1}
    timed = [name for name, _ in calls[-12:]]
    assert timed[:3] == ["a", "b", "c"] and timed[3:6] == ["b", "c", "a"]


def test_runner_json_has_the_expected_fields(monkeypatch):
    from fastopt.backends import cpu

    monkeypatch.setattr(cpu, "SERIAL_BELOW", cpu.SERIAL_BELOW)  # restored after: the run may move it
    policy = os.environ.get("OMP_WAIT_POLICY")
    result = runner.run_benchmark(["adam", "sgd"], sizes=[1000], rounds=2, progress=False)
    # the benchmark's wait policy does not leak into processes this one starts later
    assert os.environ.get("OMP_WAIT_POLICY") == policy
    json.loads(json.dumps(result))  # JSON-ready
    assert {"schema", "machine", "settings", "notes", "results"} <= set(result)
    assert {"cpu", "cores", "numba_threads", "date"} <= set(result["machine"])
    assert [(e["optimizer"], e["size"]) for e in result["results"]] == [("adam", 1000), ("sgd", 1000)]
    adam = result["results"][0]
    assert adam["bytes_per_step"] == 28 * 1000 and adam["state_names"] == ["exp_avg", "exp_avg_sq"]
    expected = {"numpy_naive", "numpy_out", "fastopt_serial", "fastopt", "roofline"}
    if baselines.torch_available():
        expected |= {"torch_single", "torch_foreach", "torch_fused"}
    assert expected <= set(adam["contenders"])
    for c in adam["contenders"].values():
        assert {"median_s", "q1_s", "q3_s", "min_s", "max_s", "gbps", "pct_roofline", "batch"} <= set(c)
        assert c["median_s"] > 0
    assert set(adam["speedup"]) == set(adam["contenders"]) - {"fastopt", "roofline"}
    assert adam["contenders"]["roofline"]["pct_roofline"]["median"] == pytest.approx(100)


def test_runner_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown optimizer"):
        runner.run_benchmark(["nonesuch"], sizes=[10], progress=False)
    with pytest.raises(ValueError, match="sizes"):
        runner.run_benchmark(["sgd"], sizes=[0], progress=False)
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        runner.run_benchmark(["sgd"], sizes=[10], device="tpu", progress=False)


def test_cli_bench_quick_json(tmp_path, capsys):
    out, md = tmp_path / "r.json", tmp_path / "r.md"
    code = main(["bench", "--quick", "--sizes", "1000", "--optimizer", "adam", "--rounds", "2",
                 "--json", str(out), "--markdown", str(md), "--no-progress", "--no-plot"])
    assert code == 0
    data = json.loads(out.read_text())
    assert data["settings"]["optimizers"] == ["adam"] and data["settings"]["sizes"] == [1000]
    assert "| adam | 1e3 |" in md.read_text()
    out = capsys.readouterr().out
    assert "time/step" in out and "% limit" in out
    assert ("x torch" in out) == baselines.torch_available()
    assert ("torch is not installed" in out) != baselines.torch_available()


def test_cli_bench_cuda_without_a_gpu_says_so(capsys):
    from fastopt.backends import is_gpu_array  # noqa: F401  (the CLI must not need a GPU to start)

    code = main(["bench", "--device", "cuda", "--sizes", "1e6", "--no-plot"])
    err = capsys.readouterr().err
    if code == 0:
        pytest.skip("this machine has a GPU: the CUDA benchmark ran")
    assert code == 2
    assert "no CUDA GPU" in err or 'pip install "fastopt[cuda]"' in err


def test_cli_bench_cuda_rejects_cpu_only_options(capsys):
    assert main(["bench", "--device", "cuda", "--cold", "--no-plot"]) == 2
    assert "CPU-only" in capsys.readouterr().err


def test_lamb_moves_its_two_passes_bytes():
    h = hyperparameters("lamb")
    assert roofline.traffic("lamb", h) == (7, 3)  # p, g, m, v + p, m, v read; m, v + p written
    assert roofline.bytes_per_step("lamb", h, 1, "float32") == 40


@pytest.mark.parametrize("serial_below", [0, 2**62])
def test_two_pass_twin_reads_and_writes_what_lamb_does(serial_below):
    n = 300
    rng = np.random.default_rng(5)
    p0, g = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    twin = roofline.twin_contender("lamb", hyperparameters("lamb"), p0, g)
    # The kernel the twin runs, on known values:
    p = p0.copy()
    m, v = np.full(n, 2.0, np.float32), np.full(n, 3.0, np.float32)
    roofline._two_pass_twin(p, g, (m, v), serial_below)
    np.testing.assert_array_equal(m, 3.0)  # pass one: the states rotate ...
    np.testing.assert_array_equal(v, p0 + g + np.float32(2.0))  # ... and read p, g and the first state
    np.testing.assert_array_equal(p, p0 + m + v)  # pass two: p from p and every state
    twin.run(2)  # the contender itself runs
