"""Every CLI error path: exit code 2, one line on stderr naming the fix, and no
work started (no progress bar drawn, no table printed, no file written)."""

from __future__ import annotations

import importlib.util
import re
import sys

import pytest

from fastopt.cli import main


def run_failing(capsys, *argv):
    """Run the CLI with the progress bar on (it writes its final line to a
    non-terminal stream once work has started) and return stderr's one line."""
    rc = main(list(argv))
    out, err = capsys.readouterr()
    assert rc == 2, (out, err)
    assert out == "", f"work started before the error:\n{out}"
    assert not re.search(r"\[[#.]+\]", err), f"the progress bar ran before the error:\n{err}"
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got:\n{err}"
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def no_matplotlib(monkeypatch):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.pyplot"):
        monkeypatch.setitem(sys.modules, name, None)


# -- fastopt bench ---------------------------------------------------------------

def test_bench_plot_without_matplotlib(capsys, no_matplotlib, tmp_path):
    line = run_failing(capsys, "bench", "--quick", "--plot", str(tmp_path / "x.png"))
    assert line.startswith("fastopt bench: error: --plot needs matplotlib")
    assert 'pip install "fastopt[plot]"' in line
    assert not (tmp_path / "x.png").exists()


def test_bench_plot_into_a_missing_folder(capsys):
    line = run_failing(capsys, "bench", "--quick", "--plot", "/nonexistent/dir/x.png")
    assert "--plot /nonexistent/dir/x.png: the folder /nonexistent/dir does not exist" in line
    assert "mkdir -p /nonexistent/dir" in line


def test_bench_json_into_a_missing_folder(capsys):
    line = run_failing(capsys, "bench", "--quick", "--no-plot", "--json", "/nonexistent/x.json")
    assert "--json /nonexistent/x.json: the folder /nonexistent does not exist" in line


def test_bench_markdown_into_a_missing_folder(capsys):
    line = run_failing(capsys, "bench", "--quick", "--no-plot", "--markdown", "/nonexistent/x.md")
    assert "--markdown /nonexistent/x.md: the folder /nonexistent does not exist" in line


def test_bench_json_is_a_folder(capsys, tmp_path):
    line = run_failing(capsys, "bench", "--quick", "--no-plot", "--json", str(tmp_path))
    assert f"--json {tmp_path}: is a folder; give a file name inside it" in line


def test_bench_plot_and_no_plot(capsys, tmp_path):
    line = run_failing(capsys, "bench", "--quick", "--plot", str(tmp_path / "x.png"), "--no-plot")
    assert "--plot and --no-plot contradict each other" in line


def test_bench_unknown_optimizer(capsys):
    line = run_failing(capsys, "bench", "--quick", "--no-plot", "--optimizer", "adamm")
    assert "unknown optimizer(s) ['adamm']; choose from" in line and "lamb" in line


def test_bench_bad_sizes(capsys):
    line = run_failing(capsys, "bench", "--no-plot", "--sizes", "1e3,0")
    assert "--sizes must be positive whole numbers" in line


def test_bench_bad_rounds(capsys):
    line = run_failing(capsys, "bench", "--no-plot", "--rounds", "0")
    assert "--rounds must be an integer >= 1" in line


def test_bench_cold_on_the_gpu(capsys):
    line = run_failing(capsys, "bench", "--device", "cuda", "--cold", "--no-plot")
    assert "--cold is CPU-only" in line


def test_bench_cuda_without_a_gpu_or_numba_cuda(capsys):
    if importlib.util.find_spec("numba_cuda") is None:
        expected = 'pip install "fastopt[cuda]"'
    else:
        from numba import cuda

        if cuda.is_available():
            pytest.skip("this machine has a GPU")
        expected = "no CUDA GPU (or driver) is available on this machine; run with --device cpu"
    line = run_failing(capsys, "bench", "--device", "cuda", "--no-plot")
    assert expected in line


def test_bench_default_plot_without_matplotlib_is_a_note(capsys, no_matplotlib, tmp_path, monkeypatch):
    """Not asked for, the plot is skipped with one note before the run; the run goes on."""
    monkeypatch.chdir(tmp_path)
    rc = main(["bench", "--optimizer", "sgd", "--sizes", "100", "--rounds", "1", "--no-progress"])
    out, err = capsys.readouterr()
    assert rc == 0
    assert err.startswith("fastopt bench: note: no plot (matplotlib is not installed")
    assert "sgd" in out and list(tmp_path.iterdir()) == []


# -- fastopt train / compare -------------------------------------------------------

@pytest.mark.parametrize("command", ["train", "compare"])
def test_plot_into_a_missing_folder(capsys, command):
    line = run_failing(capsys, command, "--plot", "/nonexistent/dir/x.png")
    assert line.startswith(f"fastopt {command}: error: --plot /nonexistent/dir/x.png: the folder")


@pytest.mark.parametrize("command", ["train", "compare"])
def test_plot_without_matplotlib(capsys, no_matplotlib, tmp_path, command):
    line = run_failing(capsys, command, "--plot", str(tmp_path / "x.png"))
    assert 'pip install "fastopt[plot]"' in line


def test_train_hyperparameter_the_optimizer_lacks(capsys):
    line = run_failing(capsys, "train", "--optimizer", "adam", "--momentum", "0.9")
    assert "momentum" in line


def test_compare_bad_lr_scale(capsys):
    line = run_failing(capsys, "compare", "--lr-scale", "0")
    assert "--lr-scale must be > 0, got 0.0" in line


def test_compare_empty_optimizer_list(capsys):
    line = run_failing(capsys, "compare", "--optimizers", ",")
    assert "--optimizers must name at least one of" in line


# -- argparse's own errors are one line too -------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["train", "--lr", "fast"], "fastopt train: error: argument --lr: invalid float value: 'fast' "
                                "(see fastopt train --help)"),
    (["bench", "--dtype", "float16"], "fastopt bench: error: argument --dtype: invalid choice: 'float16'"),
    (["nope"], "fastopt: error: argument COMMAND: invalid choice: 'nope'"),
])
def test_argument_errors_are_one_line(capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    assert exc.value.code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith(message)
