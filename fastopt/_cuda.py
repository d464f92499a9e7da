"""CUDA backend: the same interface as :data:`fastopt._cpu.CPU`, over GPU
buffers (torch CUDA tensors, CuPy arrays, numba device arrays).

Imported lazily (``fastopt._groups.backend_for`` imports it the first time it
sees a GPU array), so ``import fastopt`` neither needs nor loads numba-cuda.

Per step, for each flat buffer, the host does: one attribute lookup and one
call for the owner's current stream (cached wrapper objects), one dict lookup
for the configured kernel, and one launch whose constants travel as kernel
arguments (a tuple of scalars, cast by numba's launcher to the buffer dtype):
no allocation, no host-device copy, no synchronisation.
"""

from __future__ import annotations

import warnings

import numpy as np
from numba.core.errors import NumbaPerformanceWarning

from . import _cuda_kernels as K
from ._cuda_arrays import device_pair, device_view, stream_of
from ._groups import is_gpu_array
from ._numba_cuda import SIMULATOR, cuda

_update_kernels: dict = {}
_helper_kernels: dict = {}


def _compile(pyfunc, signature):
    return cuda.jit(signature)(pyfunc)


def update_kernel(rule, n_coefficients: int, with_ema: bool, dtype, n_states: int):
    """The compiled update kernel for one rule, dtype and state count (cached
    per process; compiling takes about a second)."""
    dtype = np.dtype(dtype)
    key = (rule, n_coefficients, with_ema, dtype, n_states)
    kernel = _update_kernels.get(key)
    if kernel is None:
        n_values = n_coefficients + (2 if with_ema else 0)
        source = K.update_source(rule, n_coefficients, with_ema)
        kernel = _update_kernels[key] = _compile(source, K.update_signature(dtype, n_states, n_values))
    return kernel


def _helper(name: str, dtype, threads: int = 256, chunk: int = 1 << 16):
    """A compiled helper kernel (see :func:`fastopt._cuda_kernels.helper_kernels`)."""
    key = (name, np.dtype(dtype), threads, chunk)
    kernel = _helper_kernels.get(key)
    if kernel is None:
        source, signature = K.helper_kernels(dtype, threads, chunk)[name]
        kernel = _helper_kernels[key] = _compile(source, signature)
    return kernel


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


_limits: list = []


