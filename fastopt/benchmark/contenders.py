"""fastopt's own contenders and the full CPU line-up for one optimizer and size."""

from __future__ import annotations

import numpy as np

from ..backends import cpu as _cpu
from ..optim import OPTIMIZERS
from .baselines import TORCH_MODES, numpy_contender, numpy_supports, torch_available, torch_contender
from .device import Device
from .problems import aligned_copy
from .roofline import twin_contender
from .timing import Contender

FORCE_SERIAL = 2**62
"""A ``SERIAL_BELOW`` no buffer reaches: the kernel takes its serial loop."""

FORCE_PARALLEL = 0
"""A ``SERIAL_BELOW`` every buffer reaches: the kernel takes its ``prange`` loop."""


def fastopt_contender(name: str, h: dict, p0: np.ndarray, g: np.ndarray, serial_below: int | None = None,
                      contender_name: str = "fastopt") -> Contender:
    """The optimizer's ordinary ``.step()`` on its own copy of the parameters.

    Parameters
    ----------
    serial_below : int, optional
        If given, ``fastopt.backends.cpu.SERIAL_BELOW`` is set to it for the duration
        of each timed batch (and restored after), forcing the serial
        (:data:`FORCE_SERIAL`) or parallel (:data:`FORCE_PARALLEL`) loop.
        ``None`` keeps the library's threshold: what users get.
    """
    opt = OPTIMIZERS[name]((aligned_copy(p0), g), **h)
    step = opt.step

    if serial_below is None:
        def run(k: int) -> None:
            for _ in range(k):
                step()
    else:
        def run(k: int) -> None:
            saved = _cpu.SERIAL_BELOW
            _cpu.SERIAL_BELOW = serial_below
            try:
                for _ in range(k):
                    step()
            finally:
                _cpu.SERIAL_BELOW = saved

    label = {None: f"fastopt {OPTIMIZERS[name].__name__}.step()", FORCE_SERIAL: "fastopt, serial loop forced",
             FORCE_PARALLEL: "fastopt, parallel loop forced"}.get(serial_below, f"fastopt, SERIAL_BELOW={serial_below}")
    return Contender(contender_name, run, label)


def cpu_contenders(name: str, h: dict, p0: np.ndarray, g: np.ndarray) -> tuple[list[Contender], dict[str, str]]:
    """Every CPU contender for one optimizer on one buffer.

    Returns
    -------
    contenders : list of Contender
        NumPy naive and ``out=``, torch single/foreach/fused (those that
        exist), fastopt with the serial loop forced, fastopt as shipped, and
        the roofline twin.
    skipped : dict
        Contender name -> why it is missing.
    """
    contenders, skipped = [], {}
    if numpy_supports(name, h):
        contenders += [numpy_contender(name, h, p0, g, "naive"), numpy_contender(name, h, p0, g, "out")]
    else:
        skipped["numpy_naive"] = skipped["numpy_out"] = "NumPy baselines do not implement these hyperparameters"
    for mode in TORCH_MODES:
        if not torch_available():
            skipped[mode] = "torch is not installed"
            continue
        try:
            contenders.append(torch_contender(name, h, p0, g, mode))
        except ValueError as exc:
            skipped[mode] = str(exc)
    contenders.append(fastopt_contender(name, h, p0, g, FORCE_SERIAL, "fastopt_serial"))
    contenders.append(fastopt_contender(name, h, p0, g))
    contenders.append(twin_contender(name, h, p0, g))
    return contenders, skipped


CPU_DEVICE = Device(name="cpu", contenders=cpu_contenders,
                    default_sizes=(1_000, 10_000, 100_000, 1_000_000, 10_000_000, 50_000_000),
                    quick_sizes=(1_000, 10_000, 100_000, 1_000_000))
"""The CPU device of :func:`fastopt.benchmark.run_benchmark` (host clock, every CPU contender)."""
