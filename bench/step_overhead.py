"""The Python cost of a small step, plain and scheduled: a 1e3-element Adam
float32 step as it is, with the lr written before every step (what every
torch scheduler and ``fastopt.schedules.Scheduler`` do), and with lr and
betas written (OneCycleLR's momentum cycling). Also LAMB's 1e3 step.

Interleaved rounds, medians; the ratios are medians of per-round ratios.

    python bench/step_overhead.py --out bench/results/step-overhead.md
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import fastopt


def _per_call(f: Callable[[], None], calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        f()
    return (time.perf_counter() - t0) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=20000, help="steps per timed batch")
    parser.add_argument("--out", help="markdown file to write (default: print only)")
    args = parser.parse_args()

    params = fastopt.FlatParams({"x": (1000,)})
    params.grad[:] = 0.01
    adam = fastopt.Adam(params, lr=1e-3)
    group = adam.param_groups[0]
    lamb_params = fastopt.FlatParams({"w": (900,), "b": (100,)})
    lamb_params.grad[:] = 0.01
    lamb = fastopt.LAMB(lamb_params, lr=1e-3)
    lrs, betas, flip = (1e-3, 2e-3), ((0.9, 0.999), (0.85, 0.999)), [0]

    def lr_step() -> None:
        flip[0] ^= 1
        group["lr"] = lrs[flip[0]]
        adam.step()

    def lr_betas_step() -> None:
        flip[0] ^= 1
        group["lr"] = lrs[flip[0]]
        group["betas"] = betas[flip[0]]
        adam.step()

    def writes_only() -> None:  # the loop's own cost of the writes, no step
        flip[0] ^= 1
        group["lr"] = lrs[flip[0]]
        group["betas"] = betas[flip[0]]

    cases = {"plain": adam.step, "lr": lr_step, "lr+betas": lr_betas_step, "writes only": writes_only,
             "lamb (2 tensors)": lamb.step}
    for f in cases.values():
        for _ in range(1000):
            f()
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.rounds):
        for name, f in cases.items():
            times[name].append(_per_call(f, args.calls))
    med = {k: statistics.median(v) * 1e6 for k, v in times.items()}
    ratio = {k: statistics.median(a / b for a, b in zip(times[k], times["plain"], strict=True))
             for k in ("lr", "lr+betas")}
    lines = [
        "# Step overhead at 1e3 elements (float32)",
        "",
        f"Command: `python bench/step_overhead.py --out bench/results/step-overhead.md` ({args.rounds} interleaved "
        f"rounds of {args.calls} steps; medians). Python {platform.python_version()}, numba threads "
        f"{fastopt.get_num_threads()}, {platform.processor() or platform.machine()}.",
        "",
        "| case | per step | vs plain | target |",
        "|---|---|---|---|",
        f"| Adam, plain `step()` | {med['plain']:.2f} us | 1 | <= 2.5 us |",
        f"| Adam, `lr` written before every step | {med['lr']:.2f} us | {ratio['lr']:.2f}x | <= 1.2x |",
        f"| Adam, `lr` and `betas` written before every step | {med['lr+betas']:.2f} us | {ratio['lr+betas']:.2f}x "
        "| <= 1.3x |",
        f"| the two writes alone (no step) | {med['writes only']:.2f} us | | |",
        f"| LAMB, 2 tensors, plain `step()` | {med['lamb (2 tensors)']:.2f} us | | <= 10 us |",
    ]
    text = "\n".join(lines) + "\n"
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    print(text, end="")


if __name__ == "__main__":
    main()
