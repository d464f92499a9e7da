"""``fastopt demo``: each optimizer on a flat buffer, timed against naive NumPy."""

from __future__ import annotations

import time

import numpy as np


def add_arguments(parser) -> None:
    parser.add_argument("--size", type=int, default=1_000_000, help="elements in the buffer (default 1e6)")
    parser.add_argument("--repeats", type=int, default=20, help="timed steps per optimizer (median)")


def _naive_adam(p, g, m, v, t, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    m[:] = b1 * m + (1 - b1) * g
    v[:] = b2 * v + (1 - b2) * g * g
    m_hat = m / (1 - b1**t)
    v_hat = v / (1 - b2**t)
    p -= lr * m_hat / (np.sqrt(v_hat) + eps)


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def run(args) -> int:
    import fastopt

    if args.size < 1 or args.repeats < 1:
        raise ValueError("--size and --repeats must be >= 1")
    rng = np.random.default_rng(0)
    n = args.size
    print(f"fastopt demo: one step over {n:,} float32 elements, median of {args.repeats}")
    print(f"{'optimizer':<10} {'fastopt':>12}")
    for name, cls in fastopt.OPTIMIZERS.items():
        fp = fastopt.FlatParams({"x": (n,)})
        fp.data[:] = rng.standard_normal(n)
        fp.grad[:] = rng.standard_normal(n)
        opt = cls(fp, lr=1e-3)
        opt.step()
        t = _median_time(opt.step, args.repeats)
        print(f"{name:<10} {t * 1e3:10.3f} ms")
    p = rng.standard_normal(n).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32)
    m, v = np.zeros_like(p), np.zeros_like(p)
    naive = _median_time(lambda: _naive_adam(p, g, m, v, 1), args.repeats)
    print(f"{'naive adam':<10} {naive * 1e3:10.3f} ms  (NumPy with temporaries)")
    return 0
