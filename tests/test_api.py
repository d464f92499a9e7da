"""FlatParams, param groups, state dicts, recompilation and the compile cache."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import fastopt
from fastopt.backends import cpu_loops

ROOT = Path(__file__).resolve().parents[1]


def test_flat_params_views_write_through():
    fp = fastopt.FlatParams({"w": (2, 3), "b": (3,)})
    assert fp.data.ctypes.data % 64 == 0 and fp.grad.ctypes.data % 64 == 0
    fp["w"][:] = 1.0
    fp["b"][:] = 2.0
    np.testing.assert_array_equal(fp.data, [1, 1, 1, 1, 1, 1, 2, 2, 2])
    fp.data[6] = 5.0
    assert fp["b"][0] == 5.0
    fp.grad_of("b")[:] = 3.0
    np.testing.assert_array_equal(fp.grad[6:], 3.0)
    assert np.shares_memory(fp.grad_of("w"), fp.grad)
    assert fp.names == ("w", "b") and len(fp) == 9 and fp.shapes == {"w": (2, 3), "b": (3,)}
    with pytest.raises(KeyError, match="no parameter named 'x'"):
        fp["x"]


def test_flat_params_from_arrays_and_span():
    w = np.arange(6, dtype=np.float64).reshape(2, 3)
    fp = fastopt.FlatParams.from_arrays({"w": w, "b": np.ones(3), "c": np.zeros(2)})
    assert fp.dtype == np.float64
    np.testing.assert_array_equal(fp["w"], w)
    p, g = fp.span(["b", "c"])
    assert p.size == 5 and np.shares_memory(p, fp.data) and np.shares_memory(g, fp.grad)
    with pytest.raises(ValueError, match="not adjacent"):
        fp.span(["w", "c"])
    with pytest.raises(TypeError, match="dtype"):
        fastopt.FlatParams({"w": (2,)}, dtype=np.int32)


def test_optimizer_over_flat_params_updates_every_view_in_one_call(monkeypatch):
    fp = fastopt.FlatParams({"w": (4, 5), "b": (5,)})
    fp.data[:] = 1.0
    fp.grad[:] = 0.5
    calls = []
    opt = fastopt.SGD(fp, lr=0.1)
    opt.step()
    chain = opt._plans[0].chains[0]
    original = chain.full
    chain.full = lambda *a: (calls.append(1), original(*a))
    opt.step()
    assert len(calls) == 1
    np.testing.assert_allclose(fp["w"], 0.9)
    np.testing.assert_allclose(fp["b"], 0.9)


def test_param_groups_with_overrides():
    fp = fastopt.FlatParams({"w": (10,), "b": (4,)})
    fp.data[:] = 1.0
    fp.grad[:] = 0.0
    decay, no_decay = fp.span(["w"]), fp.span(["b"])
    opt = fastopt.SGD([{"params": [decay], "weight_decay": 0.5}, {"params": [no_decay]}], lr=0.1)
    opt.step()
    np.testing.assert_allclose(fp["w"], 1 - 0.1 * 0.5)
    np.testing.assert_allclose(fp["b"], 1.0)
    assert opt.param_groups[1]["weight_decay"] == 0.0


def test_closure_is_called_and_its_loss_returned():
    p, g = np.ones(3), np.ones(3)
    opt = fastopt.SGD([(p, g)], lr=0.1)
    assert opt.step(lambda: 42.0) == 42.0


def test_zero_grad_clears_in_place():
    fp = fastopt.FlatParams({"w": (3,)})
    fp.grad[:] = 7.0
    view = fp.grad_of("w")
    fastopt.Adam(fp).zero_grad()
    np.testing.assert_array_equal(view, 0.0)


@pytest.mark.parametrize("name", sorted(fastopt.OPTIMIZERS))
def test_state_dict_resume_is_bit_identical(name):
    rng = np.random.default_rng(0)
    grads = rng.standard_normal((12, 50)).astype(np.float32)
    hyper = {"lr": 0.01} if name != "sgd" else {"lr": 0.01, "momentum": 0.9}

    def run(resume_at=None):
        p = np.linspace(-1, 1, 50, dtype=np.float32)
        g = np.empty_like(p)
        opt = fastopt.OPTIMIZERS[name]([(p, g)], **hyper)
        for t, grad in enumerate(grads):
            if t == resume_at:
                saved, p_saved = opt.state_dict(), p.copy()
                p2, g2 = p_saved, np.empty_like(p)
                opt = fastopt.OPTIMIZERS[name]([(p2, g2)], **hyper)
                opt.load_state_dict(saved)
                p, g = p2, g2
            g[:] = grad
            opt.step()
        return p

    np.testing.assert_array_equal(run(), run(resume_at=6))


def test_changing_lr_every_step_never_recompiles():
    fp = fastopt.FlatParams({"x": (1000,)})
    fp.grad[:] = 1.0
    opt = fastopt.Adam(fp, lr=1e-3)
    opt.step()
    kernel = cpu_loops.elementwise_kernel(opt._plans[0].variant.rule, opt.spec.record)
    compiled = len(kernel.overloads)
    for t in range(50):
        opt.param_groups[0]["lr"] = 1e-3 / (1 + t) if t % 3 else np.float32(1e-3 / (1 + t))
        opt.param_groups[0]["betas"] = (0.9 - t * 1e-3, 0.999)
        opt.param_groups[0]["weight_decay"] = t % 2  # ints and NumPy scalars are fine too
        opt.step()
    assert len(kernel.overloads) == compiled  # one per dtype ever used in this process, never more


def _run_in_subprocess(code: str, env: dict, cwd: Path) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True,
                         text=True, timeout=300, cwd=cwd)
    assert out.returncode == 0, out.stderr
    return out.stdout + out.stderr


STEP_AND_REPORT = """
    import warnings, numpy as np
    warnings.simplefilter("always")
    import fastopt
    from fastopt.backends import cpu_loops
    fp = fastopt.FlatParams({"x": (10,)}); fp.grad[:] = 1
    opt = fastopt.Adam(fp); opt.step()
    k = cpu_loops.elementwise_kernel(opt._plans[0].variant.rule, opt.spec.record)
    print("hits", sum(k.stats.cache_hits.values()), "misses", sum(k.stats.cache_misses.values()))
    print("from", fastopt.__file__)
