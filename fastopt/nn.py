"""A small NumPy multi-layer perceptron whose parameters live in one flat buffer.

The MLP keeps every weight and bias as a view into a single
:class:`~fastopt.FlatParams` buffer, and its backward pass writes the
gradients straight into the matching views of the flat gradient buffer
(``np.matmul(..., out=...)``, ``np.sum(..., out=...)``). A fastopt optimizer
built on ``mlp.params`` therefore updates the whole network with one fused
kernel launch per step and no gathering or scattering of arrays.

Examples
--------
>>> import numpy as np
>>> from fastopt.nn import MLP
>>> mlp = MLP([2, 16, 3], seed=0)
>>> x = np.zeros((4, 2), dtype=np.float32)
>>> mlp.forward(x).shape
(4, 3)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from .data import SeedLike
from .params import FlatParams

__all__ = ["INITS", "MLP", "Dense", "ReLU", "Steppable", "softmax", "softmax_cross_entropy"]


class Steppable(Protocol):
    """Anything with a ``step()`` method: an optimizer, a scheduler."""

    def step(self) -> object: ...


#: ``(model, x, y) -> (loss, grads)``: fills ``model.params.grad`` for a batch.
GradientFn = Callable[[Any, Any, Any], tuple[float, Any]]


#: Names accepted by ``MLP(init=...)``.
INITS = ("he", "glorot")


class Dense:
    """Affine layer ``y = x @ W + b`` over caller-owned arrays.

    The layer does not own memory: it is handed the weight, bias and their
    gradient arrays (typically views into a flat buffer) and writes the
    gradients into them in place during :meth:`backward`.

    Parameters
    ----------
    weight : ndarray, shape (in_features, out_features)
        Weight array (read by :meth:`forward`).
    bias : ndarray, shape (out_features,)
        Bias array.
    weight_grad : ndarray, shape (in_features, out_features)
        Array that :meth:`backward` overwrites with ``dL/dW``.
    bias_grad : ndarray, shape (out_features,)
        Array that :meth:`backward` overwrites with ``dL/db``.
    """

    def __init__(self, weight: np.ndarray, bias: np.ndarray, weight_grad: np.ndarray,
                 bias_grad: np.ndarray) -> None:
        if weight.ndim != 2:
            raise ValueError(f"weight must be 2-D, got shape {weight.shape}")
        if bias.shape != (weight.shape[1],):
            raise ValueError(
                f"bias must have shape {(weight.shape[1],)}, got {bias.shape}"
            )
        if weight_grad.shape != weight.shape:
            raise ValueError(
                f"weight_grad must have shape {weight.shape}, got {weight_grad.shape}"
            )
        if bias_grad.shape != bias.shape:
            raise ValueError(
                f"bias_grad must have shape {bias.shape}, got {bias_grad.shape}"
            )
        self.weight = weight
        self.bias = bias
        self.weight_grad = weight_grad
        self.bias_grad = bias_grad
        self._x: np.ndarray | None = None

    @property
    def in_features(self) -> int:
        """int: Number of input features."""
        return self.weight.shape[0]

    @property
    def out_features(self) -> int:
        """int: Number of output features."""
        return self.weight.shape[1]

    def forward(self, x: np.ndarray, train: bool = True) -> np.ndarray:
        """Return ``x @ W + b``.

        Parameters
        ----------
        x : ndarray, shape (batch, in_features)
            Input batch.
        train : bool, default True
            Keep a reference to `x` for :meth:`backward`.

        Returns
        -------
        ndarray, shape (batch, out_features)
        """
        self._x = x if train else None
        out = np.matmul(x, self.weight)
        out += self.bias
        return out

    def backward(self, dout: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """Write ``dL/dW`` and ``dL/db`` in place and return ``dL/dx``.

        Parameters
        ----------
        dout : ndarray, shape (batch, out_features)
            Gradient of the loss with respect to this layer's output.
        input_grad : bool, default True
            Compute and return the gradient with respect to the input; pass
            False for the first layer to skip that matmul.

        Returns
        -------
        ndarray or None
            ``dout @ W.T`` when `input_grad` is true, else None.
        """
        if self._x is None:
            raise RuntimeError("Dense.backward called before forward(x, train=True)")
        np.matmul(self._x.T, dout, out=self.weight_grad)
        np.sum(dout, axis=0, out=self.bias_grad)
        return np.matmul(dout, self.weight.T) if input_grad else None


class ReLU:
    """Rectified linear unit ``max(x, 0)``."""

    def __init__(self) -> None:
        self._out: np.ndarray | None = None

    def forward(self, x: np.ndarray, train: bool = True) -> np.ndarray:
        """Return ``max(x, 0)`` (a new array); keep it for :meth:`backward` if `train`."""
        out = np.maximum(x, 0)
        self._out = out if train else None
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """Return ``dout`` with entries where the input was <= 0 set to zero."""
        if self._out is None:
            raise RuntimeError("ReLU.backward called before forward(x, train=True)")
        return np.where(self._out > 0, dout, 0).astype(dout.dtype, copy=False)


def softmax(logits: ArrayLike) -> np.ndarray:
    """Row-wise softmax, numerically stable.

    Parameters
    ----------
    logits : ndarray, shape (batch, classes)

    Returns
    -------
    ndarray, shape (batch, classes)
        Probabilities, in the dtype of `logits` (floating inputs) or float64.
    """
    logits = np.asarray(logits)
    if not np.issubdtype(logits.dtype, np.floating):
        logits = logits.astype(np.float64)
    z = logits - logits.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z


def _check_labels(y: ArrayLike, n: int, n_classes: int) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"y must be a 1-D array of {n} labels, got shape {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must hold integer class labels, got dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(
            f"y labels must lie in [0, {n_classes}), got range [{y.min()}, {y.max()}]"
        )
    return y


def softmax_cross_entropy(logits: ArrayLike, y: ArrayLike) -> tuple[float, np.ndarray]:
    """Mean softmax cross-entropy and its gradient, fused.

    Parameters
    ----------
    logits : ndarray, shape (batch, classes)
        Unnormalised scores (floating point).
    y : array_like of int, shape (batch,)
        Class labels in ``[0, classes)``.

    Returns
    -------
    loss : float
        ``mean_i(logsumexp(logits_i) - logits_i[y_i])``.
    dlogits : ndarray, shape (batch, classes)
        ``(softmax(logits) - onehot(y)) / batch``, in the dtype of `logits`.
    """
    logits = np.asarray(logits)
    if logits.ndim != 2:
        raise ValueError(f"logits must be 2-D (batch, classes), got shape {logits.shape}")
    if not np.issubdtype(logits.dtype, np.floating):
        raise ValueError(f"logits must be floating point, got dtype {logits.dtype}")
    n, c = logits.shape
    if n == 0:
        raise ValueError("logits must hold at least one row")
    y = _check_labels(y, n, c)
    rows = np.arange(n)
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    s = e.sum(axis=1)
    loss = float(np.mean(np.log(s) - z[rows, y], dtype=np.float64))
    e /= s[:, None]
    e[rows, y] -= 1
    e *= logits.dtype.type(1.0 / n)
    return loss, e


class MLP:
    """Fully connected ReLU network with parameters in one :class:`~fastopt.FlatParams`.

    Layer ``i`` (1-based) has weight ``w{i}`` of shape ``(sizes[i-1], sizes[i])``
    and bias ``b{i}`` of shape ``(sizes[i],)``; ReLU follows every layer but the
    last, whose outputs are logits for a softmax cross-entropy loss.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths, input first and number of classes last, e.g. ``[2, 64, 3]``.
    seed : int, numpy.random.Generator or None, default 0
        Seed of the initialisation; the same seed gives the same weights.
    dtype : numpy dtype, default numpy.float32
        Dtype of parameters, gradients and activations.
    init : {"he", "glorot"}, default "he"
        ``"he"``: weights ~ N(0, 2 / fan_in); ``"glorot"``: weights ~
        U(-a, a) with ``a = sqrt(6 / (fan_in + fan_out))``. Biases start at 0.

    Attributes
    ----------
    params : FlatParams
        The flat parameter/gradient buffers; pass it to an optimizer.
    layers : list of Dense
        The affine layers, whose arrays are views into `params`.
    sizes : tuple of int
    """

    def __init__(self, sizes: Sequence[int], seed: SeedLike = 0, dtype: DTypeLike = np.float32,
                 init: str = "he") -> None:
        sizes = tuple(sizes)
        if len(sizes) < 2:
            raise ValueError(f"sizes must list at least 2 widths, got {sizes!r}")
        for s in sizes:
            if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1:
                raise ValueError(f"sizes must be positive integers, got {sizes!r}")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        self.sizes = tuple(int(s) for s in sizes)
        self.init = init
        shapes: dict[str, tuple[int, ...]] = {}
        for i, (fan_in, fan_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:]), 1):
            shapes[f"w{i}"] = (fan_in, fan_out)
            shapes[f"b{i}"] = (fan_out,)
        self.params = FlatParams(shapes, dtype=dtype)
        self.dtype = np.dtype(self.params.dtype)
        p = self.params
        self.layers = [
            Dense(p[f"w{i}"], p[f"b{i}"], p.grad_of(f"w{i}"), p.grad_of(f"b{i}"))
            for i in range(1, len(self.sizes))
        ]
        self._relus = [ReLU() for _ in self.layers[:-1]]
        self.reset_parameters(seed)

    def __repr__(self) -> str:
        return (
            f"MLP(sizes={list(self.sizes)}, dtype={self.dtype.name}, "
            f"init={self.init!r}, n_params={self.n_params})"
        )

    @property
    def n_params(self) -> int:
        """int: Number of trainable scalars (weights and biases)."""
        return sum(layer.weight.size + layer.bias.size for layer in self.layers)

    @property
    def n_classes(self) -> int:
        """int: Width of the output layer."""
        return self.sizes[-1]

    def reset_parameters(self, seed: SeedLike = 0) -> None:
        """Re-initialise weights (He or Glorot, see class docs) and zero biases.

        Values are drawn in float64 and rounded to the parameter dtype, so a
        float32 and a float64 network with the same seed start at the same
        point up to rounding.

        Parameters
        ----------
        seed : int, numpy.random.Generator or None, default 0
        """
        rng = np.random.default_rng(seed)
        for layer in self.layers:
            fan_in, fan_out = layer.weight.shape
            if self.init == "he":
                w = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(fan_in, fan_out))
            else:
                a = np.sqrt(6.0 / (fan_in + fan_out))
                w = rng.uniform(-a, a, size=(fan_in, fan_out))
            layer.weight[...] = w
            layer.bias[...] = 0

    def _as_input(self, x: ArrayLike) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.sizes[0]:
            raise ValueError(
                f"x must have shape (batch, {self.sizes[0]}), got {x.shape}"
            )
        return x.astype(self.dtype, copy=False)

    def _forward(self, x: ArrayLike, train: bool) -> np.ndarray:
        h = self._as_input(x)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            h = layer.forward(h, train=train)
            if i < last:
                h = self._relus[i].forward(h, train=train)
        return h

    def forward(self, x: ArrayLike) -> np.ndarray:
        """Return the logits for a batch (no state is kept for backward).

        Parameters
        ----------
        x : array_like, shape (batch, sizes[0])

        Returns
        -------
        ndarray, shape (batch, n_classes)
        """
        return self._forward(x, train=False)

    __call__ = forward

    def loss(self, x: ArrayLike, y: ArrayLike) -> float:
        """Mean cross-entropy on ``(x, y)`` without touching the gradients."""
        logits = self._forward(x, train=False)
        return softmax_cross_entropy(logits, y)[0]

    def loss_and_grad(self, x: ArrayLike, y: ArrayLike) -> tuple[float, np.ndarray]:
        """Forward and backward pass on one batch.

        Overwrites (does not accumulate into) every gradient view, so the flat
        buffer ``params.grad`` holds ``dL/dparams`` of this batch afterwards.

        Parameters
        ----------
        x : array_like, shape (batch, sizes[0])
        y : array_like of int, shape (batch,)

        Returns
        -------
        loss : float
            Mean cross-entropy of the batch.
        logits : ndarray, shape (batch, n_classes)
        """
        logits = self._forward(x, train=True)
        loss, d = softmax_cross_entropy(logits, y)
        for i in range(len(self.layers) - 1, 0, -1):
            dx = self.layers[i].backward(d)
            assert dx is not None  # input_grad=True returns it
            d = self._relus[i - 1].backward(dx)
        self.layers[0].backward(d, input_grad=False)
        return loss, logits

    def predict_proba(self, x: ArrayLike) -> np.ndarray:
        """Class probabilities, shape (batch, n_classes)."""
        return softmax(self.forward(x))

    def predict(self, x: ArrayLike) -> np.ndarray:
        """Predicted class labels (int64), shape (batch,)."""
        return np.argmax(self.forward(x), axis=1).astype(np.int64)

    def accuracy(self, x: ArrayLike, y: ArrayLike) -> float:
        """Fraction of rows of `x` whose predicted class equals `y`."""
        x = self._as_input(x)
        y = _check_labels(y, x.shape[0], self.n_classes)
        return float(np.mean(self.predict(x) == y)) if y.size else float("nan")

    def train_step(self, x: ArrayLike, y: ArrayLike, optimizer: Steppable, scheduler: Steppable | None = None,
                   gradient: GradientFn | None = None) -> float:
        """One gradient step: fill the gradients of ``(x, y)`` and call ``optimizer.step()``.

        Parameters
        ----------
        x : array_like, shape (batch, sizes[0])
        y : array_like of int, shape (batch,)
        optimizer : object with a ``step()`` method
            Normally a fastopt optimizer built on ``self.params``.
        scheduler : object with a ``step()`` method, optional
            Stepped after the optimizer, e.g. a :class:`fastopt.schedules.Scheduler`.
        gradient : callable ``(model, x, y) -> (loss, grads)``, optional
            Fills ``self.params.grad`` for the batch in place of
            :meth:`loss_and_grad`, e.g. a data-parallel rank's share of it.

        Returns
        -------
        float
            The batch loss before the update.
        """
        loss, _ = self.loss_and_grad(x, y) if gradient is None else gradient(self, x, y)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        return loss

    def train_epoch(self, X: ArrayLike, y: ArrayLike, optimizer: Steppable, batch_size: int | None = None,
                    shuffle: bool = True, seed: SeedLike = None, scheduler: Steppable | None = None,
                    gradient: GradientFn | None = None) -> float:
        """One pass over ``(X, y)`` in mini-batches, one optimizer step per batch.

        This is fastopt's one training loop: ``fastopt demo``, ``train`` and
        ``compare`` run it too.

        Parameters
        ----------
        X : array_like, shape (n, sizes[0])
        y : array_like of int, shape (n,)
        optimizer : object with a ``step()`` method
        batch_size : int or None, default None
            None means full batch.
        shuffle : bool, default True
        seed : int, numpy.random.Generator or None
            Shuffling seed; pass one Generator across epochs for a fresh
            permutation every epoch.
        scheduler : object with a ``step()`` method, optional
            Stepped after every optimizer step (a per-step learning-rate schedule).
        gradient : callable ``(model, x, y) -> (loss, grads)``, optional
            See :meth:`train_step`.

        Returns
        -------
        float
            Sample-weighted mean of the batch losses (NaN or inf once training diverged).
        """
        from .data import batches

        X = np.asarray(X)
        if batch_size is None:
            batch_size = max(len(X), 1)
        total, count = 0.0, 0
        for xb, yb in batches(X, y, batch_size, shuffle=shuffle, seed=seed):
            total += self.train_step(xb, yb, optimizer, scheduler, gradient) * len(xb)
            count += len(xb)
        return total / count if count else float("nan")
