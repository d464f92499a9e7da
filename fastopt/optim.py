"""The optimizer API: torch.optim's names, defaults and semantics, driving one
fused kernel call per contiguous buffer, plus the training-loop options that
fold into that same pass (clipping, non-finite guard, accumulation, EMA)."""

from __future__ import annotations

import contextlib
import inspect
import math
import warnings
from collections.abc import Iterable

import numpy as np

from . import _state_io
from ._groups import build_groups
from ._guard import NONFINITE_POLICIES, NonFiniteGradientError, guarded_scale
from ._layout import chains_of, launcher, lay_out_chain, scattered_launcher
from ._plan import ALL, GroupPlan, ParamGroup, ParamGroups, hyperparameters, refresh
from ._precision import MASTER, Precision
from .backends.bits import stream_values
from .backends.codecs import BFLOAT16, bfloat16_to_float32, float32_to_bfloat16
from .rules import SPECS, Spec

__all__ = ["OPTIMIZERS", "NONFINITE_POLICIES", "NonFiniteGradientError", "Optimizer"]


def _positive_or_none(name: str, value) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a positive number or None, got {value!r}")
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
        contiguous float32/float64, and params writeable. (For torch models,
        :mod:`fastopt.torch` takes ``model.parameters()`` directly.)
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
        ``"ignore"``: apply the step as is (NaN reaches the params). Default:
        ``"skip"`` when a reduction pass runs anyway (``max_grad_norm`` set, or
        under a :class:`~fastopt.LossScaler`), else ``"ignore"``, so that a plain
        step stays one pass over memory.
    accumulate : int, optional
        Apply the mean of ``accumulate`` micro-batch gradients every
        ``accumulate``-th call of :meth:`step`: call ``step()`` after every
        micro-batch's backward; the gradients accumulate in the grad buffers
        and :meth:`zero_grad` only clears them after an applied step.
    ema_decay : float, optional
        Keep an exponential moving average of the params, updated in the same
        kernel pass: ``ema = d * ema + (1 - d) * p``. See :meth:`swap_ema`.
    state_dtype : {"float32", "float64", "bfloat16", "int8"}, optional
        Storage of the optimizer state (default: the params' dtype; float32
        for bfloat16 params); the math is done in float32 either way.
        ``"bfloat16"`` halves the bytes each step moves for the state (Adam:
        20 bytes per element instead of 28): values round to nearest even
        when stored (running maxima round up; Adamax's infinity norm and
        Adagrad's sum round stochastically). ``"int8"``: 8-bit block floats
        (blocks of 256 with a power-of-two float32 scale; moments as signed
        1-4-3 minifloats, second moments as the square root in an unsigned
        zero-less 4-4 minifloat; stochastic rounding, running maxima up):
        Adam moves 16 bytes per element plus the scales and holds 2.03 bytes
        of state per parameter. Buffers under 4096 elements keep float32
        state; LAMB refuses ``"int8"``.
    stochastic_rounding : bool, optional
        Round bfloat16 states (and bfloat16 params) stochastically instead,
        so that small updates are not lost on average; the random bits come
        from ``rounding_seed``, the step and the element's position, so a run
        is reproducible. Running maxima (AMSGrad) still round up. int8
        states always round stochastically.
    rounding_seed : int, optional
        Seed of the stochastic rounding (default 0).
    master_weights : bool, optional
        For bfloat16 params (``ml_dtypes.bfloat16`` arrays, torch bfloat16
        tensors; default True there): keep a float32 master copy in the state
        (``master_param``) and write the bfloat16 params from it in the same
        pass.
    capturable : bool, optional
        GPU buffers only: keep the step counts and compute the per-step
        coefficients on the device, so that a step launches kernels and never
        waits for the host, and can be recorded in a CUDA graph. On the GPU a
        clipped or guarded step (``max_grad_norm``, ``nonfinite="skip"``) runs
        this way whatever ``capturable`` says: the clip factor and the
        non-finite flag never leave the device (``skipped_steps``,
        ``last_grad_norm`` and ``state_dict()`` read them back when asked).
    **hyperparameters
        The optimizer's hyperparameters (torch.optim's names and defaults).
    """

    spec: Spec

    def __init__(self, params, *, max_grad_norm=None, max_grad_value=None, nonfinite=None,
                 accumulate=1, ema_decay=None, state_dtype=None, stochastic_rounding=False, rounding_seed=0,
                 master_weights=None, capturable=False, **hyperparameters):
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
            if isinstance(ema_decay, bool) or not isinstance(ema_decay, (int, float, np.integer, np.floating)):
                raise TypeError(f"ema_decay must be a number in [0, 1) or None, got {ema_decay!r}")
            d = float(ema_decay)
            if not 0.0 <= d < 1.0:
                raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay!r}")
            ema_decay = d
        self.ema_decay = ema_decay
        if not isinstance(capturable, (bool, np.bool_)):
            raise TypeError(f"capturable must be a bool, got {capturable!r}")
        self.capturable = bool(capturable)
        self.precision = Precision.checked(state_dtype, stochastic_rounding, rounding_seed, master_weights)
        defaults = {**spec.defaults, **hyperparameters}
        self._check_hyperparameters(defaults, "")
        self.defaults = defaults
        groups, buffers, backend = build_groups(params, defaults, self._check_hyperparameters)
        self.precision.check_params(any(_is_bfloat16(b) for bufs in buffers for b in bufs), spec)
        self._dirty = [True]
        self._layout_keys = spec.layout_keys
        self._fast_refresh = spec.cross_check is None
        self._write_through = {k: v for k, v in spec.checks.items() if k not in self._layout_keys}
        self.param_groups = [ParamGroup(group, self._dirty) for group in groups]
        self._plans = [GroupPlan(backend, b, chains_of(b)) for b in buffers]
        self.state: dict[int, dict] = {}
        for plan in self._plans:
            for b in plan.buffers:
                self.state[b.id] = {"step": 0, **dict(spec.carry)}
                if _is_bfloat16(b):
                    self.state[b.id][MASTER] = _master_copy(plan.backend, b)
        self._skipped = self._skip_base = 0
        self._device_guarded = False
        self._last_norm: float | None = None
        self._pending = 0
        self._warned_nonfinite = False
        if ema_decay is not None:
            for plan in self._plans:
                for b in plan.buffers:
                    source = self._updated(b)
                    ema = plan.backend.zeros(source.size, source.dtype)
                    plan.backend.copy_(ema, source)
                    self.state[b.id]["ema"] = ema
        bfloat16_params = any(_is_bfloat16(b) for p in self._plans for b in p.buffers)
        self._keyed = self.precision.needs_key(spec, bfloat16_params)
        self._device = self._device_steps(backend)
        # What reading gradients in place needs and the optimizer's life cannot change.
        self._scatterable = (self._device is None and not bfloat16_params and spec.segmented is None
                             and self.precision.state_dtype != "int8"
                             and all(hasattr(p.backend, "scattered_launcher") for p in self._plans))
        # State is allocated up front (zeros, or the optimizer's initial value),
        # so that a skipped first step leaves it exactly as it was.
        self._refresh_plans()

    def _device_steps(self, backend):
        """The device-resident step state, when steps run that way (see ``capturable``)."""
        guarded = self.nonfinite != "raise" and (self.max_grad_norm is not None or self.nonfinite == "skip")
        if backend.name != "cuda":
            if self.capturable:
                raise ValueError("capturable=True needs GPU arrays (it keeps the step count on the device); "
                                 "these params are host arrays")
            return None
        if not (self.capturable or guarded):
            return None
        bound = math.inf if self.max_grad_value is None else self.max_grad_value
        return backend.device_steps(self.spec, [plan.buffers for plan in self._plans], bound,
                                    self.ema_decay or 0.0, self.precision.rounding_seed)

    # -- hyperparameters and the step plan ---------------------------------

    def _check_hyperparameters(self, h: dict, prefix: str) -> None:
        spec = self.spec
        for name, check in spec.checks.items():
            check(f"{prefix}{name}", h[name])
        if spec.cross_check is not None:
            try:
                spec.cross_check(hyperparameters(spec, h))
            except ValueError as exc:
                raise ValueError(f"{prefix}{exc}") from None

    @property
    def param_groups(self) -> list:
        """The param groups, as in torch: a list of dicts with ``"params"`` and
        the hyperparameters (write a value any time: the next step reads it)."""
        return self._param_groups

    @param_groups.setter
    def param_groups(self, groups) -> None:
        self._param_groups = ParamGroups(groups, self._dirty)
        self._dirty[0] = True

    def _refresh_plans(self) -> None:
        """Bring every group's plan up to date with its dict (only what changed
        is read; nothing when no group was touched). Every group is validated
        before any array is touched; a changed variant re-plans."""
        if not self._dirty[0]:
            return
        groups = self._param_groups
        if len(groups) != len(self._plans):
            raise ValueError(f"param_groups has {len(groups)} groups, the optimizer was built with "
                             f"{len(self._plans)}; groups cannot be added or removed")
        for k, (plan, group) in enumerate(zip(self._plans, groups)):
            if group is not plan.group or group.changed:
                self._refresh(k, plan, group)
        self._dirty[0] = False

    def _refresh(self, k: int, plan: GroupPlan, group) -> None:
        changed = group.changed if type(group) is ParamGroup else ALL
        if changed is not ALL and group is plan.group and self._fast_refresh and not (changed & self._layout_keys):
            # A scheduler's write: check the changed values, update the record.
            hyper, checks = plan.hyper, self.spec.checks
            try:
                for key in changed:
                    check = checks.get(key)
                    if check is not None:
                        setattr(hyper, key, check(key, group[key]))  # a check returns the value as kernels see it
            except (TypeError, ValueError) as exc:
                if len(self._plans) > 1:
                    raise type(exc)(f"param_groups[{k}]: {exc}") from None
                raise
            changed.clear()
            if self._device is not None:
                self._device.set_hyperparameters(k, hyper)
            return
        group.record = None
        if type(group) is not ParamGroup or group.dirty is not self._dirty:  # the user put a plain dict there
            group = ParamGroup(group, self._dirty)
            list.__setitem__(self._param_groups, k, group)
        try:
            hyper = refresh(self.spec, plan, group)
        except (TypeError, ValueError) as exc:
            if len(self._plans) > 1:
                raise type(exc)(f"param_groups[{self._plans.index(plan)}]: {exc}") from None
            raise
        variant = self.spec.variant(hyper)
        if variant is not plan.variant or not plan.laid_out:
            self._lay_out(k, plan, hyper, variant)
        plan.hyper, plan.variant, plan.group = hyper, variant, group
        if group.changed is ALL:
            group.changed = set()
        else:
            group.changed.clear()
        if self._device is not None:
            self._device.set_hyperparameters(k, hyper)
        elif self._fast_refresh:
            # Later writes of coefficient-only values go straight into the record.
            group.checks, group.record = self._write_through, hyper

    def _lay_out(self, k: int, plan: GroupPlan, hyper, variant) -> None:
        """Allocate the state ``variant`` needs and prepare the group's launches."""
        plan.variant = variant
        for chain in plan.chains:
            lay_out_chain(self, chain, plan, hyper, variant)
        plan.laid_out = True
        entries = [self.state[b.id] for b in plan.buffers]
        plan.lockstep = not self.spec.carry and len({st["step"] for st in entries}) == 1
        device = self._device
        if device is not None:
            if not all(chain.lockstep() for chain in plan.chains):
                raise ValueError("device-resident steps (capturable, or a guarded step on the GPU) need every "
                                 "tensor of a ParamChain at the same step")
            device.set_state(k, [st["step"] for st in entries],
                             [[st[name] for name in self.spec.carry_names] for st in entries])

    def _launcher(self, k: int, plan: GroupPlan, chain, i: int, j: int):
        """``launch(values)`` over buffers ``i..j-1`` of ``chain``."""
        row = None
        if self._device is not None:
            row = self._device.row(k, plan.buffers.index(chain.buffers[i]))
        return launcher(self, plan, chain, i, j, row)

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
        self.apply_step()
        return loss

    def reads_grads_in_place(self) -> bool:
        """Whether :meth:`apply_step` can read each gradient where it lies
        (``grads=``): host buffers with float params and float states, an
        element-wise rule (not LAMB), every param at the same step, no
        gradient accumulation, no stochastic rounding, and no pass over the
        gradients before the update (no ``max_grad_norm``, no non-finite scan)."""
        self._refresh_plans()
        plain = self.nonfinite == "ignore" or (self.nonfinite is None and self.max_grad_norm is None)
        if not (self._scatterable and plain) or self.accumulate > 1 or self._keyed:
            return False
        return all(plan.lockstep for plan in self._plans)

    def apply_step(self, grad_scale: float = 1.0, nonfinite: str | None = None, warn: bool = True,
                   active=None, grads=None) -> bool:
        """The update, with every gradient multiplied by ``grad_scale`` inside
        the fused pass (no extra pass over the gradients).

        This is the hook a loss scaler uses (:class:`~fastopt.LossScaler`:
        ``grad_scale = 1 / scale``, ``nonfinite="skip"``, ``warn=False``, since
        there an overflow is expected and handled by backing off the scale).

        Parameters
        ----------
        grad_scale : float
            Gradient multiplier (unscaling, averaging over workers...).
        nonfinite : {"skip", "raise", "ignore"}, optional
            Overrides the optimizer's policy for this step.
        warn : bool
            Warn (once) when a non-finite gradient skips a step.
        active : collection of int, optional
            Step only these params (their keys in ``state``); the others keep
            their state and step count, as torch.optim skips a parameter whose
            gradient is None. Default: all.
        grads : mapping, optional
            Param key -> the address of its gradient (contiguous, the param's
            dtype and size, in host memory, alive for the call): the update
            reads the gradients there instead of from the buffers' gradient
            arrays, which are left alone. Every param needs one, and only
            where :meth:`reads_grads_in_place` is True (ValueError otherwise,
            before anything changes). The addresses themselves cannot be
            checked: a wrong one reads the wrong memory (a low-level hook). This is how :mod:`fastopt.torch` reads
            the new ``.grad`` tensors of torch's default loop without copying
            them.

        Returns
        -------
        bool
            Whether the update was applied (False while accumulating, or when a
            non-finite gradient made it skip).
        """
        self._refresh_plans()
        active = self._checked_active(active)
        if grads is not None:
            self._check_grads(grads, active, nonfinite)
        if self.accumulate > 1:
            self._pending += 1
            if self._pending < self.accumulate:
                return False
            self._pending = 0
            grad_scale /= self.accumulate
        policy = nonfinite or self.nonfinite
        if self._device is not None and policy != "raise":
            if active is not None and len(active) < len(self.state):
                raise ValueError("active= (skipping params) is not available with device-resident steps")
            return self._device_step(grad_scale, policy)
        if policy == "ignore" or (policy is None and self.max_grad_norm is None):
            scale = grad_scale  # a plain step stays one pass over memory
        else:
            scale, norm = guarded_scale(self._stepped_grads(active), grad_scale, self.max_grad_norm,
                                        policy or "skip")
            self._last_norm = norm
            if scale is None:
                return self._nonfinite(policy or "skip", warn)
        bound = math.inf if self.max_grad_value is None else self.max_grad_value
        decay = self.ema_decay
        wrappers = (bound, 0.0, 1.0) if decay is None else (bound, decay, 1.0 - decay)
        keyed = self._keyed
        coefficients = self.spec.coefficients
        for k, plan in enumerate(self._plans):
            sign = -scale if plan.hyper.maximize else scale
            if plan.lockstep and active is None and not keyed:
                # Every param of the group is at the same step (the usual
                # case): coefficients once per group and step, one launch per chain.
                step = plan.chains[0].entries[0]["step"] + 1
                values = (sign, *wrappers, 0.0, 0.0, 0.0, 0.0) + coefficients(plan.hyper, step, ())[0]
                for chain in plan.chains:
                    for st in chain.entries:
                        st["step"] = step
                    if grads is None:
                        (chain.full or self._full_launcher(k, plan, chain))(values)
                    else:
                        launch = chain.launchers.get("scattered") or scattered_launcher(self, plan, chain)
                        launch(values, [grads[b.id] for b in chain.buffers])
            else:
                self._launch_runs(k, plan, (sign, *wrappers), active, keyed)
        return True

    def _check_grads(self, grads, active, nonfinite) -> None:
        if active is not None or nonfinite not in (None, "ignore") or not self.reads_grads_in_place():
            raise ValueError("grads= (reading gradients where they lie) needs every param stepping and a plain "
                             "step: see Optimizer.reads_grads_in_place()")
        missing = [key for key in self.state if key not in grads]
        if missing:
            raise ValueError(f"grads has no gradient address for param key(s) {missing[:5]}")

    def _checked_active(self, active) -> set | None:
        """``active`` as a set of keys of ``state``; TypeError/ValueError naming
        it (before anything changes) when it is not a collection of those keys."""
        if active is None:
            return None
        if isinstance(active, (str, bytes, dict)) or not isinstance(active, Iterable):
            raise TypeError(f"active must be a collection of param keys (the int keys of optimizer.state) "
                            f"or None, got {type(active).__name__}")
        keys = set()
        for key in active:
            if isinstance(key, (bool, np.bool_)) or not isinstance(key, (int, np.integer)):
                raise TypeError(f"active must hold param keys (the int keys of optimizer.state), not a mask or "
                                f"other values; got {key!r}")
            if int(key) not in self.state:
                raise ValueError(f"active holds {key!r}, which is not a param key of this optimizer "
                                 f"(keys {min(self.state)}..{max(self.state)})")
            keys.add(int(key))
        return keys

    def _full_launcher(self, k: int, plan: GroupPlan, chain):
        chain.full = self._launcher(k, plan, chain, 0, len(chain.buffers))
        return chain.full

    def _stepped_grads(self, active) -> list:
        """``(backend, grad array)`` of every gradient this step reads."""
        out = []
        for plan in self._plans:
            for chain in plan.chains:
                if active is None:
                    a, b = chain.span
                    g = chain.g if (a, b) == (0, chain.g.size) else chain.g[a:b]
                    out.append((plan.backend, g))
                else:
                    out += [(plan.backend, buf.g) for buf in chain.buffers if buf.id in active]
        return out

    def _launch_runs(self, k: int, plan: GroupPlan, head: tuple, active, keyed: bool) -> None:
        """The group's launches when not every param steps together: one per
        run of consecutive params of a chain that step and share (step,
        carried scalars); coefficients per distinct (step, carry). Each
        launch's values carry its stream seed and step when a storage rounds
        stochastically (see :mod:`fastopt.backends.bits`)."""
        names, coefficients = self.spec.carry_names, self.spec.coefficients
        seed = self.precision.rounding_seed
        last = None
        for chain_index, chain in enumerate(plan.chains):
            for i, j in list(chain.runs(active, names)):
                st = chain.entries[i]
                step = st["step"] + 1
                carry = tuple(st[name] for name in names)
                if last is None or last[0] != step or last[1] != carry:
                    record, new_carry = coefficients(plan.hyper, step, carry)
                    last = (step, carry, record, new_carry)
                keys = stream_values(seed, k, chain_index * 4096 + i, step) if keyed else (0.0, 0.0, 0.0, 0.0)
                for entry in chain.entries[i:j]:
                    entry["step"] = step
                    entry.update(zip(names, last[3]))
                launch = chain.launchers.get((i, j)) or self._launcher(k, plan, chain, i, j)
                launch(head + keys + last[2])
        steps = {st["step"] for chain in plan.chains for st in chain.entries}
        plan.lockstep = not names and len(steps) == 1

    def _updated(self, buffer):
        """The array the kernel updates for ``buffer``: its params, or their
        float32 master copy for bfloat16 params."""
        return self.state[buffer.id][MASTER] if _is_bfloat16(buffer) else buffer.p

    def _device_step(self, grad_scale: float, policy: str | None) -> bool:
        """A step whose guard, step count and coefficients live on the GPU:
        queued, never waited for. Returns True (launched; a non-finite
        gradient may still skip it on the device: see ``skipped_steps``)."""
        skip = policy == "skip" or (policy is None and self.max_grad_norm is not None)
        self._device.launch(grad_scale, self.max_grad_norm, skip)
        self._device_guarded = self._device_guarded or skip or self.max_grad_norm is not None
        for k, plan in enumerate(self._plans):
            for chain in plan.chains:
                for st in chain.entries:
                    st["step"] += 1  # launched steps; state_dict() reads the applied count back
                (chain.full or self._full_launcher(k, plan, chain))(None)
        return True

    def _read_device_state(self) -> None:
        """Bring the device's step counts (and carried scalars) into ``state``."""
        names = self.spec.carry_names
        for k, plan in enumerate(self._plans):
            steps, carries = self._device.read_state(k)
            entries = [self.state[b.id] for b in plan.buffers]
            for st, step, carry in zip(entries, steps, carries):
                st["step"] = int(step)
                st.update(zip(names, (float(x) for x in carry)))

    @property
    def skipped_steps(self) -> int:
        """Steps skipped because a gradient was not finite (read from the GPU
        for device-resident steps)."""
        if self._device is not None:
            return self._skipped + int(self._device.read_control()[3]) - self._skip_base
        return self._skipped

    @skipped_steps.setter
    def skipped_steps(self, value: int) -> None:
        self._skipped = int(value)
        self._skip_base = int(self._device.read_control()[3]) if self._device is not None else 0

    @property
    def last_grad_norm(self) -> float | None:
        """The global gradient norm of the last guarded step (None before one)."""
        if self._device is not None and self._device_guarded:
            return float(self._device.read_control()[2])
        return self._last_norm


    def _nonfinite(self, policy: str, warn: bool) -> bool:
        if policy == "raise":
            raise NonFiniteGradientError("gradients contain NaN or inf; the step was not applied")
        self._skipped += 1
        if warn and not self._warned_nonfinite:
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
        grads = [(plan.backend, k, b.g) for plan in self._plans for k, b in enumerate(plan.buffers)]
        for backend, k, g in grads:
            if backend.name == "cpu" and not g.flags.writeable:
                raise ValueError(f"grad {k} is read-only; zero_grad cannot clear it")
        for backend, _, g in grads:
            backend.fill_(g, 0.0)

    # -- parameter EMA ---------------------------------------------------

    def swap_ema(self) -> None:
        """Exchange the params with their EMA (call again to swap back)."""
        if self.ema_decay is None:
            raise ValueError("this optimizer keeps no EMA; construct it with ema_decay=...")
        for plan in self._plans:
            for b in plan.buffers:
                ema, p = self.state[b.id]["ema"], self._updated(b)
                held = plan.backend.to_host(p)
                plan.backend.copy_(p, ema)
                plan.backend.copy_(ema, held)
                if _is_bfloat16(b):  # the model's bfloat16 params follow their master
                    plan.backend.copy_(b.p, float32_to_bfloat16(plan.backend.to_host(p)))

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
        if self._device is not None:
            self._read_device_state()
        return _state_io.state_dict(self)

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore a :meth:`state_dict`. Everything is checked before anything
        changes; a mismatch raises ``ValueError`` naming what differs."""
        _state_io.load_state_dict(self, state_dict)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for k, group in enumerate(self.param_groups):
            lines.append(f"  group {k}: {len(group['params'])} param(s), "
                         + ", ".join(f"{key}={group[key]!r}" for key in self.spec.defaults))
        return "\n".join(lines + [")"])


_OPTIONS = ("max_grad_norm", "max_grad_value", "nonfinite", "accumulate", "ema_decay", "state_dtype",
            "stochastic_rounding", "rounding_seed", "master_weights", "capturable")


def _is_bfloat16(buffer) -> bool:
    """Whether a buffer's params are bfloat16 (held as their uint16 bits)."""
    return buffer.p.dtype == BFLOAT16


def _master_copy(backend, buffer):
    """A float32 copy of a bfloat16 buffer's params."""
    master = backend.zeros(buffer.p.size, np.float32)
    backend.copy_(master, bfloat16_to_float32(backend.to_host(buffer.p)))
    return master


def _optimizer_class(spec: Spec) -> type:
    """The public class for one registered optimizer (name, docstring and
    signature come from its spec)."""
    def __init__(self, params, **kwargs):
        Optimizer.__init__(self, params, **kwargs)

    base = inspect.signature(Optimizer.__init__).parameters
    __init__.__signature__ = inspect.Signature(
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
         inspect.Parameter("params", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        + [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v) for k, v in spec.defaults.items()]
        + [base[k] for k in _OPTIONS])
    return type(spec.class_name, (Optimizer,), {"spec": spec, "__doc__": spec.doc, "__module__": __name__,
                                                 "__init__": __init__})


OPTIMIZERS: dict[str, type] = {name: _optimizer_class(spec) for name, spec in SPECS.items()}
"""Registry name -> optimizer class."""

globals().update({cls.__name__: cls for cls in OPTIMIZERS.values()})
__all__ += [cls.__name__ for cls in OPTIMIZERS.values()]
