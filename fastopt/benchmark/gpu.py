"""The CUDA device of the benchmark runner (``fastopt bench --device cuda``).

Contenders for one optimizer and buffer, all on the same GPU:

- ``fastopt``: the optimizer class over one flat device buffer;
- ``roofline``: the roofline twin, fastopt's own CUDA kernel factory and
  launch configuration with a rule of the same memory traffic and no math
  (:data:`fastopt.benchmark.roofline.TWIN_RULES`): the limit;
- ``copy``: a device-to-device copy moving the same bytes;
- ``torch_fused`` / ``torch_foreach``: ``torch.optim`` on the same GPU, where
  torch has the optimizer and that implementation.

Steps are timed with CUDA events by the runner's interleaved rounds (the
simulator's events record no time, so there the host clock stands in). With
torch, every array is a torch tensor and everything runs on torch's current
stream, fastopt included; without torch, numba device arrays on the default
stream. Also measured (:func:`host_overhead`): the host's cost of one step at
2^12 elements, where the GPU work is negligible, synchronised after each step
and queued.

Under ``NUMBA_ENABLE_CUDASIM=1`` the same code runs in numba's CUDA simulator
(tiny launch configuration, no torch): the numbers mean nothing, the code
paths are exercised.
"""

from __future__ import annotations

import functools
import inspect
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .device import Device
from .problems import state_names
from .roofline import bytes_per_step, traffic
from .timing import Contender

DEFAULT_SIZES = tuple(1 << k for k in range(16, 29, 2))
QUICK_SIZES = tuple(1 << k for k in range(16, 25, 4))

OVERHEAD_N = 1 << 12
MEMORY_FRACTION = 0.6
"""Largest share of the free GPU memory one size may use (all contenders together)."""

TORCH_MODES = {"torch_fused": "fused", "torch_foreach": "foreach"}


def simulated() -> bool:
    """Whether numba's CUDA simulator stands in for a GPU."""
    return os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


def require_gpu() -> None:
    """Raise ``ValueError`` with a plain message unless a CUDA GPU (or the simulator) can be used.

    Raises ImportError naming ``fastopt[cuda]`` when numba-cuda is missing.
    """
    from ..backends.cuda.runtime import cuda

    if not cuda.is_available():
        raise ValueError("no CUDA GPU (or driver) is available on this machine; run with --device cpu")


class _WallEvent:
    """The event API over the host clock (for the simulator, which runs synchronously)."""

    def record(self, stream: int = 0) -> None:
        self.t = time.perf_counter()

    def synchronize(self) -> None:
        pass

    def elapsed_time(self, end: _WallEvent) -> float:
        return (end.t - self.t) * 1e3


class Arrays:
    """Allocation, copies and timing on the GPU: through torch when it can use
    the GPU, else through numba."""

    def __init__(self) -> None:
        from ..backends.cuda.runtime import cuda

        self.cuda = cuda
        self.torch: Any = None
        if not simulated():
            try:
                import torch
            except ImportError:
                return
            if torch.cuda.is_available():
                self.torch = torch

    def from_host(self, a: np.ndarray) -> Any:
        if self.torch is not None:
            return self.torch.from_numpy(a).to("cuda")
        return self.cuda.to_device(a)

    def copier(self, n: int, dtype: Any) -> Callable[[], Any]:
        """A step that copies ``n`` elements device to device."""
        src, dst = self.from_host(np.ones(n, dtype)), self.from_host(np.zeros(n, dtype))
        if self.torch is not None:
            return lambda: dst.copy_(src)
        return lambda: dst.copy_to_device(src)

    def synchronize(self) -> None:
        if self.torch is not None:
            self.torch.cuda.synchronize()
        else:
            self.cuda.synchronize()

    def events(self) -> tuple[Any, Any]:
        if self.torch is not None:
            return self.torch.cuda.Event(enable_timing=True), self.torch.cuda.Event(enable_timing=True)
        if simulated():
            return _WallEvent(), _WallEvent()  # the simulator's events record no time
        return self.cuda.event(), self.cuda.event()

    def free_bytes(self) -> int | None:
        try:
            if self.torch is not None:
                return int(self.torch.cuda.mem_get_info()[0])
            return int(self.cuda.current_context().get_memory_info()[0])
        except Exception:  # noqa: BLE001 - the simulator has no memory info
            return None

    def device_name(self) -> str:
        if self.torch is not None:
            return str(self.torch.cuda.get_device_name())
        name = getattr(self.cuda.get_current_device(), "name", b"CUDA simulator")
        return name.decode() if isinstance(name, bytes) else str(name)


