"""Host arrays: validated, flat, in-place views of user arrays (with errors
that name the offending argument), and aligned allocation."""

from __future__ import annotations

import numpy as np

SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

BFLOAT16_BITS = np.dtype(np.uint16)
"""How a bfloat16 array is seen inside fastopt: its raw bits (NumPy has no
bfloat16; ``ml_dtypes.bfloat16`` arrays and torch bfloat16 tensors are
viewed, never copied)."""


def is_bfloat16(dtype) -> bool:
    """Whether ``dtype`` is a bfloat16 dtype (``ml_dtypes.bfloat16``, or torch's)."""
    return str(dtype) in ("bfloat16", "torch.bfloat16")


def _torch_tensor_to_numpy(obj, what: str):
    if obj.device.type != "cpu":
        raise TypeError(
            f"{what} is a torch tensor on {obj.device}; the CPU backend takes CPU "
            "arrays only (GPU arrays need the CUDA backend)"
        )
    tensor = obj.detach()
    if is_bfloat16(tensor.dtype):
        import torch

        # A view of the same memory: torch has no NumPy bfloat16, int16 bits do.
        return tensor.view(torch.int16).numpy().view(BFLOAT16_BITS)
    if tensor.dtype.is_complex:
        raise TypeError(f"{what} is a complex torch tensor; fastopt updates real float32, float64 or bfloat16")
    if str(tensor.dtype) == "torch.float16":
        raise TypeError(f"{what} is a torch float16 tensor, which fastopt does not update; use float32 params, "
                        "or bfloat16 params (a float32 master copy is kept)")
    return tensor.numpy()


def to_ndarray(obj, what: str) -> np.ndarray:
    """The ndarray sharing memory with ``obj`` (ndarray, torch CPU tensor, or a
    buffer-protocol object); never a copy."""
    if isinstance(obj, np.ndarray):
        return obj
    if type(obj).__module__.startswith("torch") and hasattr(obj, "detach"):
        return _torch_tensor_to_numpy(obj, what)
    try:
        memoryview(obj)
    except TypeError:
        raise TypeError(
            f"{what} must be an array updated in place (numpy.ndarray, torch CPU "
            f"tensor or buffer-protocol object), got {type(obj).__name__}"
        ) from None
    return np.asarray(obj)


def flat_view(array: np.ndarray, what: str, *, writeable: bool = True, bfloat16: bool = False,
              codes: bool = False) -> np.ndarray:
    """A 1-D view of a contiguous float32/float64 array; raises otherwise.
    With ``bfloat16`` the array holds bfloat16 bits (uint16, from
    :func:`bfloat16_bits`) and is accepted as such; with ``codes``, 8-bit
    block-float codes (uint8)."""
    accepted = (bfloat16 and array.dtype == BFLOAT16_BITS) or (codes and array.dtype == np.uint8)
    if not accepted and array.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"{what} has dtype {array.dtype}; fastopt supports float32, float64 and bfloat16 "
                        "(ml_dtypes.bfloat16 arrays, torch bfloat16 tensors)")
    if writeable and not array.flags.writeable:
        raise ValueError(f"{what} is read-only; it must be writeable to be updated in place")
    if array.flags.c_contiguous:
        flat = array.reshape(-1)
    elif array.flags.f_contiguous:
        flat = array.T.reshape(-1)
    else:
        raise ValueError(
            f"{what} is not contiguous (strides {array.strides}); pass a contiguous "
            "array so it can be updated in place"
        )
    return flat


def bfloat16_bits(array: np.ndarray) -> np.ndarray:
    """An ``ml_dtypes.bfloat16`` array's uint16 view (other arrays unchanged)."""
    return array.view(BFLOAT16_BITS) if is_bfloat16(array.dtype) else array


def param_grad_pair(param, grad, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate one (param, grad) pair and return their flat views (bfloat16
    params and grads as their uint16 bits: see :func:`is_bfloat16`)."""
    bf16 = is_bfloat16(getattr(param, "dtype", None))
    if bf16 != is_bfloat16(getattr(grad, "dtype", None)):
        raise TypeError(f"{where}: param dtype {param.dtype} and grad dtype {grad.dtype} differ")
    p = bfloat16_bits(to_ndarray(param, f"{where} param"))
    g = bfloat16_bits(to_ndarray(grad, f"{where} grad"))
    pf = flat_view(p, f"{where} param", bfloat16=bf16)
    gf = flat_view(g, f"{where} grad", writeable=False, bfloat16=bf16)
    check_pair(p, g, where)
    return pf, gf


def check_pair(p, g, where: str) -> None:
    """Raise unless param ``p`` and grad ``g`` (ndarray-like: ``dtype``,
    ``shape``, ``size``, ``ndim``, ``flags.c_contiguous``) match element for
    element. Shared by the CPU and CUDA backends."""
    if p.dtype != g.dtype:
        raise TypeError(f"{where}: param dtype {p.dtype} and grad dtype {g.dtype} differ")
    if p.shape != g.shape:
        raise ValueError(f"{where}: param shape {p.shape} and grad shape {g.shape} differ")
    if p.size and p.ndim > 1 and p.flags.c_contiguous != g.flags.c_contiguous:
        raise ValueError(f"{where}: param and grad have different memory layouts (C vs Fortran order)")


def _byte_range(a) -> tuple[int, int]:
    interface = getattr(a, "__cuda_array_interface__", None) or a.__array_interface__
    start = interface["data"][0]
    return start, start + a.nbytes


def check_disjoint(named: list[tuple[str, np.ndarray]]) -> None:
    """Raise if any two of the arrays share memory (an update would corrupt the other)."""
    spans = sorted(
        (_byte_range(a) + (name,) for name, a in named if a.nbytes), key=lambda t: t[0]
    )
    reach, holder = -1, None
    for start, end, name in spans:
        if start < reach:
            raise ValueError(f"{holder} and {name} share memory; every param and grad must be a separate buffer")
        if end > reach:
            reach, holder = end, name


ALIGNMENT = 64
"""Byte alignment of every buffer fastopt allocates (a cache line, a full
AVX-512 vector, and a multiple of the 16 bytes of a CUDA vector load)."""


def aligned_empty(n: int, dtype) -> np.ndarray:
    """An uninitialised 1-D array of ``n`` elements whose data starts on an
    ``ALIGNMENT``-byte boundary."""
    dtype = np.dtype(dtype)
    raw = np.empty(n * dtype.itemsize + ALIGNMENT, dtype=np.uint8)
    offset = (-raw.ctypes.data) % ALIGNMENT
    return raw[offset: offset + n * dtype.itemsize].view(dtype)


def aligned_zeros(n: int, dtype) -> np.ndarray:
    """Like :func:`aligned_empty`, filled with zeros."""
    out = aligned_empty(n, dtype)
    out.fill(0)
    return out
