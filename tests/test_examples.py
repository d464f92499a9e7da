"""Every script in examples/ runs at a tiny size (--quick) and writes its PNGs."""

import importlib.util
import os
import re
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

pytest.importorskip("matplotlib")


def load(name, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    # torch_train.py asks for sleeping OpenMP threads (a script sets its own
    # process's environment); here that process is pytest's: undo it after.
    monkeypatch.setenv("OMP_WAIT_POLICY", os.environ.get("OMP_WAIT_POLICY", ""))
    if not os.environ["OMP_WAIT_POLICY"]:
        monkeypatch.delenv("OMP_WAIT_POLICY")
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_example(name, tmp_path, monkeypatch, capsys):
    out_dir = tmp_path / "out"
    assert load(name, monkeypatch).main(["--out", str(out_dir), "--quick"]) == 0
    return out_dir, capsys.readouterr().out


def assert_pngs(folder, names):
    assert sorted(p.name for p in folder.glob("*.png")) == sorted(names)
    for name in names:
        data = (folder / name).read_bytes()
        assert len(data) > 1000 and data[:8] == PNG_MAGIC


def test_trajectories(tmp_path, monkeypatch, capsys):
    out_dir, out = run_example("trajectories", tmp_path, monkeypatch, capsys)
    assert_pngs(out_dir, ["trajectories_bowl.png", "trajectories_ripples.png"])
    assert "bowl: final points after 10 steps" in out and "adam" in out


def test_trajectory_gradients_are_analytic(monkeypatch):
    module = load("trajectories", monkeypatch)
    h = 1e-6
    for f, grad in ((module.bowl, module.bowl_grad), (module.ripples, module.ripples_grad)):
        for x, y in ((0.3, -1.2), (-2.0, 0.7)):
            gx, gy = grad(x, y)
            assert abs(gx - (f(x + h, y) - f(x - h, y)) / (2 * h)) < 1e-4
            assert abs(gy - (f(x, y + h) - f(x, y - h)) / (2 * h)) < 1e-4


def test_convergence_1d(tmp_path, monkeypatch, capsys):
    out_dir, out = run_example("convergence_1d", tmp_path, monkeypatch, capsys)
    assert_pngs(out_dir, ["convergence_1d.png"])
    sgd = next(line for line in out.splitlines() if line.startswith("sgd "))
    assert "diverged" in sgd  # lr = 0.1 overshoots from x = 2 on the first step


def test_convergence_1d_outcomes(monkeypatch):
    module = load("convergence_1d", monkeypatch)
    text, n = module.outcome(module.run("momentum", 1e-2, 2000), 2000)
    assert n is not None and text == f"{n} it"
    assert module.outcome(module.run("sgd", 1e-1, 100), 100)[0].startswith("diverged")
    assert module.outcome(module.run("sgd", 1e-2, 2000), 2000)[0].startswith("stuck at saddle")


def test_lr_tolerance(tmp_path, monkeypatch, capsys):
    out_dir, out = run_example("lr_tolerance", tmp_path, monkeypatch, capsys)
    assert_pngs(out_dir, ["lr_tolerance.png"])
    assert "best lr:" in out


def test_torch_train(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    out_dir, out = run_example("torch_train", tmp_path, monkeypatch, capsys)
    assert_pngs(out_dir, ["torch_train.png"])
    losses = [float(v) for v in re.findall(r"final loss ([0-9.]+)", out)]
    assert len(losses) == 2
    assert abs(losses[0] - losses[1]) <= 1e-4 * losses[0]


def test_low_precision(tmp_path, monkeypatch, capsys):
    pytest.importorskip("sklearn")
    out_dir, out = run_example("low_precision", tmp_path, monkeypatch, capsys)
    assert_pngs(out_dir, ["low_precision.png"])
    rows = {tuple(line.split()[:3]) for line in out.splitlines()[1:] if line.startswith(("adam", "momentum"))}
    assert ("adam", "int8", "int8") in rows and ("momentum", "bfloat16", "bfloat16") in rows
    assert ("adamw", "float32", "float32") in rows
