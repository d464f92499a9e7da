"""Small classification data sets and a mini-batch iterator.

``spiral`` is the classic interleaved-spirals toy problem (pure NumPy);
``digits`` loads scikit-learn's bundled 8x8 handwritten digits (optional extra
``fastopt[digits]``); ``batches`` iterates over shuffled mini-batches.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

SeedLike = int | np.random.Generator | None
"""A seed: an int, a Generator (shared across calls for fresh draws) or None."""

__all__ = ["batches", "digits", "spiral", "train_test_split"]


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def spiral(n_classes: int = 3, n_per_class: int = 100, noise: float = 0.2,
           seed: SeedLike = 0) -> tuple[np.ndarray, np.ndarray]:
    """Interleaved spiral arms in 2-D, one arm per class.

    Point ``i`` of class ``k`` has radius ``r = i / (n_per_class - 1)`` and angle
    ``4 k + 4 r + noise * N(0, 1)`` (radians), placed at ``(r sin t, r cos t)``.
    Rows are ordered by class; shuffle with :func:`batches`.

    Parameters
    ----------
    n_classes : int, default 3
        Number of arms (classes), >= 1.
    n_per_class : int, default 100
        Points per arm, >= 1.
    noise : float, default 0.2
        Standard deviation of the angular noise, >= 0.
    seed : int, numpy.random.Generator or None, default 0

    Returns
    -------
    X : ndarray of float32, shape (n_classes * n_per_class, 2)
        Points inside the unit disc.
    y : ndarray of int64, shape (n_classes * n_per_class,)
        Class labels ``0 .. n_classes - 1``.
    """
    n_classes = _check_int("n_classes", n_classes, 1)
    n_per_class = _check_int("n_per_class", n_per_class, 1)
    if not (isinstance(noise, numbers.Real) and np.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    rng = np.random.default_rng(seed)
    r = np.linspace(0.0, 1.0, n_per_class)
    X = np.empty((n_classes * n_per_class, 2), dtype=np.float64)
    y = np.repeat(np.arange(n_classes, dtype=np.int64), n_per_class)
    for k in range(n_classes):
        t = 4.0 * k + 4.0 * r + noise * rng.standard_normal(n_per_class)
        rows = slice(k * n_per_class, (k + 1) * n_per_class)
        X[rows, 0] = r * np.sin(t)
        X[rows, 1] = r * np.cos(t)
    return X.astype(np.float32), y


def train_test_split(X: ArrayLike, y: ArrayLike, test_fraction: float = 0.2, seed: SeedLike = 0,
                     stratify: bool = True) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Split ``(X, y)`` into shuffled train and test parts.

    Parameters
    ----------
    X : ndarray, shape (n, ...)
    y : ndarray of int, shape (n,)
    test_fraction : float, default 0.2
        Fraction of rows (per class when stratified) that go to the test
        part, strictly between 0 and 1.
    seed : int, numpy.random.Generator or None, default 0
    stratify : bool, default True
        Keep the class proportions of `y` in both parts: each class sends
        ``round(test_fraction * count)`` (half to even) rows to the test part.

    Returns
    -------
    (X_train, y_train), (X_test, y_test)
    """
    X = np.asarray(X)
    y = np.asarray(y)
    if len(X) != len(y):
        raise ValueError(f"X and y must have the same length, got {len(X)} and {len(y)}")
    if not (isinstance(test_fraction, numbers.Real) and 0 < test_fraction < 1):
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction!r}")
    rng = np.random.default_rng(seed)
    n = len(y)
    if stratify:
        test_parts, train_parts = [], []
        for label in np.unique(y):
            idx = rng.permutation(np.flatnonzero(y == label))
            k = int(np.rint(test_fraction * len(idx)))
            test_parts.append(idx[:k])
            train_parts.append(idx[k:])
        test_idx = rng.permutation(np.concatenate(test_parts))
        train_idx = rng.permutation(np.concatenate(train_parts))
    else:
        perm = rng.permutation(n)
        k = int(np.rint(test_fraction * n))
        test_idx, train_idx = perm[:k], perm[k:]
    return (X[train_idx], y[train_idx]), (X[test_idx], y[test_idx])


def digits(test_fraction: float = 0.2, seed: SeedLike = 0,
           stratify: bool = True) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """scikit-learn's 8x8 handwritten digits, scaled to [0, 1] and split.

    1797 images of the digits 0-9, flattened to 64 features (pixel / 16).
    Needs scikit-learn (``pip install "fastopt[digits]"``); the data ship with
    it, nothing is downloaded.

    Parameters
    ----------
    test_fraction : float, default 0.2
        Fraction of the rows held out for testing, strictly between 0 and 1.
    seed : int, numpy.random.Generator or None, default 0
        Seed of the shuffle.
    stratify : bool, default True
        Keep the class proportions in both parts (see :func:`train_test_split`).

    Returns
    -------
    (X_train, y_train), (X_test, y_test)
        ``X_*`` float32 of shape (n, 64) in [0, 1]; ``y_*`` int64 in 0..9.

    Raises
    ------
    ImportError
        If scikit-learn is not installed.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError(
            'fastopt.data.digits() needs scikit-learn; install it with '
            'pip install "fastopt[digits]"'
        ) from exc
    bunch = load_digits()
    X = (np.asarray(bunch.data, dtype=np.float64) / 16.0).astype(np.float32)
    y = np.asarray(bunch.target, dtype=np.int64)
    return train_test_split(X, y, test_fraction=test_fraction, seed=seed, stratify=stratify)


def batches(X: ArrayLike, y: ArrayLike, batch_size: int, shuffle: bool = True, seed: SeedLike = None,
            drop_last: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Iterate over mini-batches ``(X_batch, y_batch)``.

    Parameters
    ----------
    X : array_like, shape (n, ...)
    y : array_like, shape (n,)
    batch_size : int
        Rows per batch (>= 1); the last batch may be smaller unless `drop_last`.
    shuffle : bool, default True
        Visit rows in a random order (a fresh permutation per call).
    seed : int, numpy.random.Generator or None, default None
        Source of the permutation. An int gives the same order on every
        call; pass one Generator across epochs to get a new order each epoch.
    drop_last : bool, default False
        Skip a final batch smaller than `batch_size`.

    Returns
    -------
    iterator of (X_batch, y_batch)
        Copies when shuffling, contiguous slices (views) otherwise. Arguments
        are validated when ``batches`` is called, not on first iteration.
    """
    X = np.asarray(X)
    y = np.asarray(y)
    if len(X) != len(y):
        raise ValueError(f"X and y must have the same length, got {len(X)} and {len(y)}")
    batch_size = _check_int("batch_size", batch_size, 1)
    n = len(X)
    stop = n - n % batch_size if drop_last else n
    # Arguments are checked (and the order drawn) now, not at the first next().
    order = np.random.default_rng(seed).permutation(n) if shuffle else None
    return _iter_batches(X, y, batch_size, order, n, stop)


def _iter_batches(X: np.ndarray, y: np.ndarray, batch_size: int, order: np.ndarray | None, n: int,
                  stop: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for start in range(0, stop, batch_size):
        end = min(start + batch_size, n)
        if order is None:
            yield X[start:end], y[start:end]
        else:
            idx = order[start:end]
            yield X[idx], y[idx]
