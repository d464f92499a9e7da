"""The distinct compiled kernels behind the optimizer cases: every rule with
its coefficient and state counts, found from ``fastopt.rules.SPECS`` and the
shared ``CASES`` (so a new optimizer or variant is picked up here too)."""

from __future__ import annotations

from cases import ALL

from fastopt.rules import SPECS


def rule_variants() -> list[tuple]:
    """``(rule, n_coefficients, n_states, label)`` for every distinct rule."""
    seen = {}
    for name, hyper in ALL:
        spec = SPECS.get(name)
        if spec is None or spec.launcher is not None:
            continue
        h = {**spec.defaults, **hyper}
        variant = spec.variant(h)
        n_coefficients = 2 + len(spec.coefficients(h, 1, {}))
        key = (variant.rule, n_coefficients, len(variant.state_names))
        seen.setdefault(key, variant.rule.__name__)
    return [(*key, label) for key, label in seen.items()]


def element_wise_cases() -> list[tuple]:
    """The shared cases whose optimizer is one element-wise rule (all but
    LAMB, whose two-pass step has a CPU kernel only)."""
    return [(name, h) for name, h in ALL if name in SPECS and SPECS[name].launcher is None]
