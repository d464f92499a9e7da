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


class _All:
    """``ParamGroup.changed`` when every key must be re-read (truthy, never grows)."""

    def __bool__(self):
        return True

    def __repr__(self):
        return "ALL"


ALL = _All()


class ParamGroup(dict):
    """One entry of ``optimizer.param_groups``: a plain dict to its users.

    Every torch scheduler writes ``group["lr"]`` before every step (OneCycleLR
    also ``group["betas"]``), so a write must cost little and a step after it
    nothing more. A write of a coefficient-only hyperparameter with a valid
    value goes straight into the group's record of plain floats (``record``,
    set by the optimizer; its ``checks`` return the value as the kernels see
    it); any other write is remembered in ``changed`` and sets the ``dirty``
    cell shared by the optimizer's groups, and the next step validates it
    (raising there, before any array is touched, when it is bad)."""

    __slots__ = ("changed", "dirty", "record", "checks")

    def __init__(self, values=(), dirty=None):
        super().__init__(values)
        self.changed = ALL
        self.dirty = dirty if dirty is not None else [True]
        self.dirty[0] = True
        self.record = None
        self.checks = None

    def __setitem__(self, key, value):
        dict.__setitem__(self, key, value)
        record = self.record
        if record is not None:
            check = self.checks.get(key)
            if check is not None:
                try:
                    setattr(record, key, check(key, value))
                    return
                except (TypeError, ValueError):
                    pass  # the step raises, naming the group
        self.dirty[0] = True
        changed = self.changed
        if changed is not ALL:
            changed.add(key)

    def __delitem__(self, key):
        super().__delitem__(key)
        self.changed = ALL
        self.record = None
        self.dirty[0] = True

    def update(self, *args, **kwargs):
        super().update(*args, **kwargs)
        self.changed = ALL
        self.record = None
        self.dirty[0] = True

    def __ior__(self, other):
        self.update(other)
        return self

    def setdefault(self, key, default=None):
        if key not in self:
            self[key] = default
        return self[key]

    def pop(self, *args):
        self.changed = ALL
        self.record = None
        self.dirty[0] = True
        return super().pop(*args)

    def popitem(self):
        self.changed = ALL
        self.record = None
        self.dirty[0] = True
        return super().popitem()

    def clear(self):
        super().clear()
        self.changed = ALL
        self.record = None
        self.dirty[0] = True


class ParamGroups(list):
    """``optimizer.param_groups``: a plain list to its users, which sets the
    optimizer's dirty cell when an entry is replaced, added or removed (the
    next step then re-reads every group)."""

    def __init__(self, groups, dirty):
        super().__init__(groups)
        self.dirty = dirty

    def _touch(self):
        self.dirty[0] = True


def _marking(name):
    method = getattr(list, name)

    def marked(self, *args, **kwargs):
        self.dirty[0] = True
        return method(self, *args, **kwargs)

    marked.__name__ = name
    return marked


for _name in ("__setitem__", "__delitem__", "__iadd__", "append", "extend", "insert", "pop", "remove", "clear",
              "sort", "reverse"):
    setattr(ParamGroups, _name, _marking(_name))

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
    chains : list of :class:`fastopt._layout.Chain`
        The launch units (see :mod:`fastopt._layout`).
    laid_out : bool
        Whether the chains' state and launchers match ``variant`` and the
        state arrays (False after ``load_state_dict``: re-plan).
    lockstep : bool
        Whether every buffer is at the same step and the rule carries no
        per-parameter scalars: then each chain launches once, with
        coefficients computed once for the group.
    """

    __slots__ = ("backend", "buffers", "group", "hyper", "variant", "chains", "laid_out", "lockstep")

    def __init__(self, backend, buffers, chains):
        self.backend = backend
        self.buffers = buffers
        self.group = None
        self.hyper = None
        self.variant = None
        self.chains = chains
        self.laid_out = False
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
    if spec.cross_check is None:
        for key in changed:
            check = checks.get(key)
            if check is not None:
                setattr(h, key, check(key, group[key]))  # a check returns the value as the kernels see it
        return h
    candidate = h.copy()
    for key in changed:
        check = checks.get(key)
        if check is not None:
            setattr(candidate, key, check(key, group[key]))
    _cross_check(spec, candidate)
    return candidate


def _cross_check(spec, h) -> None:
    if spec.cross_check is not None:
        spec.cross_check(h)
