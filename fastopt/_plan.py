"""The step plan of one param group.

A group's *layout* (its rule variant, whether it keeps a parameter EMA, the
buffers' dtypes and state storages) decides which kernel runs and which
arrays it touches; it changes rarely, and changing it re-plans the group:
state arrays the new variant needs are allocated and the launches rebuilt.
Every other hyperparameter (lr, betas, eps, weight decay, momentum...) only
refreshes the group's record of plain floats, from which the coefficients
are computed once per group per step. Every torch scheduler writes
``group["lr"]`` every step, and OneCycleLR cycles ``betas`` too: that must
cost a few checks, not a re-plan.
"""

from __future__ import annotations

from .rules._checks import plain


class _All:
    """``ParamGroup.changed`` when every key must be re-read (truthy, never grows)."""

    def __bool__(self):
        return True

    def __repr__(self):
        return "ALL"


ALL = _All()


class ParamGroup(dict):
    """One entry of ``optimizer.param_groups``: a plain dict to its users, which
    also remembers which keys were assigned since the optimizer last read it,
    so that a step after a scheduler's ``group["lr"] = ...`` validates only
    ``lr`` (and a step after nothing validates nothing)."""

    __slots__ = ("changed",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.changed = ALL

    def _mark(self, key) -> None:
        changed = self.changed
        if changed is not ALL:
            changed.add(key)

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        self._mark(key)

    def __delitem__(self, key):
        super().__delitem__(key)
        self.changed = ALL

    def update(self, *args, **kwargs):
        super().update(*args, **kwargs)
        self.changed = ALL

    def __ior__(self, other):
        self.update(other)
        return self

    def setdefault(self, key, default=None):
        if key not in self:
            self[key] = default
        return self[key]

    def pop(self, *args):
        self.changed = ALL
        return super().pop(*args)

    def popitem(self):
        self.changed = ALL
        return super().popitem()

    def clear(self):
        super().clear()
        self.changed = ALL

    def __reduce__(self):
        return (dict, (dict(self),))


def hyperparameters(spec, group: dict):
    """``group``'s hyperparameters as the kernels see them (plain floats)."""
    return spec.hyperparameters(group)


class GroupPlan:
    """Private bookkeeping of one param group.

    Attributes
    ----------
    backend : the group's backend.
    buffers : list of :class:`fastopt._groups.Buffer`.
    group : ParamGroup or None
        The group dict last validated (None: validate every key).
    hyper : the validated record of plain floats (see :func:`hyperparameters`).
    variant : :class:`fastopt.rules.Variant`
    launches : list of ``launch(values)``, one per buffer.
    entries : list of dict
        The buffers' entries of ``optimizer.state``.
    lockstep : bool
        Whether every buffer is at the same step and the rule carries no
        per-parameter scalars: then the coefficients are computed once.
    """

    __slots__ = ("backend", "buffers", "group", "hyper", "variant", "launches", "entries", "lockstep")

    def __init__(self, backend, buffers):
        self.backend = backend
        self.buffers = buffers
        self.group = None
        self.hyper = None
        self.variant = None
        self.launches = None
        self.entries = None
        self.lockstep = False


def refresh(spec, plan: GroupPlan, group: dict):
    """Validate what changed in ``group`` since the plan last read it and return
    the up-to-date hyperparameter record (``plan.hyper`` updated in place, or
    a new record when every key must be read). Raises naming the bad
    hyperparameter, with ``plan`` and the change marks unchanged."""
    checks = spec.checks
    changed = getattr(group, "changed", ALL)
    if plan.hyper is None or group is not plan.group or changed is ALL:
        for key, check in checks.items():
            check(key, group[key])
        h = hyperparameters(spec, group)
        _cross_check(spec, h)
        return h
    h = plan.hyper
    for key in changed:
        check = checks.get(key)
        if check is not None:
            check(key, group[key])
    if spec.cross_check is not None:
        candidate = h.copy()
        for key in changed:
            if key in checks:
                setattr(candidate, key, plain(group[key]))
        _cross_check(spec, candidate)
    for key in changed:
        if key in checks:
            setattr(h, key, plain(group[key]))
    return h


def _cross_check(spec, h) -> None:
    if spec.cross_check is not None:
        spec.cross_check(h)
