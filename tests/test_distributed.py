"""fastopt.distributed in real processes (mpiexec -n 2): trajectories equal to
one process, ZeRO-1's state memory, the cross-rank guard, agreement checks at
construction, a crashing rank, sharded checkpoints across world sizes.
Files and layouts without MPI at the end."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest
from mpi_helpers import by_case, launch, require_mpi, results

import fastopt
from fastopt.checkpoint import CheckpointError
from fastopt.distributed.checkpoint import read_checkpoint, read_manifest
from fastopt.distributed.layout import Layout, aligned_bounds, chunks, tensor_bounds

F32_TOL = 5e-6  # 50 steps of float32 Adam-family updates of order lr: rounding only


@pytest.fixture(scope="module")
def mpi():
    require_mpi()


@pytest.fixture(scope="module")
def trajectories(mpi):
    return by_case(results(launch(["trajectories"])))


@pytest.mark.parametrize("case", [
    "ddp-adam-[]", "zero1-adam-[]", "ddp-adam-['algorithm']", "zero1-adam-['algorithm', 'max_grad_norm']",
    "ddp-adamw-['max_grad_norm', 'weight_decay']",
    "zero1-adamw-['max_grad_norm', 'weight_decay']", "ddp-sgd-['bucket_size', 'lr', 'momentum']",
    "ddp-nadam-['bucket_size', 'max_grad_norm']", "zero1-nadam-['ema_decay']", "zero1-adam-['accumulate']",
    "ddp-lamb-['lr']",
    "zero1-lamb-['lr']"])
def test_two_ranks_follow_the_single_process_trajectory(trajectories, case):
    rows = trajectories[case]
    assert len(rows) == 2
    for row in rows:
        assert row["max_error"] <= F32_TOL, row
        assert row["ranks_identical"], row  # nothing diverges between ranks
        if row["single_norm"] is not None:
            assert row["norm"] == pytest.approx(row["single_norm"], rel=1e-6)


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_zero1_holds_one_nth_of_the_state_per_rank(trajectories, name, record_property):
    rows = trajectories[f"state-bytes-{name}"]
    record_property("state_bytes", {"single": rows[0]["single"], "zero1": [r["zero1"] for r in rows]})
    single = rows[0]["single"]
    per_rank = [row["zero1"] for row in rows]
    print(f"{name}: single process {single} B of state; zero1 per rank {per_rank} B; ddp {rows[0]['ddp']} B")
    assert sum(per_rank) == single  # nothing held twice
    assert all(abs(b - single / 2) <= 64 * 2 for b in per_rank)  # 1/N, up to the 64-byte shard alignment
    assert all(row["ddp"] == single for row in rows)


@pytest.fixture(scope="module")
def guard_rows(mpi):
    return by_case(results(launch(["guard"])))


@pytest.mark.parametrize("mode", ["ddp", "zero1"])
def test_a_nan_on_one_rank_skips_the_step_on_every_rank(guard_rows, mode):
    for row in guard_rows[f"skip-{mode}"]:
        assert row["skipped"] == row["single_skipped"] == 1
        assert row["max_error"] <= F32_TOL and row["ranks_identical"] and row["warned"]
    for row in guard_rows[f"raise-{mode}"]:
        assert "no rank applied the step" in row["raised"] and row["unchanged"]


@pytest.mark.parametrize("mode", ["ddp", "zero1"])
def test_loss_scaler_drives_the_distributed_step(guard_rows, mode):
    for row in guard_rows[f"scaler-{mode}"]:
        assert row["skipped"] == [1, 1] and row["scales"][0] == row["scales"][1]
        assert row["max_error"] <= F32_TOL, row


def test_each_rank_runs_cores_over_local_ranks_threads(guard_rows):
    rows = guard_rows["threads"]
    assert len(rows) == 2
    for row in rows:
        expected = max(1, row["cores"] // 2)
        assert row["local_ranks"] == 2
        assert row["fastopt"] == row["numba_in_step"] == expected, row
        assert "MPI ranks" in row["why"]


def test_mismatched_ranks_fail_at_construction_on_every_rank(mpi):
    rows = by_case(results(launch(["mismatch"])))
    expected = {"size": "elements: rank 0 has 10, rank 1 has 11", "dtype": "dtype: rank 0 has float64",
                "hyper": "lr: rank 0 has 0.001, rank 1 has 0.002", "optimizer": "optimizer: rank 0 has sgd",
                "bad-on-one-rank": "lr must be >= 0",
                "bucket-ring": "bucket_size needs algorithm='mpi'", "lamb-aligned": "boundaries='tensors'"}
    for case, text in expected.items():
        assert len(rows[case]) == 2, case
        for row in rows[case]:
            assert row["error"] is not None and text in row["error"], row
            assert row["every_rank"], row
    assert "rank 1: ValueError: lr must be >= 0" in next(r for r in rows["bad-on-one-rank"] if r["rank"] == 0)["error"]


def test_a_crashing_rank_aborts_the_others(mpi):
    start = time.perf_counter()
    proc = launch(["crash"], timeout=60)
    elapsed = time.perf_counter() - start
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "rank 1 failed on purpose" in out and "aborting all ranks" in out
    assert "rank 0 was not aborted" not in out
    assert elapsed < 60


# -- sharded checkpoints -------------------------------------------------------------

@pytest.fixture(scope="module")
def saved(mpi, tmp_path_factory):
    """A ZeRO-1 Adam checkpoint written by 2 ranks."""
    path = tmp_path_factory.mktemp("sharded") / "adam"
    results(launch(["checkpoint", "zero1", "adam", "save", path]))
    return path


@pytest.mark.parametrize("ranks", [2, 0])
def test_checkpoint_of_two_ranks_loads_into_two_and_into_one(saved, ranks):
    rows = results(launch(["checkpoint", "zero1", "adam", "load", saved], ranks=ranks))
    assert len(rows) == max(ranks, 1)
    for row in rows:
        assert row["error"] is None and row["extra"] == {"at": 10}
        assert row["max_error"] == 0.0  # bit-identical continuation


@pytest.mark.parametrize("mode,name", [("zero1", "lamb"), ("ddp", "adam")])
def test_checkpoint_of_one_process_loads_into_two_ranks(mpi, tmp_path, mode, name):
    path = tmp_path / "ck"
    results(launch(["checkpoint", mode, name, "save", path], ranks=0))
    rows = results(launch(["checkpoint", mode, name, "load", path]))
    assert len(rows) == 2 and all(r["error"] is None and r["max_error"] == 0.0 for r in rows)


def test_read_checkpoint_feeds_a_plain_optimizer(saved):
    loaded = read_checkpoint(saved)
    manifest = loaded["manifest"]
    assert manifest["world_size"] == 2 and len(manifest["shards"]) == 2
    fp = fastopt.FlatParams({"w1": (37, 5), "b1": (5,), "w2": (300,), "w3": (7, 11)})
    fp.data[:] = loaded["params"]
    opt = fastopt.Adam(fp, lr=1e-3)
    opt.load_state_dict(loaded["optimizer"])
    assert opt.param_groups[0]["lr"] == 1e-2 and opt.state[0]["step"] == 10


def _copy(saved, tmp_path):
    path = tmp_path / "copy"
    shutil.copytree(saved, path)
    return path, sorted(path.glob("shard-*.npz"))


def test_truncated_shard_is_named(saved, tmp_path):
    path, shards = _copy(saved, tmp_path)
    data = shards[1].read_bytes()
    shards[1].write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=f"{shards[1].name}.*truncated"):
        read_checkpoint(path)


def test_corrupt_shard_is_named(saved, tmp_path):
    path, shards = _copy(saved, tmp_path)
    data = bytearray(shards[0].read_bytes())
    data[len(data) // 2] ^= 0xFF
    shards[0].write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=f"{shards[0].name} is truncated or corrupt"):
        read_checkpoint(path)


def test_missing_shard_is_named(saved, tmp_path):
    path, shards = _copy(saved, tmp_path)
    shards[1].unlink()
    with pytest.raises(CheckpointError, match=f"{shards[1].name} is missing"):
        read_checkpoint(path)


def test_shard_of_another_save_is_refused(saved, tmp_path):
    path, shards = _copy(saved, tmp_path)
    other, other_shards = _copy(saved, tmp_path / "other")
    manifest = (other / "manifest.json").read_text()
    token = read_manifest(other)["token"]
    (path / "manifest.json").write_text(manifest.replace(token, "0123456789ab"))
    for shard in shards:
        shard.rename(shard.with_name(shard.name.replace(token, "0123456789ab")))
    with pytest.raises(CheckpointError, match="belongs to another save"):
        read_checkpoint(path)


@pytest.mark.parametrize("damage", ["missing", "garbage", "foreign"])
def test_bad_manifest_is_named(saved, tmp_path, damage):
    path, _ = _copy(saved, tmp_path)
    manifest = path / "manifest.json"
    if damage == "missing":
        manifest.unlink()
    elif damage == "garbage":
        manifest.write_text('{"format": "fastopt-sharded-checkpoint", "vers')
    else:
        manifest.write_text('{"format": "something-else"}')
    with pytest.raises(CheckpointError, match="manifest.json"):
        read_checkpoint(path)


def test_single_file_and_sharded_checkpoints_are_not_confused(saved, tmp_path):
    single = fastopt.checkpoint.save(tmp_path / "one.npz", fastopt.Adam(fastopt.FlatParams({"w": (3,)})))
    with pytest.raises(CheckpointError, match="single-file checkpoint.*fastopt.checkpoint.load"):
        read_checkpoint(single)
    with pytest.raises(CheckpointError, match="sharded checkpoint.*fastopt.distributed.load_checkpoint"):
        fastopt.checkpoint.load(saved)


def test_a_bad_shard_fails_the_load_on_every_rank(saved, tmp_path):
    path, shards = _copy(saved, tmp_path)
    shards[1].write_bytes(shards[1].read_bytes()[:100])
    shutil.copy(f"{saved}.final.npy", f"{path}.final.npy")
    rows = results(launch(["checkpoint", "zero1", "adam", "load", path]))
    assert len(rows) == 2
    for row in rows:
        assert row["error"] is not None and shards[1].name in row["error"], row


def test_checkpoint_for_another_optimizer_is_refused(saved, tmp_path):
    rows = results(launch(["checkpoint", "zero1", "sgd", "load", saved]))
    assert all("saved for optimizer 'adam', not 'sgd'" in r["error"] for r in rows)


# -- layouts (no MPI) ----------------------------------------------------------------

@pytest.mark.parametrize("n,world,itemsize", [(1, 1, 4), (100, 3, 4), (1000, 7, 8), (5, 4, 4), (1 << 20, 8, 4)])
def test_aligned_bounds_tile_the_buffer(n, world, itemsize):
    bounds = aligned_bounds(n, world, itemsize)
    assert len(bounds) == world and bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a <= b for a, b in bounds) and all(b == c for (_, b), (c, _) in zip(bounds, bounds[1:]))
    assert all((a * itemsize) % 64 == 0 for a, _ in bounds if a < n)


def test_tensor_bounds_cut_only_between_tensors():
    ranges = [(0, 3), (3, 4), (4, 10), (10, 30)]
    bounds = tensor_bounds(30, 3, ranges)
    assert bounds == ((0, 10), (10, 10), (10, 30))
    layout = Layout.make(30, 3, 4, ranges, "tensors")
    assert layout.straddling() == []
    assert Layout.make(30, 3, 4, ranges, "aligned").straddling() == [3]
    assert layout.tensors_in(2, 12) == ((2, 3), (3, 4), (4, 10), (10, 12))


def test_layout_rejects_bad_arguments():
    with pytest.raises(ValueError, match="boundaries"):
        Layout.make(10, 2, 4, None, "even")
    with pytest.raises(ValueError, match="world"):
        aligned_bounds(10, 0)
    assert chunks(0, 100, 40, 4) == ((0, 48), (48, 96), (96, 100))


def test_missing_mpi4py_names_the_extra(monkeypatch):
    import sys

    from fastopt.distributed import _mpi

    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(ImportError, match=r"fastopt\[mpi\]"):
        _mpi.mpi()


def test_checks_before_any_communication(mpi):
    from fastopt.distributed._base import flat_buffers, optimizer_class

    with pytest.raises(ValueError, match="optimizer must be"):
        optimizer_class("adamx")
    with pytest.raises(TypeError, match="optimizer must be"):
        optimizer_class(np.zeros)
    with pytest.raises(TypeError, match="params must be"):
        flat_buffers(np.zeros(3), None)
    with pytest.raises(ValueError, match="ranges"):
        flat_buffers(fastopt.FlatParams({"w": (3,)}), [(0, 3)])
