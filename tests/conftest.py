import os
import sys

# Make `from reference import ...` work from any test module (tests/ is not a package).
_TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)
