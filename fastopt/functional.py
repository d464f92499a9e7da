"""In-place optimizer updates over plain arrays with explicit state, for
embedding in training loops that keep their own bookkeeping.

Each ``<name>_(param, grad, state, *, step, **hyperparameters)`` applies step
number ``step`` (1 for the first) of optimizer ``<name>`` to ``param`` in place;
there is one for every optimizer of :data:`fastopt.rules.SPECS` (``adam_``,
``lamb_``...). ``state`` is a dict of arrays keyed by torch's state names
(plus carried scalars such as NAdam's ``mu_product``), made by
:func:`init_state` and updated in place. Hyperparameters take torch.optim's
names and defaults. LAMB's functions also take ``segments``: the tensors of a
flat buffer as ``(start, stop)`` ranges, each with its own trust ratio.

States may be stored in low precision, as the optimizer classes store them
(see ``state_dtype`` in :class:`fastopt.Optimizer`): ``init_state(...,
state_dtype="bfloat16")`` makes uint16 arrays of bfloat16 bits, and
``state_dtype="int8"`` 8-bit block floats (``state[key]`` the uint8 codes,
``state[key + "_scale"]`` one float32 scale per block of 256; buffers under
4096 elements keep float32 states). The update functions read each state's
storage from the arrays they are given, and take ``stochastic_rounding`` and
``rounding_seed``: the same seed gives the same random bits as an optimizer
over that one buffer, so a loop of ``adam_`` calls and ``fastopt.Adam(...,
state_dtype=..., rounding_seed=...)`` produce identical params and states.

Examples
--------
>>> import numpy as np
>>> from fastopt import functional as F
>>> p = np.ones(4, np.float32); g = np.full(4, 0.5, np.float32)
>>> state = F.init_state("adam", p)
>>> F.adam_(p, g, state, step=1, lr=0.1)

bfloat16 states, rounded stochastically:

>>> state = F.init_state("adam", p, state_dtype="bfloat16")
>>> state["exp_avg"].dtype
dtype('uint16')
>>> F.adam_(p, g, state, step=1, lr=0.1, stochastic_rounding=True, rounding_seed=7)
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ._layout import kernel_launcher
from ._plan import hyperparameters
from ._precision import SCALE, Precision, allocate_state
from .backends.bits import stream_values
from .backends.blockfloat import BLOCK, blocks
from .backends.codecs import BFLOAT16
from .backends.cpu import CPU
from .backends.host_arrays import SUPPORTED_DTYPES, check_disjoint, flat_view, is_bfloat16, param_grad_pair
from .rules import SPECS

CODES = np.dtype(np.uint8)
"""The dtype of an 8-bit block-float state's codes."""


def _spec(name: str):
    if name not in SPECS:
        raise ValueError(f"unknown optimizer {name!r}; choose from {sorted(SPECS)}")
    return SPECS[name]


def _hyper(spec, hyperparameters_: dict):
    unknown = set(hyperparameters_) - set(spec.defaults)
    if unknown:
        raise TypeError(f"{spec.name}: unknown hyperparameter(s) {sorted(unknown)}; "
                        f"accepted: {sorted(spec.defaults)}")
    h = {**spec.defaults, **hyperparameters_}
    for key, check in spec.checks.items():
        check(key, h[key])
    record = hyperparameters(spec, h)
    if spec.cross_check is not None:
        spec.cross_check(record)
    return record


def _refuse_bfloat16(param) -> None:
    if is_bfloat16(getattr(param, "dtype", None)):
        raise TypeError("fastopt.functional updates float32 and float64 params; for bfloat16 params use the "
                        "optimizer classes (they keep a float32 master copy), or step a float32 copy here")


