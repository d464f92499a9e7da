"""``fastopt bench --torch-e2e``: full training steps of torch models with
torch.optim.AdamW and fastopt.torch.AdamW. The smallest model, two rounds of
one step; no timing assertions."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from fastopt.benchmark import torch_e2e
from fastopt.cli import main


def test_cli_torch_e2e_quick_writes_json_and_markdown(tmp_path):
    pytest.importorskip("torch")
    out, md = tmp_path / "e2e.json", tmp_path / "e2e.md"
    # A process of its own, as a user runs it: OMP_WAIT_POLICY must be set before torch starts
    # its OpenMP pool (here torch is imported already), or the pools spin against each other.
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    run = subprocess.run([sys.executable, "-m", "fastopt", "bench", "--torch-e2e", "--models", "many", "--quick",
                          "--no-progress", "--json", str(out), "--markdown", str(md)],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    data = json.loads(out.read_text())
    assert data["schema"] == "fastopt-torch-e2e/1" and data["settings"]["models"] == ["many"]
    [entry] = data["results"]
    assert entry["model"] == "many" and entry["tensors"] == 200 and entry["params"] == 100 * (32 * 32 + 32)
    assert entry["rounds"] == 2 and entry["steps_per_round"] == 1
    assert list(entry["contenders"]) == list(torch_e2e.CONTENDERS)
    for c in entry["contenders"].values():
        assert 0 < c["step_s"] < c["total_s"] and 0 < c["share"] < 1
        assert c["step_vs_fused"]["median"] > 0 and c["final_loss"] == c["final_loss"]
    assert entry["contenders"]["torch_fused"]["step_vs_fused"]["median"] == pytest.approx(1.0)
    text = md.read_text()
    assert "## many: 0.106M params in 200 tensors (2 rounds x 1 step)" in text
    assert "| fastopt_views |" in text
    assert "x fused (step)" in run.stdout and "fastopt_views" in run.stdout and f"wrote {out}, {md}" in run.stdout


@pytest.mark.parametrize("argv,message", [
    (["--models", "mlp"], "--models is for --torch-e2e"),
    (["--torch-e2e", "--models", "mlp,resnet"], "unknown model(s) ['resnet']"),
    (["--torch-e2e", "--sizes", "1e3", "--optimizer", "sgd"], "--optimizer, --sizes do not apply to --torch-e2e"),
    (["--torch-e2e", "--dtype", "float64"], "--dtype does not apply to --torch-e2e"),
    (["--torch-e2e", "--device", "cuda"], "CPU training steps only"),
    (["--torch-e2e", "--rounds", "0"], "--rounds must be an integer >= 1"),
    (["--torch-e2e", "--markdown", "no/such/folder/e2e.md"], "--markdown no/such/folder/e2e.md: the folder"),
])
def test_cli_torch_e2e_checks_arguments_before_any_work(argv, message, monkeypatch, capsys):
    monkeypatch.setattr(torch_e2e, "run_torch_e2e", lambda **kwargs: pytest.fail("ran despite a bad argument"))
    assert main(["bench", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastopt bench: error: ") and message in err and err.count("\n") == 1


def test_cli_torch_e2e_without_torch_names_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)  # find_spec("torch") is then None: as if not installed
    monkeypatch.setattr(torch_e2e, "run_torch_e2e", lambda **kwargs: pytest.fail("ran without torch"))
    assert main(["bench", "--torch-e2e", "--models", "mlp"]) == 2
    err = capsys.readouterr().err
    assert err == 'fastopt bench: error: --torch-e2e needs PyTorch, which is not installed: pip install ' \
                  '"fastopt[torch]"\n'
