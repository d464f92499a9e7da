"""CUDA backend: the interface of :data:`fastopt.backends.cpu.CPU`, over GPU
buffers (torch CUDA tensors, CuPy arrays, numba device arrays).

Imported lazily (:func:`fastopt.backends.backend_for` imports it the first
time it sees a GPU array), so ``import fastopt`` neither needs nor loads
numba-cuda.

Per step, for each flat buffer, the host does: one call for the owner's
current stream (cached wrapper objects), one dict lookup for the configured
kernel, and one launch whose values travel as kernel arguments (a tuple of
scalars, cast by numba's launcher to the buffer dtype): no allocation, no
host-device copy, no synchronisation.
"""

from __future__ import annotations

import numpy as np

from ..cpu_loops import canonical_roundings
from ..segments import BLOCK, block_plan, normalise_segments
from . import kernels as K
from .arrays import device_index, device_pair, device_view, stream_of
from .launching import compile_kernel, configured, device_blocks, helper, on_device, synchronize
from .occupancy import launch_bounds
from .runtime import SIMULATOR, cuda


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
    segment_block : int
        Elements per partial sum of the segmented driver (LAMB).
    """

    name = "cuda"
    simulator = SIMULATOR

    def __init__(self):
        self.threads_per_block = 256
        self.max_blocks: int | None = None
        self.reduction_threads = 256
        self.reduction_chunk = 1 << 16
        self.segment_block = BLOCK
        self._scratch: dict = {}

    # -- arrays ------------------------------------------------------------

    @staticmethod
    def pair(param, grad, where: str):
        """Validate one (param, grad) pair of GPU arrays and return their flat
        numba device arrays (same memory), with the errors of the CPU backend."""
        return device_pair(param, grad, where)

    @staticmethod
    def view(obj, what: str):
        """A flat numba device array over a contiguous float GPU array."""
        return device_view(obj, what)

    @staticmethod
    def device_of(array) -> int | None:
        """The device index of a flat array from :meth:`pair`."""
        return device_index(array)

    def zeros(self, n: int, dtype, fill: float = 0.0):
        """A device array of ``n`` elements set to ``fill`` (ready on return)."""
        out = cuda.device_array(n, np.dtype(dtype))
        self._fill(out, fill, 0)
        cuda.synchronize()
        return out

    @staticmethod
    def to_host(a) -> np.ndarray:
        """A host copy of device array ``a`` (after all queued work)."""
        synchronize()
        return a.copy_to_host()

    @staticmethod
    def copy_(dst, src) -> None:
        """``dst[:] = src`` for a flat device ``dst`` and a host or device ``src``."""
        from .. import is_gpu_array

        synchronize()
        if is_gpu_array(src):
            dst.copy_to_device(device_view(src, "src").reshape(dst.shape))
        else:
            dst.copy_to_device(np.ascontiguousarray(np.asarray(src), dtype=dst.dtype).reshape(dst.shape))
        synchronize()

    def fill_(self, a, value: float) -> None:
        """``a[:] = value``, queued on ``a``'s stream (used by ``zero_grad``)."""
        self._fill(a, value, stream_of(a))

    def _fill(self, a, value, stream) -> None:
        if not a.size:
            return
        kernel = helper("fill", a.dtype)
        configured(kernel, self._blocks(a.size, device_index(a)), self.threads_per_block, stream)(
            a, a.dtype.type(value))

    def scale_(self, a, factor: float) -> None:
        """``a[:] *= factor``, queued on ``a``'s stream (standalone clipping)."""
        if a.size:
            kernel = helper("scale", a.dtype)
            cast = a.dtype.type if a.dtype.kind == "f" else np.float32
            configured(kernel, self._blocks(a.size, device_index(a)), self.threads_per_block, stream_of(a))(
                a, cast(factor))

    def _blocks(self, n: int, device=None, threads: int | None = None, kernel=None, per_thread: int = 1) -> int:
        """Grid size for ``n`` elements, ``per_thread`` per thread per trip,
        never more blocks than are resident (or than ``max_blocks``)."""
        threads = threads or self.threads_per_block
        cap = self.max_blocks if self.max_blocks is not None else device_blocks(threads, device, kernel)
        return max(1, min(cap, -(-n // (threads * per_thread))))

    # -- the update ----------------------------------------------------------

    def elementwise_launcher(self, rule, record, p, g, states: tuple, ema, mirror=None, device_values=None,
                             roundings=(), mirror_rounding="nearest"):
        """``launch(values)``: one fused pass of ``rule`` over these device
        arrays, queued on ``p``'s owner's current stream. The vectorized
        kernel runs when every array is aligned to its vector width (always
        for buffers fastopt allocates; a view at an odd offset takes the
        one-element-per-trip kernel). With ``device_values = (array, row)``
        (device-resident steps, :mod:`.device_steps`) the kernel reads its
        values from that row and ``launch`` ignores its argument."""
        dtype, grad_dtype = np.dtype(p.dtype), np.dtype(g.dtype)
        with_ema, with_mirror = ema is not None, mirror is not None
        storages = tuple(states) + ((ema,) if with_ema else ()) + ((mirror,) if with_mirror else ())
        kinds = tuple(np.dtype(s.dtype) for s in storages)
        n_values = K.HEAD + len(record._fields)
        vectorized = K.vector_aligned(p, g, *storages)
        on_device_values = device_values is not None
        roundings = canonical_roundings(roundings)
        kernel = compile_kernel(
            ("elementwise", rule, record, with_ema, with_mirror, dtype, grad_dtype, kinds, vectorized,
             on_device_values, roundings, mirror_rounding),
            lambda: (K.elementwise_source(rule, record, with_ema, vectorized, on_device_values, dtype, with_mirror,
                                          roundings, mirror_rounding),
                     K.update_signature(dtype, kinds, n_values, on_device_values, grad_dtype)),
            bounds=launch_bounds(dtype))
        args = (p, g, storages) + (tuple(device_values) if on_device_values else ())
        return self._launch_over(kernel, p, args, dtype, K.VEC if vectorized else 1, on_device_values)

    def _launch_over(self, kernel, p, args: tuple, dtype, per_thread: int = 1, fixed_args: bool = False):
        """``launch(values)`` running ``kernel(*args, values)`` over ``p``'s
        elements (``kernel(*args)`` when ``fixed_args``)."""
        n, device, threads = p.size, device_index(p), self.threads_per_block
        if not n:
            return lambda values: None
        if SIMULATOR:
            cast = dtype.type

            def launch(values):
                # The simulator runs Python: cast here what the real launch
                # casts in numba's argument marshalling.
                blocks = self._blocks(n, device, per_thread=per_thread)
                extra = () if fixed_args else (tuple(map(cast, values)),)
                configured(kernel, blocks, threads, 0)(*args, *extra)

            return launch
        blocks = self._blocks(n, device, kernel=kernel, per_thread=per_thread)
        switch = on_device(device)
        launches: dict = {}

        def launch(values):
            stream = stream_of(p)
            configured_kernel = launches.get(stream)
            if configured_kernel is None:
                configured_kernel = launches[stream] = configured(kernel, blocks, threads, stream)
            with switch:
                if fixed_args:
                    configured_kernel(*args)
                else:
                    configured_kernel(*args, values)

        return launch

    def segmented_launcher(self, segmented, record, p, g, states: tuple, ema, segments, mirror=None,
                           device_values=None, roundings=(), mirror_rounding="nearest"):
        """``launch(values)``: the two-pass segmented driver (LAMB) over these
        device arrays; ``segments`` and ``device_values`` as for the CPU
        backend and :meth:`elementwise_launcher`."""
        dtype, grad_dtype = np.dtype(p.dtype), np.dtype(g.dtype)
        with_ema, with_mirror = ema is not None, mirror is not None
        storages = tuple(states) + ((ema,) if with_ema else ()) + ((mirror,) if with_mirror else ())
        kinds = tuple(np.dtype(s.dtype) for s in storages)
        n_values = K.HEAD + len(record._fields)
        threads = self.reduction_threads
        on_device_values = device_values is not None
        roundings = canonical_roundings(roundings)
        sources = K.segmented_sources(segmented, record, with_ema, threads, on_device_values, dtype, with_mirror,
                                      roundings, mirror_rounding)
        signatures = K.segmented_signatures(dtype, kinds, n_values, on_device_values, grad_dtype)
        key = ("segmented", segmented, record, with_ema, with_mirror, dtype, grad_dtype, kinds, threads,
               on_device_values, roundings, mirror_rounding)
        one, per_tensor, two = (compile_kernel(key + (k,), lambda k=k: (sources[k], signatures[k]))
                                for k in range(3))
        lo, hi, tensor, n_tensors = block_plan(p.size, normalise_segments(p.size, segments), self.segment_block)
        first = np.searchsorted(tensor, np.arange(n_tensors), side="left") if n_tensors else np.zeros(0, np.int64)
        # Chunks of tensor k are contiguous in the plan (it walks the tensors in order).
        last = np.array([first[k] + np.count_nonzero(tensor == k) for k in range(n_tensors)], np.int64)
        device = device_index(p)
        with on_device(device):
            lo_d, hi_d, tensor_d = (cuda.to_device(np.ascontiguousarray(a)) for a in (lo, hi, tensor))
            first_d, last_d = cuda.to_device(first.astype(np.int64)), cuda.to_device(last)
            partial = cuda.device_array((2, max(1, lo.size)), np.float64)
            factors = cuda.device_array(max(1, n_tensors), dtype)
        lr_index = K.HEAD + record._fields.index("lr")
        chunk_blocks = max(1, min(lo.size, self.max_blocks or lo.size))
        tensor_blocks = max(1, min(n_tensors, self.max_blocks or max(1, n_tensors)))
        cast = dtype.type
        switch = on_device(device)
        row = tuple(device_values) if on_device_values else ()

        def launch(values):
            if not p.size:
                return
            stream = 0 if SIMULATOR else stream_of(p)
            if on_device_values:
                typed, lr = row, row
            else:
                typed = (tuple(map(cast, values)) if SIMULATOR else values,)
                lr = (float(values[lr_index]),)
            with switch:
                configured(one, chunk_blocks, threads, stream)(p, g, storages, *typed, lo_d, hi_d, partial)
                if n_tensors:
                    configured(per_tensor, tensor_blocks, threads, stream)(partial, first_d, last_d, *lr, factors)
                configured(two, chunk_blocks, threads, stream)(p, storages, *typed, lo_d, hi_d, tensor_d, factors)

        return launch

    def blockwise_launcher(self, rule, record, p, g, codes: tuple, scales: tuple, ema, mirror=None, formats=(),
                           mirror_rounding="nearest"):
        """``launch(values)``: one fused pass of ``rule`` with 8-bit block-float
        states (see :mod:`.blocks`): a thread block per quantization block."""
        from ..blockfloat import BLOCK
        from .blocks import blockwise_signature, blockwise_source

        dtype, grad_dtype = np.dtype(p.dtype), np.dtype(g.dtype)
        with_ema, with_mirror = ema is not None, mirror is not None
        extras = ((ema,) if with_ema else ()) + ((mirror,) if with_mirror else ())
        kinds = tuple(np.dtype(e.dtype) for e in extras)
        formats = tuple(tuple(f) for f in formats)
        n_values = K.HEAD + len(record._fields)
        kernel = compile_kernel(
            ("blockwise", rule, record, formats, with_ema, with_mirror, dtype, grad_dtype, kinds, mirror_rounding),
            lambda: (blockwise_source(rule, record, formats, with_ema, with_mirror, mirror_rounding),
                     blockwise_signature(dtype, grad_dtype, len(formats), kinds, n_values)))
        n, device = p.size, device_index(p)
        if not n:
            return lambda values: None
        blocks = -(-n // BLOCK)
        cast = dtype.type
        switch = on_device(device)
        args = (p, g, tuple(codes), tuple(scales), extras)

        def launch(values):
            grid = max(1, min(blocks, self.max_blocks or blocks))
            stream = 0 if SIMULATOR else stream_of(p)
            typed = tuple(map(cast, values)) if SIMULATOR else values
            with switch:
                configured(kernel, grid, BLOCK, stream)(*args, typed)

        return launch

    def device_steps(self, spec, groups, bound: float, decay: float, seed: int = 0):
        """The device-resident step state of one optimizer (see :mod:`.device_steps`)."""
        from .device_steps import DeviceSteps

        return DeviceSteps(self, spec, groups, bound, decay, seed)

    # -- gradient checks -------------------------------------------------------

    def _scratch_for(self, chunks: int, device):
        """Device and host buffers for the reductions, allocated once per
        device (the partial sums once per size): ``(partial, out, host_out,
        flag, ones, host_flag)``."""
        bufs = self._scratch.get((device, chunks))
        if bufs is None:
            with on_device(device):
                common = self._scratch.get((device, None))
                if common is None:
                    common = self._scratch[(device, None)] = (
                        cuda.device_array(1, np.float64), np.zeros(1, np.float64),
                        cuda.device_array(1, np.int32), np.ones(1, np.int32), np.zeros(1, np.int32),
                    )
                bufs = self._scratch[(device, chunks)] = (cuda.device_array(chunks, np.float64), *common)
        return bufs

    def sum_of_squares(self, g) -> float:
        """Deterministic float64 sum of squares of device array ``g`` (inf or
        NaN when ``g`` holds a non-finite value). Synchronises ``g``'s stream."""
        n = g.size
        if not n:
            return 0.0
        threads, chunk = self.reduction_threads, self.reduction_chunk
        chunks = -(-n // chunk)
        device = device_index(g)
        partial, out, host, *_ = self._scratch_for(chunks, device)
        stream = stream_of(g)
        cap = self.max_blocks if self.max_blocks is not None else device_blocks(threads, device)
        with on_device(device):
            configured(helper("sum_of_squares", g.dtype, threads, chunk), min(cap, chunks), threads, stream)(
                g, partial)
            configured(helper("combine", g.dtype, threads, chunk), 1, threads, stream)(partial, out)
            out.copy_to_host(host, stream=stream)
            _sync(stream)
        return float(host[0])

    def all_finite(self, g) -> bool:
        """Whether device array ``g`` holds no NaN or inf. Synchronises ``g``'s stream."""
        if not g.size:
            return True
        device = device_index(g)
        *_, flag, ones, host = self._scratch_for(1, device)
        stream = stream_of(g)
        with on_device(device):
            flag.copy_to_device(ones, stream=stream)
            configured(helper("all_finite", g.dtype), self._blocks(g.size, device), self.threads_per_block,
                       stream)(g, flag)
            flag.copy_to_host(host, stream=stream)
            _sync(stream)
        return bool(host[0])


def _sync(stream) -> None:
    if isinstance(stream, int):
        cuda.default_stream().synchronize()
    else:
        stream.synchronize()


CUDA = CUDABackend()

__all__ = ["CUDA", "CUDABackend"]
