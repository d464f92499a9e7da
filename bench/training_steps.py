"""What the training-loop options cost: Adam with clipping, the non-finite
guard, value clipping and EMA, against a plain fused step and against torch's
``clip_grad_norm_(foreach=True)`` followed by fused Adam.

Ratios from one interleaved run (medians of per-round ratios):

    python bench/training_steps.py --size 5e7 --rounds 15 --json bench/results/training-steps.json
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # torch's and numba's OpenMP pools share 2 cores

import numpy as np  # noqa: E402

import fastopt  # noqa: E402
from fastopt.benchmark.machine import machine_info  # noqa: E402
from fastopt.benchmark.timing import Contender, interleaved, paired_ratio, spread  # noqa: E402

VARIANTS = {
    "plain": {},
    "max_grad_norm": {"max_grad_norm": 1.0},
    "max_grad_norm+guard": {"max_grad_norm": 1.0, "nonfinite": "skip"},
    "guard only": {"nonfinite": "skip"},
    "max_grad_value": {"max_grad_value": 0.5},
    "ema": {"ema_decay": 0.999},
}


def fastopt_contender(name, kwargs, n, grad):
    p = np.random.default_rng(1).standard_normal(n).astype(np.float32)
    opt = fastopt.Adam([(p, grad)], lr=1e-3, **kwargs)

    def run(k):
        for _ in range(k):
            opt.step()

    return Contender(f"fastopt {name}", run)


def torch_contender(n, grad):
    import torch

    p = torch.from_numpy(np.random.default_rng(1).standard_normal(n).astype(np.float32)).requires_grad_()
    p.grad = torch.from_numpy(grad.copy())
    opt = torch.optim.Adam([p], lr=1e-3, fused=True)

    def run(k):
        for _ in range(k):
            torch.nn.utils.clip_grad_norm_([p], 1.0, foreach=True)
            opt.step()

    return Contender("torch clip_grad_norm_(foreach)+fused Adam", run)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=float, default=5e7)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    n = int(args.size)
    # Gradients of norm ~1e3 so that clipping really scales every step.
    grad = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    contenders = [fastopt_contender(name, kw, n, grad) for name, kw in VARIANTS.items()]
    try:
        import torch

        torch.set_num_threads(max(1, os.cpu_count() or 1))
        contenders.append(torch_contender(n, grad))
    except ImportError:
        print("torch not installed: no torch comparison")
    result = interleaved(contenders, args.rounds, warmup=2, target_s=0.05, max_batch=200)
    times = result["times"]
    plain = times["fastopt plain"]
    rows = []
    for name, t in times.items():
        rows.append({"contender": name, "median_s": spread(t)["median"],
                     "vs_plain": paired_ratio(t, plain)["median"]})
    clip = times["fastopt max_grad_norm"]
    torch_name = "torch clip_grad_norm_(foreach)+fused Adam"
    print(f"Adam float32, {n:.0e} elements, {result['rounds']} interleaved rounds, {machine_info()['cpu']}")
    print(f"{'contender':<45} {'median':>10} {'x plain':>8}")
    for row in rows:
        print(f"{row['contender']:<45} {row['median_s'] * 1e3:8.2f}ms {row['vs_plain']:8.3f}")
    summary = {}
    if torch_name in times:
        summary["clip_speedup_vs_torch"] = paired_ratio(times[torch_name], clip)["median"]
        print(f"fastopt clipped Adam is {summary['clip_speedup_vs_torch']:.2f}x faster than {torch_name}")
    summary["clip_cost"] = paired_ratio(clip, plain)["median"]
    summary["guard_cost_with_clip"] = paired_ratio(times["fastopt max_grad_norm+guard"], clip)["median"]
    summary["value_clip_cost"] = paired_ratio(times["fastopt max_grad_value"], plain)["median"]
    print(json.dumps(summary, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"size": n, "machine": machine_info(), "rounds": result["rounds"], "rows": rows,
                       "summary": summary}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