@functools.cache
def arrays() -> Arrays:
    """The process's :class:`Arrays` (made on first use, after :func:`require_gpu`)."""
    if simulated():
        from ..backends.cuda import CUDA

        CUDA.threads_per_block, CUDA.max_blocks = 8, 2
        CUDA.reduction_threads, CUDA.reduction_chunk = 8, 16
    return Arrays()


def event_timer(run: Callable[[int], None], k: int) -> float:
    """Seconds of GPU time taken by ``run(k)``, between two CUDA events."""
    a = arrays()
    start, end = a.events()
    start.record()
    run(k)
    end.record()
    end.synchronize()
    return float(start.elapsed_time(end)) / 1e3


def _repeat(step: Callable[[], Any]) -> Callable[[int], None]:
    def run(k: int) -> None:
        for _ in range(k):
            step()

    return run


def _fastopt(a: Arrays, name: str, h: dict, p0: np.ndarray, g0: np.ndarray) -> Contender:
    from ..optim import OPTIMIZERS

    p, g = a.from_host(p0.copy()), a.from_host(g0)
    opt = OPTIMIZERS[name]([(p, g)], **h)
    return Contender("fastopt", _repeat(opt.step), f"fastopt {type(opt).__name__}.step() on the GPU")


def _twin(a: Arrays, name: str, h: dict, p0: np.ndarray, g0: np.ndarray) -> Contender:
    from ..backends.cuda import CUDA
    from .roofline import TWIN_RULES, TWIN_VALUES, TwinCoefficients

    p, g = a.from_host(p0.copy()), a.from_host(g0)
    pf, gf = CUDA.pair(p, g, "twin")
    states = tuple(CUDA.zeros(pf.size, pf.dtype) for _ in range(len(state_names(name, h))))
    launch = CUDA.elementwise_launcher(TWIN_RULES[len(states)], TwinCoefficients, pf, gf, states, None)
    reads, writes = traffic(name, h)
    return Contender("roofline", _repeat(lambda: launch(TWIN_VALUES)),
                     f"roofline twin ({reads} reads + {writes} writes per element, no math)")


def _torch(a: Arrays, name: str, h: dict, p0: np.ndarray, g0: np.ndarray, mode: str) -> Contender:
    """torch.optim's ``name`` in ``mode`` ("fused" or "foreach"); ValueError saying why there is none."""
    from ..rules import SPECS

    torch = a.torch
    cls = getattr(torch.optim, SPECS[name].class_name, None)
    if cls is None:
        raise ValueError(f"torch.optim has no {SPECS[name].class_name}")
    accepted = inspect.signature(cls).parameters
    if mode not in accepted:
        raise ValueError(f"torch.optim.{cls.__name__} has no {mode} implementation")
    p = torch.nn.Parameter(torch.from_numpy(p0.copy()).to("cuda"))
    p.grad = torch.from_numpy(g0).to("cuda")
    try:
        opt = cls([p], **{k: v for k, v in h.items() if k in accepted}, **{mode: True})
        opt.step()
    except (RuntimeError, ValueError, TypeError) as exc:
        raise ValueError(f"torch.optim.{cls.__name__}({mode}=True) failed: {str(exc).splitlines()[0][:120]}") from None
    return Contender(f"torch_{mode}", _repeat(opt.step), f"torch.optim.{cls.__name__}({mode}=True) on the GPU")