def _device_blocks(threads: int) -> int:
    """Blocks that fill every SM of the current device at full occupancy."""
    if not _limits:
        device = cuda.get_current_device()
        sms = getattr(device, "MULTIPROCESSOR_COUNT", 1)
        per_sm = getattr(device, "MAX_THREADS_PER_MULTIPROCESSOR", 2048)
        _limits.extend((sms, per_sm))
    sms, per_sm = _limits
    return max(1, sms * max(1, per_sm // threads))


def _synchronize() -> None:
    # Host-facing copies are not on the hot path: fence the whole device so
    # that a kernel still running on a caller's non-blocking stream is ordered
    # before (and after) them.
    cuda.synchronize()


class CUDABackend:
    """Array handling and kernel launches for GPU buffers.

    Attributes
    ----------
    threads_per_block : int
        Block size of the update, fill and finiteness kernels.
    max_blocks : int or None
        Cap on the grid size; None: enough blocks to fill every SM of the
        device at full occupancy (``SMs * max_threads_per_SM / threads``).
        Each launch uses ``min(max_blocks, ceil(n / threads))`` blocks; the
        kernels stride over the rest. Tests lower both so the loop wraps.
    reduction_threads, reduction_chunk : int
        Shape of the deterministic sum of squares: one float64 partial sum per
        ``reduction_chunk`` elements, each computed by ``reduction_threads``
        threads (a power of two) in a fixed order. The result depends on these
        two numbers and the data only, never on the grid size or scheduling.
    """

    name = "cuda"
    simulator = SIMULATOR

    def __init__(self):
        self.threads_per_block = 256
        self.max_blocks: int | None = None
        self.reduction_threads = 256
        self.reduction_chunk = 1 << 16
        self._scratch: dict = {}

    # -- arrays ------------------------------------------------------------

    @staticmethod
    def pair(param, grad, where: str):
        """Validate one (param, grad) pair of GPU arrays and return their flat
        numba device arrays (same memory), with the errors of the CPU backend."""
        return device_pair(param, grad, where)

    def zeros(self, n: int, dtype, fill: float = 0.0):
        """A device array of ``n`` elements set to ``fill`` (ready on return)."""
        out = cuda.device_array(n, np.dtype(dtype))
        self._fill(out, fill, 0)
        cuda.synchronize()
        return out

    @staticmethod
    def to_host(a) -> np.ndarray:
        """A host copy of device array ``a`` (after all queued work)."""
        _synchronize()
        return a.copy_to_host()

    @staticmethod
    def copy_(dst, src) -> None:
        """``dst[:] = src`` for a flat device ``dst`` and a host or device ``src``."""
        _synchronize()
        if is_gpu_array(src):
            dst.copy_to_device(device_view(src, "src").reshape(dst.shape))
        else:
            dst.copy_to_device(np.ascontiguousarray(np.asarray(src), dtype=dst.dtype).reshape(dst.shape))
        _synchronize()

    def fill_(self, a, value: float) -> None:
        """``a[:] = value``, queued on ``a``'s stream (used by ``zero_grad``)."""
        self._fill(a, value, stream_of(a))

    def _fill(self, a, value, stream) -> None:
        if not a.size:
            return
        kernel = _helper("fill", a.dtype)
        configured(kernel, self._blocks(a.size), self.threads_per_block, stream)(a, a.dtype.type(value))

    def scale_(self, a, factor: float) -> None:
        """``a[:] *= factor``, queued on ``a``'s stream (standalone clipping)."""
        if a.size:
            kernel = _helper("scale", a.dtype)
            configured(kernel, self._blocks(a.size), self.threads_per_block, stream_of(a))(a, a.dtype.type(factor))

    def _blocks(self, n: int) -> int:
        threads = self.threads_per_block
        cap = self.max_blocks if self.max_blocks is not None else _device_blocks(threads)
        return max(1, min(cap, -(-n // threads)))

    # -- the update ----------------------------------------------------------

    def launcher(self, rule, n_coefficients: int, dtype, with_ema: bool = False):
        """``launch(p, g, states, values)``: one fused update of the flat device
        arrays ``p`` (in place), ``g`` and ``states`` with the per-step
        constants ``values`` (Python floats, cast to ``dtype`` by the launch),
        queued on ``p``'s owner's current stream."""
        dtype = np.dtype(dtype)
        threads = self.threads_per_block
        blocks_for = self._blocks
        launches: dict = {}

        if SIMULATOR:
            cast = dtype.type

            def launch(p, g, states, values):
                # The simulator runs Python: cast here what the real launch
                # casts in numba's argument marshalling. Its kernel objects
                # hold one configuration at a time, so configure every call.
                if p.size:
                    kernel = update_kernel(rule, n_coefficients, with_ema, dtype, len(states))
                    kernel = configured(kernel, blocks_for(p.size), threads, 0)
                    kernel(p, g, states, tuple(map(cast, values)))

            return launch

        def launch(p, g, states, values):
            n = p.size
            if not n:
                return
            stream = stream_of(p)
            key = (n, len(states), stream)
            kernel = launches.get(key)
            if kernel is None:
                compiled = update_kernel(rule, n_coefficients, with_ema, dtype, len(states))
                kernel = launches[key] = configured(compiled, blocks_for(n), threads, stream)
            kernel(p, g, states, values)

        return launch

    # -- gradient checks -------------------------------------------------------

    def _scratch_for(self, chunks: int):
        """Device and host buffers for the reductions, allocated once (the
        partial sums once per size): ``(partial, out, host_out, flag, ones, host_flag)``."""
        bufs = self._scratch.get(chunks)
        if bufs is None:
            common = self._scratch.get(None)
            if common is None:
                common = self._scratch[None] = (
                    cuda.device_array(1, np.float64), np.zeros(1, np.float64),
                    cuda.device_array(1, np.int32), np.ones(1, np.int32), np.zeros(1, np.int32),
                )
            bufs = self._scratch[chunks] = (cuda.device_array(chunks, np.float64), *common)
        return bufs

    def sum_of_squares(self, g) -> float:
        """Deterministic float64 sum of squares of device array ``g`` (inf or
        NaN when ``g`` holds a non-finite value). Synchronises ``g``'s stream."""
        n = g.size
        if not n:
            return 0.0
        threads, chunk = self.reduction_threads, self.reduction_chunk
        chunks = -(-n // chunk)
        partial, out, host, *_ = self._scratch_for(chunks)
        stream = stream_of(g)
        cap = self.max_blocks if self.max_blocks is not None else _device_blocks(threads)
        configured(_helper("sum_of_squares", g.dtype, threads, chunk), min(cap, chunks), threads, stream)(g, partial)
        configured(_helper("combine", g.dtype, threads, chunk), 1, threads, stream)(partial, out)
        out.copy_to_host(host, stream=stream)
        _sync(stream)
        return float(host[0])

    def all_finite(self, g) -> bool:
        """Whether device array ``g`` holds no NaN or inf. Synchronises ``g``'s stream."""
        if not g.size:
            return True
        *_, flag, ones, host = self._scratch_for(1)
        stream = stream_of(g)
        flag.copy_to_device(ones, stream=stream)
        configured(_helper("all_finite", g.dtype), self._blocks(g.size), self.threads_per_block, stream)(g, flag)
        flag.copy_to_host(host, stream=stream)
        _sync(stream)
        return bool(host[0])


def _sync(stream) -> None:
    if isinstance(stream, int):
        cuda.default_stream().synchronize()
    else:
        stream.synchronize()


CUDA = CUDABackend()

__all__ = ["CUDA", "CUDABackend", "update_kernel"]
