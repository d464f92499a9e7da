"""fastopt.checkpoint.load on damaged or foreign files: a CheckpointError
naming the file and what is wrong, never a raw zip or pickle error."""

from __future__ import annotations

import os

import numpy as np
import pytest

import fastopt
from fastopt.checkpoint import CheckpointError


@pytest.fixture
def good(tmp_path):
    fp = fastopt.FlatParams({"w": (64,), "b": (3,)})
    opt = fastopt.Adam(fp)
    fp.grad[:] = 1.0
    opt.step()
    return fastopt.checkpoint.save(tmp_path / "good.npz", opt, params=fp)


def _damaged(good, name, data):
    path = good.with_name(name)
    path.write_bytes(data)
    return path


def test_truncated_file(good):
    data = good.read_bytes()
    path = _damaged(good, "cut.npz", data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.npz is truncated or corrupt.*cut short"):
        fastopt.checkpoint.load(path)


def test_empty_file(good):
    with pytest.raises(CheckpointError, match=r"empty\.npz is empty \(0 bytes\)"):
        fastopt.checkpoint.load(_damaged(good, "empty.npz", b""))


def test_garbage_file(good):
    path = _damaged(good, "garbage.npz", os.urandom(256).replace(b"PK", b"pk"))
    with pytest.raises(CheckpointError, match=r"garbage\.npz is not a fastopt checkpoint: not an \.npz archive"):
        fastopt.checkpoint.load(path)


def test_flipped_byte_fails_the_checksum(good):
    data = bytearray(good.read_bytes())
    meta_at = data.find(b"__fastopt_meta__")
    data[meta_at // 2] ^= 0xFF  # inside the first array's data
    with pytest.raises(CheckpointError, match=r"flipped\.npz is truncated or corrupt"):
        fastopt.checkpoint.load(_damaged(good, "flipped.npz", bytes(data)))


def test_npz_that_is_not_a_checkpoint(tmp_path):
    np.savez(tmp_path / "other.npz", a=np.ones(3))
    with pytest.raises(CheckpointError, match=r"other\.npz is an \.npz archive but not a fastopt checkpoint"):
        fastopt.checkpoint.load(tmp_path / "other.npz")


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing fastopt checkpoint"):
        fastopt.checkpoint.load(tmp_path / "nope.npz")


def test_good_file_still_round_trips(good):
    loaded = fastopt.checkpoint.load(good)
    assert loaded["optimizer"]["state"][0]["step"] == 1
    assert set(loaded["params"]) == {"w", "b"}
