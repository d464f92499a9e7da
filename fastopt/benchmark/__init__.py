"""Benchmarks: every fastopt optimizer timed against NumPy, torch.optim and
the machine's memory-bandwidth limit (a "roofline twin" kernel), on the CPU
or a CUDA GPU, by one runner.

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
    fastopt's own contenders, the assembled CPU line-up and the CPU device.
device
    What the runner needs from a device: contenders, clock, sizes, checks.
gpu
    The CUDA device: fastopt, the twin, a device copy and torch on the GPU,
    timed with CUDA events (also under numba's CUDA simulator).
timing
    Interleaved rounds, batches, medians and spreads.
runner
    :func:`run_benchmark`, the entry point; returns a JSON-ready dict.
machine
    The machine and software a run used.
cold
    Import time, first step with an empty and a warm compile cache, cold
    compile of every optimizer (subprocesses).
targets
    The project's speed targets and which results meet them.
report
    Text, markdown, JSON and PNG output.
accuracy
    Not timing: how low-precision optimizer states (``state_dtype``) change
    results with the real kernels (a noisy quadratic, the NumPy MLP), and
    what state each optimizer allocated (``bench/state_dtype_accuracy.py``).
state_dtypes
    Low-precision states in the benchmark (``state_dtype=``): byte counts,
    twins that move those bytes, bitsandbytes' 8-bit Adam as a contender.
torch_e2e
    Full training steps of torch models, torch.optim.AdamW against
    fastopt.torch.AdamW (``fastopt bench --torch-e2e``; needs torch).
"""

from .cold import measure_cold_start
from .runner import run_benchmark

__all__ = ["measure_cold_start", "run_benchmark"]
