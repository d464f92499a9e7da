"""The GPU benchmark from a checkout: ``bench/run_cpu.py --device cuda``.

    python bench/gpu_bench.py --tag h100         # every optimizer, 2^16..2^28 elements
    python bench/gpu_bench.py --quick

Same as ``fastopt bench --device cuda`` (fastopt vs torch fused/foreach, a
device-to-device copy and the roofline twin, CUDA events), recorded under
``bench/results/cuda-<tag>-<date>.*``. Under ``NUMBA_ENABLE_CUDASIM=1`` it
runs in numba's CUDA simulator (checks the logic; the numbers mean nothing).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_cpu import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["--device", "cuda", *sys.argv[1:]]))
