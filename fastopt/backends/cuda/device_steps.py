"""Device-resident steps: the gradient guard, the step count and the per-step
coefficients computed on the GPU, so that a clipped or guarded step never
waits for the host, and a whole step can be recorded in a CUDA graph.

Per step, on the params' stream:

1. (guarded steps) one reduction per gradient buffer writes float64 partial
   sums of squares and non-finite flags per fixed chunk; one ``finalize``
   block adds them in a fixed order and writes ``control = [factor, skip,
   norm, skipped_count]``: the gradient factor (scale times the clip factor),
   whether a non-finite gradient must skip this step, the global norm, and a
   running count of skipped steps;
2. one ``prologue`` per group (a thread per buffer) reads ``control``, the
   group's hyperparameters (a float64 array the host refreshes only when
   they change) and each buffer's step counter; unless skipping, it advances
   the step and writes the buffer's values row (the rule's coefficients,
   computed by the spec's own coefficient function compiled for the device);
   when skipping it sets the row's skip flag;
3. the update kernels read their row and leave params and state untouched
   when the flag is set (torch's ``found_inf`` pattern).

The host reads ``control`` and the step counters only when asked
(``skipped_steps``, ``last_grad_norm``, ``state_dict``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import types

from ..bits import BUFFERS_PER_GROUP, GOLDEN
from ..codecs import load_value
from ..cpu_loops import HEAD
from .arrays import stream_of
from .generated import compile_source, flatten_hyperparameters, hyper_maker, row_reader
from .kernels import tree_sum, vector
from .launching import compile_kernel, configured
from .runtime import SIMULATOR, cuda

CLIP_EPS = 1e-6
"""As torch.nn.utils.clip_grad_norm_ (and fastopt's host guard)."""


def flagged_sums_source(threads: int, chunk: int):
    """``kernel(g, partial, flags)``: ``partial[k]`` = float64 sum of squares of
    chunk ``k`` of ``g`` and ``flags[k]`` = whether it holds a NaN or inf, in a
    fixed order (as :func:`.kernels.sum_of_squares_source`)."""

    def flagged_sums(g, partial, flags):
        shared = cuda.shared.array(threads, np.float64)
        t = cuda.threadIdx.x
        n = g.size
        k = cuda.blockIdx.x
        while k < partial.size:
            lo = k * chunk
            hi = min(lo + chunk, n)
            acc = 0.0
            bad = 0.0
            i = lo + t
            while i < hi:
                x = np.float64(load_value(g, i))
                if math.isinf(x) or math.isnan(x):
                    bad = 1.0
                acc += x * x
                i += threads
            shared[t] = acc
            tree_sum(shared, t, threads)
            if t == 0:
                partial[k] = shared[0]
            cuda.syncthreads()
            shared[t] = bad
            tree_sum(shared, t, threads)
            if t == 0:
                flags[k] = shared[0]
            cuda.syncthreads()
            k += cuda.gridDim.x

    return flagged_sums


def finalize_source(threads: int):
    """``kernel(partial, flags, scale, max_norm, skip_nonfinite, control)``,
    one block: see the module docs. ``max_norm`` 0 means no clipping."""

    def finalize(partial, flags, scale, max_norm, skip_nonfinite, control):
        shared = cuda.shared.array(threads, np.float64)
        t = cuda.threadIdx.x
        acc = 0.0
        bad = 0.0
        i = t
        while i < partial.size:
            acc += partial[i]
            bad += flags[i]
            i += threads
        shared[t] = acc
        tree_sum(shared, t, threads)
        total = shared[0]
        cuda.syncthreads()
        shared[t] = bad
        tree_sum(shared, t, threads)
        if t == 0:
            skip = skip_nonfinite != 0.0 and shared[0] > 0.0
            norm = math.sqrt(total) * scale
            factor = scale
            if max_norm > 0.0 and norm > max_norm:
                factor = scale * (max_norm / (norm + CLIP_EPS))
            control[0] = factor
            control[1] = 1.0 if skip else 0.0
            control[2] = norm
            if skip:
                control[3] += 1.0

    return finalize


def _row_writer(n: int, offset: int):
    """``write(values, row, items)``: ``values[row, offset + j] = items[j]``."""
    lines = "".join(f"    values[row, {offset + j}] = items[{j}]\n" for j in range(n)) or "    pass\n"
    return compile_source(f"def write(values, row, items):\n{lines}", "write", {})


def prologue_source(spec, guarded: bool):
    """``kernel(hyper, steps, carries, control, scale, bound, decay, keep, seed,
    group, values)`` (a thread per buffer): see the module docs. Each row's
    stochastic rounding stream is keyed by :func:`fastopt.backends.bits.buffer_seed`
    of (``seed``, ``group``, the row) and the new step: the host's formula."""
    make = hyper_maker(spec)
    coefficients = cuda.jit(device=True)(spec.coefficients)
    n_record = len(spec.record._fields)
    n_values = HEAD + n_record
    n_carry = len(spec.carry)
    read_carry = row_reader(n_carry, "float64")
    write_record = _row_writer(n_record, HEAD)
    write_carry = _row_writer(n_carry, 0)

    def prologue(hyper, steps, carries, control, scale, bound, decay, keep, seed, group, values):
        k = cuda.grid(1)
        if k < steps.size:
            if guarded:
                factor = control[0]
                skip = control[1] != 0.0
            else:
                factor = scale
                skip = False
            if skip:
                values[k, n_values] = 1.0
            else:
                step = steps[k] + 1
                steps[k] = step
                h = make(hyper)
                record, carry = coefficients(h, step, read_carry(carries, k))
                write_carry(carries, k, carry)
                values[k, 0] = -factor if h.maximize else factor
                values[k, 1] = bound
                values[k, 2] = decay
                values[k, 3] = keep
                # the host's buffer_seed(seed, group, k), and the step, as halves
                row_seed = (np.uint64(seed) + np.uint64(GOLDEN) * (np.uint64(group) * np.uint64(BUFFERS_PER_GROUP)
                                                                   + np.uint64(k))) & np.uint64(0xFFFFFFFF)
                values[k, 4] = np.float64(row_seed & np.uint64(0xFFFF))
                values[k, 5] = np.float64(row_seed >> np.uint64(16))
                values[k, 6] = np.float64(np.uint64(step) & np.uint64(0xFFFF))
                values[k, 7] = np.float64((np.uint64(step) >> np.uint64(16)) & np.uint64(0xFFFF))
                write_record(values, k, record)
                values[k, n_values] = 0.0

    return prologue


class DeviceSteps:
    """The device-side state of one optimizer's steps (see the module docs).

    Parameters
    ----------
    backend : CUDABackend
    spec : Spec
    groups : list of list of Buffer
        The buffers of each param group.
    bound, decay : float
        The value-clipping bound (inf: none) and the EMA decay (0: none).
    """

    def __init__(self, backend, spec, groups, bound: float, decay: float, seed: int = 0):
        self.backend = backend
        self.seed = int(seed) & 0xFFFFFFFF
        self.spec = spec
        self.groups = groups
        self.bound, self.decay = float(bound), float(decay)
        self.n_values = HEAD + len(spec.record._fields)
        n_hyper = len(flatten_hyperparameters(spec.defaults, spec.hyperparameters(spec.defaults)))
        n_carry = max(1, len(spec.carry))
        first = groups[0][0].p
        self._stream = lambda: stream_of(first)
        self.hyper = [cuda.device_array(n_hyper, np.float64) for _ in groups]
        self.hyper_host = [cuda.pinned_array(n_hyper, np.float64) for _ in groups]
        self.steps = [cuda.to_device(np.zeros(len(b), np.int64)) for b in groups]
        self.carries = [cuda.to_device(np.tile(np.asarray(spec.carry_initial or (0.0,), np.float64), (len(b), 1))
                                       .reshape(len(b), n_carry)) for b in groups]
        self.values = [cuda.to_device(np.zeros((len(b), self.n_values + 1), np.float64)) for b in groups]
        self.control = cuda.to_device(np.zeros(4, np.float64))
        threads, chunk = backend.reduction_threads, backend.reduction_chunk
        self._threads, self._chunk = threads, chunk
        grads = [b.g for bufs in groups for b in bufs]
        self._chunks = [-(-g.size // chunk) for g in grads]
        total = max(1, sum(self._chunks))
        self.partial = cuda.device_array(total, np.float64)
        self.flags = cuda.device_array(total, np.float64)
        f64 = types.Array(types.float64, 1, "C")
        i64 = types.Array(types.int64, 1, "C")
        f64_2d = types.Array(types.float64, 2, "C")
        self._sums = {}
        for g in grads:
            dtype = np.dtype(g.dtype)
            if dtype not in self._sums:
                self._sums[dtype] = compile_kernel(("flagged sums", dtype, threads, chunk), lambda d=dtype: (
                    flagged_sums_source(threads, chunk), types.void(vector(d), f64, f64)))
        self._finalize = compile_kernel(("finalize", threads), lambda: (
            finalize_source(threads), types.void(f64, f64, types.float64, types.float64, types.float64, f64)))
        signature = types.void(f64, i64, f64_2d, f64, types.float64, types.float64, types.float64,
                               types.float64, types.uint64, types.int64, f64_2d)
        self._prologues = {guarded: compile_kernel(("prologue", spec.name, guarded), lambda g=guarded: (
            prologue_source(spec, g), signature)) for guarded in (False, True)}

    def row(self, group: int, index: int):
        """``(values, row)`` for buffer ``index`` of group ``group``."""
        return self.values[group], index

    def set_hyperparameters(self, group: int, hyper) -> None:
        """Copy group ``group``'s hyperparameters to the device (queued, ordered
        before the next step)."""
        host = self.hyper_host[group]
        host[:] = flatten_hyperparameters(self.spec.defaults, hyper)
        self.hyper[group].copy_to_device(host, stream=self._stream())

    def set_state(self, group: int, steps, carries) -> None:
        """Set the step counters (and carried scalars) of group ``group``'s buffers."""
        cuda.synchronize()
        self.steps[group].copy_to_device(np.asarray(steps, np.int64))
        if self.spec.carry:
            self.carries[group].copy_to_device(np.asarray(carries, np.float64).reshape(len(steps), -1))

    def launch(self, scale: float, max_norm: float | None, skip_nonfinite: bool) -> None:
        """Queue the guard (when clipping or skipping) and the prologues."""
        stream = 0 if SIMULATOR else self._stream()
        guarded = bool(max_norm) or skip_nonfinite
        if guarded:
            offset = 0
            threads = self._threads
            for bufs in self.groups:
                for b in bufs:
                    chunks = -(-b.g.size // self._chunk)
                    if chunks:
                        partial = self.partial[offset:offset + chunks]
                        flags = self.flags[offset:offset + chunks]
                        blocks = self.backend._blocks(chunks * threads, self.backend.device_of(b.g), threads)
                        configured(self._sums[np.dtype(b.g.dtype)], blocks, threads, stream)(b.g, partial, flags)
                    offset += chunks
            configured(self._finalize, 1, threads, stream)(self.partial[:max(offset, 1)], self.flags[:max(offset, 1)],
                                                          float(scale), float(max_norm or 0.0),
                                                          1.0 if skip_nonfinite else 0.0, self.control)
        prologue = self._prologues[guarded]
        for k, bufs in enumerate(self.groups):
            configured(prologue, 1, max(1, len(bufs)), stream)(
                self.hyper[k], self.steps[k], self.carries[k], self.control, float(scale), self.bound,
                self.decay, 1.0 - self.decay, np.uint64(self.seed), k, self.values[k])

    def read_control(self) -> np.ndarray:
        """``[factor, skip, norm, skipped_count]`` after every queued step."""
        cuda.synchronize()
        return self.control.copy_to_host()

    def read_state(self, group: int) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, carries)`` of group ``group``'s buffers after every queued step."""
        cuda.synchronize()
        return self.steps[group].copy_to_host(), self.carries[group].copy_to_host()
