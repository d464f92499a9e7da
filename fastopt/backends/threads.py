"""Threads of the CPU kernels: how many, and what happens after ``fork``.

**How many.** Numba's thread pool starts with ``NUMBA_NUM_THREADS`` threads
(default: the number of cores). fastopt runs its parallel loops on
:func:`get_num_threads` of them, chosen in this order: a
:func:`set_num_threads` call; ``FASTOPT_NUM_THREADS``; ``OMP_NUM_THREADS``;
under MPI, the cores divided by the ranks on this machine (two ranks each
running two threads on two cores make every parallel region wait for a
descheduled thread); else every thread of the pool.

**Fork.** GNU OpenMP (numba's ``omp`` threading layer on Linux) cannot run in
a child forked after its pool started: the child is killed with "fork()
called from a process already using GNU OpenMP, this is unsafe". fastopt
notices such a child (``os.register_at_fork``) and runs its steps there on
the serial loop, which never enters OpenMP, with a one-time warning: the
numbers are the same, only the speed differs. Use the ``spawn`` or
``forkserver`` start method (or ``NUMBA_THREADING_LAYER=tbb``) to keep
parallel steps in workers.
"""

from __future__ import annotations

import os
import threading
import warnings

NEVER_PARALLEL = 1 << 62
"""A size threshold no buffer reaches: every loop takes its serial branch."""

_LOCAL_RANK_VARIABLES = ("OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "MV2_COMM_WORLD_LOCAL_SIZE",
                         "PMI_LOCAL_SIZE")
_unsafe_fork = False
_warned_fork = False
_requested: int | None = None
_applied = threading.local()


def _numba_pool_started() -> bool:
    from numba.np.ufunc import parallel

    return bool(getattr(parallel, "_is_initialized", False))


def _after_fork_in_child() -> None:
    global _unsafe_fork
    if _numba_pool_started():
        import numba

        try:
            layer = numba.threading_layer()
        except ValueError:
            layer = None
        _unsafe_fork = layer == "omp"


os.register_at_fork(after_in_child=_after_fork_in_child)


def in_unsafe_fork() -> bool:
    """True in a process forked after the GNU OpenMP pool started (warns once)."""
    global _warned_fork
    if _unsafe_fork and not _warned_fork:
        _warned_fork = True
        warnings.warn("fastopt: this process was forked after numba's OpenMP thread pool started, and GNU "
                      "OpenMP cannot run in a forked child; its optimizer steps run on one thread (same "
                      "numbers, slower). Start workers with the 'spawn' or 'forkserver' method, or set "
                      "NUMBA_THREADING_LAYER=tbb, to keep parallel steps.", RuntimeWarning, stacklevel=4)
    return _unsafe_fork


def _positive_int(name: str, text: str) -> int | None:
    try:
        value = int(text)
    except ValueError:
        return None
    return value if value >= 1 else None


def local_ranks() -> int:
    """MPI ranks on this machine according to the launcher's environment (1 if none)."""
    for name in _LOCAL_RANK_VARIABLES:
        value = _positive_int(name, os.environ.get(name, ""))
        if value:
            return value
    return 1


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask where the
    platform has one, e.g. under ``mpiexec --bind-to``), else all of them."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # pragma: no cover - no affinity masks (macOS, Windows)
        return os.cpu_count() or 1


def default_num_threads() -> tuple[int, str]:
    """``(threads, why)``: what :func:`get_num_threads` uses when
    :func:`set_num_threads` was not called."""
    import numba

    pool = numba.config.NUMBA_NUM_THREADS
    for name in ("FASTOPT_NUM_THREADS", "OMP_NUM_THREADS"):
        value = _positive_int(name, os.environ.get(name, "").split(",")[0])
        if value:
            return min(value, pool), f"{name}={value}"
    ranks = local_ranks()
    if ranks > 1:
        cores = usable_cores()
        return max(1, min(pool, cores // ranks)), f"{cores} cores / {ranks} MPI ranks on this machine"
    return pool, f"numba's pool (NUMBA_NUM_THREADS={pool})"


def set_num_threads(n: int | None) -> None:
    """Run fastopt's parallel loops on ``n`` threads (``None``: back to the default).

    ``n`` must be between 1 and ``NUMBA_NUM_THREADS`` (the pool's size, fixed
    when numba starts). Applies to every thread of this process that steps.
    Fewer threads than cores helps on a busy machine: a parallel step waits
    for its slowest thread, and a thread descheduled by a competing process
    stretches the step's tail.
    """
    global _requested
    import numba

    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= numba.config.NUMBA_NUM_THREADS:
            raise ValueError(f"n must be an int in [1, {numba.config.NUMBA_NUM_THREADS}] (NUMBA_NUM_THREADS) "
                             f"or None, got {n!r}")
    _requested = n
    _applied.__dict__.clear()


def get_num_threads() -> int:
    """Threads fastopt's parallel loops use (see the module docs for the order)."""
    return _requested if _requested is not None else default_num_threads()[0]


def apply_num_threads() -> None:
    """Make numba's (per-thread) setting match :func:`get_num_threads` in the
    calling thread; cheap after the first call in each thread."""
    wanted = get_num_threads() if _requested is not None else getattr(_applied, "default", None)
    if wanted is None:
        wanted = _applied.default = default_num_threads()[0]
    if getattr(_applied, "value", None) != wanted:
        import numba

        numba.set_num_threads(wanted)
        _applied.value = wanted
