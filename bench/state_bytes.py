"""Bytes of Adam optimizer state per parameter, counted from the arrays each
library really allocates: fastopt (float32, bfloat16 and int8 states; bfloat16
params with a float32 master), torch.optim, DeepSpeed's CPU Adam and
bitsandbytes' 8-bit Adam.

Two parameter sets: one tensor of 2^20 elements, and a model-like mix of
tensors (biases and small layers under 4096 elements, which the 8-bit
optimizers keep in float32, next to large ones). Libraries that are not
installed are listed as such. Writes a markdown table.

    python bench/state_bytes.py --out bench/results/state-bytes.md
"""

from __future__ import annotations

import argparse
import os
import platform
from collections.abc import Callable

import numpy as np

import fastopt
from fastopt.benchmark.state_dtypes import state_bytes_per_parameter

ONE_TENSOR = (1 << 20,)
MIXED = (784 * 256, 256, 256 * 256, 256, 256 * 10, 10, 1 << 20, 1000, 4096)
"""A model-like mix: dense layers and their biases (5,000 of the 1.3M elements
sit in tensors under 4096 elements)."""


def _fastopt(state_dtype: str | None, bf16_params: bool = False) -> Callable[[tuple], float]:
    def measure(sizes: tuple) -> float:
        pairs = []
        for n in sizes:
            if bf16_params:
                import ml_dtypes

                pairs.append((np.zeros(n, ml_dtypes.bfloat16), np.zeros(n, ml_dtypes.bfloat16)))
            else:
                pairs.append((np.zeros(n, np.float32), np.zeros(n, np.float32)))
        opt = fastopt.Adam(pairs, lr=1e-3, **({"state_dtype": state_dtype} if state_dtype else {}))
        opt.step()
        return state_bytes_per_parameter(opt)
    return measure


def _fastopt_flat(state_dtype: str) -> Callable[[tuple], float]:
    def measure(sizes: tuple) -> float:
        params = fastopt.FlatParams({f"t{i}": (n,) for i, n in enumerate(sizes)})
        opt = fastopt.Adam(params, lr=1e-3, state_dtype=state_dtype)
        opt.step()
        return state_bytes_per_parameter(opt)
    return measure


def _torch_state_bytes(opt, params) -> float:
    total = sum(v.numel() * v.element_size() for p in params for k, v in opt.state[p].items()
                if hasattr(v, "numel") and k != "step" and not k.startswith("qmap"))
    return total / sum(p.numel() for p in params)


def _torch_like(make: Callable, dtype: str = "float32") -> Callable[[tuple], float]:
    def measure(sizes: tuple) -> float:
        import torch

        params = [torch.nn.Parameter(torch.zeros(n, dtype=getattr(torch, dtype))) for n in sizes]
        for p in params:
            p.grad = torch.full_like(p, 1e-3)
        opt = make(params)
        opt.step()
        return _torch_state_bytes(opt, params)
    return measure


def _torch_adam(params):
    import torch

    return torch.optim.Adam(params, lr=1e-3)


def _deepspeed(fp32_states: bool):
    def make(params):
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        return DeepSpeedCPUAdam(params, lr=1e-3, fp32_optimizer_states=fp32_states)
    return make


def _bnb(params):
    import bitsandbytes as bnb

    return bnb.optim.Adam8bit(params, lr=1e-3, min_8bit_size=4096)


ROWS = [
    ("fastopt", "Adam, float32 states", _fastopt(None)),
    ("fastopt", "Adam, state_dtype='bfloat16'", _fastopt("bfloat16")),
    ("fastopt", "Adam, state_dtype='int8' (blocks of 256, float32 scales)", _fastopt("int8")),
    ("fastopt", "Adam, state_dtype='int8', all tensors in one FlatParams buffer", _fastopt_flat("int8")),
    ("fastopt", "Adam, bfloat16 params: float32 master + float32 states", _fastopt(None, True)),
    ("fastopt", "Adam, bfloat16 params: float32 master + bfloat16 states", _fastopt("bfloat16", True)),
    ("torch.optim", "Adam (fused or not), float32 params", _torch_like(_torch_adam)),
    ("torch.optim", "Adam, bfloat16 params (states follow the params; no master copy)",
     _torch_like(_torch_adam, "bfloat16")),
    ("DeepSpeed", "DeepSpeedCPUAdam, float32 params", _torch_like(_deepspeed(True))),
    ("DeepSpeed", "DeepSpeedCPUAdam, bfloat16 params, fp32_optimizer_states=False (no master copy)",
     _torch_like(_deepspeed(False), "bfloat16")),
    ("bitsandbytes", "Adam8bit (blockwise, 256-entry map, float32 absmax per block)", _torch_like(_bnb)),
]


def _version(module: str) -> str:
    try:
        return __import__(module).__version__
    except Exception:
        return "not installed"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="markdown file to write (default: print)")
    args = parser.parse_args()
    lines = [
        "# Adam optimizer state: bytes per parameter",
        "",
        "Command: `python bench/state_bytes.py --out bench/results/state-bytes.md`. Counted from the state arrays "
        "each library allocated after one step (codes, block scales and master copies included; step counters "
        "and the 256-entry maps bitsandbytes keeps per tensor left out). *one tensor*: 2^20 elements; *mixed*: "
        f"{len(MIXED)} tensors of {sum(MIXED):,} elements, {sum(n for n in MIXED if n < 4096):,} of them in "
        "tensors under 4096 elements (the 8-bit optimizers keep those in float32).",
        "",
        f"Versions: fastopt {fastopt.__version__}, torch {_version('torch')}, deepspeed {_version('deepspeed')}, "
        f"bitsandbytes {_version('bitsandbytes')}; Python {platform.python_version()}.",
        "",
        "| library | optimizer and storage | one tensor | mixed |",
        "|---|---|---|---|",
    ]
    for library, what, measure in ROWS:
        try:
            cells = [f"{measure(ONE_TENSOR):.3f}", f"{measure(MIXED):.3f}"]
        except ImportError as exc:
            cells = [f"not installed ({exc.name})"] * 2
        lines.append(f"| {library} | {what} | {cells[0]} | {cells[1]} |")
    text = "\n".join(lines) + "\n"
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    print(text, end="")


if __name__ == "__main__":
    main()
