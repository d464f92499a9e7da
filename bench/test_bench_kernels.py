"""pytest-benchmark suite: one step of every optimizer, and its roofline twin.

Not part of the normal test run (pyproject's testpaths is ``tests``). Run::

    python -m pytest bench/ --benchmark-autosave          # record a baseline
    python -m pytest bench/ --benchmark-compare           # compare with the last saved run
"""

from __future__ import annotations

import pytest

import fastopt
from fastopt.benchmark.contenders import fastopt_contender
from fastopt.benchmark.problems import hyperparameters, make_data
from fastopt.benchmark.roofline import twin_contender

SIZES = [1_000, 1_000_000]


@pytest.fixture(scope="module", params=SIZES, ids=lambda n: f"n={n:.0e}")
def data(request):
    return make_data(request.param)


@pytest.mark.parametrize("name", list(fastopt.OPTIMIZERS))
def test_step(benchmark, name, data):
    run = fastopt_contender(name, hyperparameters(name), *data).run
    run(2)
    benchmark(run, 1)


@pytest.mark.parametrize("name", list(fastopt.OPTIMIZERS))
def test_roofline_twin(benchmark, name, data):
    run = twin_contender(name, hyperparameters(name), *data).run
    run(2)
    benchmark(run, 1)