"""


def test_compile_cache_works_from_a_read_only_install(tmp_path):
    """Installed read-only: kernels cache in NUMBA_CACHE_DIR and load from it next time."""
    install = tmp_path / "site"
    shutil.copytree(ROOT / "fastopt", install / "fastopt", ignore=shutil.ignore_patterns("__pycache__"))
    for path in install.rglob("*"):
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    (install / "fastopt").chmod(0o555)
    env = {**os.environ, "PYTHONPATH": str(install), "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    try:
        first = _run_in_subprocess(STEP_AND_REPORT, env, tmp_path)
        second = _run_in_subprocess(STEP_AND_REPORT, env, tmp_path)
    finally:
        for path in [install, *install.rglob("*")]:
            path.chmod(0o755)
    assert f"from {install}" in first
    assert "misses 1" in first
    assert "hits 1 misses 0" in second
    assert not list(install.rglob("*.nbi")), "the cache must not be written into the install"


def test_no_writable_cache_dir_warns_and_still_works(tmp_path):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file, not a directory")
    install = tmp_path / "site"
    shutil.copytree(ROOT / "fastopt", install / "fastopt", ignore=shutil.ignore_patterns("__pycache__"))
    for path in [install, *install.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    env = {**os.environ, "PYTHONPATH": str(install), "NUMBA_CACHE_DIR": str(blocked / "sub"),
           "HOME": str(blocked)}
    try:
        out = _run_in_subprocess(STEP_AND_REPORT, env, tmp_path)
    finally:
        for path in [install, *install.rglob("*")]:
            path.chmod(0o755)
    if os.geteuid() == 0 and "no writable compile cache" not in out:
        # root can write into read-only folders, so there is always a cache dir;
        # then the step must simply have worked through it.
        assert "misses 1" in out
    else:
        assert "no writable compile cache" in out



KERNEL_SYMBOL = """
    import numpy as np, fastopt
    from fastopt.backends import cpu_loops
    opt = fastopt.RAdam([(np.ones(64, np.float32), np.ones(64, np.float32))])
    opt.step()
    kernel = cpu_loops.elementwise_kernel(opt._plans[0].variant.rule, opt.spec.record)
    (compiled,) = kernel.overloads.values()
    print("symbol", compiled.fndesc.mangled_name)
"""


def test_processes_name_their_compiled_kernels_apart(tmp_path):
    """numba names a compiled function after its qualified name, a counter
    and its argument types. Counted from 1 in every process, the same factory
    closure compiled for two rules with the same argument types (Adam's and
    RAdam's kernels: nine coefficients, two states) in two processes got one
    name for two bodies, and a third process loading both from the cache ran
    one rule for both (numba issue 10486). fastopt draws the numbers at
    random: two processes compiling the same kernel give it two names."""
    symbols = []
    for k in range(2):
        # both compile; one hash seed, so that numba's flags are named in one order
        env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / f"cache{k}"), "PYTHONHASHSEED": "0"}
        out = _run_in_subprocess(KERNEL_SYMBOL, env, tmp_path)
        symbols.append(next(line for line in out.splitlines() if line.startswith("symbol")))
    assert symbols[0] != symbols[1], symbols


LAST_OF = """
    import numpy as np, fastopt
    for name in {names}:
        p = np.linspace(-1, 1, 64, dtype=np.float32)
        grads = [np.cos(np.arange(40, dtype=np.float32)), np.sin(np.arange(24, dtype=np.float32))]
        opt = getattr(fastopt, name)(fastopt.ParamChain(p, np.zeros_like(p), [(0, 40), (40, 64)]), lr=1e-2)
        for _ in range(3):
            opt.step()  # the flat kernel, zero gradients
            opt.apply_step(grads={{key: g.ctypes.data for key, g in zip(sorted(opt.state), grads)}})
    print("result", p.tolist())
"""


def test_kernels_cached_by_different_processes_keep_their_own_code(tmp_path):
    """Adam's and RAdam's kernels have the same argument types (nine
    coefficients, two states) and the same factory closures: compiled in two
    processes, then both loaded from the cache by a third, each must still run
    its own rule (numba names functions with a per-process counter; equal
    names made the third process link one body for both)."""
    # One hash seed: numba's names also encode a set of flags, in an order
    # that varies with the seed, which hid the collision in most runs.
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"), "PYTHONHASHSEED": "0"}

    def result(*names):
        out = _run_in_subprocess(LAST_OF.format(names=list(names)), env, tmp_path)
        return next(line for line in out.splitlines() if line.startswith("result"))

    result("Adam")
    alone = result("RAdam")
    assert result("Adam", "RAdam") == alone
    assert result("RAdam") == alone
