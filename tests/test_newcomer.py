"""A newcomer's first hour: LAMB listed and trainable from its preset, loud
divergence, errors that name the problem, distinct plot colours, a short
benchmark report."""

from __future__ import annotations

import numpy as np
import pytest

import fastopt
from fastopt.cli import main
from fastopt.commands._training import PRESETS, load_dataset, make_optimizer, train
from fastopt.nn import MLP


def test_every_registered_optimizer_has_a_preset_and_is_in_train_help(capsys):
    assert set(fastopt.OPTIMIZERS) <= {registry for registry, _ in PRESETS.values()}
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for name in fastopt.OPTIMIZERS:
        assert name in help_text


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lamb_preset_trains_the_spiral(seed):
    data = load_dataset("spiral", seed=seed)
    model = MLP(data.sizes, seed=seed)
    result = train(model, make_optimizer("lamb", model.params), data, data.epochs, data.batch_size, seed=seed)
    assert not result.diverged and result.train_acc >= 0.95, result


def test_compare_warns_when_a_loss_becomes_nan(capsys):
    rc = main(["compare", "--optimizers", "momentum,sgd,adam", "--lr-scale", "1e20", "--epochs", "3",
               "--no-progress"])
    out, err = capsys.readouterr()
    assert rc == 0
    warnings = err.strip().splitlines()
    assert len(warnings) == 2 and all(w.startswith("fastopt compare: warning: ") for w in warnings)
    assert "momentum with lr=5e+18: the training loss became NaN or infinite" in warnings[0]
    assert "sgd with lr=2e+19" in warnings[1] and warnings[1].endswith("try a smaller --lr-scale")
    assert out.count("(diverged)") == 2  # adam's normalised steps stay finite


def test_train_warns_when_a_loss_becomes_nan(capsys):
    rc = main(["train", "--optimizer", "lamb", "--lr", "50", "--epochs", "5", "--no-progress"])
    out, err = capsys.readouterr()
    assert rc == 1
    assert "fastopt train: warning: LAMB with lr=50: the training loss became NaN or infinite" in err
    assert "try a smaller --lr" in err


def test_bfloat16_torch_params_step_through_a_float32_master_copy():
    torch = pytest.importorskip("torch")
    p = torch.linspace(-1, 1, 8, dtype=torch.bfloat16)
    g = torch.full((8,), 0.5, dtype=torch.bfloat16)
    opt = fastopt.Adam([(p, g)], lr=0.1)
    opt.step()
    master = opt.state[0]["master_param"]
    assert master.dtype == np.float32
    assert torch.equal(p, torch.from_numpy(master).to(torch.bfloat16))  # the model's copy, written in the same pass


def test_float16_torch_params_get_a_clear_error():
    torch = pytest.importorskip("torch")
    p, g = torch.zeros(4, dtype=torch.float16), torch.zeros(4, dtype=torch.float16)
    with pytest.raises(TypeError, match=r"param is a torch float16 tensor, which fastopt does not update"):
        fastopt.Adam([(p, g)])


def test_clip_grad_norm_errors_name_the_gradient():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"^the gradient of parameters\[0\] has dtype float16; fastopt supports"):
        fastopt.clip_grad_norm_([np.zeros(3, np.float16)], 1.0)
    with pytest.raises(ValueError, match=r"^the gradient of parameters\[0\] is not contiguous"):
        fastopt.clip_grad_norm_([np.zeros((3, 3), np.float32)[:, ::2]], 1.0)
    layer = torch.nn.Linear(2, 2, dtype=torch.bfloat16)  # bfloat16 gradients are clipped in place
    layer(torch.ones(1, 2, dtype=torch.bfloat16)).sum().backward()
    expected = torch.linalg.vector_norm(torch.cat([q.grad.float().reshape(-1) for q in layer.parameters()]))
    norm = fastopt.clip_grad_norm_(layer.parameters(), 1e-3)
    assert norm == pytest.approx(float(expected), rel=1e-6)
    clipped = torch.linalg.vector_norm(torch.cat([q.grad.float().reshape(-1) for q in layer.parameters()]))
    assert float(clipped) == pytest.approx(1e-3, rel=1e-2)


# -- plots -----------------------------------------------------------------------------

def _colours(fig):
    from matplotlib.colors import to_hex

    return [to_hex(line.get_color()) for ax in fig.axes for line in ax.get_lines()
            if not line.get_label().startswith("_") and line.get_linestyle() == "-"]


def test_compare_plot_gives_every_curve_its_own_colour():
    pytest.importorskip("matplotlib")
    from fastopt.commands._plot import loss_curve_figure

    curves = {f"opt{k}": [1.0 / (i + k + 1) for i in range(5)] for k in range(len(PRESETS))}
    colours = _colours(loss_curve_figure(curves, "t"))
    assert len(colours) == len(PRESETS) >= 12 and len(set(colours)) == len(colours)


def test_bench_plot_colours_and_legend_outside_the_panels():
    pytest.importorskip("matplotlib")
    from fastopt.benchmark import report, run_benchmark

    result = run_benchmark(["sgd", "lion"], sizes=[100, 1000], rounds=1, progress=False)
    fig = report.plot_figure(result)
    fig.canvas.draw()
    per_baseline = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            if line.get_label().startswith("over "):
                per_baseline.setdefault(line.get_label(), set()).add(line.get_color())
    assert all(len(c) == 1 for c in per_baseline.values())  # one colour per baseline in every panel
    assert len({next(iter(c)) for c in per_baseline.values()}) == len(per_baseline)  # and all differ
    (legend,) = fig.legends
    box = legend.get_window_extent()
    for ax in fig.axes:
        if ax.get_visible():
            assert not box.overlaps(ax.get_window_extent()), f"the legend covers panel {ax.get_title()}"


def test_bench_default_report_is_short_and_explains_its_columns(capsys, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    rc = main(["bench", "--optimizer", "sgd,rmsprop,lamb", "--sizes", "1e3,1e4", "--rounds", "1", "--no-progress"])
    out, err = capsys.readouterr()
    assert rc == 0
    lines = out.splitlines()
    fixed = len(lines) - 6  # all but the 6 rows
    assert fixed + 4 * len(fastopt.OPTIMIZERS) <= 60, "fastopt bench --quick (4 sizes) would pass 60 lines"
    for header in ("time/step", "% limit", "x torch"):
        assert sum(line.startswith(header) for line in lines) == 1, f"no legend line for {header}"
    for noise in ("Targets", "MISS", "unexpected keyword", "Traceback", "note: OMP_WAIT_POLICY"):
        assert noise not in out + err
    assert (tmp_path / "fastopt-bench.png").read_bytes()[:4] == b"\x89PNG"
    assert lines[-1].startswith("wrote fastopt-bench.png")


def test_bench_verbose_keeps_the_details(capsys, tmp_path):
    rc = main(["bench", "--optimizer", "rmsprop", "--sizes", "1e3", "--rounds", "1", "--no-progress", "--no-plot",
               "--verbose"])
    out, _ = capsys.readouterr()
    assert rc == 0
    assert "rmsprop: every contender" in out and "numpy_out" in out
    torch_installed = "torch is not installed" not in out
    if torch_installed:
        assert "torch.optim.RMSprop has no fused implementation" in out
    assert "unexpected keyword" not in out
