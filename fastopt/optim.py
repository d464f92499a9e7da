"""The optimizer API: torch.optim's names, defaults and semantics, driving one
fused kernel call per contiguous buffer."""

from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np

from . import _cpu
from ._arrays import check_disjoint, param_grad_pair
from .params import FlatParams, aligned_zeros
from .rules import SPECS, Spec

_INF = math.inf


class _Slot:
    """Per-group bookkeeping that users never see: flat views, state ids and the
    compiled plan for the group's current hyperparameters."""

    __slots__ = ("pairs", "shapes", "ids", "snapshot", "variant", "states", "coefficients", "kernel")

    def __init__(self, pairs, shapes, ids):
        self.pairs = pairs
        self.shapes = shapes
        self.ids = ids
        self.snapshot = None
        self.variant = None
        self.states = None
        self.coefficients = None
        self.kernel = None


def _looks_like_pair(obj) -> bool:
    return (
        isinstance(obj, tuple)
        and len(obj) == 2
        and not isinstance(obj[0], (tuple, list, dict))
        and not isinstance(obj[1], (tuple, list, dict))
    )


def _group_pairs(params, where: str) -> list[tuple[Any, Any]]:
    """The (param, grad) pairs of one group's ``params`` entry."""
    if isinstance(params, FlatParams):
        return [(params.data, params.grad)]
    if _looks_like_pair(params):
        return [params]
    if isinstance(params, (list, tuple)):
        pairs = []
        for k, item in enumerate(params):
            if isinstance(item, FlatParams):
                pairs.append((item.data, item.grad))
            elif isinstance(item, (tuple, list)) and len(item) == 2:
                pairs.append(tuple(item))
            else:
                raise TypeError(
                    f"{where}[{k}] must be a (param, grad) pair or a FlatParams, got {type(item).__name__}"
                )
        return pairs
    raise TypeError(
        f"{where} must be a FlatParams, a (param, grad) pair, a list of pairs or a list of "
        f"param-group dicts, got {type(params).__name__}"
    )


