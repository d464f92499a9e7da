"""GPU arrays in: torch CUDA tensors, CuPy arrays and numba device arrays
become flat numba device arrays over the same memory, validated with the CPU
backend's messages, each tagged with where its owner's current stream comes
from."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ..host_arrays import check_pair, flat_view
from .runtime import SIMULATOR, cuda

DEVICE_ATTRIBUTE = "_fastopt_device"
"""Attribute set on the flat arrays: the owner's device index (None: the current device)."""

STREAM_ATTRIBUTE = "_fastopt_stream"
"""Attribute set on the flat arrays that :func:`device_pair` returns: a
zero-argument callable giving the stream to launch on now (see
:func:`stream_of`)."""


# -- streams ----------------------------------------------------------------------

_external: dict[int, object] = {}


def _numba_stream(ptr: int):
    """The numba stream object for a raw ``cudaStream_t``, wrapped once per
    pointer and reused (wrapping costs more than launching)."""
    stream = _external.get(ptr)
    if stream is None:
        stream = cuda.legacy_default_stream() if ptr == 0 else cuda.external_stream(ptr)
        _external[ptr] = stream
    return stream


def _default_stream():
    return 0


def _torch_stream_getter(device_index: int):
    import torch

    # The private accessor returns the raw pointer without building a Stream
    # object (~0.2 us against ~2 us); the public one is the fallback.
    raw = getattr(torch._C, "_cuda_getCurrentRawStream", None)
    if raw is not None:
        def current():
            return _numba_stream(raw(device_index))
    else:
        def current():
            return _numba_stream(torch.cuda.current_stream(device_index).cuda_stream)
    return current


def _cupy_stream_getter():
    import cupy

    get = cupy.cuda.get_current_stream

    def current():
        return _numba_stream(get().ptr)

    return current


def device_index(array):
    """The device index of a flat array made here (None: the current device)."""
    return getattr(array, DEVICE_ATTRIBUTE, None)


def stream_of(array):
    """The stream to launch on for ``array`` now: its owner's current stream
    (torch, CuPy), or ``0`` (numba's default stream)."""
    get = getattr(array, STREAM_ATTRIBUTE, None)
    return get() if get is not None else 0


# -- arrays -----------------------------------------------------------------------


def _is_torch(obj) -> bool:
    return type(obj).__module__.startswith("torch") and hasattr(obj, "detach")


def _is_cupy(obj) -> bool:
    return type(obj).__module__.startswith("cupy")


def _c_strides(shape, itemsize):
    strides, step = [], itemsize
    for d in reversed(shape):
        strides.append(step)
        step *= max(d, 1)
    return tuple(reversed(strides))


def _is_contiguous(shape, strides, itemsize, order: str) -> bool:
    dims = list(zip(shape, strides, strict=True))
    if order == "F":
        dims.reverse()
    step = itemsize
    for d, s in reversed(dims):
        if d > 1 and s != step:
            return False
        step *= d
    return True


class _Described:
    """Just enough of the ndarray interface (``dtype``, ``shape``, ``size``,
    ``ndim``, ``strides``, ``flags``, ``reshape(-1)``, ``T``) for
    :func:`fastopt._arrays.flat_view` and :func:`~fastopt._arrays.check_pair`,
    read off a ``__cuda_array_interface__``. Its flat view is built from the
    interface directly: numba's own ``reshape`` and ``T`` of a device array
    may copy (a transposed copy would never see the update)."""

    def __init__(self, obj, interface: dict):
        self._obj = obj
        self._interface = interface
        self.dtype = np.dtype(interface["typestr"])
        self.shape = tuple(int(d) for d in interface["shape"])
        self.ndim = len(self.shape)
        self.size = int(np.prod(self.shape, dtype=np.int64))
        itemsize = self.dtype.itemsize
        strides = interface.get("strides")
        self.strides = tuple(strides) if strides is not None else _c_strides(self.shape, itemsize)
        self.flags = SimpleNamespace(
            writeable=not interface["data"][1],
            c_contiguous=_is_contiguous(self.shape, self.strides, itemsize, "C"),
            f_contiguous=_is_contiguous(self.shape, self.strides, itemsize, "F"),
        )

    @property
    def T(self):  # noqa: N802 - ndarray's name
        return self

    def reshape(self, *shape):
        """The flat view, in memory order (only ``reshape(-1)`` is asked for)."""
        flat = {"shape": (self.size,), "strides": None, "typestr": self._interface["typestr"],
                "data": self._interface["data"], "version": 3}
        return cuda.from_cuda_array_interface(flat, owner=self._obj, sync=False)


def _described(obj, what: str):
    """``obj`` as something :func:`flat_view` accepts, its stream getter and
    its device index (None: the current device)."""
    if SIMULATOR:
        # The simulator's fake device arrays wrap a NumPy array and forward
        # ``flags``, ``reshape`` and ``T`` to it: views, never copies.
        if type(obj).__name__ == "FakeCUDAArray":
            return obj, _default_stream, None
        raise TypeError(f"{what} must be a device array (under the CUDA simulator: "
                        f"numba.cuda.to_device/device_array), got {type(obj).__name__}")
    getter, device = _default_stream, None
    if _is_torch(obj):
        if obj.device.type != "cuda":
            raise TypeError(f"{what} is a torch tensor on {obj.device}; the CUDA backend "
                            "takes GPU arrays only (use one optimizer per device)")
        device = obj.device.index if obj.device.index is not None else 0
        getter = _torch_stream_getter(device)
        obj = obj.detach()
    elif _is_cupy(obj):
        getter = _cupy_stream_getter()
        device = int(obj.device.id)
    try:
        interface = obj.__cuda_array_interface__
    except AttributeError:
        raise TypeError(f"{what} must be a GPU array (torch CUDA tensor, CuPy array or numba "
                        f"device array), got {type(obj).__name__}") from None
    return _Described(obj, interface), getter, device


def _tag(flat, stream, device) -> None:
    setattr(flat, STREAM_ATTRIBUTE, stream)
    setattr(flat, DEVICE_ATTRIBUTE, device)


def device_pair(param, grad, where: str):
    """Validate one (param, grad) pair of GPU arrays; return their flat numba
    device arrays, tagged with the stream getter and device of their owner."""
    p, stream, device = _described(param, f"{where} param")
    g, _, grad_device = _described(grad, f"{where} grad")
    if device != grad_device:
        raise ValueError(f"{where}: param is on cuda:{device} and grad on cuda:{grad_device}; they must share a GPU")
    pf = flat_view(p, f"{where} param")
    gf = flat_view(g, f"{where} grad", writeable=False)
    check_pair(p, g, where)
    for flat in (pf, gf):
        _tag(flat, stream, device)
    return pf, gf


def device_view(obj, what: str):
    """A flat numba device array over a contiguous float32/float64 GPU array."""
    described, stream, device = _described(obj, what)
    flat = flat_view(described, what, writeable=False)
    if not SIMULATOR:
        _tag(flat, stream, device)
    return flat
