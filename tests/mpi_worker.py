"""Scenarios run under ``mpiexec -n 2`` by tests/test_distributed.py (real
processes). Each prints ``RESULT <json>`` lines that the test reads; rank 0
compares against the single-process run it computes itself."""

from __future__ import annotations

import json
import os
import sys
import warnings

import numpy as np

import fastopt
from fastopt.distributed import DataParallel, RankMismatchError, ZeRO1, load_checkpoint, save_checkpoint

SHAPES = {"w1": (37, 5), "b1": (5,), "w2": (300,), "w3": (7, 11)}


def report(**values) -> None:
    print("RESULT " + json.dumps(values), flush=True)


def init_params() -> fastopt.FlatParams:
    rng = np.random.default_rng(7)
    return fastopt.FlatParams.from_arrays({k: rng.standard_normal(s).astype(np.float32) for k, s in SHAPES.items()})


def local_grads(step: int, rank: int) -> np.ndarray:
    """The gradient rank ``rank`` computes at ``step`` (a different one per rank)."""
    n = sum(int(np.prod(s)) for s in SHAPES.values())
    return np.random.default_rng(1000 * step + rank).standard_normal(n).astype(np.float32)


def run_pair(comm, mode, name, steps=50, nan_at=None, **kw):
    """``(distributed params, single-process params, distributed optimizer, single)``
    after ``steps`` steps of the same data: rank r's gradient is local_grads(step, r);
    the single process steps with their mean."""
    rank, world = comm.Get_rank(), comm.Get_size()
    mine, ref = init_params(), init_params()
    cls = fastopt.OPTIMIZERS[name]
    options = {k: kw.pop(k) for k in ("bucket_size", "boundaries", "algorithm") if k in kw}
    dist = (DataParallel if mode == "ddp" else ZeRO1)(mine, cls, comm, **options, **kw)
    single = cls(ref, **kw)
    for step in range(steps):
        mine.grad[:] = local_grads(step, rank)
        if nan_at is not None and step == nan_at and rank == world - 1:
            mine.grad[3] = np.nan
        dist.step()
        total = np.zeros(mine.grad.size, np.float64)
        for r in range(world):
            g = local_grads(step, r).astype(np.float64)
            if nan_at is not None and step == nan_at and r == world - 1:
                g[3] = np.nan
            total += g
        ref.grad[:] = (total / world).astype(np.float32)
        single.step()
    return mine, ref, dist, single


def scenario_trajectories(comm):
    rank = comm.Get_rank()
    cases = [("ddp", "adam", {}), ("zero1", "adam", {}), ("ddp", "adam", {"algorithm": "mpi"}),
             ("zero1", "adam", {"algorithm": "mpi", "max_grad_norm": 5.0}),
             ("ddp", "adamw", {"max_grad_norm": 5.0, "weight_decay": 0.1}),
             ("zero1", "adamw", {"max_grad_norm": 5.0, "weight_decay": 0.1}),
             ("ddp", "sgd", {"lr": 0.01, "momentum": 0.9, "bucket_size": 100}),
             ("ddp", "nadam", {"bucket_size": 128, "max_grad_norm": 3.0}),
             ("zero1", "nadam", {"ema_decay": 0.9}), ("zero1", "adam", {"accumulate": 2}),
             ("ddp", "lamb", {"lr": 1e-2}), ("zero1", "lamb", {"lr": 1e-2})]
    for mode, name, kw in cases:
        mine, ref, dist, single = run_pair(comm, mode, name, **dict(kw))
        everyone = comm.allgather(mine.data.copy())
        report(case=f"{mode}-{name}-{sorted(kw)}", rank=rank, max_error=float(np.abs(mine.data - ref.data).max()),
               ranks_identical=all(np.array_equal(everyone[0], x) for x in everyone),
               norm=dist.last_grad_norm, single_norm=single.last_grad_norm)
    # State memory per rank: ZeRO-1 holds 1/N of the single-process state.
    for name in ("adam", "sgd"):
        kw = {"momentum": 0.9} if name == "sgd" else {}
        mine, ref, dist, single = run_pair(comm, "zero1", name, steps=1, **kw)
        single_bytes = sum(v.nbytes for st in single.state.values() for v in st.values() if isinstance(v, np.ndarray))
        report(case=f"state-bytes-{name}", rank=rank, zero1=dist.state_bytes(), single=single_bytes,
               ddp=DataParallel(init_params(), name, comm, **kw).state_bytes())


