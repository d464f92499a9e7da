"""Backends: everything that touches memory. ``cpu`` (NumPy buffers, numba
``prange`` loops) and ``cuda`` (GPU buffers, numba-cuda grid loops; imported
only when a GPU array or ``device="cuda"`` asks for it).

A backend provides: ``pair`` (validate a (param, grad) pair, return flat
views), ``zeros``, ``elementwise_launcher`` / ``segmented_launcher`` (a
``launch(values)`` closure over one set of buffers), ``sum_of_squares`` and
``all_finite`` (the gradient guard's reductions), ``to_host``, ``copy_``,
``fill_``, ``scale_`` and ``device_of``.
"""

from __future__ import annotations

DEVICES = ("cpu", "cuda")


def is_gpu_array(obj) -> bool:
    """True for torch CUDA tensors, CuPy arrays and numba device arrays."""
    if type(obj).__module__.startswith("torch") and hasattr(obj, "device"):
        return obj.device.type == "cuda"
    if type(obj).__name__ == "FakeCUDAArray":  # numba's CUDA simulator (tests)
        return True
    return hasattr(type(obj), "__cuda_array_interface__") or hasattr(obj, "__cuda_array_interface__")


def get(device: str):
    """The backend object for ``"cpu"`` or ``"cuda"``."""
    if device == "cpu":
        from .cpu import CPU

        return CPU
    if device == "cuda":
        from .cuda import CUDA

        return CUDA
    raise ValueError(f"device must be one of {DEVICES}, got {device!r}")


def backend_for(obj):
    """The backend that owns array ``obj``."""
    return get("cuda" if is_gpu_array(obj) else "cpu")
