"""The alpha-beta cost model of fastopt.distributed (pure arithmetic)."""

import math

import pytest

from fastopt.distributed import cost_model as cm

NET = cm.Network(alpha=2e-6, beta=1 / 20e9, gamma=1 / 100e9)
NODE = cm.Machine(bandwidth=200e9)


def test_one_rank_communicates_nothing():
    assert cm.allreduce(1e9, 1, NET) == cm.reduce_scatter(1e9, 1, NET) == cm.allgather(1e9, 1, NET) == 0.0


def test_ring_terms():
    n, p = 4e8, 8
    assert cm.allgather(n, p, NET) == pytest.approx(7 * 2e-6 + 7 / 8 * n / 20e9)
    assert cm.reduce_scatter(n, p, NET) == pytest.approx(7 * 2e-6 + 7 / 8 * n * (1 / 20e9 + 1 / 100e9))
    assert cm.allreduce(n, p, NET) == pytest.approx(cm.reduce_scatter(n, p, NET) + cm.allgather(n, p, NET))
    # the bandwidth term saturates at 2n(beta) + n(gamma): the ring's volume per rank does not grow with p
    big = cm.allreduce(n, 1 << 20, cm.Network(0.0, NET.beta, NET.gamma))
    assert big == pytest.approx(n * (2 * NET.beta + NET.gamma), rel=1e-5)


def test_zero1_moves_the_same_bytes_and_updates_one_pth():
    n, p = 1e9, 16
    ddp = cm.step_time("ddp", n, p, NET, NODE)
    zero = cm.step_time("zero1", n, p, NET, NODE)
    assert zero["comm"] == pytest.approx(ddp["comm"])
    assert zero["update"] == pytest.approx(ddp["update"] / p)
    assert ddp["update"] == pytest.approx(28 * n / 200e9)
    assert 0 < zero["comm_share"] < 1 and math.isclose(zero["total"], zero["comm"] + zero["update"])
    guarded = cm.step_time("zero1", n, p, NET, NODE, guard=True)
    assert guarded["update"] == pytest.approx(zero["update"] + 4 * n / p / 200e9)


def test_memory_per_rank():
    n, p = 1e9, 8
    assert cm.memory_per_rank("ddp", n, p) == pytest.approx(16 * n + 4 * n / p)
    assert cm.memory_per_rank("zero1", n, p) == pytest.approx(8 * n + 12 * n / p)
    with pytest.raises(ValueError, match="mode"):
        cm.memory_per_rank("zero3", n, p)
    with pytest.raises(ValueError, match="mode"):
        cm.step_time("fsdp", n, p, NET, NODE)
