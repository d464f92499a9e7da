"""The optimizer registry: one module per optimizer, each exporting ``SPEC``.

Adding an optimizer means adding its module here (rule + coefficients +
defaults) and its float64 reference in ``tests/reference.py``; the classes,
kernels, functional API, tests and benchmarks pick it up from ``SPECS``.
"""

from __future__ import annotations

from . import adadelta, adagrad, adam, adamax, lamb, lion, nadam, radam, rmsprop, sgd
from ._common import Spec, Variant

SPECS: dict[str, Spec] = {
    spec.name: spec
    for spec in (sgd.SPEC, adagrad.SPEC, rmsprop.SPEC, adadelta.SPEC, adam.SPEC, adam.SPEC_W,
                 adamax.SPEC, nadam.SPEC, radam.SPEC, lion.SPEC, lamb.SPEC)
}

__all__ = ["SPECS", "Spec", "Variant"]
