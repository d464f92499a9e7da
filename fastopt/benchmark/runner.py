"""``run_benchmark``: every optimizer, every size, every contender, interleaved.

Devices plug in through :data:`DEVICES`: a device provides a function building
its contenders for one optimizer and buffer, and a timer for
:func:`.timing.interleaved`. Only the CPU exists today. A CUDA suite would add
fastopt's CUDA step, torch CUDA foreach/fused, and a device-to-device copy of
the same bytes as its limit, timed with CUDA events.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..backends import cpu as _cpu
from ..optim import OPTIMIZERS
from .contenders import cpu_contenders
from .machine import machine_info
from .problems import hyperparameters, make_data, state_names
from .progress import ProgressBar
from .roofline import bytes_per_step, traffic
from .timing import interleaved, paired_ratio, spread, wall_timer

DEFAULT_SIZES = (1_000, 10_000, 100_000, 1_000_000, 10_000_000, 50_000_000)
QUICK_SIZES = (1_000, 10_000, 100_000, 1_000_000)

FULL = dict(rounds=15, min_rounds=5, budget_s=20.0, target_s=5e-3)
QUICK = dict(rounds=5, min_rounds=3, budget_s=1.0, target_s=1e-3)
"""Timing settings of a full and a ``quick`` run (per optimizer and size)."""

REFERENCE = "fastopt"
LIMIT = "roofline"


@dataclass(frozen=True)
class Device:
    """How to benchmark on one device: its contenders and its clock."""

    contenders: Callable  # (name, h, p0, g) -> (list[Contender], skipped: dict)
    timer: Callable = wall_timer


DEVICES = {"cpu": Device(cpu_contenders)}


def get_device(device: str) -> Device:
    """The :class:`Device` for ``device``; a clear error when it cannot run."""
    if device in DEVICES:
        return DEVICES[device]
    if device == "cuda":
        raise ValueError("run_benchmark times CPU contenders only; the GPU benchmark (CUDA events, torch "
                         "fused/foreach, device-to-device copy) is fastopt.benchmark.gpu, which "
                         "`fastopt bench --device cuda` runs")
    raise ValueError(f"unknown device {device!r}; choose from {sorted(DEVICES) + ['cuda']}")


def parse_optimizers(optimizers) -> list[str]:
    """Registry names from ``None`` (all), a name, a comma list or a list of those."""
    if optimizers is None:
        return list(OPTIMIZERS)
    if isinstance(optimizers, str):
        optimizers = [optimizers]
    names = [n.strip().lower() for item in optimizers for n in item.split(",") if n.strip()]
    unknown = [n for n in names if n not in OPTIMIZERS]
    if unknown or not names:
        raise ValueError(f"unknown optimizer(s) {unknown}; choose from {list(OPTIMIZERS)}")
    return list(dict.fromkeys(names))


def _check_sizes(sizes) -> list[int]:
    out = []
    for s in sizes:
        n = int(s)
        if n != s or n < 1:
            raise ValueError(f"sizes must be positive integers, got {s!r}")
        out.append(n)
    if not out:
        raise ValueError("sizes must not be empty")
    return out


def _quiet_openmp() -> list[str]:
    """Make idle OpenMP threads sleep instead of spin, unless the user chose.

    torch and numba's ``omp`` layer each run their own OpenMP pool; with the
    default (spinning) wait policy, one pool's idle threads starve the other's
    on a small machine and interleaved timings jump by milliseconds (measured:
    torch fused Adam at 1e3 went from ~40 us alone to ~8 ms interleaved). The
    policy is read when a runtime starts, so it only applies to pools not yet
    started; returns notes saying what applied.
    """
    import sys

    from numba.np.ufunc import parallel

    if "OMP_WAIT_POLICY" in os.environ:
        return [f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']} (from the environment)"]
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    notes = ["OMP_WAIT_POLICY=PASSIVE set by the benchmark (torch's and numba's OpenMP pools would "
             "otherwise spin against each other); override by setting it in the environment"]
    started = [what for what, yes in (("torch", "torch" in sys.modules),
                                      ("numba's thread pool", getattr(parallel, "_is_initialized", False))) if yes]
    if started:
        notes.append(f"{' and '.join(started)} started before the policy was set: it may not apply to them")
    return notes


def _match_threads() -> int | None:
    """Give torch as many threads as numba has; returns torch's count (None: no torch)."""
    import numba

    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(numba.get_num_threads())
    return torch.get_num_threads()


