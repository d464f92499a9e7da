"""The optimizer API: torch.optim's names, defaults and semantics, driving one
fused kernel call per contiguous buffer, plus the training-loop options that
fold into that same pass (clipping, non-finite guard, accumulation, EMA)."""

from __future__ import annotations

import contextlib
import inspect
import math
import operator
import warnings

import numpy as np

from ._groups import build_groups
from .clip import CLIP_EPS
from .rules import SPECS, Spec
from .rules._common import plain_floats

NONFINITE_POLICIES = ("skip", "raise", "ignore")


class NonFiniteGradientError(FloatingPointError):
    """Raised by ``step()`` with ``nonfinite="raise"``; nothing was changed."""


def _positive_or_none(name: str, value) -> float | None:
    if value is None:
        return None
    x = float(value)
    if not x > 0 or math.isinf(x):
        raise ValueError(f"{name} must be a positive finite number or None, got {value!r}")
    return x


class Optimizer:
    """Base class: param groups, state, ``step``, ``zero_grad`` and state dicts.

    Subclasses set ``spec`` (see :mod:`fastopt.rules`); everything else is shared.

    Parameters
    ----------
    params : FlatParams, (param, grad) pair, list of pairs, or list of dicts
        What to update. Each param is updated in place from its grad's current
        contents at every :meth:`step`. A list of dicts gives param groups as in
        torch: each dict has ``"params"`` and optional hyperparameter overrides.
        Arrays may be NumPy arrays, torch tensors, or anything exposing the
        buffer protocol (or, with the CUDA backend, GPU arrays); they must be
        contiguous float32/float64, and params writeable.
    max_grad_norm : float, optional
        Clip the global L2 norm of all gradients to this value (torch's
        ``clip_grad_norm_`` formula). One read-only reduction pass computes the
        norm; the clip factor is folded into the update pass.
    max_grad_value : float, optional
        Clamp every gradient element to ``[-v, v]`` inside the update pass.
    nonfinite : {"skip", "raise", "ignore"}, optional
        What to do when a gradient holds NaN or inf. ``"skip"``: leave params and
        state bit-identical, count it in ``skipped_steps`` and warn once;
        ``"raise"``: raise :class:`NonFiniteGradientError` (nothing changed);
        ``"ignore"``: apply the step as is. Default: ``"skip"`` when a reduction
        pass runs anyway (``max_grad_norm`` set, or under a
        :class:`~fastopt.LossScaler`), else ``"ignore"`` so that a plain step
        stays one pass over memory.
    accumulate : int, optional
        Apply the mean of ``accumulate`` micro-batch gradients every
        ``accumulate``-th call of :meth:`step` (the gradients accumulate in the
        grad buffers; :meth:`zero_grad` only clears them after an applied step).
    ema_decay : float, optional
        Keep an exponential moving average of the params, updated in the same
        kernel pass: ``ema = d * ema + (1 - d) * p``. See :meth:`swap_ema`.
    **hyperparameters
        The optimizer's hyperparameters (torch.optim's names and defaults).
    """

    spec: Spec

    def __init__(self, params, *, max_grad_norm=None, max_grad_value=None, nonfinite=None,
                 accumulate=1, ema_decay=None, **hyperparameters):
        spec = self.spec
        unknown = set(hyperparameters) - set(spec.defaults)
        if unknown:
            raise TypeError(f"{type(self).__name__} got unknown argument(s) {sorted(unknown)}; "
                            f"hyperparameters: {sorted(spec.defaults)}")
        self.max_grad_norm = _positive_or_none("max_grad_norm", max_grad_norm)
        self.max_grad_value = _positive_or_none("max_grad_value", max_grad_value)
        if nonfinite is not None and nonfinite not in NONFINITE_POLICIES:
            raise ValueError(f"nonfinite must be one of {NONFINITE_POLICIES} or None, got {nonfinite!r}")
        self.nonfinite = nonfinite
        if isinstance(accumulate, bool) or not isinstance(accumulate, (int, np.integer)) or accumulate < 1:
            raise ValueError(f"accumulate must be an int >= 1, got {accumulate!r}")
        self.accumulate = int(accumulate)
        if ema_decay is not None:
            d = float(ema_decay)
            if not 0.0 <= d < 1.0:
                raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay!r}")
            ema_decay = d
        self.ema_decay = ema_decay
        defaults = {**spec.defaults, **hyperparameters}
        self._check_hyperparameters(defaults, "")
        self.defaults = defaults
        self.param_groups, self._slots = build_groups(params, defaults, self._check_hyperparameters)
        self.state: dict[int, dict] = {i: {"step": 0} for slot in self._slots for i in slot.ids}
        self._keys = tuple(spec.defaults)
        self._snapshot_of = operator.itemgetter(*self._keys)  # a group's hyperparameters, as one tuple
        self.skipped_steps = 0
        self.last_grad_norm: float | None = None
        self._pending = 0
        self._warned_nonfinite = False
        if ema_decay is not None:
            for slot in self._slots:
                for i, (p, _) in zip(slot.ids, slot.pairs):
                    ema = slot.backend.zeros(p.size, p.dtype)
                    slot.backend.copy_(ema, p)
                    self.state[i]["ema"] = ema
        # State is allocated up front (zeros, or the optimizer's initial value),
        # so that a skipped first step leaves it exactly as it was.
        for group, slot in zip(self.param_groups, self._slots):
            self._prepare(group, slot, self._snapshot_of(group))

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

    def _prepare(self, group: dict, slot, snapshot: tuple) -> None:
        """(Re)validate a group whose hyperparameters changed, make sure the
        state arrays its variant needs exist, and pick its compiled kernel."""
        self._check_hyperparameters(group, "")
        # The kernels read a private copy with every number a Python float: a
        # user's int or NumPy scalar of equal value leaves the snapshot equal,
        # so it must never reach the per-step values.
        slot.hyper = plain_floats({k: group[k] for k in self._keys})
        variant = self.spec.variant(slot.hyper)
        with_ema = self.ema_decay is not None
        states = []
        for i, (p, _) in zip(slot.ids, slot.pairs):
            st = self.state[i]
            for name in variant.state_names:
                if name not in st:
                    fill = self.spec.state_fill.get(name)
                    st[name] = slot.backend.zeros(p.size, p.dtype, fill(slot.hyper) if fill else 0.0)
            names = variant.state_names + (("ema",) if with_ema else ())
            states.append(tuple(st[name] for name in names))
        n_coefficients = 2 + len(self.spec.coefficients(slot.hyper, 1, {}))
        custom = self.spec.launcher
        by_dtype: dict = {}  # pairs of one dtype share a launcher (and its constants buffer)
        launches = []
        for (p, _), ranges in zip(slot.pairs, slot.segments):
            if custom is not None:
                launches.append(custom(slot.backend, variant, n_coefficients, p.dtype, with_ema, ranges))
                continue
            if p.dtype not in by_dtype:
                by_dtype[p.dtype] = slot.backend.launcher(variant.rule, n_coefficients, p.dtype, with_ema)
            launches.append(by_dtype[p.dtype])
        slot.launches = launches
        slot.variant, slot.states, slot.snapshot = variant, states, snapshot

    # -- the step --------------------------------------------------------

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
        self._step(1.0, None)
        return loss

    def _step(self, unscale: float, forced_policy: str | None) -> bool:
        """The update, with gradients multiplied by ``unscale``. Returns whether
        it was applied (False while accumulating or when a non-finite gradient
        made it skip). A ``forced_policy`` (the loss scaler's) skips quietly:
        there, overflow is expected and handled by backing off the scale."""
        snapshot_of = self._snapshot_of
        for group, slot in zip(self.param_groups, self._slots):
            # Every group is (re)validated before any array is touched.
            snapshot = snapshot_of(group)
            if snapshot != slot.snapshot:
                self._prepare(group, slot, snapshot)
        if self.accumulate > 1:
            self._pending += 1
            if self._pending < self.accumulate:
                return False
            self._pending = 0
            unscale /= self.accumulate
        scale = unscale
        policy = forced_policy or self.nonfinite or ("ignore" if self.max_grad_norm is None else "skip")
        if policy != "ignore" or self.max_grad_norm is not None:
            sum_sq = self._grad_sum_of_squares()
            if not math.isfinite(sum_sq) and policy != "ignore" and not self._grads_finite():
                return self._handle_nonfinite(policy, quiet=forced_policy is not None)
            norm = math.sqrt(sum_sq) * scale
            self.last_grad_norm = norm
            if self.max_grad_norm is not None and norm > self.max_grad_norm:
                scale *= self.max_grad_norm / (norm + CLIP_EPS)
        bound = math.inf if self.max_grad_value is None else self.max_grad_value
        tail = () if self.ema_decay is None else (self.ema_decay, 1.0 - self.ema_decay)
        coefficients, state = self.spec.coefficients, self.state
        for slot in self._slots:
            hyper = slot.hyper
            head = (-scale if hyper["maximize"] else scale, bound)
            for i, (p, g), states, launch in zip(slot.ids, slot.pairs, slot.states, slot.launches):
                st = state[i]
                step = st["step"] + 1
                st["step"] = step
                launch(p, g, states, head + coefficients(hyper, step, st) + tail)
        return True

    def _grad_sum_of_squares(self) -> float:
        return sum(slot.backend.sum_of_squares(g) for slot in self._slots for _, g in slot.pairs)

    def _grads_finite(self) -> bool:
        # Only reached when the sum of squares is not finite: tells a real
        # NaN/inf apart from float64 overflow of huge-but-finite gradients.
        return all(slot.backend.all_finite(g) for slot in self._slots for _, g in slot.pairs)

    def _handle_nonfinite(self, policy: str, quiet: bool) -> bool:
        if policy == "raise":
            raise NonFiniteGradientError("gradients contain NaN or inf; the step was not applied")
        self.skipped_steps += 1
        if not (self._warned_nonfinite or quiet):
            warnings.warn("fastopt: non-finite gradient, step skipped (params and state unchanged); "
                          "further skips are counted in optimizer.skipped_steps", RuntimeWarning, stacklevel=4)
            self._warned_nonfinite = True
        return False

    def zero_grad(self, set_to_none: bool = False) -> None:
        """Fill every gradient with zeros, in place. While gradients are being
        accumulated (``accumulate > 1``, mid-cycle) this does nothing.
        ``set_to_none`` is accepted for torch compatibility; buffers are kept."""
        if self._pending:
            return
        grads = [(slot, k, g) for slot in self._slots for k, (_, g) in enumerate(slot.pairs)]
        for slot, k, g in grads:
            if slot.backend.name == "cpu" and not g.flags.writeable:
                raise ValueError(f"grad {k} is read-only; zero_grad cannot clear it")
        for slot, _, g in grads:
            slot.backend.fill_(g, 0.0)

    # -- parameter EMA ---------------------------------------------------

    def swap_ema(self) -> None:
        """Exchange the params with their EMA (call again to swap back)."""
        if self.ema_decay is None:
            raise ValueError("this optimizer keeps no EMA; construct it with ema_decay=...")
        for slot in self._slots:
            for i, (p, _) in zip(slot.ids, slot.pairs):
                ema = self.state[i]["ema"]
                held = slot.backend.to_host(p)
                slot.backend.copy_(p, ema)
                slot.backend.copy_(ema, held)

    @contextlib.contextmanager
    def ema_weights(self):
        """Context manager: the params hold their EMA inside the block."""
        self.swap_ema()
        try:
            yield self
        finally:
            self.swap_ema()

    # -- state dicts -----------------------------------------------------

    def state_dict(self) -> dict:
        """A snapshot of hyperparameters and state (host copies, param-shaped),
        in torch's layout: ``{"state": {id: {...}}, "param_groups": [...]}``."""
        state = {}
        for slot in self._slots:
            for i, shape in zip(slot.ids, slot.shapes):
                state[i] = {k: (v if k == "step" or isinstance(v, (int, float)) else
                                slot.backend.to_host(v).reshape(shape))
                            for k, v in self.state[i].items()}
        groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": list(slot.ids)}
                  for g, slot in zip(self.param_groups, self._slots)]
        return {"optimizer": self.spec.name, "state": state, "param_groups": groups,
                "skipped_steps": self.skipped_steps, "pending": self._pending}

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
        known = self._known_state_names()
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
            for saved_id, my_id, (p, _), shape in zip(ids, slot.ids, slot.pairs, slot.shapes):
                entry = state_dict["state"].get(saved_id, {})
                new_state[my_id] = self._checked_state(entry, p, shape, slot.backend, known,
                                                       f"state_dict state[{saved_id!r}]")
        pending = int(state_dict.get("pending", 0))
        if not 0 <= pending < self.accumulate:
            raise ValueError(f"state_dict 'pending' must be in [0, {self.accumulate}), got {pending}")
        for group, hyper in zip(self.param_groups, new_hyper):
            group.update(hyper)
        for my_id, st in new_state.items():
            if self.ema_decay is not None and "ema" not in st:
                st["ema"] = self.state[my_id]["ema"]
            self.state[my_id] = st
        self.skipped_steps = int(state_dict.get("skipped_steps", self.skipped_steps))
        self._pending = pending
        for slot in self._slots:
            slot.snapshot = None

    @staticmethod
    def _checked_state(entry: dict, p, shape: tuple, backend, known: set, where: str) -> dict:
        """A private copy of one saved per-parameter state, checked against ``p``."""
        if not isinstance(entry, dict):
            raise ValueError(f"{where} must be a dict, got {type(entry).__name__}")
        step = entry.get("step", 0)
        step = step.item() if hasattr(step, "item") else step
        if isinstance(step, bool) or not isinstance(step, (int, float, np.integer, np.floating)) \
                or not step >= 0 or step != int(step):
            raise ValueError(f"{where}['step'] must be a non-negative integer, got {step!r}")
        out = {"step": int(step)}
        for key, value in entry.items():
            if key == "step":
                continue
            if key not in known:
                raise ValueError(f"{where} has unknown entry {key!r}; expected some of {sorted(known)}")
            if isinstance(value, float):
                out[key] = value
                continue
            arr = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value)
            if arr.shape != shape and arr.shape != (p.size,):
                raise ValueError(f"{where}[{key!r}] has shape {arr.shape}, param has {shape}")
            if arr.dtype != p.dtype:
                raise ValueError(f"{where}[{key!r}] has dtype {arr.dtype}, param has {p.dtype}")
            copy = backend.zeros(p.size, p.dtype)
            backend.copy_(copy, arr.reshape(-1))
            out[key] = copy
        return out

    def _known_state_names(self) -> set:
        """Every state entry any variant of this optimizer can hold."""
        names = {"ema"} | set(self.spec.host_state)
        probes = [dict(self.defaults)]
        for key, value in self.spec.defaults.items():
            if isinstance(value, bool):
                probes += [{**h, key: not value} for h in probes]
        if "momentum" in self.spec.defaults:
            probes += [{**h, "momentum": 0.9, "nesterov": False} for h in probes]
        for h in probes:
            names.update(self.spec.variant(h).state_names)
        return names

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for k, group in enumerate(self.param_groups):
            lines.append(f"  group {k}: {len(group['params'])} param(s), "
                         + ", ".join(f"{key}={group[key]!r}" for key in self.spec.defaults))
        return "\n".join(lines + [")"])


def _optimizer_class(spec: Spec) -> type:
    """The public class for one registered optimizer (name, docstring and
    signature come from its spec)."""
    def __init__(self, params, **kwargs):
        Optimizer.__init__(self, params, **kwargs)

    base = inspect.signature(Optimizer.__init__).parameters
    options = [base[k] for k in ("max_grad_norm", "max_grad_value", "nonfinite", "accumulate", "ema_decay")]
    __init__.__signature__ = inspect.Signature(
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
         inspect.Parameter("params", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        + [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v) for k, v in spec.defaults.items()]
        + options)
    return type(spec.class_name, (Optimizer,), {"spec": spec, "__doc__": spec.doc, "__module__": __name__,
                                                 "__init__": __init__})


OPTIMIZERS: dict[str, type] = {name: _optimizer_class(spec) for name, spec in SPECS.items()}
"""Registry name -> optimizer class."""

SGD = OPTIMIZERS["sgd"]
Adagrad = OPTIMIZERS["adagrad"]
RMSprop = OPTIMIZERS["rmsprop"]
Adadelta = OPTIMIZERS["adadelta"]
Adam = OPTIMIZERS["adam"]
AdamW = OPTIMIZERS["adamw"]
