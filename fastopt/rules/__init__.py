"""The optimizer registry: one module per optimizer, each exporting ``SPEC``.

This package is math only (it imports nothing but :mod:`fastopt.config`).
Adding an optimizer means adding its module here (rule, coefficients,
defaults, checks, equations) and its float64 reference in
``tests/reference.py``; the classes, kernels, functional API, torch classes,
tests and benchmarks pick it up from :data:`SPECS`.
"""

from __future__ import annotations

from . import adadelta, adagrad, adam, adamax, lamb, lion, nadam, radam, rmsprop, sgd
from ._spec import Segmented, Spec, Variant

SPECS: dict[str, Spec] = {
    spec.name: spec
    for spec in (sgd.SPEC, adagrad.SPEC, rmsprop.SPEC, adadelta.SPEC, adam.SPEC, adam.SPEC_W,
                 adamax.SPEC, nadam.SPEC, radam.SPEC, lion.SPEC, lamb.SPEC)
}

CLASS_NAMES: dict[str, str] = {spec.class_name: name for name, spec in SPECS.items()}
"""Public class name -> registry name."""

__all__ = ["CLASS_NAMES", "SPECS", "Segmented", "Spec", "Variant"]