def init_state(name: str, param, state_dtype=None, **hyperparameters_) -> dict:
    """Fresh state for optimizer ``name`` and these hyperparameters.

    Parameters
    ----------
    name : str
        The optimizer (a key of :data:`fastopt.rules.SPECS`: ``"adam"``...).
    param : array
        The float32 or float64 params the state is for (only their size,
        shape and dtype are read).
    state_dtype : {"float32", "float64", "bfloat16", "int8"}, optional
        Storage of the states, as for the optimizer classes (default: the
        params' dtype). ``"bfloat16"``: uint16 arrays of bfloat16 bits.
        ``"int8"``: 8-bit block floats, each state as ``state[key]`` (uint8
        codes, padded to whole blocks of 256) and ``state[key + "_scale"]``
        (one float32 scale per block), for params of at least 4096 elements;
        smaller ones get float32 states. LAMB refuses ``"int8"``.
    **hyperparameters_
        The optimizer's hyperparameters (those that choose which states exist,
        such as ``amsgrad``, or set their initial value, such as Adagrad's
        ``initial_accumulator_value``).

    Returns
    -------
    dict
        State name -> array (param-shaped; 8-bit codes and scales flat), plus
        the optimizer's carried scalars, if any. Initial values are encoded
        in the storage's codec.
    """
    spec = _spec(name)
    h = _hyper(spec, hyperparameters_)
    precision = Precision.checked(state_dtype)
    precision.check_spec(spec)
    _refuse_bfloat16(param)
    p = np.asarray(param)
    state: dict = {}
    for key in spec.variant(h).state_names:
        entries = allocate_state(CPU, precision, spec, h, key, p.size, p.dtype)
        if key + SCALE not in entries:
            entries[key] = entries[key].reshape(p.shape)
        state.update(entries)
    state.update(spec.carry)
    return state


def _storage_kind(array: np.ndarray) -> str:
    if array.dtype == CODES:
        return "8-bit codes (uint8)"
    if array.dtype == BFLOAT16:
        return "bfloat16 bits (uint16)"
    return str(array.dtype)


def _states(name: str, state_names: tuple, state: dict, n: int):
    """The flat storages of ``state``'s entries ``state_names`` for a buffer of
    ``n`` elements, their block scales (None unless 8-bit), and the codec
    they share (``"bfloat16"``, ``"int8"`` or None for floats). Raises
    ``ValueError`` naming the entry that is missing or does not fit."""
    storages, scales, first = [], [], None
    for key in state_names:
        if key not in state:
            raise ValueError(f"state is missing {key!r} (make it with init_state({name!r}, param, ...))")
        where, scale_key = f"state[{key!r}]", key + SCALE
        array = np.asarray(state[key])
        if array.dtype not in (*SUPPORTED_DTYPES, BFLOAT16, CODES):
            raise ValueError(f"{where} has dtype {array.dtype}; a state holds float32 or float64 values, "
                             "bfloat16 bits (uint16), or 8-bit codes (uint8) with their block scales")
        if first is None:
            first = (key, array)
        elif _storage_kind(array) != _storage_kind(first[1]):
            raise ValueError(f"{where} must have the storage of state[{first[0]!r}] ({_storage_kind(first[1])}), "
                             f"got {_storage_kind(array)}: every state of a step has one storage (init_state's "
                             "state_dtype)")
        if array.dtype != CODES:
            if scale_key in state:
                raise ValueError(f"state[{scale_key!r}] holds block scales but {where} holds "
                                 f"{_storage_kind(array)}, not 8-bit codes (uint8)")
            flat = flat_view(array, where, bfloat16=True)
            if flat.size != n:
                raise ValueError(f"{where} must have {n} elements (one per param), got {flat.size} of {array.dtype}")
            storages.append(flat)
            continue
        if scale_key not in state:
            raise ValueError(f"{where} holds 8-bit codes (uint8) but state[{scale_key!r}] is missing: an 8-bit "
                             f"state is its codes and their block scales (init_state({name!r}, param, "
                             "state_dtype='int8') makes both)")
        count = blocks(n)
        codes = flat_view(array, where, codes=True)
        if codes.size != count * BLOCK:
            raise ValueError(f"{where} must hold {count * BLOCK} 8-bit codes ({count} blocks of {BLOCK} for "
                             f"{n} params), got {codes.size}")
        scale = np.asarray(state[scale_key])
        if scale.dtype != np.float32 or scale.size != count:
            raise ValueError(f"state[{scale_key!r}] must have {count} elements of float32 (one scale per block "
                             f"of {BLOCK} codes in {where}), got {scale.size} of {scale.dtype}")
        storages.append(codes)
        scales.append(flat_view(scale, f"state[{scale_key!r}]"))
    if first is None or first[1].dtype not in (BFLOAT16, CODES):
        return tuple(storages), None, None
    if first[1].dtype == BFLOAT16:
        return tuple(storages), None, "bfloat16"
    return tuple(storages), tuple(scales), "int8"


