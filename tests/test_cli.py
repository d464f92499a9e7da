"""The ``fastopt`` command line: demo, train, compare at tiny sizes, and its error messages."""

import io
import subprocess
import sys

import pytest

from fastopt.cli import main
from fastopt.progress import ProgressBar

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_cli(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return rc, out, err


def assert_png(path):
    assert path.exists() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG_MAGIC


# -- the commands ------------------------------------------------------------

def test_demo_tiny(capsys):
    rc, out, err = run_cli(capsys, "demo", "--epochs", "3", "--sizes", "100,2e3", "--repeats", "3", "--no-progress")
    assert rc == 0
    assert "final: loss" in out and "train accuracy" in out
    assert "speed-up" in out and "2,000" in out and "100" in out


def test_demo_progress_bar_goes_to_stderr(capsys):
    rc, out, err = run_cli(capsys, "demo", "--epochs", "2", "--sizes", "10", "--repeats", "1")
    assert rc == 0
    assert "train [" in err and "2/2" in err


@pytest.mark.parametrize("schedule", ["constant", "inverse_time", "step", "exponential", "cosine", "onecycle"])
def test_train_every_schedule(capsys, schedule):
    rc, out, _ = run_cli(capsys, "train", "--epochs", "2", "--schedule", schedule, "--no-progress")
    assert rc == 0
    assert f"schedule {schedule}" in out
    assert "final: train loss" in out and "train accuracy" in out and "us per step" in out


def test_train_options_reach_the_optimizer(capsys):
    rc, out, _ = run_cli(capsys, "train", "--optimizer", "SGD", "--lr", "0.1", "--momentum", "0.9",
                         "--epochs", "1", "--batch-size", "300", "--no-progress")
    assert rc == 0
    assert "SGD(lr=0.1, momentum=0.9)" in out and "batch 300" in out
    assert "1 steps" in out


def test_train_plot(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "loss.png"
    rc, out, _ = run_cli(capsys, "train", "--epochs", "3", "--plot", str(png), "--no-progress")
    assert rc == 0 and f"wrote {png}" in out
    assert_png(png)


def test_train_digits(capsys):
    pytest.importorskip("sklearn")
    rc, out, _ = run_cli(capsys, "train", "--dataset", "digits", "--epochs", "1", "--no-progress")
    assert rc == 0
    assert "64-128-10 MLP on digits" in out and "test accuracy" in out


def test_train_divergence_is_reported(capsys):
    rc, out, err = run_cli(capsys, "train", "--optimizer", "sgd", "--lr", "1e20", "--epochs", "3", "--no-progress")
    assert rc == 1
    assert "SGD with lr=1e+20: the training loss became NaN or infinite in epoch 1" in err


def test_compare_every_optimizer(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    import fastopt

    png = tmp_path / "curves.png"
    rc, out, _ = run_cli(capsys, "compare", "--epochs", "1", "--batch-size", "100", "--plot", str(png),
                         "--no-progress")
    assert rc == 0
    rows = {line.split()[0] for line in out.splitlines()[2:] if line and not line.startswith(("(", "wrote"))}
    assert set(fastopt.OPTIMIZERS) | {"momentum"} <= rows
    assert "us/step" in out and "step total" in out
    assert_png(png)


def test_compare_subset(capsys):
    rc, out, _ = run_cli(capsys, "compare", "--optimizers", "adam,momentum", "--epochs", "1", "--no-progress")
    assert rc == 0
    table = out.splitlines()[2:4]
    assert [line.split()[0] for line in table] == ["adam", "momentum"]


def test_compare_state_dtypes_reports_what_each_optimizer_stored(capsys):
    pytest.importorskip("sklearn")
    rc, out, _ = run_cli(capsys, "compare", "--dataset", "digits", "--optimizers", "adam,momentum",
                         "--state-dtypes", "float32,bf16,int8", "--epochs", "1", "--no-progress")
    assert rc == 0
    assert "state dtypes float32, bfloat16, int8" in out.splitlines()[0]
    rows = [line.split() for line in out.splitlines()[2:8]]
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("adam", "float32", "float32", "8"), ("adam", "bfloat16", "bfloat16", "4"), ("adam", "int8", "int8", "2.06"),
        ("momentum", "float32", "float32", "4"), ("momentum", "bfloat16", "bfloat16", "2"),
        ("momentum", "int8", "int8", "1.03")]
    assert "note:" not in out


def test_compare_state_dtypes_says_when_int8_keeps_float32(capsys):
    # The spiral MLP's 387 parameters are one flat buffer under 4096 elements: no 8-bit blocks.
    rc, out, _ = run_cli(capsys, "compare", "--optimizers", "adam", "--state-dtypes", "int8", "--epochs", "1",
                         "--no-progress")
    assert rc == 0
    assert out.splitlines()[2].split()[:4] == ["adam", "int8", "float32", "8"]
    assert "note: int8 states need a buffer of at least 4096 elements" in out and "387" in out


def test_compare_state_dtypes_skips_what_an_unnamed_optimizer_lacks(capsys):
    pytest.importorskip("sklearn")
    import fastopt

    rc, out, _ = run_cli(capsys, "compare", "--dataset", "digits", "--state-dtypes", "int8", "--epochs", "1",
                         "--batch-size", "500", "--no-progress")
    assert rc == 0
    rows = {line.split()[0]: line.split()[2] for line in out.splitlines()[2:] if line and not line.startswith(
        ("(", "note"))}
    assert set(rows) == (set(fastopt.OPTIMIZERS) | {"momentum"}) - {"lamb"}
    assert rows["sgd"] == "none" and rows["adam"] == "int8"  # plain SGD keeps no state
    assert "note: lamb with int8 states skipped: state_dtype='int8' is not available for LAMB" in out


# -- bad arguments: a clear message, exit code 2, no traceback ---------------

@pytest.mark.parametrize("argv, message", [
    (["train", "--optimizer", "adamm"], "unknown optimizer 'adamm'; choose from sgd, momentum"),
    (["compare", "--optimizers", "adam,nope"], "unknown optimizer 'nope'"),
    (["train", "--lr", "-0.1"], "--lr must be > 0, got -0.1"),
    (["train", "--lr", "0"], "--lr must be > 0"),
    (["train", "--epochs", "0"], "--epochs must be an integer >= 1"),
    (["train", "--batch-size", "-3"], "--batch-size must be an integer >= 1"),
    (["train", "--schedule", "linear"], "unknown schedule 'linear'; choose from constant"),
    (["train", "--dataset", "mnist"], "unknown dataset 'mnist'; choose from spiral, digits"),
    (["compare", "--dataset", "mnist"], "unknown dataset 'mnist'"),
    (["compare", "--state-dtypes", "float32,float16"],
     "--state-dtypes: unknown state dtype 'float16'; choose from float32, float64, bfloat16, int8"),
    (["compare", "--state-dtypes", " , "], "--state-dtypes must name at least one of float32"),
    (["compare", "--optimizers", "adam,lamb", "--state-dtypes", "int8"],
     "--state-dtypes int8 with lamb: state_dtype='int8' is not available for LAMB"),
    (["demo", "--sizes", "1e3,abc"], "--sizes must be comma-separated numbers"),
    (["demo", "--sizes", "0"], "--sizes entries must be integers >= 1"),
])
def test_bad_arguments(capsys, argv, message):
    rc, out, err = run_cli(capsys, *argv, "--no-progress")
    assert rc == 2
    assert message in err
    assert err.startswith(f"fastopt {argv[0]}: error:")


def test_train_unknown_optimizer_lists_all_choices(capsys):
    import fastopt

    rc, _, err = run_cli(capsys, "train", "--optimizer", "foo")
    assert rc == 2
    for name in fastopt.OPTIMIZERS:
        assert name in err


@pytest.mark.parametrize("command", ["train", "compare"])
def test_plot_without_matplotlib(capsys, monkeypatch, tmp_path, command):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    png = tmp_path / "x.png"
    rc, out, err = run_cli(capsys, command, "--epochs", "1", "--plot", str(png))
    assert rc == 2
    assert 'pip install "fastopt[plot]"' in err
    assert not png.exists()
    assert "final" not in out  # it failed before training


def test_digits_without_scikit_learn(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    rc, _, err = run_cli(capsys, "train", "--dataset", "digits")
    assert rc == 2
    assert 'pip install "fastopt[digits]"' in err


def test_unknown_command_and_bad_number_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--lr", "fast"])
    assert exc.value.code == 2
    assert "invalid float value" in capsys.readouterr().err


def test_module_entry_point_error_has_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "fastopt", "train", "--optimizer", "nope"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "unknown optimizer 'nope'" in proc.stderr
    assert "Traceback" not in proc.stderr


# -- the progress bar ----------------------------------------------------------

def test_progress_bar_live_redraws_in_place():
    stream = io.StringIO()
    with ProgressBar(4, "train", width=8, stream=stream, enabled=True, interval=0) as bar:
        for k in range(4):
            bar.update(loss=1.0 / (k + 1))
    text = stream.getvalue()
    assert text.count("\r") == 5 and text.endswith("\n")
    last = text.rstrip("\n").split("\r")[-1]
    assert last.startswith("train [########] 4/4") and "loss 0.25" in last


def test_progress_bar_off_a_terminal_writes_one_line():
    stream = io.StringIO()
    bar = ProgressBar(10, "x", width=10, stream=stream)
    for _ in range(5):
        bar.update()
    assert stream.getvalue() == ""
    assert bar.render().startswith("x [#####.....]  5/10")
    bar.close()
    bar.close()
    assert stream.getvalue().count("\n") == 1 and "\r" not in stream.getvalue()


def test_progress_bar_disabled_and_bad_total():
    stream = io.StringIO()
    with ProgressBar(3, stream=stream, enabled=False) as bar:
        bar.update(3)
    assert stream.getvalue() == ""
    with pytest.raises(ValueError, match="total"):
        ProgressBar(-1)
