"""Compiling and configuring CUDA kernels: one compiled kernel per shape
per process, one configured launch object per (kernel, grid, stream), and
the device's limits (per device)."""

from __future__ import annotations

import warnings

import numpy as np
from numba.core.errors import NumbaPerformanceWarning

from . import kernels as K
from .occupancy import resident_blocks
from .runtime import SIMULATOR, cuda

_compiled: dict = {}


def compile_kernel(key, build, bounds=None):
    """A compiled kernel, built once per process: ``build() -> (pyfunc, signature)``,
    with launch bounds ``bounds`` (see :mod:`.occupancy`) when given."""
    kernel = _compiled.get(key)
    if kernel is None:
        pyfunc, signature = build()
        options = {"launch_bounds": bounds} if bounds and not SIMULATOR else {}
        kernel = _compiled[key] = cuda.jit(signature, **options)(pyfunc)
    return kernel


def helper(name: str, dtype, threads: int = 256, chunk: int = 1 << 16):
    """A compiled helper kernel (see :func:`fastopt.backends.cuda.kernels.helper_kernels`)."""
    return compile_kernel(("helper", name, np.dtype(dtype), threads, chunk),
                    lambda: K.helper_kernels(dtype, threads, chunk)[name])


_configured: dict = {}


def configured(kernel, blocks: int, threads: int, stream):
    """``kernel[blocks, threads, stream]``, made once and reused.

    Configuring costs a stream conversion and, for grids under 128 blocks,
    numba's low-occupancy warning, which is wrong here (a small buffer needs
    few blocks) and silenced. The simulator's kernels hold a single
    configuration, so there it is set on every call.
    """
    if SIMULATOR:
        return kernel[blocks, threads]
    key = (kernel, blocks, threads, stream)
    launch = _configured.get(key)
    if launch is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NumbaPerformanceWarning)
            launch = _configured[key] = kernel[blocks, threads, stream]
    return launch


_limits: dict = {}


def device_limits(device) -> tuple[int, int]:
    """``(SMs, max threads per SM)`` of device ``device`` (cached per device)."""
    limits = _limits.get(device)
    if limits is None:
        with on_device(device):
            d = cuda.get_current_device()
            limits = _limits[device] = (getattr(d, "MULTIPROCESSOR_COUNT", 1),
                                        getattr(d, "MAX_THREADS_PER_MULTIPROCESSOR", 2048))
    return limits


def device_blocks(threads: int, device, kernel=None) -> int:
    """Blocks resident on device ``device``: for ``kernel`` at its real
    occupancy when given, else at full occupancy."""
    sms, per_sm = device_limits(device)
    if kernel is not None and not SIMULATOR:
        key = (kernel, threads, device)
        blocks = _limits.get(key)
        if blocks is None:
            with on_device(device):
                blocks = _limits[key] = resident_blocks(kernel, threads, sms, per_sm)
        return blocks
    return max(1, sms * max(1, per_sm // threads))


class _NoSwitch:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


_NO_SWITCH = _NoSwitch()


def on_device(device: int):
    """A context manager making ``device`` current (a no-op with one GPU or the simulator)."""
    if SIMULATOR or device is None or len(cuda.gpus) < 2:
        return _NO_SWITCH
    return cuda.gpus[device]


def synchronize() -> None:
    # Host-facing copies are not on the hot path: fence the whole device so
    # that a kernel still running on a caller's non-blocking stream is ordered
    # before (and after) them.
    cuda.synchronize()