def gpu_contenders(name: str, h: dict, p0: np.ndarray, g: np.ndarray) -> tuple[list[Contender], dict[str, str]]:
    """Every GPU contender for one optimizer on one buffer (see the module docs)."""
    a = arrays()
    contenders = [_fastopt(a, name, h, p0, g), _twin(a, name, h, p0, g)]
    moved = bytes_per_step(name, h, p0.size, p0.dtype)
    contenders.append(Contender("copy", _repeat(a.copier(max(1, moved // 2 // p0.dtype.itemsize), p0.dtype)),
                                "device-to-device copy of the same bytes"))
    skipped = {}
    for cname, mode in TORCH_MODES.items():
        if a.torch is None:
            skipped[cname] = "torch with CUDA is not installed" if not simulated() else "not under the simulator"
            continue
        try:
            contenders.append(_torch(a, name, h, p0, g, mode))
        except ValueError as exc:
            skipped[cname] = str(exc)
    return contenders, skipped


def fits(name: str, h: dict, n: int, dtype: Any) -> bool:
    """Whether every contender's arrays for ``n`` elements fit in the free GPU memory."""
    a = arrays()
    free = a.free_bytes()
    if free is None:
        return True
    per_element = (2 + len(state_names(name, h))) * np.dtype(dtype).itemsize
    contenders = 2 + len(TORCH_MODES) + 1 if a.torch is not None else 3
    return contenders * per_element * n <= MEMORY_FRACTION * free


def host_overhead(dtype: Any, quick: bool) -> dict:
    """Wall time per Adam step at :data:`OVERHEAD_N` elements (64 under the
    simulator), in microseconds: synchronised after every step, and queued
    then synchronised once; fastopt and torch fused/foreach."""
    a = arrays()
    n = 64 if simulated() else OVERHEAD_N
    count = 3 if simulated() else (300 if quick else 2000)
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(n).astype(dtype)
    g0 = rng.standard_normal(n).astype(dtype)
    h = {"lr": 1e-3}
    steps = {"fastopt": _fastopt(a, "adam", h, p0, g0)}
    skipped = {}
    if a.torch is not None:
        for cname, mode in TORCH_MODES.items():
            try:
                steps[cname] = _torch(a, "adam", h, p0, g0, mode)
            except ValueError as exc:
                skipped[cname] = str(exc)
    per_step = {}
    for label, contender in steps.items():
        contender.run(10)
        a.synchronize()
        t0 = time.perf_counter()
        for _ in range(count):
            contender.run(1)
            a.synchronize()
        each = (time.perf_counter() - t0) / count
        t0 = time.perf_counter()
        contender.run(count)
        a.synchronize()
        queued = (time.perf_counter() - t0) / count
        per_step[label] = {"sync_each_us": each * 1e6, "queued_us": queued * 1e6}
    return {"host_overhead": {"n": n, "optimizer": "adam", "per_step": per_step, "skipped": skipped}}


def describe() -> dict:
    """The GPU's name, whether it is simulated, and the numba-cuda version."""
    info: dict[str, Any] = {"gpu": arrays().device_name(), "simulated": simulated()}
    try:
        from importlib.metadata import version

        info["numba_cuda"] = version("numba-cuda")
    except Exception:  # noqa: BLE001 - a source checkout without metadata
        info["numba_cuda"] = None
    return info


DEVICE = Device(name="cuda", contenders=gpu_contenders, default_sizes=DEFAULT_SIZES, quick_sizes=QUICK_SIZES,
                timer=event_timer, check=require_gpu, fits=fits, extras=host_overhead, describe=describe)
"""The CUDA device of :func:`fastopt.benchmark.run_benchmark`."""
