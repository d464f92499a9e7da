"""``fastopt kernels``: the CUDA update kernels' machine code, for people who
want to see it: PTX for sm_90 and ptxas' register and spill counts, compiled
on this machine (no GPU needed)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._outputs import check_output_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--optimizer", metavar="NAME", help="optimizer whose kernel to show (default adam)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--scalar", action="store_true",
                        help="the one-element-per-trip kernel (for unaligned views) instead of the vectorized one")
    parser.add_argument("--ptx", action="store_true", help="print the kernel's PTX")
    parser.add_argument("--resources", action="store_true",
                        help="print ptxas' registers, spills and resident blocks per SM (sm_90)")
    parser.add_argument("--markdown", metavar="FILE",
                        help="write the table of every kernel (loads, stores, f64 ops, registers, spills) as markdown")


def _check(args: argparse.Namespace) -> None:
    """Everything that can fail before compiling anything."""
    from ..benchmark import ptx
    from ..rules import SPECS

    ptx.require_cuda()
    if args.resources or args.markdown:
        ptx.ptxas_path()
    name = args.optimizer or "adam"
    if name not in SPECS:
        raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(SPECS)}")
    if SPECS[name].segmented is not None and (args.ptx or args.resources):
        raise ValueError(f"{name} runs on the two-pass segmented driver, not one update kernel; "
                         "choose an element-wise optimizer")
    if args.markdown:
        check_output_path("--markdown", args.markdown)


def run(args: argparse.Namespace) -> int:
    from ..benchmark import ptx

    _check(args)
    name = args.optimizer or "adam"
    if not (args.ptx or args.resources or args.markdown):
        args.resources = True
    if args.ptx or args.resources:
        code = ptx.update_kernel_code(name, args.dtype, vectorized=not args.scalar)
        if args.ptx:
            print(code.ptx)
        if args.resources:
            r = ptx.resources(code.ptx)
            print(f"{code.variant} ({args.dtype}, {'scalar' if args.scalar else 'vectorized'}, sm_90): "
                  f"{r['registers']} registers, {r['spill_stores']} bytes spill stores, "
                  f"{r['spill_loads']} bytes spill loads, {r['blocks_per_sm']} blocks of 256 threads per SM; "
                  f"{code.vector_loads} vector loads ({code.nc_loads} read-only), {code.vector_stores} vector "
                  f"stores, {code.f64_instructions} float64 instructions")
    if args.markdown:
        from pathlib import Path

        print("compiling every kernel for sm_90...", file=sys.stderr)
        rows = ptx.report()
        low = ptx.low_precision_report()
        Path(args.markdown).write_text(_page(rows, ptx) + _low_precision_section(low, ptx))
        print(f"wrote {args.markdown}")
    return 0


def _page(rows: list[dict], ptx: Any) -> str:
    return (
        "# CUDA update kernels: what the PTX says\n\n"
        "Compiled with `numba.cuda.compile_ptx` for sm_90 (H100) and assembled with `ptxas -v` from the "
        "`nvidia-cuda-nvcc-cu12` wheel, on a machine without a GPU, by "
        "`fastopt kernels --markdown bench/results/cuda-ptx.md`. Vectorized path (every array aligned), "
        "no EMA, 256 threads per block, launch bounds (256, 4) for float32 and (256, 3) for float64.\n\n"
        "Legend: *arrays read* = param, grad and states; *vector loads* = `ld.global.v4` (float32: 128-bit, "
        "four elements) or, for float64, pairs of `ld.global.v2` (also 128-bit); *.nc* = read through the "
        "read-only path (the gradient); *scalar loads (tail)* = the one-element path that handles the last "
        "`n % 4` elements; *f64 ops* = float64 instructions other than parameter loads (must be 0 for float32 "
        "kernels); *blocks/SM* = resident blocks of 256 threads at these registers (the grid never exceeds "
        "SMs x blocks/SM).\n\n" + ptx.to_markdown(rows))


def _low_precision_section(rows: list[dict], ptx: Any) -> str:
    return (
        "\n## Low-precision states (float32 params)\n\n"
        "Built as the backend builds them (`state_dtype=\"bfloat16\"`: the element-wise kernel, vectorized "
        "path, launch bounds (256, 4); `state_dtype=\"int8\"`: the block-float kernel, one thread block of 256 "
        "threads per quantization block, the block's largest magnitude reduced through shared memory). "
        "*4 x 32-bit loads*: params and gradient (the int8 kernels read them, and the block scales, one "
        "element per thread: scalar loads, coalesced across the warp, not counted here); "
        "*4 x 16-bit loads*: bfloat16 states; *byte loads/stores*: 8-bit codes. The int8 kernels' f64 ops "
        "are AMSGrad's exact check that a stored maximum's square does not fall short of the value.\n\n"
        + ptx.low_precision_markdown(rows))
