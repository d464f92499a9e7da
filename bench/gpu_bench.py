"""GPU benchmark script: ``fastopt.benchmark.gpu`` from a checkout.

    python bench/gpu_bench.py --out bench/results/gpu-<device>
    python bench/gpu_bench.py --simulate --out /tmp/sim   # logic check, no GPU

(``fastopt bench --device cuda`` runs the same benchmark.)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastopt.benchmark.gpu import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