class Optimizer:
    """Base class: param groups, state, ``step``, ``zero_grad`` and state dicts.

    Subclasses set ``spec`` (see :mod:`fastopt.rules`); everything else is shared.

    Parameters
    ----------
    params : FlatParams, (param, grad) pair, list of pairs, or list of dicts
        What to update. Each param is updated in place from its grad's current
        contents at every :meth:`step`. A list of dicts gives param groups as in
        torch: each dict has ``"params"`` and optional hyperparameter overrides.
        Arrays may be NumPy arrays, torch CPU tensors, or anything exposing the
        buffer protocol; they must be contiguous float32/float64, and params
        writeable.
    **hyperparameters
        The optimizer's hyperparameters (torch.optim's names and defaults).
    """

    spec: Spec

    def __init__(self, params, **hyperparameters):
        spec = self.spec
        unknown = set(hyperparameters) - set(spec.defaults)
        if unknown:
            raise TypeError(f"{type(self).__name__} got unknown hyperparameter(s) {sorted(unknown)}; "
                            f"accepted: {sorted(spec.defaults)}")
        defaults = {**spec.defaults, **hyperparameters}
        self._check_hyperparameters(defaults, "")
        self.defaults = defaults
        self.param_groups: list[dict] = []
        self.state: dict[int, dict] = {}
        self._slots: list[_Slot] = []
        self._scalar = None

        raw_groups = params if isinstance(params, list) and params and all(isinstance(x, dict) for x in params) else None
        if raw_groups is None and isinstance(params, dict):
            raw_groups = [params]
        if raw_groups is None:
            raw_groups = [{"params": params}]
        if not raw_groups:
            raise ValueError("params must not be empty")

        named_buffers = []
        groups, slots, next_id = [], [], 0
        for gi, raw in enumerate(raw_groups):
            where = f"param_groups[{gi}]" if len(raw_groups) > 1 else "params"
            if "params" not in raw:
                raise ValueError(f"{where} has no 'params' entry")
            unknown = set(raw) - set(spec.defaults) - {"params"}
            if unknown:
                raise TypeError(f"{where} has unknown key(s) {sorted(unknown)}")
            group = {**defaults, **{k: v for k, v in raw.items() if k != "params"}}
            self._check_hyperparameters(group, f"{where}: ")
            pairs = _group_pairs(raw["params"], f"{where}['params']" if len(raw_groups) > 1 else "params")
            if not pairs:
                raise ValueError(f"{where} holds no parameters")
            flat_pairs, shapes, ids = [], [], []
            for k, (p, g) in enumerate(pairs):
                label = f"{where}[{k}]" if len(pairs) > 1 or len(raw_groups) > 1 else "params"
                pf, gf = param_grad_pair(p, g, label)
                named_buffers += [(f"{label} param", pf), (f"{label} grad", gf)]
                flat_pairs.append((pf, gf))
                shapes.append(np.shape(p))
                ids.append(next_id)
                next_id += 1
            group["params"] = [p for p, _ in pairs]
            groups.append(group)
            slots.append(_Slot(flat_pairs, shapes, ids))
        check_disjoint(named_buffers)
        self.param_groups, self._slots = groups, slots
        for slot in slots:
            for i in slot.ids:
                self.state[i] = {"step": 0}

    # -- hyperparameters -------------------------------------------------

    def _check_hyperparameters(self, h: dict, prefix: str) -> None:
        spec = self.spec
        for name, check in spec.checks.items():
            check(f"{prefix}{name}", h[name])
        if spec.cross_check is not None:
            try:
                spec.cross_check(h)
            except ValueError as exc:
                raise ValueError(f"{prefix}{exc}") from None

    def _prepare(self, group: dict, slot: _Slot, snapshot: tuple) -> None:
        """(Re)validate a group whose hyperparameters changed and make sure the
        state arrays its variant needs exist."""
        self._check_hyperparameters(group, "")
        variant = self.spec.variant(group)
        states = []
        for i, (p, _) in zip(slot.ids, slot.pairs):
            st = self.state[i]
            for name in variant.state_names:
                if name not in st:
                    fill = self.spec.state_fill.get(name)
                    arr = aligned_zeros(p.size, p.dtype)
                    if fill is not None:
                        arr.fill(fill(group))
                    st[name] = arr
            states.append(tuple(st[name] for name in variant.state_names))
        # Per-step constants travel to the kernel in a small array of the buffer's
        # dtype: refilling it costs far less than building a tuple of numpy scalars.
        n_coefficients = 2 + len(self.spec.coefficients(group, 1))
        slot.coefficients = [np.empty(n_coefficients, p.dtype) for p, _ in slot.pairs]
        slot.kernel = _cpu.cpu_kernel(variant.rule, n_coefficients)
        slot.variant, slot.states, slot.snapshot = variant, states, snapshot

    # -- the step --------------------------------------------------------

    def _gradient_transform(self, group: dict) -> tuple[float, float]:
        """(grad_scale, grad_bound) folded into the update's first multiply."""
        return (-1.0 if group["maximize"] else 1.0), _INF

    def step(self, closure=None):
        """Apply one update to every parameter, in place.

        Parameters
        ----------
        closure : callable, optional
            Re-evaluates the model and returns the loss (called before the update).

        Returns
        -------
        The closure's loss, or None.
        """
        loss = closure() if closure is not None else None
        coefficients, keys = self.spec.coefficients, self._keys
        serial_below = _cpu.SERIAL_BELOW
        for group, slot in zip(self.param_groups, self._slots):
            snapshot = tuple([group[k] for k in keys])
            if snapshot != slot.snapshot:
                self._prepare(group, slot, snapshot)
            kernel = slot.kernel
            head = self._gradient_transform(group)
            cache_step = None
            for i, (p, g), states, c in zip(slot.ids, slot.pairs, slot.states, slot.coefficients):
                st = self.state[i]
                step = st["step"] + 1
                st["step"] = step
                if step != cache_step:
                    values = head + coefficients(group, step)
                    cache_step = step
                c[:] = values
                kernel(p, g, states, c, serial_below)
        return loss

    @property
    def _keys(self) -> tuple[str, ...]:
        return tuple(self.spec.defaults)

    def zero_grad(self, set_to_none: bool = False) -> None:
        """Fill every gradient with zeros, in place (``set_to_none`` is accepted
        for torch compatibility; buffers are always kept)."""
        grads = [(slot, k, g) for slot in self._slots for k, (_, g) in enumerate(slot.pairs)]
        for _, k, g in grads:
            if not g.flags.writeable:
                raise ValueError(f"grad {k} is read-only; zero_grad cannot clear it")
        for _, _, g in grads:
            g.fill(0)

    # -- state dicts -----------------------------------------------------

    def state_dict(self) -> dict:
        """A snapshot of hyperparameters and state (copies, param-shaped), in
        torch's layout: ``{"state": {id: {...}}, "param_groups": [...]}``."""
        shapes = {i: shape for slot in self._slots for i, shape in zip(slot.ids, slot.shapes)}
        state = {
            i: {k: (v.copy().reshape(shapes[i]) if isinstance(v, np.ndarray) else v) for k, v in st.items()}
            for i, st in self.state.items()
        }
        groups = [
            {**{k: v for k, v in g.items() if k != "params"}, "params": list(slot.ids)}
            for g, slot in zip(self.param_groups, self._slots)
        ]
        return {"optimizer": self.spec.name, "state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore a :meth:`state_dict`. Everything is checked before anything
        changes; a mismatch raises ``ValueError`` naming what differs."""
        if not isinstance(state_dict, dict) or "state" not in state_dict or "param_groups" not in state_dict:
            raise ValueError("state_dict must be a dict with 'state' and 'param_groups'")
        name = state_dict.get("optimizer", self.spec.name)
        if name != self.spec.name:
            raise ValueError(f"state_dict is for optimizer {name!r}, not {self.spec.name!r}")
        groups = state_dict["param_groups"]
        if len(groups) != len(self._slots):
            raise ValueError(f"state_dict has {len(groups)} param groups, optimizer has {len(self._slots)}")
        known = {n for names in self._all_state_names() for n in names}
        new_hyper, new_state = [], {}
        for gi, (saved, slot) in enumerate(zip(groups, self._slots)):
            where = f"state_dict param_groups[{gi}]"
            ids = list(saved.get("params", []))
            if len(ids) != len(slot.ids):
                raise ValueError(f"{where} has {len(ids)} params, optimizer has {len(slot.ids)}")
            hyper = {k: v for k, v in saved.items() if k != "params"}
            unknown = set(hyper) - set(self.spec.defaults)
            if unknown:
                raise ValueError(f"{where} has unknown key(s) {sorted(unknown)}")
            self._check_hyperparameters({**self.defaults, **hyper}, f"{where}: ")
            new_hyper.append(hyper)
            for saved_id, my_id, (p, _) in zip(ids, slot.ids, slot.pairs):
                entry = state_dict["state"].get(saved_id, {})
                new_state[my_id] = self._checked_state(entry, p, known, f"state_dict state[{saved_id!r}]")
        for group, hyper in zip(self.param_groups, new_hyper):
            group.update(hyper)
        self.state.update(new_state)
        for slot in self._slots:
            slot.snapshot = None

    @staticmethod
    def _checked_state(entry: dict, p: np.ndarray, known: set, where: str) -> dict:
        """A private copy of one saved per-parameter state, checked against ``p``."""
        if not isinstance(entry, dict):
            raise ValueError(f"{where} must be a dict, got {type(entry).__name__}")
        step = entry.get("step", 0)
        step = step.item() if hasattr(step, "item") else step
        if not isinstance(step, (int, float, np.integer, np.floating)) or step < 0 or step != int(step):
            raise ValueError(f"{where}['step'] must be a non-negative integer, got {step!r}")
        out = {"step": int(step)}
        for key, value in entry.items():
            if key == "step":
                continue
            if key not in known:
                raise ValueError(f"{where} has unknown entry {key!r}; expected some of {sorted(known)}")
            arr = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value)
            if arr.size != p.size:
                raise ValueError(f"{where}[{key!r}] has {arr.size} elements, param has {p.size}")
            if arr.dtype != p.dtype:
                raise ValueError(f"{where}[{key!r}] has dtype {arr.dtype}, param has {p.dtype}")
            copy = aligned_zeros(p.size, p.dtype)
            copy[:] = arr.reshape(-1)
            out[key] = copy
        return out

    def _all_state_names(self):
        flags = [dict(self.defaults, **over) for over in self._variant_probes()]
        return [self.spec.variant(h).state_names for h in flags]

    def _variant_probes(self):
        """Hyperparameter overrides that visit every variant of the spec."""
        probes = [{}]
        for key, value in self.spec.defaults.items():
            if isinstance(value, bool):
                probes += [{**p, key: not value} for p in probes]
        probes += [{**p, "momentum": 0.9} for p in probes if "momentum" in self.spec.defaults]
        return probes

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for k, group in enumerate(self.param_groups):
            lines.append(f"  group {k}: {len(group['params'])} param(s), "
                         + ", ".join(f"{key}={group[key]!r}" for key in self.spec.defaults))
        return "\n".join(lines + [")"])


def _make_signature(spec: Spec) -> inspect.Signature:
    params = [inspect.Parameter("params", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    params += [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v) for k, v in spec.defaults.items()]
    return inspect.Signature(params)


def _optimizer_class(class_name: str, spec_name: str, doc: str) -> type:
    spec = SPECS[spec_name]
    cls = type(class_name, (Optimizer,), {"spec": spec, "__doc__": doc, "__module__": __name__})
    cls.__init__ = _init_with_signature(spec)
    return cls


def _init_with_signature(spec: Spec):
    def __init__(self, params, **hyperparameters):
        Optimizer.__init__(self, params, **hyperparameters)

    __init__.__signature__ = _make_signature(spec)
    return __init__


SGD = _optimizer_class("SGD", "sgd", r"""Stochastic gradient descent with optional (Nesterov) momentum.

    Update for each element, with :math:`g` the gradient (negated if ``maximize``):

    .. math::

        g &\leftarrow g + \lambda p \\
        b_t &= \mu b_{t-1} + (1 - \tau) g \quad (b_1 = g) \\
        d &= g + \mu b_t \text{ if nesterov else } b_t \quad (d = g \text{ if } \mu = 0) \\
        p &\leftarrow p - \eta d

    with :math:`\eta` = ``lr``, :math:`\mu` = ``momentum``, :math:`\tau` =
    ``dampening``, :math:`\lambda` = ``weight_decay``. Same defaults and
    semantics as ``torch.optim.SGD``; see :class:`Optimizer` for ``params``.
    """)

Adagrad = _optimizer_class("Adagrad", "adagrad", r"""Adagrad.

    .. math::

        g &\leftarrow g + \lambda p \\
        \tilde\eta &= \eta / (1 + (t - 1)\,\text{lr\_decay}) \\
        s_t &= s_{t-1} + g^2 \quad (s_0 = \text{initial\_accumulator\_value}) \\
        p &\leftarrow p - \tilde\eta\, g / (\sqrt{s_t} + \epsilon)

    Same defaults and semantics as ``torch.optim.Adagrad``.
    """)

RMSprop = _optimizer_class("RMSprop", "rmsprop", r"""RMSprop, optionally centered and with momentum.

    .. math::

        g &\leftarrow g + \lambda p \\
        v_t &= \alpha v_{t-1} + (1 - \alpha) g^2 \\
        \bar g_t &= \alpha \bar g_{t-1} + (1 - \alpha) g \quad \text{(centered only)} \\
        \tilde v &= v_t - \bar g_t^2 \text{ if centered else } v_t \\
        b_t &= \mu b_{t-1} + g / (\sqrt{\tilde v} + \epsilon) \quad \text{(if } \mu > 0) \\
        p &\leftarrow p - \eta\, b_t \text{ if } \mu > 0 \text{ else } p - \eta\, g / (\sqrt{\tilde v} + \epsilon)

    Same defaults and semantics as ``torch.optim.RMSprop``.
    """)

Adadelta = _optimizer_class("Adadelta", "adadelta", r"""Adadelta.

    .. math::

        g &\leftarrow g + \lambda p \\
        v_t &= \rho v_{t-1} + (1 - \rho) g^2 \\
        \Delta &= \sqrt{u_{t-1} + \epsilon} / \sqrt{v_t + \epsilon} \cdot g \\
        u_t &= \rho u_{t-1} + (1 - \rho) \Delta^2 \\
        p &\leftarrow p - \eta \Delta

    Same defaults and semantics as ``torch.optim.Adadelta``.
    """)

Adam = _optimizer_class("Adam", "adam", r"""Adam (with L2 weight decay added to the gradient), optionally AMSGrad.

    .. math::

        g &\leftarrow g + \lambda p \\
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g \\
        v_t &= \beta_2 v_{t-1} + (1 - \beta_2) g^2 \\
        \hat v_t &= \max(\hat v_{t-1}, v_t) \text{ if amsgrad else } v_t \\
        p &\leftarrow p - \frac{\eta}{1 - \beta_1^t} \cdot
             \frac{m_t}{\sqrt{\hat v_t} / \sqrt{1 - \beta_2^t} + \epsilon}

    Same defaults and semantics as ``torch.optim.Adam``.
    """)

AdamW = _optimizer_class("AdamW", "adamw", r"""AdamW: Adam with decoupled weight decay.

    .. math::

        p &\leftarrow p\,(1 - \eta\lambda) \\
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g \\
        v_t &= \beta_2 v_{t-1} + (1 - \beta_2) g^2 \\
        p &\leftarrow p - \frac{\eta}{1 - \beta_1^t} \cdot
             \frac{m_t}{\sqrt{\hat v_t} / \sqrt{1 - \beta_2^t} + \epsilon}

    (:math:`\hat v_t` as in :class:`Adam`.) Default ``weight_decay=1e-2``; same
    semantics as ``torch.optim.AdamW``.
    """)

OPTIMIZERS: dict[str, type] = {cls.spec.name: cls for cls in (SGD, Adagrad, RMSprop, Adadelta, Adam, AdamW)}
"""Registry name -> optimizer class."""
