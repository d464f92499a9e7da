"""GPU benchmark: fastopt's CUDA kernels against the memory-bandwidth limit
and against torch.optim on the same GPU, in one interleaved run.

For every element-wise optimizer and every size 2^16 .. 2^28 (capped by free
memory), each step is timed with CUDA events for:

- ``fastopt``: the optimizer class over one flat buffer (CUDA backend);
- ``twin``: the roofline twin, fastopt's own kernel factory and launch
  configuration with a rule that has the same memory traffic and no math
  (``fastopt.benchmark.roofline.TWIN_RULES``);
- ``copy``: a device-to-device copy moving the same bytes (reads + writes);
- ``torch fused`` / ``torch foreach``: ``torch.optim`` on the same GPU, where
  the optimizer exists there and supports that mode.

Contenders run interleaved (rotating order), after warm-up; each sample
averages enough steps to last ~2 ms; the table reports the median of the
samples. Also measured: the host's per-step cost at 2^12 elements, where the
GPU work is negligible (fastopt Adam vs torch Adam, synchronised each step
and queued).

Usage::

    fastopt bench --device cuda --markdown gpu.md --json gpu.json
    python bench/gpu_bench.py --out bench/results/gpu-h100
    python bench/gpu_bench.py --simulate --out /tmp/sim   # logic check, no GPU

``--simulate`` runs everything under numba's CUDA simulator at a tiny size,
without torch: the numbers mean nothing, the code paths are exercised.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

DEFAULT_MIN_LOG2, DEFAULT_MAX_LOG2 = 16, 28

OVERHEAD_N = 1 << 12
MEMORY_FRACTION = 0.6
"""Largest share of the free GPU memory one size may use (all contenders together)."""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="output directory (JSON + markdown)")
    parser.add_argument("--optimizers", default=None,
                        help="comma-separated registry names (default: every element-wise optimizer)")
    parser.add_argument("--min-log2", type=int, default=DEFAULT_MIN_LOG2)
    parser.add_argument("--max-log2", type=int, default=DEFAULT_MAX_LOG2)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--repeats", type=int, default=15, help="timed samples per contender and size")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per contender before timing")
    parser.add_argument("--sample-ms", type=float, default=2.0, help="target length of one timed sample")
    parser.add_argument("--no-torch", action="store_true", help="skip the torch.optim contenders")
    parser.add_argument("--simulate", action="store_true",
                        help="run under numba's CUDA simulator at a tiny size (checks the logic only)")
    args = parser.parse_args(argv)
    if not 0 < args.min_log2 <= args.max_log2 <= 34:
        parser.error("need 0 < --min-log2 <= --max-log2 <= 34")
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be >= 1 and --warmup >= 0")
    if args.simulate:
        args.min_log2 = args.max_log2 = 6
        args.repeats, args.warmup, args.no_torch = min(args.repeats, 2), min(args.warmup, 1), True
    return args


# -- the device side ------------------------------------------------------------------


class Arrays:
    """Allocation, copies and timing on the GPU: through torch when it is used
    (everything then runs on torch's current stream, fastopt included), else
    through numba (default stream)."""

    def __init__(self, use_torch: bool):
        from numba import cuda

        self.cuda = cuda
        self.torch = None
        if use_torch:
            import torch

            self.torch = torch

    def from_host(self, a):
        if self.torch is not None:
            return self.torch.from_numpy(a).to("cuda")
        return self.cuda.to_device(a)

    def copier(self, n: int, dtype):
        """A step that copies ``n`` elements device to device."""
        import numpy as np

        src, dst = self.from_host(np.ones(n, dtype)), self.from_host(np.zeros(n, dtype))
        if self.torch is not None:
            return lambda: dst.copy_(src)
        return lambda: dst.copy_to_device(src)

    def synchronize(self) -> None:
        if self.torch is not None:
            self.torch.cuda.synchronize()
        else:
            self.cuda.synchronize()

    def events(self):
        if self.torch is not None:
            return self.torch.cuda.Event(enable_timing=True), self.torch.cuda.Event(enable_timing=True)
        if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
            return _WallEvent(), _WallEvent()  # the simulator's events record no time
        return self.cuda.event(), self.cuda.event()

    def elapsed_s(self, start, end) -> float:
        if self.torch is not None:
            return start.elapsed_time(end) / 1e3
        return start.elapsed_time(end) / 1e3

    def free_bytes(self) -> int | None:
        try:
            if self.torch is not None:
                return int(self.torch.cuda.mem_get_info()[0])
            return int(self.cuda.current_context().get_memory_info()[0])
        except Exception:  # noqa: BLE001 - the simulator has no memory info
            return None

    def device_name(self) -> str:
        if self.torch is not None:
            return self.torch.cuda.get_device_name()
        name = getattr(self.cuda.get_current_device(), "name", b"CUDA simulator")
        return name.decode() if isinstance(name, bytes) else str(name)


class _WallEvent:
    """The event API over the host clock (for the simulator, which runs synchronously)."""

    def record(self, stream=0):
        self.t = time.perf_counter()

    def synchronize(self):
        pass

    def elapsed_time(self, end) -> float:
        return (end.t - self.t) * 1e3


# -- contenders ---------------------------------------------------------------------


def fastopt_step(arrays: Arrays, name: str, h: dict, p0, g0):
    import fastopt

    p, g = arrays.from_host(p0.copy()), arrays.from_host(g0)
    opt = fastopt.OPTIMIZERS[name]([(p, g)], **h)
    return opt.step, (p, g, opt)


def twin_step(arrays: Arrays, n_states: int, p0, g0):
    from fastopt.backends.cuda import CUDA
    from fastopt.benchmark.roofline import TWIN_RULES, TWIN_VALUES, TwinCoefficients

    p, g = arrays.from_host(p0.copy()), arrays.from_host(g0)
    pf, gf = CUDA.pair(p, g, "twin")
    states = tuple(CUDA.zeros(pf.size, pf.dtype) for _ in range(n_states))
    launch = CUDA.elementwise_launcher(TWIN_RULES[n_states], TwinCoefficients, pf, gf, states, None)
    return (lambda: launch(TWIN_VALUES)), (p, g, states)


def torch_step(arrays: Arrays, name: str, h: dict, p0, g0, mode: str):
    """A torch.optim step in ``mode`` ("fused" or "foreach"), or the reason there is none."""
    import inspect

    from fastopt.rules import SPECS

    torch = arrays.torch
    cls = getattr(torch.optim, SPECS[name].class_name, None)
    if cls is None:
        return None, f"torch.optim has no {SPECS[name].class_name}"
    accepted = inspect.signature(cls).parameters
    if mode not in accepted:
        return None, f"{cls.__name__} has no {mode} mode"
    kwargs = {k: v for k, v in h.items() if k in accepted}
    p = torch.nn.Parameter(torch.from_numpy(p0.copy()).to("cuda"))
    p.grad = torch.from_numpy(g0).to("cuda")
    try:
        opt = cls([p], **kwargs, **{mode: True})
        opt.step()
    except (RuntimeError, ValueError, TypeError) as exc:
        return None, f"{cls.__name__}({mode}=True): {str(exc).splitlines()[0][:120]}"
    return opt.step, None


# -- timing -----------------------------------------------------------------------


def time_interleaved(arrays: Arrays, steps: dict, repeats: int, warmup: int, sample_s: float) -> dict:
    """Median seconds per step of each contender, sampled in rotating order."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    arrays.synchronize()
    inner = {}
    for label, step in steps.items():
        start, end = arrays.events()
        start.record()
        step()
        end.record()
        end.synchronize()
        one = max(arrays.elapsed_s(start, end), 1e-7)
        inner[label] = max(1, min(1000, math.ceil(sample_s / one)))
    samples = {label: [] for label in steps}
    labels = list(steps)
    for r in range(repeats):
        for label in labels[r % len(labels):] + labels[:r % len(labels)]:
            step, k = steps[label], inner[label]
            start, end = arrays.events()
            start.record()
            for _ in range(k):
                step()
            end.record()
            end.synchronize()
            samples[label].append(arrays.elapsed_s(start, end) / k)
    return {label: statistics.median(values) for label, values in samples.items()}


def host_overhead(arrays: Arrays, steps: dict, count: int) -> dict:
    """Per-step wall time in microseconds: synchronised after every step, and
    ``count`` steps queued then synchronised once."""
    out = {}
    for label, step in steps.items():
        for _ in range(10):
            step()
        arrays.synchronize()
        t0 = time.perf_counter()
        for _ in range(count):
            step()
            arrays.synchronize()
        each = (time.perf_counter() - t0) / count
        t0 = time.perf_counter()
        for _ in range(count):
            step()
        arrays.synchronize()
        queued = (time.perf_counter() - t0) / count
        out[label] = {"sync_each_us": each * 1e6, "queued_us": queued * 1e6}
    return out


# -- the run ------------------------------------------------------------------------


def element_wise_optimizers(selection: str | None) -> list[str]:
    from fastopt.rules import SPECS

    names = list(SPECS)
    if selection:
        wanted = [n.strip().lower() for n in selection.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in SPECS]
        if unknown:
            raise SystemExit(f"unknown or non-element-wise optimizer(s) {unknown}; choose from {names}")
        names = wanted
    return names


def measure_size(arrays: Arrays, name: str, h: dict, n: int, dtype, args) -> dict:
    import numpy as np

    from fastopt.benchmark.problems import state_names
    from fastopt.benchmark.roofline import bytes_per_step

    rng = np.random.default_rng(n)
    p0 = rng.standard_normal(n, dtype=np.float32).astype(dtype)
    g0 = rng.standard_normal(n, dtype=np.float32).astype(dtype)
    moved = bytes_per_step(name, h, n, dtype)
    steps, skipped, keep = {}, {}, []
    steps["fastopt"], held = fastopt_step(arrays, name, h, p0, g0)
    keep.append(held)
    steps["twin"], held = twin_step(arrays, len(state_names(name, h)), p0, g0)
    keep.append(held)
    steps["copy"] = arrays.copier(max(1, moved // 2 // np.dtype(dtype).itemsize), dtype)
    if arrays.torch is not None:
        for mode in ("fused", "foreach"):
            step, why = torch_step(arrays, name, h, p0, g0, mode)
            if step is None:
                skipped[f"torch {mode}"] = why
            else:
                steps[f"torch {mode}"] = step
    seconds = time_interleaved(arrays, steps, args.repeats, args.warmup, args.sample_ms / 1e3)
    return {
        "n": n, "bytes": moved, "seconds": seconds,
        "gb_per_s": {k: moved / s / 1e9 for k, s in seconds.items()},
        "skipped": skipped,
    }


def sizes_for(arrays: Arrays, name: str, h: dict, dtype, args) -> tuple[list[int], list[int]]:
    """(sizes that fit in memory, sizes left out)."""
    import numpy as np

    from fastopt.benchmark.problems import state_names

    per_element = (2 + len(state_names(name, h))) * np.dtype(dtype).itemsize
    contenders = 5 if arrays.torch is not None else 3
    free = arrays.free_bytes()
    fit, left = [], []
    for k in range(args.min_log2, args.max_log2 + 1):
        n = 1 << k
        need = contenders * per_element * n
        (fit if free is None or need <= MEMORY_FRACTION * free else left).append(n)
    return fit, left


def measure_overhead(arrays: Arrays, simulate: bool) -> dict:
    import numpy as np

    n = 64 if simulate else OVERHEAD_N
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(n).astype(np.float32)
    g0 = rng.standard_normal(n).astype(np.float32)
    h = {"lr": 1e-3}
    steps, keep, skipped = {}, [], {}
    steps["fastopt"], held = fastopt_step(arrays, "adam", h, p0, g0)
    keep.append(held)
    if arrays.torch is not None:
        for mode in ("fused", "foreach"):
            step, why = torch_step(arrays, "adam", h, p0, g0, mode)
            if step is None:
                skipped[f"torch {mode}"] = why
            else:
                steps[f"torch {mode}"] = step
    return {"n": n, "optimizer": "adam", "per_step": host_overhead(arrays, steps, 3 if simulate else 2000),
            "skipped": skipped}


def environment(arrays: Arrays, args) -> dict:
    import numba

    info = {
        "device": arrays.device_name(), "simulated": args.simulate, "dtype": args.dtype,
        "python": platform.python_version(), "numba": numba.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "repeats": args.repeats, "warmup": args.warmup, "sample_ms": args.sample_ms,
    }
    try:
        from importlib.metadata import version

        info["numba_cuda"] = version("numba-cuda")
    except Exception:  # noqa: BLE001
        pass
    if arrays.torch is not None:
        info["torch"] = arrays.torch.__version__
    return info


def run(args) -> dict:
    import numpy as np

    from fastopt.benchmark.problems import hyperparameters

    dtype = np.dtype(args.dtype)
    arrays = Arrays(use_torch=not args.no_torch)
    if args.simulate:
        from fastopt.backends.cuda import CUDA

        CUDA.threads_per_block, CUDA.max_blocks = 8, 2
        CUDA.reduction_threads, CUDA.reduction_chunk = 8, 16
    result = {"environment": environment(arrays, args), "optimizers": {}, "left_out": {}}
    for name in element_wise_optimizers(args.optimizers):
        h = hyperparameters(name)
        fit, left = sizes_for(arrays, name, h, dtype, args)
        if left:
            result["left_out"][name] = {"sizes": left, "why": "not enough free GPU memory"}
        rows = []
        for n in fit:
            rows.append(measure_size(arrays, name, h, n, dtype, args))
            print(f"{name:>9} n=2^{int(math.log2(n))}: " + ", ".join(
                f"{k} {v * 1e6:.1f} us" for k, v in rows[-1]["seconds"].items()), file=sys.stderr)
        result["optimizers"][name] = {"hyperparameters": _jsonable(h), "sizes": rows}
    result["host_overhead"] = measure_overhead(arrays, args.simulate)
    return result


def _jsonable(h: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in h.items()}


# -- report -------------------------------------------------------------------------


def _us(seconds) -> str:
    return "-" if seconds is None else f"{seconds * 1e6:.1f}"


def _ratio(a, b) -> str:
    return "-" if a is None or b is None else f"{a / b:.2f}"


def to_markdown(result: dict) -> str:
    env = result["environment"]
    lines = [f"# fastopt GPU benchmark: {env['device']}", "",
             ", ".join(f"{k} {v}" for k, v in env.items() if k != "device"), "",
             "Times are medians of interleaved samples (CUDA events), microseconds per step. "
             "GB/s counts the bytes every contender must move (reads + writes of the optimizer). "
             "twin: fastopt's kernel with the same traffic and no math; copy: a device-to-device "
             "copy of the same bytes.", ""]
    header = ["size", "fastopt us", "fastopt GB/s", "twin us", "copy us", "torch fused us", "torch foreach us",
              "fastopt/twin", "fastopt/copy", "fused/fastopt", "foreach/fastopt"]
    for name, entry in result["optimizers"].items():
        lines += [f"## {name}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in entry["sizes"]:
            s = row["seconds"]
            f = s.get("fastopt")
            cells = [f"2^{int(math.log2(row['n']))}", _us(f), f"{row['gb_per_s']['fastopt']:.0f}",
                     _us(s.get("twin")), _us(s.get("copy")), _us(s.get("torch fused")), _us(s.get("torch foreach")),
                     _ratio(f, s.get("twin")), _ratio(f, s.get("copy")),
                     _ratio(s.get("torch fused"), f), _ratio(s.get("torch foreach"), f)]
            lines.append("| " + " | ".join(cells) + " |")
        skipped = {k: v for row in entry["sizes"] for k, v in row["skipped"].items()}
        for label, why in skipped.items():
            lines.append(f"\n{label}: not run ({why})")
        if name in result["left_out"]:
            lines.append(f"\nleft out: sizes {result['left_out'][name]['sizes']} (not enough free GPU memory)")
        lines.append("")
    over = result["host_overhead"]
    lines += [f"## Host overhead per step ({over['optimizer']}, {over['n']} elements)", "",
              "| contender | synchronised each step us | queued us |", "|---|---|---|"]
    for label, v in over["per_step"].items():
        lines.append(f"| {label} | {v['sync_each_us']:.1f} | {v['queued_us']:.1f} |")
    return "\n".join(lines) + "\n"


def require_gpu() -> None:
    """Raise ``ValueError`` with a plain message unless a CUDA GPU can be used."""
    from ..backends.cuda.runtime import cuda  # ImportError naming fastopt[cuda] when numba-cuda is missing

    if not cuda.is_available():
        raise ValueError("no CUDA GPU (or driver) is available on this machine; run with --device cpu")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.simulate:
        if "numba" in sys.modules and os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
            raise SystemExit("--simulate must be decided before numba is imported; run this script directly")
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
    result = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_bench.json").write_text(json.dumps(result, indent=2))
    (args.out / "gpu_bench.md").write_text(to_markdown(result))
    print(f"wrote {args.out / 'gpu_bench.json'} and {args.out / 'gpu_bench.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
