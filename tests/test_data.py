"""Tests of fastopt.data: spiral, digits, train/test split and mini-batches."""

import sys

import numpy as np
import pytest

from fastopt.data import batches, digits, spiral, train_test_split

# -- spiral ------------------------------------------------------------------

def test_spiral_shapes_dtypes_and_labels():
    X, y = spiral()
    assert X.shape == (300, 2) and X.dtype == np.float32
    assert y.shape == (300,) and y.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(y), [100, 100, 100])
    assert np.all(np.hypot(X[:, 0], X[:, 1]) <= 1 + 1e-6)
    X5, y5 = spiral(n_classes=5, n_per_class=7)
    assert X5.shape == (35, 2) and set(y5) == set(range(5))


def test_spiral_is_deterministic_by_seed():
    a, b, c = spiral(seed=0), spiral(seed=0), spiral(seed=1)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    np.testing.assert_array_equal(a[1], c[1])


def test_spiral_without_noise_follows_the_arms():
    X, y = spiral(n_classes=2, n_per_class=5, noise=0.0)
    r = np.linspace(0, 1, 5)
    for k in range(2):
        t = 4 * k + 4 * r
        np.testing.assert_allclose(X[y == k], np.c_[r * np.sin(t), r * np.cos(t)], atol=1e-7)
    # radius does not depend on the noise
    Xn, _ = spiral(n_classes=2, n_per_class=5, noise=0.5)
    np.testing.assert_allclose(np.hypot(*Xn.T), np.hypot(*X.T), atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"n_classes": 0}, "n_classes"),
        ({"n_classes": 2.0}, "n_classes"),
        ({"n_per_class": 0}, "n_per_class"),
        ({"noise": -0.1}, "noise"),
        ({"noise": float("nan")}, "noise"),
    ],
)
def test_spiral_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        spiral(**kwargs)


# -- train/test split & digits -------------------------------------------------

def test_stratified_split_keeps_class_proportions():
    y = np.repeat(np.arange(3), [50, 30, 20])
    X = np.arange(100, dtype=np.float32)[:, None]
    (Xtr, ytr), (Xte, yte) = train_test_split(X, y, test_fraction=0.2, seed=0)
    np.testing.assert_array_equal(np.bincount(yte), [10, 6, 4])
    np.testing.assert_array_equal(np.bincount(ytr), [40, 24, 16])
    rows = np.concatenate([Xtr[:, 0], Xte[:, 0]])
    np.testing.assert_array_equal(np.sort(rows), np.arange(100))  # a partition
    np.testing.assert_array_equal(y[Xtr[:, 0].astype(int)], ytr)  # rows stay paired
    assert not np.all(np.diff(ytr) >= 0)  # shuffled, not grouped by class


def test_unstratified_split_sizes_and_determinism():
    X = np.arange(50)
    y = np.zeros(50, dtype=np.int64)
    (a, _), (b, _) = train_test_split(X, y, test_fraction=0.3, seed=4, stratify=False)
    assert len(a) == 35 and len(b) == 15
    (a2, _), _ = train_test_split(X, y, test_fraction=0.3, seed=4, stratify=False)
    np.testing.assert_array_equal(a, a2)


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5])
def test_split_rejects_bad_fraction(fraction):
    with pytest.raises(ValueError, match="test_fraction"):
        train_test_split(np.zeros(4), np.zeros(4, dtype=int), test_fraction=fraction)


def test_split_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="same length"):
        train_test_split(np.zeros(4), np.zeros(3, dtype=int))


def test_digits_shapes_scale_and_split():
    pytest.importorskip("sklearn")
    (Xtr, ytr), (Xte, yte) = digits(test_fraction=0.2, seed=0)
    assert Xtr.dtype == Xte.dtype == np.float32 and ytr.dtype == yte.dtype == np.int64
    assert Xtr.shape[1] == Xte.shape[1] == 64
    assert len(Xtr) + len(Xte) == 1797 and len(ytr) == len(Xtr)
    assert 0.18 < len(Xte) / 1797 < 0.22
    assert Xtr.min() == 0.0 and Xtr.max() == 1.0 and Xte.max() <= 1.0
    counts = np.bincount(yte, minlength=10) / np.bincount(np.concatenate([ytr, yte]))
    np.testing.assert_allclose(counts, 0.2, atol=0.01)  # stratified
    (Xtr2, _), _ = digits(test_fraction=0.2, seed=0)
    np.testing.assert_array_equal(Xtr, Xtr2)
    (Xtr3, _), _ = digits(test_fraction=0.2, seed=1)
    assert not np.array_equal(Xtr, Xtr3)


def test_digits_without_sklearn_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r'pip install "fastopt\[digits\]"'):
        digits()


# -- batches -----------------------------------------------------------------

def test_batches_cover_every_row_once():
    X = np.arange(10)[:, None] * 1.0
    y = np.arange(10)
    out = list(batches(X, y, 3, seed=0))
    assert [len(b) for b, _ in out] == [3, 3, 3, 1]
    xs = np.concatenate([b[:, 0] for b, _ in out])
    ys = np.concatenate([t for _, t in out])
    np.testing.assert_array_equal(np.sort(ys), np.arange(10))
    np.testing.assert_array_equal(xs, ys)  # pairs stay aligned
    assert not np.array_equal(ys, np.arange(10))


def test_batches_without_shuffle_are_ordered_views():
    X = np.arange(12.0).reshape(6, 2)
    y = np.arange(6)
    out = list(batches(X, y, 4, shuffle=False))
    np.testing.assert_array_equal(out[0][1], [0, 1, 2, 3])
    np.testing.assert_array_equal(out[1][1], [4, 5])
    assert np.shares_memory(out[0][0], X)


def test_batches_drop_last():
    out = list(batches(np.zeros((10, 1)), np.zeros(10), 4, drop_last=True))
    assert [len(b) for b, _ in out] == [4, 4]
    assert list(batches(np.zeros((3, 1)), np.zeros(3), 4, drop_last=True)) == []


def test_batches_seed_semantics():
    X, y = np.zeros((20, 1)), np.arange(20)

    def order(seed):
        return np.concatenate([t for _, t in batches(X, y, 6, seed=seed)])

    np.testing.assert_array_equal(order(3), order(3))  # an int repeats the order
    rng = np.random.default_rng(3)
    first, second = order(rng), order(rng)  # a Generator moves on
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(first, order(3))


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True])
def test_batches_validates_eagerly(batch_size):
    with pytest.raises(ValueError, match="batch_size"):
        batches(np.zeros((4, 1)), np.zeros(4), batch_size)  # no iteration needed


def test_batches_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="same length"):
        batches(np.zeros((4, 1)), np.zeros(5), 2)
