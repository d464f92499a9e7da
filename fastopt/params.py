"""FlatParams: all parameters of a model in one aligned, contiguous buffer."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from . import backends
from .backends.host_arrays import SUPPORTED_DTYPES, to_ndarray


def _host_array(a, what: str):
    """``a`` as a host array: scalars and host arrays as they are, GPU arrays
    read back through their backend."""
    if np.isscalar(a):
        return a
    backend = backends.backend_for(a)
    if backend.name == "cpu":
        return to_ndarray(a, what)
    return backend.to_host(backend.view(a, what)).reshape(tuple(a.shape))


class FlatParams:
    """Named, shaped parameters packed into one contiguous buffer, with a
    gradient buffer of the same layout.

    An optimizer given a ``FlatParams`` updates every parameter with one
    kernel call over ``data``. ``self[name]`` is a view into ``data``: writing
    through it writes the buffer (and vice versa); ``grad_of(name)`` is the
    matching view into ``grad``.

    Parameters
    ----------
    shapes : mapping of str to tuple of int
        Parameter names and shapes, in layout order.
    dtype : {numpy.float32, numpy.float64}, optional
        Element type of both buffers. Default float32.
    device : {"cpu", "cuda"}, optional
        Where the buffers live. ``"cuda"`` allocates them on the current GPU
        through the CUDA backend (needs ``fastopt[cuda]``): ``data``, ``grad``,
        ``self[name]`` and ``grad_of(name)`` are then numba device arrays
        (views; ``copy_to_host()`` reads them), and an optimizer given this
        object keeps its state on the GPU too. Default ``"cpu"``.

    Examples
    --------
    >>> fp = FlatParams({"w": (2, 3), "b": (3,)})
    >>> fp["w"][:] = 1.0
    >>> float(fp.data[:6].sum())
    6.0
    """

    def __init__(self, shapes: Mapping[str, tuple], dtype=np.float32, device: str = "cpu"):
        dtype = np.dtype(dtype)
        if device not in backends.DEVICES:
            raise ValueError(f"device must be one of {backends.DEVICES}, got {device!r}")
        if dtype not in SUPPORTED_DTYPES:
            raise TypeError(f"dtype must be float32 or float64, got {dtype}")
        if not isinstance(shapes, Mapping) or not shapes:
            raise ValueError("shapes must be a non-empty mapping of name -> shape")
        self._slices: dict[str, tuple[int, int, tuple]] = {}
        offset = 0
        for name, shape in shapes.items():
            if not isinstance(name, str) or not name:
                raise TypeError(f"parameter names must be non-empty strings, got {name!r}")
            shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
            if any(not isinstance(d, (int, np.integer)) or d < 0 for d in shape):
                raise ValueError(f"shape of {name!r} must hold non-negative ints, got {shape!r}")
            size = math.prod(shape)
            self._slices[name] = (offset, offset + size, tuple(int(d) for d in shape))
            offset += size
        self.dtype = dtype
        self.device = device
        self.backend = backends.get(device)
        self.data = self.backend.zeros(offset, dtype)
        self.grad = self.backend.zeros(offset, dtype)

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, object], dtype=None, device: str = "cpu") -> FlatParams:
        """Pack copies of existing arrays (their values become the initial parameters).

        Parameters
        ----------
        arrays : mapping of str to array-like
            Host arrays (or, read back to the host first, GPU arrays).
        dtype : optional
            Buffer dtype; default: the common float dtype of the arrays (float32
            when they are not floating point).
        device : {"cpu", "cuda"}, optional
            Where the buffers live (see :class:`FlatParams`).
        """
        converted = {name: np.asarray(_host_array(a, f"arrays[{name!r}]")) for name, a in arrays.items()}
        if dtype is None:
            dtype = np.result_type(*converted.values())
            if dtype not in SUPPORTED_DTYPES:
                dtype = np.float32
        flat = cls({name: a.shape for name, a in converted.items()}, dtype=dtype, device=device)
        for name, a in converted.items():
            flat[name] = a
        return flat

    @property
    def names(self) -> tuple[str, ...]:
        """Parameter names in layout order."""
        return tuple(self._slices)

    @property
    def shapes(self) -> dict[str, tuple]:
        """Name -> shape."""
        return {name: shape for name, (_, _, shape) in self._slices.items()}

    @property
    def ranges(self) -> tuple[tuple[int, int], ...]:
        """The ``(start, stop)`` range of each tensor in the buffer, in layout order."""
        return tuple((start, stop) for start, stop, _ in self._slices.values())

    def __len__(self) -> int:
        return self.data.size

    def __contains__(self, name) -> bool:
        return name in self._slices

    def __iter__(self):
        return iter(self._slices)

    def _view(self, buffer, name: str):
        try:
            start, stop, shape = self._slices[name]
        except KeyError:
            raise KeyError(f"no parameter named {name!r}; have {list(self._slices)}") from None
        return buffer[start:stop].reshape(shape)

    def __getitem__(self, name: str):
        return self._view(self.data, name)

    def __setitem__(self, name: str, value) -> None:
        view = self._view(self.data, name)
        self.backend.copy_(view, np.broadcast_to(np.asarray(value, self.dtype), view.shape))

    def grad_of(self, name: str):
        """The gradient view of parameter ``name`` (same shape, into ``grad``)."""
        return self._view(self.grad, name)

    def span(self, names):
        """Flat (param, grad) views covering ``names``, which must be adjacent in
        the layout: use it to give a group of parameters its own hyperparameters
        while keeping one kernel call per group."""
        names = list(names)
        if not names:
            raise ValueError("names must not be empty")
        unknown = [n for n in names if n not in self._slices]
        if unknown:
            raise KeyError(f"no parameter named {unknown[0]!r}; have {list(self._slices)}")
        bounds = sorted(self._slices[n][:2] for n in set(names))
        for (_, stop), (start, _) in zip(bounds, bounds[1:]):
            if start != stop:
                raise ValueError(f"parameters {names} are not adjacent in the layout {self.names}")
        lo, hi = bounds[0][0], bounds[-1][1]
        return self.data[lo:hi], self.grad[lo:hi]

    def zero_grad(self) -> None:
        """Set every gradient to zero."""
        self.backend.fill_(self.grad, 0.0)

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Copies of every parameter, by name (host arrays, whatever the device)."""
        host = self.backend.to_host(self.data)
        return {name: self._view(host, name).copy() for name in self._slices}

    def __repr__(self) -> str:
        where = "" if self.device == "cpu" else f", {self.device}"
        return f"FlatParams({len(self._slices)} tensors, {self.data.size} elements, {self.dtype}{where})"


