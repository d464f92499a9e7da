"""``fastopt kernels``: the CUDA kernels' PTX and resources, without a GPU."""

from __future__ import annotations

import importlib.util

import pytest

from fastopt.cli import main

needs_cuda = pytest.mark.skipif(importlib.util.find_spec("numba_cuda") is None,
                                reason='numba-cuda is not installed (pip install "fastopt[cuda]")')


@needs_cuda
def test_resources_line_names_registers_and_spills(capsys):
    assert main(["kernels", "--optimizer", "sgd", "--resources"]) == 0
    out = capsys.readouterr().out
    assert "registers" in out and "0 bytes spill stores" in out and "vector loads (1 read-only)" in out


@needs_cuda
def test_ptx_is_printed(capsys):
    assert main(["kernels", "--optimizer", "adam", "--ptx"]) == 0
    out = capsys.readouterr().out
    assert ".target sm_90" in out and "ld.global.v4.f32" in out


@pytest.mark.parametrize("argv, message", [
    (["kernels", "--optimizer", "nope"], "unknown optimizer 'nope'"),
    (["kernels", "--optimizer", "lamb", "--ptx"], "segmented driver"),
    (["kernels", "--markdown", "/nonexistent/dir/x.md"], "does not exist"),
])
@needs_cuda
def test_errors_exit_2_before_compiling(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_missing_numba_cuda_names_the_extra(monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "numba_cuda" else real(name, *a))
    assert main(["kernels", "--resources"]) == 2
    assert 'pip install "fastopt[cuda]"' in capsys.readouterr().err
