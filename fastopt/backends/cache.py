"""On-disk compile cache for kernels built by a factory around a rule.

Numba's own ``cache=True`` keys closures by pickling their cell contents; a
cell holding a dispatcher (the rule) pickles differently in every process, so
factory-built kernels would never hit the cache. :class:`FactoryKernelCache`
keys them instead by the kernel's bytecode, a layout key from the factory
(which rule, which wrappers) and a digest of every source file whose code
ends up in the kernel (the rules package, the loop factories, the codecs, the
compile flags): stable across processes, and changed whenever the math or
the loops change.
"""

from __future__ import annotations

import hashlib
import secrets
import warnings
from functools import lru_cache
from pathlib import Path

from numba.core.bytecode import FunctionIdentity
from numba.core.caching import FunctionCache

_PACKAGE = Path(__file__).resolve().parent.parent
_SOURCES = ("config.py", "rules/*.py", "backends/*.py")
_warned = False


class _RandomIds:
    """Function ids drawn at random instead of counted from 1 in each process.

    numba names a compiled function after its qualified name, a per-process
    counter and its argument types. Two factory closures of one qualified
    name (Adam's and RAdam's per-element function: their records have nine
    fields each) compiled in two processes can get the same number, hence the
    same symbol with different bodies; a third process that loads both from
    the cache links one body for both kernels, and RAdam silently runs
    Adam's rule (measured here; numba issue 10486). 64 random bits make that
    collision practically impossible."""

    def __iter__(self):
        return self

    def __next__(self) -> int:
        return secrets.randbits(64)


FunctionIdentity._unique_ids = _RandomIds()  # type: ignore[assignment]


class FactoryKernelCache(FunctionCache):
    """A ``FunctionCache`` whose index key does not pickle closure cells."""

    def __init__(self, py_func, key: str):
        super().__init__(py_func)
        self._factory_key = key

    def _index_key(self, sig, codegen):
        kernel_code = hashlib.sha256(self._py_func.__code__.co_code).hexdigest()
        return (sig, codegen.magic_tuple(), (kernel_code, self._factory_key))


@lru_cache(maxsize=1)
def source_digest() -> str:
    """A digest of every source file that can change a kernel's code."""
    digest = hashlib.sha256()
    for pattern in _SOURCES:
        for path in sorted(_PACKAGE.glob(pattern)):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def function_key(function) -> str:
    """``module.qualname`` of a (jitted) function, for layout keys."""
    py_func = getattr(function, "py_func", function)
    return f"{py_func.__module__}.{py_func.__qualname__}"


def enable_cache(dispatcher, layout_key: str) -> bool:
    """Attach a persistent cache to ``dispatcher``; warn once and go on without one
    when no cache directory is writable (read-only install, no writable home)."""
    global _warned
    key = hashlib.sha256(f"{layout_key}|{source_digest()}".encode()).hexdigest()
    try:
        dispatcher._cache = FactoryKernelCache(dispatcher.py_func, key)
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