class ParamChain:
    """Several parameters that live in one flat buffer, each its own param for
    the optimizer: its own entry in ``optimizer.state`` (torch's layout, one
    per tensor), its own step count, skipped when it has no gradient
    (``apply_step(active=...)``); and yet one kernel launch covers every
    tensor of the chain that is stepped and at the same step.

    Parameters
    ----------
    data, grad : array
        The flat parameter and gradient buffers (same dtype and size; host or
        GPU arrays).
    ranges : sequence of (int, int)
        Each tensor's ``(start, stop)`` in the buffers, in increasing order,
        not overlapping (gaps allowed: a gap's elements are launched over
        too, so keep its gradient at zero).
    shapes : sequence of tuple, optional
        Each tensor's shape (default: flat).
    params : sequence, optional
        What ``param_groups[k]["params"]`` lists for each tensor (default: the
        flat views).
    """

    def __init__(self, data, grad, ranges, shapes=None, params=None):
        ranges = [(int(a), int(b)) for a, b in ranges]
        if not ranges:
            raise ValueError("ranges must not be empty")
        end = 0
        for k, (a, b) in enumerate(ranges):
            if not end <= a <= b <= len(data):
                raise ValueError(f"ranges[{k}] = ({a}, {b}) must lie inside [0, {len(data)}], after ranges[{k - 1}]"
                                 if k else f"ranges[0] = ({a}, {b}) must lie inside [0, {len(data)}]")
            end = b
        shapes = [(b - a,) for a, b in ranges] if shapes is None else [tuple(s) for s in shapes]
        if len(shapes) != len(ranges) or any(math.prod(s) != b - a for s, (a, b) in zip(shapes, ranges)):
            raise ValueError("shapes must give one shape per range, with as many elements as the range")
        if params is not None and len(params) != len(ranges):
            raise ValueError(f"params must give one entry per range ({len(ranges)}), got {len(params)}")
        self.data, self.grad = data, grad
        self.ranges, self.shapes = tuple(ranges), tuple(shapes)
        self.params = list(params) if params is not None else None

    def __len__(self) -> int:
        return len(self.ranges)

    def __repr__(self) -> str:
        return f"ParamChain({len(self.ranges)} tensors over {len(self.data)} elements)"
