"""``run_benchmark``: every optimizer, every size, every contender, interleaved.

Devices plug in through :data:`DEVICES`: a :class:`~.device.Device` provides
its contenders for one optimizer and buffer, its clock, its default sizes and
a check that it can run here. The CPU's contenders are NumPy, torch.optim,
fastopt (serial loop forced and as shipped) and the roofline twin; the GPU's
(:mod:`.gpu`) are fastopt, the twin, a device-to-device copy and torch's
fused/foreach steps, timed with CUDA events.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from .._precision import STATE_DTYPES
from ..backends import cpu as _cpu
from ..optim import OPTIMIZERS
from ..progress import ProgressBar
from . import state_dtypes
from .contenders import CPU_DEVICE
from .device import Device
from .machine import machine_info
from .problems import hyperparameters, make_data, state_names
from .roofline import bytes_per_step, traffic
from .state_dtypes import bytes_per_element
from .timing import interleaved, paired_ratio, spread

DEFAULT_SIZES = CPU_DEVICE.default_sizes
QUICK_SIZES = CPU_DEVICE.quick_sizes

FULL = dict(rounds=15, min_rounds=5, budget_s=20.0, target_s=5e-3)
QUICK = dict(rounds=5, min_rounds=3, budget_s=1.0, target_s=1e-3)
"""Timing settings of a full and a ``quick`` run (per optimizer and size)."""

REFERENCE = "fastopt"
LIMIT = "roofline"

DEVICES: dict[str, str] = {"cpu": "fastopt.benchmark.contenders:CPU_DEVICE", "cuda": "fastopt.benchmark.gpu:DEVICE"}
"""Device name -> ``"module:attribute"`` of its :class:`~.device.Device`, imported on first use
(the CUDA device imports numba's CUDA target)."""


def get_device(device: str) -> Device:
    """The :class:`~.device.Device` named ``device``, after checking that it can run here.

    Raises
    ------
    ValueError
        Unknown device, or (CUDA) no GPU.
    ImportError
        The device needs an extra that is not installed (names it).
    """
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; choose from {sorted(DEVICES)}")
    module, attribute = DEVICES[device].split(":")
    dev: Device = getattr(importlib.import_module(module), attribute)
    dev.check()
    return dev


def parse_optimizers(optimizers: str | list[str] | None) -> list[str]:
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


def _check_state_dtype(state_dtype: Any, dtype: np.dtype, device: str) -> str | None:
    """``state_dtype`` checked (None when it is the params' own dtype)."""
    if state_dtype is None:
        return None
    if state_dtype not in STATE_DTYPES:
        raise ValueError(f"state_dtype must be one of {STATE_DTYPES}, got {state_dtype!r}")
    if state_dtype == dtype.name:
        return None
    if state_dtype not in state_dtypes.LOW_PRECISION:
        raise ValueError(f"state_dtype={state_dtype!r} with {dtype.name} params is not benchmarked: use the "
                         f"params' dtype, 'bfloat16' or 'int8'")
    if device != "cpu":
        raise ValueError(f"state_dtype={state_dtype!r} is benchmarked on the CPU only (the GPU runner has no "
                         "low-precision twin yet); drop it or use device='cpu'")
    return state_dtype


def _check_sizes(sizes: Any) -> list[int]:
    out = []
    for s in sizes:
        n = int(s)
        if n != s or n < 1:
            raise ValueError(f"sizes must be positive integers, got {s!r}")
        out.append(n)
    if not out:
        raise ValueError("sizes must not be empty")
    return out


@contextlib.contextmanager
def quiet_openmp() -> Iterator[list[str]]:
    """Make idle OpenMP threads sleep instead of spin, unless the user chose;
    yields notes saying what applied.

    torch and numba's ``omp`` layer each run their own OpenMP pool; with the
    default (spinning) wait policy, one pool's idle threads starve the other's
    on a small machine and interleaved timings jump by milliseconds (measured:
    torch fused Adam at 1e3 went from ~40 us alone to ~8 ms interleaved). The
    policy is read when a runtime starts, so it only applies to pools not yet
    started. On exit the environment variable is removed again (pools keep
    the policy they started with), so processes started later from this one
    get the user's environment.
    """
    import sys

    from numba.np.ufunc import parallel

    if "OMP_WAIT_POLICY" in os.environ:
        yield [f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']} (from the environment)"]
        return
    torch_started = "torch" in sys.modules
    numba_started = bool(getattr(parallel, "_is_initialized", False))
    if not _cpu.sleep_idle_threads():  # sets it, and fastopt's threshold follows numba's sleeping pool
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # numba's pool has started; torch's may not have
    notes = ["OMP_WAIT_POLICY=PASSIVE set by the benchmark (torch's and numba's OpenMP pools would "
             "otherwise spin against each other); override by setting it in the environment"]
    started = [what for what, yes in (("torch", torch_started), ("numba's thread pool", numba_started)) if yes]
    if started:
        notes.append(f"{' and '.join(started)} started before the policy was set: it may not apply to them")
    try:
        yield notes
    finally:
        os.environ.pop("OMP_WAIT_POLICY", None)


def _match_threads() -> int | None:
    """Give torch as many threads as numba has; returns torch's count (None: no torch)."""
    import numba

    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(numba.get_num_threads())
    return torch.get_num_threads()


def measure_one(name: str, h: dict, n: int, dtype: Any, device: Device, settings: dict,
                state_dtype: str | None = None) -> dict:
    """Time every contender of ``device`` for optimizer ``name`` on ``n`` elements
    (with ``state_dtype`` states, when given)."""
    p0, g = make_data(n, dtype)
    if state_dtype is None:
        contenders, skipped = device.contenders(name, h, p0, g)
    else:
        contenders, skipped = device.contenders(name, h, p0, g, state_dtype=state_dtype)
    timed = interleaved(contenders, settings["rounds"], min_rounds=settings["min_rounds"],
                        budget_s=settings["budget_s"], target_s=settings["target_s"], timer=device.timer)
    labels = {c.name: c.label for c in contenders}
    del contenders, p0, g
    gc.collect()
    times = timed["times"]
    nbytes = bytes_per_step(name, h, n, dtype) if state_dtype is None else round(
        bytes_per_element(name, h, n, dtype, state_dtype) * n)
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
            "dtype": np.dtype(dtype).name, "state_dtype": state_dtype or np.dtype(dtype).name, "reads": reads,
            "writes": writes, "bytes_per_step": nbytes,
            "rounds": timed["rounds"], "contenders": per, "speedup": speedup, "skipped": skipped}


def run_benchmark(optimizers: str | list[str] | None = None, sizes: list[int] | None = None,
                  dtype: Any = "float32", quick: bool = False, device: str = "cpu", progress: bool = True,
                  rounds: int | None = None, state_dtype: str | None = None) -> dict:
    """Benchmark fastopt against its baselines and the roofline twin.

    Parameters
    ----------
    optimizers : str or list of str, optional
        Registry names (``fastopt.OPTIMIZERS``); default all.
    sizes : sequence of int, optional
        Buffer sizes in elements; default the device's (CPU: 1e3 .. 5e7, or
        1e3 .. 1e6 when ``quick``; CUDA: 2^16 .. 2^28, or 2^16 .. 2^24).
    dtype : {"float32", "float64"}
    quick : bool
        Fewer sizes and rounds (all optimizers in under a minute on the CPU).
    device : {"cpu", "cuda"}
    progress : bool
        Draw a progress bar on stderr.
    rounds : int, optional
        Interleaved rounds per optimizer and size (default 15, quick 5; large
        sizes may stop earlier, after at least 5 (quick 3), to bound the time).
    state_dtype : {"float32", "float64", "bfloat16", "int8"}, optional
        Optimizer state storage (CPU only; default: the params' dtype). With
        ``"bfloat16"`` or ``"int8"`` the roofline twin moves those states'
        bytes and fastopt with full-precision states, torch.optim and (int8)
        bitsandbytes' 8-bit Adam are the contenders; optimizers that cannot
        take the dtype are listed in ``left_out``.

    Returns
    -------
    dict
        JSON-ready: ``machine``, ``settings``, ``notes``, ``results`` (one
        entry per optimizer and size with per-contender ``median_s``,
        quartiles, ``gbps``, ``pct_roofline`` and fastopt's ``speedup`` over
        each other contender, medians of round-by-round ratios), ``left_out``
        (sizes that did not fit in the device's memory) and ``extras``
        (device-specific measurements).
    """
    names = parse_optimizers(optimizers)
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    settings: dict[str, Any] = dict(QUICK if quick else FULL)
    if rounds is not None:
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
            raise ValueError(f"rounds must be an int >= 1, got {rounds!r}")
        settings.update(rounds=rounds, min_rounds=rounds, budget_s=None)
    state_dtype = _check_state_dtype(state_dtype, dtype, device)
    dev = get_device(device)
    sizes = _check_sizes(sizes if sizes is not None else (dev.quick_sizes if quick else dev.default_sizes))
    with quiet_openmp() as notes:
        torch_threads = _match_threads()
        if torch_threads is None:
            notes.append("torch is not installed: torch.optim baselines skipped")
        results: list[dict] = []
        left_out: dict[str, dict] = {}
        with ProgressBar(len(names) * len(sizes), "bench", enabled=None if progress else False) as bar:
            for name in names:
                h = hyperparameters(name)
                why_not = state_dtypes.check_state_dtype(name, state_dtype)
                if why_not:
                    left_out[name] = {"sizes": sizes, "why": why_not}
                    bar.update(len(sizes))
                    continue
                for n in sizes:
                    if not dev.fits(name, h, n, dtype):
                        skipped = left_out.setdefault(name, {"sizes": [], "why": "not enough free device memory"})
                        skipped["sizes"].append(n)
                        bar.update()
                        continue
                    bar.update(0, at=f"{name} n={n:,}")
                    results.append(measure_one(name, h, n, dtype, dev, settings, state_dtype))
                    bar.update()
        extras = dev.extras(dtype, quick) if dev.extras is not None else {}
        info = machine_info()
        info["device"] = dev.describe()
        notes.append(f"numba threads {info['numba_threads']}, torch threads {torch_threads} (set to match); "
                     "NumPy ufuncs are single-threaded")
        return {
            "schema": "fastopt-benchmark/2",
            "machine": info,
            "settings": {"device": dev.name, "dtype": dtype.name, "state_dtype": state_dtype or dtype.name,
                         "sizes": sizes, "optimizers": names, "quick": quick,
                         "serial_below": _cpu.SERIAL_BELOW, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                         **settings},
            "notes": notes,
            "results": results,
            "left_out": left_out,
            "extras": extras,
        }
