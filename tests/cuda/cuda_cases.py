"""The distinct compiled kernels behind the optimizer cases: every rule with
its coefficient record and state count, found from ``fastopt.rules.SPECS``
and the shared ``CASES`` (so a new optimizer or variant is picked up here too)."""

from __future__ import annotations

from cases import ALL

from fastopt.rules import SPECS


def rule_variants() -> list[tuple]:
    """``(spec, variant, label)`` for every distinct element-wise rule."""
    seen = {}
    for name, hyper in ALL:
        spec = SPECS.get(name)
        if spec is None or spec.segmented is not None:
            continue
        variant = spec.variant_of({**spec.defaults, **hyper})
        seen.setdefault((variant.rule, spec.record), (spec, variant, variant.rule.__name__))
    return list(seen.values())


def segmented_specs() -> list:
    """Specs whose rule runs on the two-pass segmented driver (LAMB)."""
    return [spec for spec in SPECS.values() if spec.segmented is not None]


def element_wise_cases() -> list[tuple]:
    """Every shared case (element-wise and segmented rules alike run on the GPU)."""
    return [(name, h) for name, h in ALL if name in SPECS]
