import os
import sys

import pytest

# Make `from reference import ...` work from any test module (tests/ is not a package).
_TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

# tests/cuda/test_cuda_sim.py needs NUMBA_ENABLE_CUDASIM=1 set before numba is
# imported, so it runs in a process of its own: tests/test_cuda_simulator.py
# starts `python -m pytest tests/cuda` with it. The PTX and real-GPU tests in
# tests/cuda run (or skip) in the normal process.
if not os.environ.get("NUMBA_ENABLE_CUDASIM"):
    collect_ignore_glob = ["cuda/test_cuda_sim*.py"]


@pytest.fixture(autouse=True)
def _openmp_wait_policy_unchanged():
    """A test that leaves OMP_WAIT_POLICY changed in this process's environment
    changes every process later tests start (their threshold, their pools):
    fail that test, and put the variable back."""
    before = os.environ.get("OMP_WAIT_POLICY")
    yield
    after = os.environ.get("OMP_WAIT_POLICY")
    if after != before:
        if before is None:
            os.environ.pop("OMP_WAIT_POLICY", None)
        else:
            os.environ["OMP_WAIT_POLICY"] = before
        pytest.fail(f"the test left OMP_WAIT_POLICY={after!r} in the environment (it was {before!r})")
