"""On-disk compile cache for kernels built by a factory from a rule.

Numba's own ``cache=True`` keys closures by pickling their cell contents; a
cell holding a dispatcher (the rule) pickles differently in every process, so
factory-built kernels would never hit the cache. ``RuleKernelCache`` keys them
instead by the kernel's bytecode plus the rule's name and the source of the
module that defines it, which is stable across processes and changes whenever
the math changes.
"""

from __future__ import annotations

import hashlib
import inspect
import warnings
from pathlib import Path

from numba.core.caching import FunctionCache

_warned = False


class RuleKernelCache(FunctionCache):
    """A ``FunctionCache`` whose index key does not pickle closure cells."""

    def __init__(self, py_func, rule_key: str):
        super().__init__(py_func)
        self._rule_key = rule_key

    def _index_key(self, sig, codegen):
        kernel_code = hashlib.sha256(self._py_func.__code__.co_code).hexdigest()
        return (sig, codegen.magic_tuple(), (kernel_code, self._rule_key))


def rule_key(rule) -> str:
    """A digest of the rule's name and of every source file of its package, so
    that editing a rule or a shared helper invalidates the cached kernels."""
    py_func = getattr(rule, "py_func", rule)
    digest = hashlib.sha256(f"{py_func.__module__}.{py_func.__qualname__}".encode())
    folder = Path(inspect.getfile(py_func)).parent
    for path in sorted(folder.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def enable_cache(dispatcher, rule) -> bool:
    """Attach a persistent cache to ``dispatcher``; warn once and go on without one
    when no cache directory is writable (read-only install, no writable home)."""
    global _warned
    try:
        dispatcher._cache = RuleKernelCache(dispatcher.py_func, rule_key(rule))
    except (RuntimeError, OSError) as exc:
        if not _warned:
            warnings.warn(
                f"fastopt: no writable compile cache ({exc}); kernels will be "
                "compiled in every process. Set NUMBA_CACHE_DIR to a writable "
                "directory to keep them.",
                RuntimeWarning,
                stacklevel=3,
            )
            _warned = True
        return False
    return True