def apply(name: str, param, grad, state: dict, *, step: int, segments=None, stochastic_rounding=False,
          rounding_seed=0, **hyperparameters_) -> None:
    """Apply step ``step`` of optimizer ``name`` to ``param`` in place.

    Parameters
    ----------
    name : str
        The optimizer (a key of :data:`fastopt.rules.SPECS`).
    param, grad : array
        Contiguous float32 or float64 arrays of one shape (NumPy arrays,
        torch CPU tensors, buffer-protocol objects); ``param`` is updated.
    state : dict
        From :func:`init_state`, updated in place. The storage of the states
        is read from their arrays: float32/float64, uint16 (bfloat16 bits),
        or uint8 codes with a float32 ``key + "_scale"`` array (8-bit block
        floats). Every state of the optimizer must have the same storage.
    step : int
        The step number, 1 for the first (bias corrections, and the random
        bits of stochastic rounding).
    segments : list of (start, stop), optional
        Per-tensor rules (LAMB) only: the tensors of a flat buffer.
    stochastic_rounding : bool, optional
        Round bfloat16 states stochastically instead of to nearest (running
        maxima still round up; Adamax's infinity norm, Adagrad's sum and
        8-bit states always round stochastically). Float states do not
        round: it has no effect on them.
    rounding_seed : int, optional
        Seed of the stochastic rounding: the random bits are those of an
        optimizer with this ``rounding_seed`` over this one buffer, at this
        step.
    **hyperparameters_
        torch.optim's names and defaults.

    Raises
    ------
    ValueError, TypeError
        Naming the bad argument (``state['exp_avg']``...), before touching
        any array.
    """
    spec = _spec(name)
    h = _hyper(spec, hyperparameters_)
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 1:
        raise ValueError(f"step must be an int >= 1, got {step!r}")
    options = Precision.checked(None, stochastic_rounding, rounding_seed)
    if segments is not None and spec.segmented is None:
        raise TypeError(f"{name} is element-wise; segments= is for per-tensor rules (lamb)")
    _refuse_bfloat16(param)
    p, g = param_grad_pair(param, grad, "")
    variant = spec.variant(h)
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict of arrays, got {type(state).__name__}")
    states, scales, codec = _states(name, variant.state_names, state, p.size)
    precision = dataclasses.replace(options, state_dtype=codec)
    precision.check_spec(spec)
    carry = tuple(float(state.get(key, initial)) for key, initial in spec.carry)
    named = [(f"state[{k!r}]", a) for k, a in zip(variant.state_names, states)]
    named += [(f"state[{k + SCALE!r}]", a) for k, a in zip(variant.state_names, scales or ())]
    check_disjoint([("param", p), ("grad", g)] + named)
    launch = kernel_launcher(CPU, spec, variant, precision, p, g, states, scales, segments=segments)
    record, carry = spec.coefficients(h, int(step), carry)
    keys = stream_values(precision.rounding_seed, 0, 0, int(step))
    launch((-1.0 if h.maximize else 1.0, math.inf, 0.0, 1.0) + keys + record)
    state.update(zip(spec.carry_names, carry))


def _named(name: str):
    def update(param, grad, state, *, step, **hyperparameters_):
        apply(name, param, grad, state, step=step, **hyperparameters_)

    update.__name__ = update.__qualname__ = f"{name}_"
    update.__doc__ = (f"In-place {SPECS[name].class_name} step (see :func:`apply`, which takes the same "
                      "arguments, and the equations of "
                      f":class:`fastopt.{SPECS[name].class_name}`). Defaults: {SPECS[name].defaults}.")
    return update


globals().update({f"{name}_": _named(name) for name in SPECS})
__all__ = ["apply", "init_state"] + [f"{name}_" for name in SPECS]
