"""How many blocks of a kernel can be resident on a GPU at once.

An update kernel's grid never exceeds what is resident: a grid-stride loop
then covers the buffer in one wave, with no tail wave at lower occupancy.
On a GPU the driver answers for the compiled kernel
(``cuOccupancyMaxActiveBlocksPerMultiprocessor``); :func:`blocks_per_sm` is
the same arithmetic from the kernel's register count, used when no driver is
at hand (and tested against the published limits).
"""

from __future__ import annotations

THREADS = 256
"""Threads per block of the update kernels."""

MIN_BLOCKS_PER_SM = 4
"""The float32 update kernels are compiled with launch bounds ``(THREADS,
MIN_BLOCKS_PER_SM)``: ptxas keeps them under 65536 / (256 * 4) = 64 registers,
so at least half of an SM's 2048 threads are resident. A memory-bound kernel
with 128-bit loads of several arrays keeps enough bytes in flight at that
occupancy."""

MIN_BLOCKS_PER_SM_WIDE = 3
"""The same for float64 kernels, whose four elements per thread take twice
the registers: at 64 registers the AMSGrad and centered-momentum RMSprop
kernels spill; under 85 none does (3 of 8 blocks resident)."""


def launch_bounds(dtype) -> tuple[int, int]:
    """The launch bounds of an update kernel over ``dtype`` buffers."""
    import numpy as np

    return (THREADS, MIN_BLOCKS_PER_SM if np.dtype(dtype).itemsize <= 4 else MIN_BLOCKS_PER_SM_WIDE)

REGISTERS_PER_SM = 65536
MAX_THREADS_PER_SM = 2048
MAX_BLOCKS_PER_SM = 32
REGISTER_GRANULE = 256  # registers are allocated per warp in units of 256


def blocks_per_sm(registers: int, threads: int, shared_bytes: int = 0, shared_per_sm: int = 228 * 1024,
                  max_threads: int = MAX_THREADS_PER_SM, register_file: int = REGISTERS_PER_SM) -> int:
    """Resident blocks per SM for a kernel using ``registers`` per thread and
    ``shared_bytes`` of shared memory per block (sm_90 limits by default)."""
    warps = -(-threads // 32)
    per_warp = -(-max(registers, 1) * 32 // REGISTER_GRANULE) * REGISTER_GRANULE
    by_registers = register_file // (per_warp * warps)
    by_threads = max_threads // (warps * 32)
    by_shared = shared_per_sm // shared_bytes if shared_bytes else MAX_BLOCKS_PER_SM
    return max(0, min(by_registers, by_threads, by_shared, MAX_BLOCKS_PER_SM))


def resident_blocks(kernel, threads: int, sms: int, max_threads_per_sm: int) -> int:
    """Blocks of ``kernel`` (a compiled numba-cuda dispatcher) resident on the
    whole device: the driver's occupancy answer, else the register arithmetic."""
    try:
        compiled = next(iter(kernel.overloads.values()))
        return max(1, compiled.max_cooperative_grid_blocks(threads))
    except Exception:  # noqa: BLE001 - no driver answer: compute it
        pass
    try:
        registers = kernel.get_regs_per_thread()
    except Exception:  # noqa: BLE001
        registers = 64
    return max(1, sms * blocks_per_sm(registers, threads, max_threads=max_threads_per_sm))
