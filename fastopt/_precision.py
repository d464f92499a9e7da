"""Low-precision optimizer state and bfloat16 params: which storage each
state gets, how it is allocated, and how it travels through state dicts.

``state_dtype`` chooses the codec of every state array (see
:mod:`fastopt.backends.codecs`): ``"float32"``/``"float64"`` (default: the
params' dtype; float32 for bfloat16 params) or ``"bfloat16"`` (2 bytes per
value). How a bfloat16 state rounds depends on its role (see
:attr:`fastopt.rules.Spec.state_roles`): moments and squares round to
nearest even, or stochastically with ``stochastic_rounding`` (seeded by
``rounding_seed``, the step and the element: a run is reproducible);
AMSGrad's running maximum rounds up, so it never falls below a value it
dominated; Adamax's infinity norm always rounds stochastically, because its
decay by ``beta2`` per step is smaller than bfloat16's resolution and would
freeze under rounding to nearest (measured: 1.39x the float32 loss on a
noisy quadratic, against 1.006x stochastically).

bfloat16 params (``ml_dtypes.bfloat16`` arrays or torch bfloat16 tensors,
with bfloat16 grads) get a float32 master copy in the optimizer state
(``master_param``): the kernel updates the master and writes the bfloat16
params the model uses in the same pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .backends.blockfloat import BLOCK, MIN_ELEMENTS, blocks, quantize, state_format
from .backends.codecs import BFLOAT16, from_numbers, to_numbers

STATE_DTYPES = ("float32", "float64", "bfloat16", "int8")
"""Accepted values of ``state_dtype`` (None: the params' dtype)."""

MASTER = "master_param"
"""State entry holding the float32 master copy of bfloat16 params."""

SCALE = "_scale"
"""Suffix of the state entry holding an 8-bit state's block scales
(``exp_avg`` holds the codes, ``exp_avg_scale`` one float32 per block)."""


@dataclass(frozen=True)
class Precision:
    """The validated precision options of one optimizer."""

    state_dtype: str | None = None
    stochastic_rounding: bool = False
    rounding_seed: int = 0
    master_weights: bool | None = None

    @classmethod
    def checked(cls, state_dtype=None, stochastic_rounding=False, rounding_seed=0, master_weights=None) -> Precision:
        if state_dtype is not None:
            name = getattr(state_dtype, "name", state_dtype)
            name = str(name).replace("torch.", "")
            if name not in STATE_DTYPES:
                raise ValueError(f"state_dtype must be one of {STATE_DTYPES} or None, got {state_dtype!r}")
            state_dtype = name
        if not isinstance(stochastic_rounding, (bool, np.bool_)):
            raise TypeError(f"stochastic_rounding must be a bool, got {stochastic_rounding!r}")
        if isinstance(rounding_seed, bool) or not isinstance(rounding_seed, (int, np.integer)) or rounding_seed < 0:
            raise ValueError(f"rounding_seed must be an int >= 0, got {rounding_seed!r}")
        if master_weights is not None and not isinstance(master_weights, (bool, np.bool_)):
            raise TypeError(f"master_weights must be a bool or None, got {master_weights!r}")
        return cls(state_dtype, bool(stochastic_rounding), int(rounding_seed),
                   None if master_weights is None else bool(master_weights))

    def check_params(self, bfloat16_params: bool, spec=None) -> None:
        """Raise when the options do not fit the params' dtype or the optimizer."""
        if spec is not None:
            self.check_spec(spec)
        if self.master_weights is True and not bfloat16_params:
            raise ValueError("master_weights=True is for bfloat16 params (the optimizer then keeps a float32 "
                             "master copy); these params are float32/float64 already")
        if self.master_weights is False and bfloat16_params:
            raise ValueError("master_weights=False with bfloat16 params is not supported: updates smaller than "
                             "bfloat16's resolution would be lost; leave master_weights at its default")
        if self.stochastic_rounding and self.state_dtype not in ("bfloat16", "int8") and not bfloat16_params:
            raise ValueError("stochastic_rounding=True needs state_dtype='bfloat16' (or bfloat16 params): "
                             "float32 and float64 storage does not round")

    def check_spec(self, spec) -> None:
        """Raise when the state storage does not fit the optimizer (LAMB has no 8-bit states)."""
        if self.state_dtype == "int8" and spec.segmented is not None:
            raise ValueError(f"state_dtype='int8' is not available for {spec.class_name}: its two-pass step "
                             "needs each element's state twice; use state_dtype='bfloat16'")

    def blockwise(self, size: int) -> bool:
        """Whether a buffer of ``size`` elements keeps 8-bit block-float state
        (``state_dtype="int8"`` and at least ``MIN_ELEMENTS`` elements)."""
        return self.state_dtype == "int8" and size >= MIN_ELEMENTS

    def storage_dtype(self, name: str, param_dtype, spec, size: int = 0) -> np.dtype:
        """The dtype of state ``name``'s array for params of ``param_dtype``
        (uint16 for bfloat16: params' bits, or a bfloat16 state; uint8 codes
        for 8-bit block floats; float32 for an ``"int8"`` buffer under
        ``MIN_ELEMENTS``)."""
        param_dtype = np.dtype(param_dtype)
        if self.blockwise(size):
            return np.dtype(np.uint8)
        kind = self.state_dtype if self.state_dtype not in (None, "int8") else None
        kind = kind or ("float32" if param_dtype == BFLOAT16 or self.state_dtype == "int8" else param_dtype.name)
        return BFLOAT16 if kind == "bfloat16" else np.dtype(kind)

    @staticmethod
    def format(name: str, spec) -> tuple:
        """The 8-bit block-float format of state ``name`` (from its role)."""
        return state_format(spec.role(name))

    def rounding(self, name: str, spec) -> str:
        """How state ``name`` rounds when its codec rounds (see the module docs)."""
        role = spec.role(name)
        if role == "max_square":
            return "up"
        if role in ("decaying_max", "sum") or self.stochastic_rounding:
            return "stochastic"
        return "nearest"

    @property
    def mirror_rounding(self) -> str:
        """How the bfloat16 params written from their master copy round."""
        return "stochastic" if self.stochastic_rounding else "nearest"

    def needs_key(self, spec, bfloat16_params: bool) -> bool:
        """Whether any storage rounds stochastically (the steps then carry a key)."""
        bf16_states = self.state_dtype == "bfloat16"
        stochastic_roles = bool({"decaying_max", "sum"} & set(spec.state_roles.values()))
        return self.state_dtype == "int8" or (self.stochastic_rounding and (bf16_states or bfloat16_params)) or (
            bf16_states and stochastic_roles)


def allocate_blocks(backend, n: int, fmt, fill: float = 0.0):
    """``(codes, scales)`` of an 8-bit state of ``n`` elements holding ``fill``."""
    codes, scales = quantize(np.full(n, fill, np.float32), fmt) if fill else (
        np.zeros(blocks(n) * BLOCK, np.uint8), np.zeros(blocks(n), np.float32))
    out = backend.zeros(codes.size, np.uint8), backend.zeros(scales.size, np.float32)
    if fill:
        backend.copy_(out[0], codes)
        backend.copy_(out[1], scales)
    return out


def allocate(backend, n: int, dtype, fill: float = 0.0):
    """A state storage of ``n`` elements holding ``fill`` (encoded for the codec)."""
    dtype = np.dtype(dtype)
    raw = from_numbers(np.array([fill], np.float64), dtype)[0] if fill else 0
    return backend.zeros(n, dtype, raw)


def allocate_state(backend, precision: Precision, spec, hyper, name: str, n: int, param_dtype) -> dict:
    """The fresh entries of state ``name`` for a buffer of ``n`` elements of
    ``param_dtype``, holding the optimizer's initial value (``spec.state_fill``,
    from the hyperparameter record ``hyper``; else zeros): ``{name: storage}``,
    or ``{name: codes, name + SCALE: scales}`` for 8-bit block floats."""
    fill = spec.state_fill.get(name)
    fill = fill(hyper) if fill else 0.0
    if precision.blockwise(n):
        codes, scales = allocate_blocks(backend, n, precision.format(name, spec), fill)
        return {name: codes, name + SCALE: scales}
    return {name: allocate(backend, n, precision.storage_dtype(name, param_dtype, spec, n), fill)}


def saved(array: np.ndarray) -> np.ndarray:
    """A host state array as a state dict holds it: the stored bits, exactly
    (bfloat16 as uint16), so a save and load round-trips bit for bit."""
    return array


def loaded(value: np.ndarray, codec: str | None, target, where: str) -> np.ndarray:
    """A state dict's array for a storage of dtype ``target``: bits copied
    exactly when the codecs match, floats rounded into a bfloat16 storage and
    bfloat16 expanded into a float one. ``codec`` is the state dict's
    ``state_dtype`` (``"bfloat16"`` when its uint16 arrays are bfloat16 bits)."""
    target = np.dtype(target)
    bfloat16_in = codec == "bfloat16" and value.dtype == BFLOAT16
    if value.dtype.kind != "f" and not bfloat16_in:
        raise ValueError(f"{where} holds {value.dtype} values, which are neither floats nor bfloat16 bits "
                         f"(the state dict's state_dtype is {codec!r})")
    if target == BFLOAT16:
        return value if bfloat16_in else from_numbers(value, target)
    if bfloat16_in:
        return to_numbers(value).astype(target)
    if value.dtype != target:
        raise ValueError(f"{where} has dtype {value.dtype}, param has {target}")
    return value
