"""``torch.optim.Optimizer`` subclasses driving fastopt's fused engine.

One class per optimizer of :data:`fastopt.rules.SPECS`, generated from its
spec: torch's constructor (positional and keyword arguments, defaults, param
groups, named parameters, the same errors), torch's ``param_groups``,
``state``, ``state_dict``/``load_state_dict`` (torch's layout, both ways),
``add_param_group``, ``zero_grad``, step hooks and ``closure``; underneath,
a :class:`fastopt.Optimizer` over one :class:`~fastopt.params.ParamChain` per
flat buffer (see :mod:`fastopt.torch.flat`).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import warnings
from collections.abc import Callable
from typing import Any, cast

import torch

from ..optim import NONFINITE_POLICIES
from ..optim import OPTIMIZERS as ENGINES
from ..rules import SPECS, Spec
from . import state as state_io
from .amp import scaler_factor
from .checks import check_constructor, check_implementation, plain
from .flat import FlatBuffer, alignment, check_disjoint, check_param, undo
from .groups import TorchGroup

OPTIONS: dict[str, Any] = {
    "max_grad_norm": None, "max_grad_value": None, "nonfinite": None, "accumulate": 1, "ema_decay": None,
    "state_dtype": None, "stochastic_rounding": False, "rounding_seed": 0, "master_weights": None,
}
"""fastopt's training-loop and precision options (keyword-only, after torch's
arguments), with their defaults; see :class:`Optimizer`."""

_disable_dynamo: Callable = getattr(torch, "_disable_dynamo", lambda f: f)


class Optimizer(torch.optim.Optimizer):
    """Base class of the ``fastopt.torch`` optimizers: a ``torch.optim.Optimizer``
    whose step is fastopt's fused kernel over flat buffers.

    Parameters
    ----------
    params : iterable of Tensor, of (name, Tensor) pairs, or of dicts
        As for ``torch.optim``: ``model.parameters()``,
        ``model.named_parameters()``, or param groups (dicts with ``"params"``
        and per-group hyperparameters). float32, float64 and bfloat16 tensors
        on the CPU or one CUDA device; at construction they move into one flat,
        64-byte-aligned buffer per (group, dtype, device): each ``p.data`` becomes
        a view of it (the ``nn.Parameter`` objects stay the same), and each
        existing ``p.grad`` a view of a twin gradient buffer.
    lr, betas, eps, weight_decay, ... :
        torch's hyperparameters, names and defaults (see each class). Tensor
        ``lr``/``betas`` are read as numbers before every step. ``foreach``
        and ``fused`` are accepted and recorded (the step is always fused);
        ``differentiable=True`` raises; ``capturable=True`` keeps the step
        count on the GPU for CUDA params (ignored on the CPU).
    max_grad_norm, max_grad_value, nonfinite, accumulate, ema_decay : optional
        fastopt's training-loop options, folded into the same pass (see
        :class:`fastopt.Optimizer`): global-norm clipping (torch's
        ``clip_grad_norm_`` formula; one read-only pass), value clipping, the
        NaN/inf guard (``"skip"``, ``"raise"``, ``"ignore"``), gradient
        accumulation over ``accumulate`` calls of :meth:`step`, a parameter EMA
        (:meth:`swap_ema`, :meth:`ema_weights`).
    state_dtype, stochastic_rounding, rounding_seed, master_weights : optional
        Low-precision state (``"bfloat16"``, ``"int8"``) and bfloat16 params
        with a float32 master copy (see :class:`fastopt.Optimizer`).

    Notes
    -----
    **Gradients and their costs.** A step checks each param's ``.grad`` by
    identity (a few tens of nanoseconds each):

    - the gradient is the param's view of the flat gradient buffer (after
      ``zero_grad(set_to_none=False)``, or when ``backward()`` accumulated
      into it): the kernel reads it in place, no copy;
    - ``.grad`` is None (``zero_grad()``, whose default is torch's
      ``set_to_none=True``, and ``model.zero_grad()``, before a ``backward()``
      that did not reach the param): the param is skipped exactly as torch
      skips it (its state and step count do not move);
    - any other tensor (a fresh gradient after ``set_to_none=True``, or one a
      hook, DDP's ``gradient_as_bucket_view`` or the user put there): when
      every param has one, laid out as the param, and the step is plain
      (``engine.reads_grads_in_place()``), the kernel reads each where it
      lies, by address, and ``.grad`` stays that tensor; otherwise they are
      copied into the flat buffer (one ``torch._foreach_copy_`` per buffer:
      one extra read and write of those gradients) and ``p.grad`` becomes
      the view, holding the same values.

    So torch's default loop (``set_to_none=True``) is exact and, in the
    common case, copies nothing; ``zero_grad(set_to_none=False)`` (one fill
    per buffer) keeps every step copy-free too. A param whose ``.data`` was replaced
    after construction is copied back into the buffer (with a warning); a
    change of dtype or device raises: build the optimizer after moving the
    model.

    **torch interplay.** Schedulers write ``param_groups`` (a write of lr or
    betas costs a dict store, no re-plan); ``torch.amp.GradScaler`` hands the
    step its scale and inf flag (``_step_supports_amp_scaling``), and the
    unscaling is folded into the update; ``clip_grad_norm_``, DDP (keep
    ``gradient_as_bucket_view=False`` for copy-free steps) and
    ``ZeroRedundancyOptimizer(..., optimizer_class=fastopt.torch.Adam)`` (with
    ``parameters_as_bucket_view=False``) work unchanged.
    """

    spec: Spec
    _signature: inspect.Signature
    _torch_defaults: dict
    _step_supports_amp_scaling = True

    def __init__(self, params: Any, *args: Any, **kwargs: Any) -> None:
        cls = type(self)
        try:
            bound = cls._signature.bind(params, *args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{cls.__name__}: {exc}") from None
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        params = arguments.pop("params")
        options = {key: arguments.pop(key) for key in OPTIONS}
        check_constructor(cls.spec.torch_name, arguments)
        _check_options(options)
        defaults = {key: arguments.get(key, value) for key, value in cls._torch_defaults.items()}
        self._building = True
        self._live = state_io.LiveState(self)
        self._state_writes: dict[int, Any] = {}
        self._options = options
        self._spec = _spec_for(cls.spec, defaults.get("decoupled_weight_decay"))
        self._engine: Any = None
        self._group_buffers: list[list[FlatBuffer]] = []
        self._buffers: list[FlatBuffer] = []
        self._params: list[torch.Tensor] = []
        self._index: dict[torch.Tensor, int] = {}
        self._eids: list[int] = []
        self._group_indices: list[list[int]] = []
        self._groups_seen: list[TorchGroup] = []
        self._flags_changed = False
        self._moved_warned = False
        super().__init__(params, defaults)
        check_implementation(cls.spec.torch_name, arguments)
        self._building = False
        self._rebuild()

    def _groups(self) -> list[TorchGroup]:
        return cast(list[TorchGroup], self.param_groups)

    # -- torch.optim.Optimizer's attributes ---------------------------------------

    @property  # type: ignore[override]
    def state(self) -> state_io.LiveState:
        """Param -> its state in torch's layout (``exp_avg``, ``step``...), as
        views of the flat state: in-place changes act at once; assigning an
        entry or a whole dict loads it (checked) before the next step."""
        return self._live

    @state.setter
    def state(self, value: Any) -> None:
        if not getattr(self, "_building", False):
            raise AttributeError("fastopt.torch optimizers keep their state in flat buffers; assign "
                                 "optimizer.state[param] entries or use load_state_dict()")

    def __getstate__(self) -> dict:
        raise TypeError(f"{type(self).__name__} holds flat buffers and compiled kernels and cannot be pickled or "
                        "deep-copied; save and load its state_dict() instead")

    @property
    def engine(self) -> Any:
        """The :class:`fastopt.Optimizer` running the steps (None without params)."""
        return self._engine

    # -- param groups -----------------------------------------------------------

    @_disable_dynamo
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group (as ``torch.optim``). After construction its params
        move into flat buffers of their own and the engine is rebuilt around
        every group, with the state of the others carried over."""
        group = self._checked_group(param_group)
        self.param_groups.append(group)
        if self._building:
            return
        try:
            self._rebuild()
        except BaseException:
            self.param_groups.pop()
            raise

    def _checked_group(self, param_group: Any) -> TorchGroup:
        """torch's checks of a new group (same errors), then fastopt's: dtypes,
        layouts, shared memory, hyperparameter values. Changes nothing."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group)}")
        params = param_group["params"]
        if isinstance(params, torch.Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError("optimizer parameters need to be organized in ordered collections, but the ordering of "
                            "tensors in sets will change between runs. Please use a list instead.")
        else:
            params = list(params)
        names, tensors = [], []
        for item in params:
            if isinstance(item, tuple):
                names.append(item[0])
                tensors.append(item[1])
            else:
                tensors.append(item)
        if names and len(names) != len(tensors):
            raise ValueError("all optimizer params should be with/without names. Some param names are missing")
        k = len(self.param_groups)
        labels = [f"param_groups[{k}]['params'][{j}]" for j in range(len(tensors))]
        for p, label in zip(tensors, labels):
            if not isinstance(p, torch.Tensor):
                raise TypeError("optimizer can only optimize Tensors, but one of the params is " + torch.typename(p))
            if not (p.is_leaf or p.retains_grad):
                raise ValueError("can't optimize a non-leaf Tensor")
            check_param(p, label)
        group = {key: value for key, value in param_group.items() if key != "params"}
        values: dict[str, Any] = {"params": tensors}
        if names:
            values["param_names"] = names
        values.update(group)
        for key, default in self.defaults.items():
            values.setdefault(key, default)
        unique = list({id(p): p for p in tensors}.values())
        if len(unique) != len(tensors):
            warnings.warn("optimizer contains a parameter group with duplicate parameters; fastopt.torch keeps "
                          "each once (torch.optim would update it twice per step)", UserWarning, stacklevel=3)
            keep = {id(p): j for j, p in reversed(list(enumerate(tensors)))}
            kept = sorted(keep.values())
            values["params"] = [tensors[j] for j in kept]
            if names:
                values["param_names"] = [names[j] for j in kept]
            labels = [labels[j] for j in kept]
        held: set[int] = set()
        for group_k in self.param_groups:
            held.update(id(p) for p in group_k["params"])
            if ("param_names" in values) != ("param_names" in group_k):
                text = "with names" if "param_names" in values else "without names"
                raise ValueError("all optimizer param groups should be with/without names. "
                                 f"cannot add param group {text} to the optimizer")
        if any(id(p) in held for p in values["params"]):
            raise ValueError("some parameters appear in more than one parameter group")
        every = [p for g in self.param_groups for p in g["params"]] + values["params"]
        every_labels = [f"param_groups[{i}]['params'][{j}]" for i, g in enumerate(self.param_groups)
                        for j in range(len(g["params"]))] + labels
        check_disjoint(every, every_labels)
        check_implementation(type(self).spec.torch_name, values)
        spec = self._spec
        if "decoupled_weight_decay" in values and spec.name in ("adam", "adamw") and \
                _spec_for(spec, values["decoupled_weight_decay"]) is not spec:
            raise ValueError(f"param_groups[{k}] has decoupled_weight_decay={values['decoupled_weight_decay']}, "
                             "the other groups do not; fastopt.torch needs one value for every group")
        hyper = {key: plain(values[key]) for key in spec.defaults}
        for key, check in spec.checks.items():
            try:
                check(key, hyper[key])
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"param_groups[{k}]: {exc}") from None
        if spec.cross_check is not None:
            try:
                spec.cross_check(spec.hyperparameters(hyper))
            except ValueError as exc:
                raise ValueError(f"param_groups[{k}]: {exc}") from None
        return TorchGroup(values, frozenset(spec.defaults), self._flag_changed)

    def _flag_changed(self, key: str) -> None:
        self._flags_changed = True

    # -- building -----------------------------------------------------------------

    def _rebuild(self, spec: Spec | None = None, native: dict | None = None) -> None:
        """Flatten every group that has no buffers yet, build a new engine
        over all buffers and carry the state over (``native``: load that
        instead). On any error the params are put back and nothing changes."""
        spec = spec or self._spec
        old = self._engine
        state_dtype = self._options["state_dtype"]
        carried = old.state_dict() if native is None and old is not None else None
        records: list = []
        try:
            group_buffers = list(self._group_buffers)
            for k in range(len(group_buffers), len(self.param_groups)):
                buffers = _make_buffers(self.param_groups[k]["params"], k, state_dtype)
                for buffer in buffers:
                    records += buffer.adopt()
                group_buffers.append(buffers)
            params: list[torch.Tensor] = []
            index: dict[torch.Tensor, int] = {}
            group_indices: list[list[int]] = []
            for group in self.param_groups:
                indices = []
                for p in group["params"]:
                    index[p] = len(params)
                    indices.append(len(params))
                    params.append(p)
                group_indices.append(indices)
            eids = [0] * len(params)
            next_id = 0
            for buffers in group_buffers:
                for buffer in buffers:
                    buffer.ids = list(range(next_id, next_id + len(buffer.params)))
                    for p, eid in zip(buffer.params, buffer.ids):
                        eids[index[p]] = eid
                    next_id += len(buffer.params)
            engine = self._make_engine(spec, group_buffers)
            if carried is not None or native is not None:
                if native is None:
                    assert carried is not None
                    remap = {self._eids[i]: eids[index[p]] for i, p in enumerate(self._params)}
                    native = {**carried, "optimizer": spec.name,
                              "state": {remap[i]: st for i, st in carried["state"].items()},
                              "param_groups": [{**{key: plain(group[key]) for key in spec.defaults},
                                                "params": [eids[i] for i in group_indices[k]]}
                                               for k, group in enumerate(self.param_groups) if group_indices[k]]}
                engine.load_state_dict(native)
        except BaseException:
            undo(records)
            raise
        self._engine, self._spec = engine, spec
        self._group_buffers = group_buffers
        self._buffers = [b for buffers in group_buffers for b in buffers]
        self._params, self._index, self._eids, self._group_indices = params, index, eids, group_indices
        self._link_groups()

    def _make_engine(self, spec: Spec, group_buffers: list[list[FlatBuffer]]) -> Any:
        groups = [{"params": [b.chain for b in buffers], **{key: plain(group[key]) for key in spec.defaults}}
                  for group, buffers in zip(self.param_groups, group_buffers) if buffers]
        if not groups:
            return None
        cuda = any(b.data.device.type == "cuda" for buffers in group_buffers for b in buffers)
        capturable = cuda and bool(self.defaults.get("capturable", False))
        return ENGINES[spec.name](groups, capturable=capturable, **self._options)

    def _link_groups(self) -> None:
        """Point each torch group at its engine group (None for an empty group)."""
        engine_groups = iter(self._engine.param_groups if self._engine is not None else ())
        keys = frozenset(self._spec.defaults)
        for group, buffers in zip(self._groups(), self._group_buffers):
            group.keys_forwarded = keys
            group.target = next(engine_groups) if buffers else None
            group.refresh_tensors()
        self._groups_seen = list(self._groups())
        self._flags_changed = False

    def _sync_groups(self) -> None:
        """After a structural write (a group replaced, its params, ``differentiable``
        or ``decoupled_weight_decay`` changed): check it, follow it, or raise."""
        groups = self._groups()
        if len(groups) != len(self._groups_seen):
            raise RuntimeError(f"param_groups has {len(groups)} groups, the optimizer holds "
                               f"{len(self._groups_seen)}; add groups with add_param_group()")
        for k, (group, seen) in enumerate(zip(groups, self._groups_seen)):
            if len(group["params"]) != len(seen["params"]) or any(
                    p is not q for p, q in zip(group["params"], seen["params"])):
                raise RuntimeError(f"param_groups[{k}]['params'] changed after construction; add params with "
                                   "add_param_group()")
            if group is not seen:  # a plain dict put in its place: adopt it
                adopted = TorchGroup(group, seen.keys_forwarded, self._flag_changed)
                adopted.target = seen.target
                for key in seen.keys_forwarded:
                    adopted[key] = group[key]
                groups[k] = adopted
            check_implementation(type(self).spec.torch_name, groups[k])
        spec = state_io.target_spec(self, groups)
        self._groups_seen = list(groups)
        self._flags_changed = False
        if spec is not self._spec:
            self._rebuild(spec)

    # -- the step -----------------------------------------------------------------

    @_disable_dynamo
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One fused update of every param that has a gradient.

        Parameters
        ----------
        closure : callable, optional
            Re-evaluates the model and returns the loss (run with gradients
            enabled, before the update).

        Returns
        -------
        The closure's loss, or None.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self._state_writes:
            self._flush_state()
        if self._flags_changed or len(self.param_groups) != len(self._groups_seen) or any(
                g is not s for g, s in zip(self.param_groups, self._groups_seen)):
            self._sync_groups()
        engine = self._engine
        if engine is None:
            return loss
        for group in self._groups():
            if group.tensors:
                group.refresh_tensors()
        active = grads = None
        if not all(buffer.intact() for buffer in self._buffers):
            grads = self._grads_in_place()
            if grads is None:
                active = self._gather()
                if active is not None and not active:
                    return loss  # no param has a gradient: torch changes nothing
        scale = scaler_factor(self)
        if scale is None:
            return loss  # GradScaler found inf/NaN: skip (it backs off its scale)
        engine.apply_step(grad_scale=scale, active=active, grads=grads)
        return loss

    def _grads_in_place(self) -> dict[int, int] | None:
        """The fast path of torch's default loop: every param has a new
        ``.grad`` that the kernel can read where backward left it (see
        :meth:`FlatBuffer.grad_addresses`): engine id -> its address. None:
        the gradients are copied into the flat buffers instead."""
        if not self._engine.reads_grads_in_place():
            return None
        grads: dict[int, int] = {}
        for buffer in self._buffers:
            addresses = buffer.grad_addresses() if buffer.params_in_place() else None
            if addresses is None:
                return None
            grads.update(zip(buffer.ids, addresses))
        return grads

    def _gather(self) -> set[int] | None:
        """The slow path: params moved out of their buffer, gradients that are
        not the flat views. Returns the engine ids to step (None: all)."""
        active: set[int] = set()
        name = type(self).__name__
        for buffer in self._buffers:
            moved = buffer.moved()
            if moved:
                self._follow_moved(buffer, moved)
            active.update(buffer.ids[k] for k in buffer.gather(name))
        return None if len(active) == len(self._params) else active

    def _follow_moved(self, buffer: FlatBuffer, moved: list[int]) -> None:
        for k in moved:
            p, view = buffer.params[k], buffer.views[k]
            if p.dtype != view.dtype or p.device != view.device or p.shape != view.shape:
                raise RuntimeError(f"{buffer.labels[k]} is now {p.dtype}, {tuple(p.shape)} on {p.device}; it was "
                                   f"{view.dtype}, {tuple(view.shape)} on {view.device} when the optimizer was built "
                                   "(model.to()/half() after construction?): build the optimizer after moving the "
                                   "model")
        if not self._moved_warned:
            warnings.warn(f"fastopt.torch: the .data of {buffer.labels[moved[0]]} (and {len(moved) - 1} other(s)) "
                          "was replaced after the optimizer was built; the new values were copied into its flat "
                          "buffer and .data points there again", RuntimeWarning, stacklevel=4)
            self._moved_warned = True
        buffer.refill(moved)

    @_disable_dynamo
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients, with torch's meaning.

        ``set_to_none=True`` (torch's default): every ``.grad`` becomes None;
        the next ``backward()`` allocates new ones, which the next step copies
        into the flat buffer (and a param that gets none is skipped).
        ``set_to_none=False``: the flat gradient buffer is zeroed in one fill
        and every ``.grad`` that is not None is its view again; the next
        ``backward()`` accumulates in place and the step copies nothing.
        While accumulating (``accumulate > 1``, mid-cycle) nothing is reset.
        """
        engine = self._engine
        if engine is not None and engine._pending:
            return
        if set_to_none:
            for p in self._params:
                if p.grad is not None:
                    p.grad = None
        else:
            for buffer in self._buffers:
                buffer.zero_grad()

    # -- state dicts ----------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The state in torch's layout (see ``fastopt.torch.state``): a copy,
        loadable by the ``torch.optim`` class of the same name (and back)."""
        for pre_hook in self._optimizer_state_dict_pre_hooks.values():
            pre_hook(self)
        self._flush_state()
        result = state_io.state_dict(self)
        for post_hook in self._optimizer_state_dict_post_hooks.values():
            replaced = post_hook(self, result)
            if replaced is not None:
                result = replaced
        return result

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict of this class or of the ``torch.optim`` class of
        the same name (torch's layout; fastopt's own layout too). Checked whole
        first: a mismatch raises ``ValueError`` naming it and changes nothing."""
        if isinstance(state_dict, dict):
            state_dict = state_dict.copy()
        for pre_hook in self._optimizer_load_state_dict_pre_hooks.values():
            replaced = pre_hook(self, state_dict)
            if replaced is not None:
                state_dict = replaced
        self._state_writes = {}
        self._load(state_dict)
        for post_hook in self._optimizer_load_state_dict_post_hooks.values():
            post_hook(self)

    def _load(self, state_dict: dict[str, Any]) -> None:
        if self._flags_changed:
            self._sync_groups()
        spec = state_io.target_spec(self, state_dict["param_groups"]) if isinstance(state_dict, dict) and \
            isinstance(state_dict.get("param_groups"), (list, tuple)) else self._spec
        native = state_io.native_state_dict(self, state_dict, spec)
        if spec is not self._spec:
            self._rebuild(spec, native)
        elif self._engine is not None:
            self._engine.load_state_dict(native)
        for group, saved in zip(self._groups(), state_dict["param_groups"]):
            kept = {"params": group["params"]}
            if "param_names" in group and "param_names" not in saved:
                kept["param_names"] = group["param_names"]
            values = {**{k: v for k, v in saved.items() if k != "params"}, **kept}
            dict.clear(group)
            dict.update(group, values)
            for key, default in self.defaults.items():
                dict.setdefault(group, key, default)
            group.tensors = {key for key in group.keys_forwarded if _is_tensor_value(group.get(key))}
            group.refresh_tensors()
        self._groups_seen = list(self._groups())

    def _flush_state(self) -> None:
        """Load the entries assigned through ``optimizer.state`` (one load for all)."""
        writes = self._state_writes
        if not writes:
            return
        self._state_writes = {}
        full = state_io.state_dict(self)
        for index, entry in writes.items():
            if entry:
                full["state"][index] = dict(entry)
            else:
                full["state"].pop(index, None)
        self._load(full)

    # -- fastopt's extras ---------------------------------------------------------

    @property
    def skipped_steps(self) -> int:
        """Steps skipped by the NaN/inf guard (``nonfinite="skip"``)."""
        return self._engine.skipped_steps if self._engine is not None else 0

    @property
    def last_grad_norm(self) -> float | None:
        """The global gradient norm of the last guarded or clipped step."""
        return self._engine.last_grad_norm if self._engine is not None else None

    def swap_ema(self) -> None:
        """Exchange the params with their EMA (``ema_decay``); call again to swap back."""
        if self._engine is None:
            raise ValueError("this optimizer holds no params")
        self._engine.swap_ema()

    @contextlib.contextmanager
    def ema_weights(self) -> Any:
        """Context manager: the params hold their EMA inside the block."""
        self.swap_ema()
        try:
            yield self
        finally:
            self.swap_ema()


def _is_tensor_value(value: Any) -> bool:
    return isinstance(value, torch.Tensor) or (
        type(value) is tuple and any(isinstance(v, torch.Tensor) for v in value))


def _make_buffers(params: list[torch.Tensor], k: int, state_dtype: str | None) -> list[FlatBuffer]:
    """One buffer per (dtype, device) of group ``k``'s params, in order of first appearance."""
    by_key: dict[tuple, tuple[list, list]] = {}
    for j, p in enumerate(params):
        key = (p.dtype, p.device)
        held, labels = by_key.setdefault(key, ([], []))
        held.append(p)
        labels.append(f"param_groups[{k}]['params'][{j}]")
    return [FlatBuffer(held, labels, alignment(key[0], state_dtype)) for key, (held, labels) in by_key.items()]


def _spec_for(spec: Spec, decoupled: Any) -> Spec:
    """Adam with ``decoupled_weight_decay=True`` is AdamW's rule (and AdamW with False, Adam's)."""
    if spec.name not in ("adam", "adamw") or decoupled is None:
        return spec
    return SPECS["adamw" if decoupled else "adam"]


def _check_options(options: dict[str, Any]) -> None:
    """fastopt's options, checked before any param moves (the engine checks
    them again, with the params)."""
    for name in ("max_grad_norm", "max_grad_value", "ema_decay"):
        value = options[name]
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise TypeError(f"{name} must be a finite number or None, got {value!r}")
    if options["nonfinite"] is not None and options["nonfinite"] not in NONFINITE_POLICIES:
        raise ValueError(f"nonfinite must be one of {NONFINITE_POLICIES} or None, got {options['nonfinite']!r}")


@functools.cache
def torch_defaults(name: str) -> dict[str, Any]:
    """The group defaults of ``torch.optim.<Class>`` (read from a throwaway
    instance: every key, in torch's order), or the spec's for optimizers
    torch does not have."""
    spec = SPECS[name]
    if spec.torch_name is None:
        return dict(spec.defaults)
    probe = getattr(torch.optim, spec.torch_name)([torch.zeros(1, requires_grad=True)])
    defaults = dict(probe.defaults)
    for key, value in spec.defaults.items():
        defaults.setdefault(key, value)
    return defaults


def _signature(spec: Spec, defaults: dict[str, Any]) -> inspect.Signature:
    """torch's constructor signature for ``spec`` (the spec's defaults where
    torch has no class), then fastopt's options, keyword-only."""
    kind = inspect.Parameter
    if spec.torch_name is not None:
        torch_params = list(inspect.signature(getattr(torch.optim, spec.torch_name).__init__).parameters.values())[1:]
    else:
        torch_params = [kind("params", kind.POSITIONAL_OR_KEYWORD)] + [
            kind(key, kind.POSITIONAL_OR_KEYWORD, default=value) for key, value in defaults.items()]
    ours = [kind(key, kind.KEYWORD_ONLY, default=value) for key, value in OPTIONS.items()]
    return inspect.Signature(torch_params + ours)


def _make_class(spec: Spec) -> type:
    defaults = torch_defaults(spec.name)
    signature = _signature(spec, defaults)
    twin = f"``torch.optim.{spec.torch_name}``" if spec.torch_name else "fastopt's own rule (torch has no such class)"
    doc = (spec.doc.rstrip() + "\n\n    A ``torch.optim.Optimizer`` over flat buffers with the constructor, param "
           f"groups, state layout and state dicts of {twin}; see :class:`fastopt.torch.Optimizer` for the flat "
           "buffers, the gradient paths and fastopt's options.\n")
    cls = type(spec.class_name, (Optimizer,), {"spec": spec, "_signature": signature, "_torch_defaults": defaults,
                                               "__doc__": doc, "__module__": "fastopt.torch"})
    cls.__signature__ = signature  # type: ignore[attr-defined]
    return cls


OPTIMIZERS: dict[str, type] = {name: _make_class(spec) for name, spec in SPECS.items()}
"""Registry name -> ``fastopt.torch`` class."""
