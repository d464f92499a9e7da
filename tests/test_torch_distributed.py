"""DDP and ZeroRedundancyOptimizer with fastopt.torch: two real processes
(spawned, gloo on the CPU), each checking its run against torch.optim's (see
torch_dist_worker.py). A worker that fails fails the test; one that hangs is
ended after a deadline and fails it too."""

from __future__ import annotations

import os
import time

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")

DEADLINE = 300  # seconds for both processes (startup, compilation, training)


def test_ddp_and_zero_redundancy_optimizer_two_processes(tmp_path, monkeypatch):
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.fail("this torch build has no gloo backend")
    import torch.multiprocessing as mp
    from torch_dist_worker import run

    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    context = mp.start_processes(_entry, args=(2, str(tmp_path / "store"), 4, run), nprocs=2, join=False,
                                 start_method="spawn")
    deadline = time.monotonic() + DEADLINE
    try:
        while not context.join(timeout=5):
            if time.monotonic() > deadline:
                pytest.fail(f"the distributed workers did not finish within {DEADLINE} s")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.terminate()
                process.join(10)
    assert all(p.exitcode == 0 for p in context.processes)
    assert os.path.exists(tmp_path / "store") or True  # the file store may be removed by gloo on teardown


def _entry(rank, world, store, steps, run):
    run(rank, world, store, steps)