def scenario_guard(comm):
    rank = comm.Get_rank()
    for mode in ("ddp", "zero1"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            mine, ref, dist, single = run_pair(comm, mode, "adam", steps=6, nan_at=3, nonfinite="skip")
        everyone = comm.allgather(mine.data.copy())
        report(case=f"skip-{mode}", rank=rank, skipped=dist.skipped_steps, single_skipped=single.skipped_steps,
               max_error=float(np.abs(mine.data - ref.data).max()),
               ranks_identical=all(np.array_equal(everyone[0], x) for x in everyone),
               warned=any("non-finite" in str(w.message) for w in caught))
        before = mine.data.copy()
        mine.grad[:] = 1.0
        if rank == 0:
            mine.grad[0] = np.inf
        try:
            dist.apply_step(nonfinite="raise")
            raised = None
        except fastopt.NonFiniteGradientError as exc:
            raised = str(exc)
        report(case=f"raise-{mode}", rank=rank, raised=raised, unchanged=bool(np.array_equal(before, mine.data)))
    # A LossScaler drives the distributed optimizers through apply_step, as a single one.
    for mode in ("ddp", "zero1"):
        mine, ref = init_params(), init_params()
        dist = (DataParallel if mode == "ddp" else ZeRO1)(mine, "adam", comm)
        single = fastopt.Adam(ref)
        scalers = fastopt.LossScaler(init_scale=2.0**20, growth_interval=2), fastopt.LossScaler(
            init_scale=2.0**20, growth_interval=2)
        for step in range(6):
            mine.grad[:] = local_grads(step, rank) * np.float32(scalers[0].scale_value)
            if step == 2 and rank == comm.Get_size() - 1:
                with np.errstate(over="ignore"):  # overflows on the last rank only: every rank must back off
                    mine.grad[:] *= np.float32(1e35)
            ref.grad[:] = (sum(local_grads(step, r).astype(np.float64) for r in range(comm.Get_size()))
                           / comm.Get_size() * scalers[1].scale_value).astype(np.float32)
            if step == 2:
                with np.errstate(over="ignore"):
                    ref.grad[:] *= np.float32(1e35)
            scalers[0].step(dist)
            scalers[0].update()
            scalers[1].step(single)
            scalers[1].update()
        report(case=f"scaler-{mode}", rank=rank, max_error=float(np.abs(mine.data - ref.data).max()),
               scales=[scalers[0].scale_value, scalers[1].scale_value], skipped=[dist.skipped_steps,
                                                                                  single.skipped_steps])
    # Threads: the default under mpiexec is cores / local ranks.
    from fastopt.backends import cpu, threads

    big = fastopt.FlatParams({"w": (max(1 << 16, cpu.SERIAL_BELOW),)})  # a parallel step whatever the wait policy
    opt = fastopt.Adam(big)
    opt.step()
    import numba

    report(case="threads", rank=rank, fastopt=threads.get_num_threads(), numba_in_step=numba.get_num_threads(),
           why=threads.default_num_threads()[1], cores=os.cpu_count(),
           local_ranks=threads.local_ranks())


def scenario_mismatch(comm):
    rank = comm.Get_rank()
    trials = {
        "size": lambda: ZeRO1(fastopt.FlatParams({"w": (10 + rank,)}), "adam", comm),
        "dtype": lambda: DataParallel(fastopt.FlatParams({"w": (10,)}, dtype=np.float32 if rank else np.float64),
                                      "adam", comm),
        "hyper": lambda: DataParallel(fastopt.FlatParams({"w": (10,)}), "adam", comm, lr=1e-3 * (1 + rank)),
        "optimizer": lambda: ZeRO1(fastopt.FlatParams({"w": (10,)}), "adam" if rank else "sgd", comm),
        "bad-on-one-rank": lambda: ZeRO1(fastopt.FlatParams({"w": (10,)}), "adam", comm, lr=-1.0 if rank else 1e-3),
        "bucket-ring": lambda: DataParallel(fastopt.FlatParams({"w": (10,)}), "adam", comm, bucket_size=4,
                                            algorithm="ring"),
        "lamb-aligned": lambda: ZeRO1(fastopt.FlatParams({"w": (10,)}), "lamb", comm, boundaries="aligned"),
    }
    for what, make in trials.items():
        try:
            make()
            report(case=what, rank=rank, error=None)
        except (ValueError, TypeError) as exc:
            report(case=what, rank=rank, error=f"{type(exc).__name__}: {exc}",
                   every_rank=isinstance(exc, RankMismatchError) or getattr(exc, "fastopt_every_rank", False))


def scenario_crash(comm):
    """Rank 1 dies of an uncaught exception while rank 0 waits in a collective."""
    params = init_params()
    opt = DataParallel(params, "adam", comm)
    if comm.Get_rank() == 1:
        raise RuntimeError("rank 1 failed on purpose")
    opt.step()  # rank 0 waits here for rank 1's gradients
    print("rank 0 was not aborted", flush=True)


def scenario_checkpoint(comm, mode, name, action, path):
    """save: 10 steps, save, 10 more steps (rank 0 keeps the final params);
    load: load, then the same last 10 steps: the params must match."""
    rank = comm.Get_rank()
    params = init_params()
    opt = (DataParallel if mode == "ddp" else ZeRO1)(params, name, comm, lr=1e-2)

    def run(a, b):
        for step in range(a, b):
            params.grad[:] = local_grads(step, 0)
            opt.step()

    if action == "save":
        run(0, 10)
        save_checkpoint(path, opt, extra={"at": 10})
        run(10, 20)
        if rank == 0:
            np.save(f"{path}.final.npy", params.data)
        return
    try:
        extra = load_checkpoint(path, opt)
    except (ValueError, TypeError) as exc:
        report(case="load", rank=rank, error=f"{type(exc).__name__}: {exc}")
        return
    run(10, 20)
    final = np.load(f"{path}.final.npy")
    report(case="load", rank=rank, error=None, extra=extra, max_error=float(np.abs(params.data - final).max()),
           state_bytes=opt.state_bytes())


def main(argv):
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    scenario = argv[0]
    if scenario == "checkpoint":
        scenario_checkpoint(comm, *argv[1:])
    else:
        globals()[f"scenario_{scenario}"](comm)


if __name__ == "__main__":
    main(sys.argv[1:])
