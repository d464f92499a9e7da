"""Benchmarks: every fastopt optimizer timed against NumPy, torch.optim and
the machine's memory-bandwidth limit (a "roofline twin" kernel).

Modules
-------
problems
    The benchmark's hyperparameters and input data, shared by every contender.
roofline
    The twin kernel that moves exactly the optimizer's bytes with no math, and
    the byte count used for GB/s.
baselines
    NumPy (naive and ``out=``) and torch.optim contenders.
contenders
    fastopt's own contenders and the assembled CPU line-up.
timing
    Interleaved rounds, batches, medians and spreads.
runner
    :func:`run_benchmark`, the entry point; returns a JSON-ready dict.
cold
    Import time, first step with an empty and a warm compile cache, cold
    compile of every optimizer (subprocesses).
targets
    The project's speed targets and which results meet them.
report
    Text, markdown, JSON and PNG output.
"""

from .cold import measure_cold_start
from .runner import run_benchmark

__all__ = ["measure_cold_start", "run_benchmark"]