def measure_one(name: str, h: dict, n: int, dtype, device: Device, settings: dict) -> dict:
    """Time every contender of ``device`` for optimizer ``name`` on ``n`` elements."""
    p0, g = make_data(n, dtype)
    contenders, skipped = device.contenders(name, h, p0, g)
    timed = interleaved(contenders, settings["rounds"], min_rounds=settings["min_rounds"],
                        budget_s=settings["budget_s"], target_s=settings["target_s"], timer=device.timer)
    labels = {c.name: c.label for c in contenders}
    del contenders, p0, g
    gc.collect()
    times, nbytes = timed["times"], bytes_per_step(name, h, n, dtype)
    per = {}
    for cname, samples in times.items():
        s = spread(samples)
        per[cname] = {"label": labels[cname], "median_s": s["median"], "q1_s": s["q1"], "q3_s": s["q3"],
                      "min_s": s["min"], "max_s": s["max"], "batch": timed["batch"][cname],
                      "gbps": nbytes / s["median"] / 1e9,
                      "pct_roofline": {k: 100 * v for k, v in paired_ratio(times[LIMIT], samples).items()}}
    speedup = {cname: paired_ratio(samples, times[REFERENCE]) for cname, samples in times.items()
               if cname not in (REFERENCE, LIMIT)}
    reads, writes = traffic(name, h)
    return {"optimizer": name, "hyperparameters": h, "state_names": list(state_names(name, h)), "size": n,
            "dtype": np.dtype(dtype).name, "reads": reads, "writes": writes, "bytes_per_step": nbytes,
            "rounds": timed["rounds"], "contenders": per, "speedup": speedup, "skipped": skipped}


def run_benchmark(optimizers=None, sizes=None, dtype="float32", quick: bool = False, device: str = "cpu",
                  progress: bool = True, rounds: int | None = None) -> dict:
    """Benchmark fastopt against its baselines and the roofline twin.

    Parameters
    ----------
    optimizers : str or list of str, optional
        Registry names (``fastopt.OPTIMIZERS``); default all.
    sizes : sequence of int, optional
        Buffer sizes in elements; default :data:`DEFAULT_SIZES`, or
        :data:`QUICK_SIZES` when ``quick``.
    dtype : {"float32", "float64"}
    quick : bool
        Fewer sizes and rounds (all optimizers in under a minute).
    device : {"cpu", "cuda"}
    progress : bool
        Draw a progress bar on stderr.
    rounds : int, optional
        Interleaved rounds per optimizer and size (default 15, quick 5; large
        sizes may stop earlier, after at least 5 (quick 3), to bound the time).

    Returns
    -------
    dict
        JSON-ready: ``machine``, ``settings``, ``notes`` and ``results`` (one
        entry per optimizer and size with per-contender ``median_s``,
        quartiles, ``gbps``, ``pct_roofline`` and fastopt's ``speedup`` over
        each other contender, medians of round-by-round ratios).
    """
    dev = get_device(device)
    names = parse_optimizers(optimizers)
    sizes = _check_sizes(sizes if sizes is not None else (QUICK_SIZES if quick else DEFAULT_SIZES))
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    settings = dict(QUICK if quick else FULL)
    if rounds is not None:
        if rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {rounds}")
        settings.update(rounds=rounds, min_rounds=rounds, budget_s=None)
    notes = _quiet_openmp()
    torch_threads = _match_threads()
    if torch_threads is None:
        notes.append("torch is not installed: torch.optim baselines skipped")
    bar = ProgressBar(len(names) * len(sizes), enabled=progress)
    results = []
    try:
        for name in names:
            h = hyperparameters(name)
            for n in sizes:
                bar.show(f"{name} n={n:,}")
                results.append(measure_one(name, h, n, dtype, dev, settings))
                bar.advance(f"{name} n={n:,}")
    finally:
        bar.close()
    info = machine_info()
    notes.append(f"numba threads {info['numba_threads']}, torch threads {torch_threads} (set to match); "
                 "NumPy ufuncs are single-threaded")
    return {
        "schema": "fastopt-benchmark/1",
        "machine": info,
        "settings": {"device": device, "dtype": dtype.name, "sizes": sizes, "optimizers": names, "quick": quick,
                     "serial_below": _cpu.SERIAL_BELOW, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                     **settings},
        "notes": notes,
        "results": results,
    }
