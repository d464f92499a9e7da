"""The one place that imports numba's CUDA target (only when the CUDA backend
is first needed), with an install hint when it is missing."""

from __future__ import annotations

import importlib.util

if importlib.util.find_spec("numba_cuda") is None:
    raise ImportError(
        'fastopt\'s CUDA backend needs the numba-cuda package: pip install "fastopt[cuda]"'
    )

from numba import config as _config  # noqa: E402
from numba import cuda  # noqa: E402

SIMULATOR = bool(_config.ENABLE_CUDASIM)
"""True when NUMBA_ENABLE_CUDASIM=1 was set before numba was imported: kernels
then run on the CPU as Python, for tests."""

__all__ = ["cuda", "SIMULATOR"]
