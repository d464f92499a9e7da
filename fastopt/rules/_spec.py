"""What the library knows about one optimizer: the :class:`Spec`.

A rule is a pure function of scalars, ``rule(p, g, s, c) -> (p, s)``: the
parameter value, its gradient (already scaled and value-clipped by the loop),
the tuple of state values and the coefficient record ``c``; it returns the
new parameter and the new state tuple. No arrays, no loops, no indexing: the
backends' loop factories load every value and store every result, so state
codecs, the CUDA memory path and per-element wrappers (EMA, value clipping,
master-weight copies) are written once, around any rule.

The coefficient record is a named tuple made by :func:`coefficient_record`;
the host fills it by name (``AdamCoefficients(step_size=..., eps=...)``) and
the rule reads it by name (``c.step_size``), so the two can never drift
apart. Every number in it is cast to the buffer's dtype before the loop.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from ._checks import plain


def coefficient_record(name: str, fields: str) -> type:
    """A named tuple type for a rule's per-step coefficients."""
    return namedtuple(name, fields)


@dataclass(frozen=True)
class Variant:
    """A rule and the names of the state values it takes and returns, in order."""

    rule: Any
    state_names: tuple[str, ...]


@dataclass(frozen=True)
class Segmented:
    """The pieces of a rule whose step depends on a per-tensor reduction
    (LAMB's trust ratio), run by the backends' two-pass segmented driver.

    Attributes
    ----------
    direction : callable
        ``direction(p, g, s, c) -> (r, s)``: the new state and the update
        direction ``r`` of one element (pass one; the driver also sums ``p**2``
        and ``r**2`` per tensor).
    recompute : callable
        ``recompute(p, s, c) -> r``: the same direction from the stored state
        (pass two recomputes instead of storing ``r``: no scratch buffer, no
        extra traffic).
    step_size : callable
        ``step_size(sum_p2, sum_r2, lr) -> float``: the factor of ``r`` for
        one tensor, in float64.
    """

    direction: Any
    recompute: Any
    step_size: Any


@dataclass(frozen=True)
class Spec:
    """Everything the library needs to know about one optimizer.

    Attributes
    ----------
    name : str
        Lower-case registry name (``"adam"``).
    class_name : str
        Public class name (``"Adam"``).
    doc : str
        The class docstring, with the update equations.
    defaults : dict
        Hyperparameter defaults (torch.optim's where torch has the optimizer).
    checks : dict
        Hyperparameter name -> ``check(name, value)`` raising ValueError/TypeError.
    variant : callable
        ``variant(h) -> Variant``: the rule and state layout for hyperparameters
        ``h``. A change of variant re-plans a group; any other change of a
        hyperparameter only refreshes its coefficients.
    record : type
        The coefficient record (see :func:`coefficient_record`).
    coefficients : callable
        ``coefficients(h, step, carry) -> (record, carry)``: the per-step
        coefficients for step number ``step`` (1 for the first) and the new
        carried scalars (see ``carry``). Pure arithmetic on ``h``'s attributes.
    carry : tuple of (str, float)
        Scalars carried from step to step on the host and kept in each
        parameter's state (NAdam's ``mu_product``), with their initial values.
    state_fill : dict
        State name -> ``f(h) -> float`` initial value (0 when absent).
    cross_check : callable or None
        ``f(h)`` for constraints between hyperparameters.
    torch_name : str or None
        The ``torch.optim`` class with the same math, if any.
    segmented : Segmented or None
        For rules whose step needs a per-tensor reduction (LAMB); None for
        element-wise rules.
    state_roles : dict
        State name -> what its values are, which decides how a low-precision
        codec stores them: ``"moment"`` (signed, on the gradient's scale; the
        default), ``"square"`` (non-negative, on the gradient's scale squared),
        ``"sum"`` (a growing sum of squares, Adagrad's: each step adds less
        than its resolution once it is large, so rounding to nearest drifts),
        ``"max_square"`` (a running maximum of squares, AMSGrad's: must never
        be stored below a value it dominated), ``"decaying_max"`` (Adamax's
        infinity norm, a maximum that decays by a factor close to 1 every
        step: rounding to nearest would freeze the decay).
    """

    name: str
    class_name: str
    doc: str
    defaults: dict
    checks: dict
    variant: Callable[[Any], Variant]
    record: type
    coefficients: Callable
    carry: tuple = ()
    state_fill: dict = field(default_factory=dict)
    cross_check: Callable | None = None
    torch_name: str | None = None
    segmented: Segmented | None = None
    state_roles: dict = field(default_factory=dict)

    @property
    def layout_keys(self) -> frozenset:
        """Hyperparameters that can change the variant (the bools, and
        ``momentum``, whose zero-or-not picks SGD's and RMSprop's rule): a
        change of any other one only refreshes the coefficients. (A test checks
        this against every spec's variant function.)"""
        return frozenset(k for k, v in self.defaults.items() if isinstance(v, bool) or k == "momentum")

    def role(self, state: str) -> str:
        """The role of state ``state`` (see ``state_roles``)."""
        return self.state_roles.get(state, "moment")

    def hyperparameters(self, values: dict):
        """The record the coefficient and variant functions read (``h.lr``,
        ``h.betas``), with every hyperparameter of ``values`` (missing keys:
        the defaults) as a plain float, tuple of floats or bool."""
        record = object.__new__(_hyper_record(self.class_name, tuple(self.defaults)))
        for key, default in self.defaults.items():
            setattr(record, key, plain(values.get(key, default)))
        return record

    def variant_of(self, values: dict) -> Variant:
        """The variant for hyperparameters ``values`` (a dict)."""
        return self.variant(self.hyperparameters(values))

    @property
    def carry_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.carry)

    @property
    def carry_initial(self) -> tuple[float, ...]:
        return tuple(float(value) for _, value in self.carry)


@cache
def _hyper_record(class_name: str, keys: tuple) -> type:
    """A small mutable record with one slot per hyperparameter (updated in
    place when a scheduler changes one value: no new object per step)."""

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={getattr(self, k)!r}' for k in keys)})"

    def copy(self):
        other = object.__new__(type(self))
        for k in keys:
            setattr(other, k, getattr(self, k))
        return other

    return type(f"{class_name}Hyperparameters", (), {"__slots__": keys, "__repr__": __repr__, "copy": copy,
                                                     "keys": keys})
