r"""A cost model of one distributed optimizer step: alpha-beta for the
network, memory bandwidth for the update.

Messages
    Sending ``m`` bytes between two ranks costs :math:`\alpha + m\beta`
    (``alpha``: latency per message, s; ``beta``: s per byte, the inverse of
    the bandwidth). Reducing costs :math:`\gamma` s per byte reduced (read
    two operands, write one: memory-bound).

Collectives over ``p`` ranks on ``n`` bytes (ring algorithms, the ones large buffers use)
    reduce-scatter: :math:`(p-1)\alpha + \frac{p-1}{p} n (\beta + \gamma)`

    allgather: :math:`(p-1)\alpha + \frac{p-1}{p} n \beta`

    allreduce = reduce-scatter + allgather:
    :math:`2(p-1)\alpha + \frac{p-1}{p} n (2\beta + \gamma)`

    so data parallel (one allreduce of the gradients) and ZeRO-1
    (reduce-scatter of the gradients, allgather of the params) move the same
    bytes; ZeRO-1 only pays the latency term of two collectives instead of
    one (the same count of messages in the ring form).

The update
    A fused step reads and writes ``bytes_per_element`` bytes per element
    (Adam, float32: p, g, m, v read, p, m, v written = 28 B) at the
    achievable memory bandwidth ``bandwidth``: data parallel updates all
    ``N`` elements on every rank, ZeRO-1 ``N/p``. With clipping or the
    non-finite guard each rank also reads its ``N/p`` slice of the gradients
    once more (4 B per element) and the ranks exchange one 16-byte partial
    sum each (an allgather).

Memory per rank (float32 params and grads, ``s`` bytes of optimizer state per element: Adam 8)
    data parallel: :math:`N (4 + 4 + s) + 4N/p`; ZeRO-1:
    :math:`N (4 + 4) + (N/p)(s + 4)` (the ``4N/p`` is the ring's receive
    buffer, which under ZeRO-1 also holds the reduced gradient shard).

The model leaves out the forward and backward passes and any overlap of
communication with them: it is the optimizer's part of a step.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Machine", "Network", "allgather", "allreduce", "memory_per_rank", "reduce_scatter", "step_time"]


@dataclass(frozen=True)
class Network:
    """Alpha-beta parameters of the interconnect.

    Attributes
    ----------
    alpha : float
        Seconds per message (latency).
    beta : float
        Seconds per byte (1 / bandwidth).
    gamma : float
        Seconds per byte reduced (the sum inside reduce-scatter).
    name : str
    """

    alpha: float
    beta: float
    gamma: float
    name: str = ""


@dataclass(frozen=True)
class Machine:
    """What one rank updates with.

    Attributes
    ----------
    bandwidth : float
        Achievable memory bandwidth of one rank's fused update, bytes/s.
    memory : float
        Bytes of memory per rank (to flag what does not fit).
    name : str
    """

    bandwidth: float
    memory: float = float("inf")
    name: str = ""


def reduce_scatter(n_bytes: float, p: int, net: Network) -> float:
    """Seconds for a ring reduce-scatter of ``n_bytes`` over ``p`` ranks."""
    return 0.0 if p == 1 else (p - 1) * net.alpha + (p - 1) / p * n_bytes * (net.beta + net.gamma)


def allgather(n_bytes: float, p: int, net: Network) -> float:
    """Seconds for a ring allgather producing ``n_bytes`` on every one of ``p`` ranks."""
    return 0.0 if p == 1 else (p - 1) * net.alpha + (p - 1) / p * n_bytes * net.beta


def allreduce(n_bytes: float, p: int, net: Network) -> float:
    """Seconds for a ring allreduce (reduce-scatter + allgather) of ``n_bytes``."""
    return reduce_scatter(n_bytes, p, net) + allgather(n_bytes, p, net)


def step_time(mode: str, n: float, p: int, net: Network, machine: Machine, bytes_per_element: float = 28.0,
              itemsize: int = 4, guard: bool = False) -> dict:
    """Seconds of one optimizer step, split into communication and update.

    Parameters
    ----------
    mode : {"ddp", "zero1"}
    n : float
        Elements of the flat buffer.
    p : int
        Ranks.
    net, machine
        The parameters.
    bytes_per_element : float
        Bytes the fused update moves per element (Adam float32: 28).
    itemsize : int
        Bytes per gradient/param element.
    guard : bool
        Clipping or the non-finite guard on (one more read of each rank's
        gradient slice, one small allgather).

    Returns
    -------
    dict
        ``comm``, ``update``, ``total`` seconds and ``comm_share``.
    """
    if mode not in ("ddp", "zero1"):
        raise ValueError(f"mode must be 'ddp' or 'zero1', got {mode!r}")
    n_bytes = n * itemsize
    if mode == "ddp":
        comm = allreduce(n_bytes, p, net)
        update = n * bytes_per_element / machine.bandwidth
    else:
        comm = reduce_scatter(n_bytes, p, net) + allgather(n_bytes, p, net)
        update = n / p * bytes_per_element / machine.bandwidth
    if guard:
        update += n / p * itemsize / machine.bandwidth
        comm += 0.0 if p == 1 else (p - 1) * net.alpha + 16 * (p - 1) * net.beta
    total = comm + update
    return {"comm": comm, "update": update, "total": total, "comm_share": comm / total if total else 0.0}


def memory_per_rank(mode: str, n: float, p: int, state_bytes: float = 8.0, itemsize: int = 4) -> float:
    """Bytes per rank: params, grads and optimizer state (see the module docs)."""
    if mode == "ddp":
        return n * (2 * itemsize + state_bytes) + n / p * itemsize
    if mode == "zero1":
        return n * 2 * itemsize + n / p * (state_bytes + itemsize)
    raise ValueError(f"mode must be 'ddp' or 'zero1', got {mode!r}")
