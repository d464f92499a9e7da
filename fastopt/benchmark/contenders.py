"""fastopt's own contenders and the full CPU line-up for one optimizer and size."""

from __future__ import annotations

import numpy as np

from ..backends import cpu as _cpu
from ..optim import OPTIMIZERS
from . import state_dtypes
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
                      contender_name: str = "fastopt", state_dtype: str | None = None) -> Contender:
    """The optimizer's ordinary ``.step()`` on its own copy of the parameters.

    Parameters
    ----------
    serial_below : int, optional
        If given, ``fastopt.backends.cpu.SERIAL_BELOW`` is set to it for the duration
        of each timed batch (and restored after), forcing the serial
        (:data:`FORCE_SERIAL`) or parallel (:data:`FORCE_PARALLEL`) loop.
        ``None`` keeps the library's threshold: what users get.
    """
    options = {} if state_dtype is None else {"state_dtype": state_dtype}
    opt = OPTIMIZERS[name]((aligned_copy(p0), g), **h, **options)
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
    if state_dtype is not None:
        label += f", {state_dtype} states"
    return Contender(contender_name, run, label)


def cpu_contenders(name: str, h: dict, p0: np.ndarray, g: np.ndarray,
                   state_dtype: str | None = None) -> tuple[list[Contender], dict[str, str]]:
    """Every CPU contender for one optimizer on one buffer.

    With a low-precision ``state_dtype`` (see :mod:`.state_dtypes`), fastopt
    runs with it, the twin moves its bytes, fastopt with float32 states and
    (int8) bitsandbytes' 8-bit Adam join; NumPy and the serial loop are left out.

    Returns
    -------
    contenders : list of Contender
        NumPy naive and ``out=``, torch single/foreach/fused (those that
        exist), fastopt with the serial loop forced, fastopt as shipped, and
        the roofline twin.
    skipped : dict
        Contender name -> why it is missing.
    """
    if state_dtype in state_dtypes.LOW_PRECISION:
        return _low_precision_contenders(name, h, p0, g, state_dtype)
    contenders, skipped = [], {}
    if numpy_supports(name, h):
        contenders += [numpy_contender(name, h, p0, g, "naive"), numpy_contender(name, h, p0, g, "out")]
    else:
        skipped["numpy_naive"] = skipped["numpy_out"] = "NumPy baselines do not implement these hyperparameters"
    contenders += _torch_contenders(name, h, p0, g, skipped)
    contenders.append(fastopt_contender(name, h, p0, g, FORCE_SERIAL, "fastopt_serial"))
    contenders.append(fastopt_contender(name, h, p0, g))
    contenders.append(twin_contender(name, h, p0, g))
    return contenders, skipped


def _torch_contenders(name: str, h: dict, p0: np.ndarray, g: np.ndarray, skipped: dict) -> list[Contender]:
    out = []
    for mode in TORCH_MODES:
        if not torch_available():
            skipped[mode] = "torch is not installed"
            continue
        try:
            out.append(torch_contender(name, h, p0, g, mode))
        except ValueError as exc:
            skipped[mode] = str(exc)
    return out


def _low_precision_contenders(name: str, h: dict, p0: np.ndarray, g: np.ndarray,
                              state_dtype: str) -> tuple[list[Contender], dict[str, str]]:
    skipped = {"numpy_naive": "NumPy baselines keep float32 states", "numpy_out": "NumPy baselines keep float32 states"}
    contenders = _torch_contenders(name, h, p0, g, skipped)
    if state_dtype == "int8":
        if not state_dtypes.bnb_available():
            skipped["bnb_8bit"] = "bitsandbytes is not installed (pip install bitsandbytes)"
        else:
            try:
                contenders.append(state_dtypes.bnb_contender(name, h, p0, g))
            except ValueError as exc:
                skipped["bnb_8bit"] = str(exc)
    contenders.append(state_dtypes.float32_states_contender(name, h, p0, g))
    contenders.append(fastopt_contender(name, h, p0, g, state_dtype=state_dtype))
    contenders.append(state_dtypes.twin_contender(name, h, p0, g, state_dtype))
    return contenders, skipped


CPU_DEVICE = Device(name="cpu", contenders=cpu_contenders,
                    default_sizes=(1_000, 10_000, 100_000, 1_000_000, 10_000_000, 50_000_000),
                    quick_sizes=(1_000, 10_000, 100_000, 1_000_000))
"""The CPU device of :func:`fastopt.benchmark.run_benchmark` (host clock, every CPU contender)."""
