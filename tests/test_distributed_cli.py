"""``mpiexec -n 2 fastopt train --distributed ddp|zero1`` prints the same final
line as one process with the same seed and global batch."""

from __future__ import annotations

import re

import pytest
from mpi_helpers import launch, require_mpi

from fastopt.cli import main

ARGS = ["train", "--dataset", "spiral", "--optimizer", "adam", "--epochs", "30", "--batch-size", "31",
        "--no-progress"]
FINAL = re.compile(r"^final: train loss ([0-9.]+), train accuracy ([0-9.]+)%$", re.M)


@pytest.fixture(scope="module")
def single():
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(ARGS) == 0
    return FINAL.search(out.getvalue()).groups()


@pytest.mark.parametrize("mode", ["ddp", "zero1"])
def test_two_ranks_print_the_single_process_result(single, mode):
    require_mpi()
    proc = launch([*ARGS, "--distributed", mode], module="fastopt")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    finals = FINAL.findall(proc.stdout)
    assert len(finals) == 1, proc.stdout  # rank 0 only
    assert f"distributed: {mode} over 2 MPI rank(s)" in proc.stdout
    loss, accuracy = map(float, finals[0])
    assert loss == pytest.approx(float(single[0]), abs=2e-4)  # float rounding of the split batch
    assert accuracy == pytest.approx(float(single[1]), abs=0.34)  # at most one sample of 300 flips


def test_distributed_option_is_checked(capsys):
    with pytest.raises(SystemExit):
        main([*ARGS, "--distributed", "zero3"])
    assert "invalid choice" in capsys.readouterr().err
