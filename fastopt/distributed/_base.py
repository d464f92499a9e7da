"""What the data-parallel and ZeRO-1 optimizers share: argument checks, the
inner fastopt optimizers over views of the flat buffers, the agreed
construction, the step's bookkeeping (accumulation, the guard's policy, skip
counting) and the state of this rank as flat arrays."""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from dataclasses import dataclass

import numpy as np

from ..optim import NONFINITE_POLICIES, OPTIMIZERS, NonFiniteGradientError, Optimizer
from ..params import FlatParams
from . import _mpi, guard
from .layout import Layout

_PASSED_THROUGH = ("max_grad_value", "ema_decay")


def optimizer_class(optimizer) -> type:
    """A fastopt optimizer class from a class or a registry name (``"adam"``)."""
    if isinstance(optimizer, str):
        key = optimizer.strip().lower()
        if key not in OPTIMIZERS:
            raise ValueError(f"optimizer must be a fastopt optimizer class or one of {sorted(OPTIMIZERS)}, "
                             f"got {optimizer!r}")
        return OPTIMIZERS[key]
    if isinstance(optimizer, type) and issubclass(optimizer, Optimizer) and hasattr(optimizer, "spec"):
        return optimizer
    raise TypeError(f"optimizer must be a fastopt optimizer class (such as fastopt.Adam) or a registry name, "
                    f"got {optimizer!r}")


def flat_buffers(params, ranges):
    """``(data, grad, ranges)``: the flat param and grad buffers to share out,
    from a FlatParams or a ``(param, grad)`` pair of host arrays (NumPy, or a
    NumPy view of a torch flat buffer)."""
    from ..backends import backend_for

    if isinstance(params, FlatParams):
        if params.device != "cpu":
            raise TypeError("params: fastopt.distributed shares host (CPU) buffers only; got a FlatParams on "
                            f"{params.device!r}")
        if ranges is not None:
            raise ValueError("ranges: a FlatParams knows its own tensors; pass ranges only with a (param, grad) pair")
        return params.data, params.grad, params.ranges
    if not (isinstance(params, (tuple, list)) and len(params) == 2):
        raise TypeError(f"params must be a FlatParams or one (param, grad) pair of flat host buffers, "
                        f"got {type(params).__name__}")
    if any(backend_for(x).name != "cpu" for x in params):
        raise TypeError("params: fastopt.distributed shares host (CPU) buffers only; got GPU arrays")
    from ..backends.cpu import CPU

    data, grad = CPU.pair(params[0], params[1], "params")
    if not grad.flags.writeable:
        raise ValueError("params grad must be writeable (it is reduced in place)")
    if data.size == 0:
        raise ValueError("params must hold at least one element")
    if ranges is not None:
        from ..backends.segments import normalise_segments

        ranges = normalise_segments(data.size, ranges)
    return data, grad, ranges


ALGORITHMS = ("ring", "mpi")


def check_algorithm(value, default: str) -> str:
    """``value`` (one of :data:`ALGORITHMS`), or ``default`` when None."""
    if value is None:
        return default
    if value not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS} or None, got {value!r}")
    return value


def _positive_or_none(name: str, value) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a positive number or None, got {value!r}")
    if not (float(value) > 0 and math.isfinite(float(value))):
        raise ValueError(f"{name} must be a positive finite number or None, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Inner:
    """One inner fastopt optimizer: it updates ``[lo, hi)`` of the flat
    buffer, as one (param, grad) pair per piece of ``pieces``."""

    lo: int
    hi: int
    pieces: tuple
    opt: Optimizer


class SharedGroup(dict):
    """The one param group of a distributed optimizer: writing a key (as a
    learning-rate scheduler writes ``"lr"``) writes it into every inner
    optimizer's group too."""

    def __init__(self, values: dict, targets: list):
        super().__init__(values)
        self.targets = targets

    def __setitem__(self, key, value) -> None:
        if key != "params":
            for group in self.targets:
                group[key] = value
        super().__setitem__(key, value)

    def update(self, *args, **kwargs) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value


class DistributedOptimizer:
    """Base of :class:`~fastopt.distributed.DataParallel` and
    :class:`~fastopt.distributed.ZeRO1` (see their docs)."""

    mode = ""
    layout: Layout

    def __init__(self, params, optimizer, comm=None, *, ranges=None, max_grad_norm=None, nonfinite=None,
                 accumulate=1, broadcast=True, **kwargs):
        MPI = _mpi.mpi()
        self.comm = comm = _mpi.world(comm)
        self.rank, self.world_size = comm.Get_rank(), comm.Get_size()
        self._MPI = MPI
        if self.world_size > 1:
            _mpi.install_abort_hook(comm)

        def check():
            self._check_arguments(params, optimizer, ranges, max_grad_norm, nonfinite, accumulate, broadcast,
                                  kwargs)
            self._share_groups()
            self._plan()
            return self._fingerprint()

        mine = _mpi.agree(comm, check, f"{type(self).__name__} construction")
        self._compare(comm.allgather(mine))
        if broadcast and self.world_size > 1:
            comm.Bcast(self.data, root=0)  # every rank starts from rank 0's params (as torch's DDP)
        self._optimizers: list[Inner] = self._build()
        for inner in self._optimizers:
            self.param_groups[0].targets.append(inner.opt.param_groups[0])
        self.skipped_steps = 0
        self.last_grad_norm: float | None = None
        self.comm_seconds = 0.0
        self.update_seconds = 0.0
        self._pending = 0
        self._warned_nonfinite = False

    # -- construction --------------------------------------------------------

    def _check_arguments(self, params, optimizer, ranges, max_grad_norm, nonfinite, accumulate, broadcast, kwargs):
        self.optimizer_class = optimizer_class(optimizer)
        self.spec = self.optimizer_class.spec
        self.data, self.grad, self.ranges = flat_buffers(params, ranges)
        self.max_grad_norm = _positive_or_none("max_grad_norm", max_grad_norm)
        if nonfinite is not None and nonfinite not in NONFINITE_POLICIES:
            raise ValueError(f"nonfinite must be one of {NONFINITE_POLICIES} or None, got {nonfinite!r}")
        self.nonfinite = nonfinite
        if isinstance(accumulate, bool) or not isinstance(accumulate, (int, np.integer)) or accumulate < 1:
            raise ValueError(f"accumulate must be an int >= 1, got {accumulate!r}")
        self.accumulate = int(accumulate)
        if not isinstance(broadcast, bool):
            raise TypeError(f"broadcast must be True or False, got {broadcast!r}")
        unknown = set(kwargs) - set(self.spec.defaults) - set(_PASSED_THROUGH)
        if unknown:
            raise TypeError(f"{self.optimizer_class.__name__} got unknown argument(s) {sorted(unknown)}; "
                            f"hyperparameters: {sorted(self.spec.defaults)}, options: max_grad_norm, nonfinite, "
                            f"accumulate, {', '.join(_PASSED_THROUGH)}")
        self.kwargs = dict(kwargs)

    def _plan(self) -> None:
        """Set ``self.layout`` and whatever the subclass needs before building (no allocation of state)."""
        raise NotImplementedError

    def _build(self) -> list[Inner]:
        """The inner optimizers, in buffer order (subclasses)."""
        raise NotImplementedError

    def _inner(self, data, grad, lo: int, hi: int, offset: int) -> Inner:
        """A fastopt optimizer over ``data[lo:hi]`` with gradients ``grad[lo - offset:hi - offset]``;
        for per-tensor rules (LAMB) one (param, grad) pair per tensor, so each
        tensor keeps its own trust ratio."""
        pieces = self.layout.tensors_in(lo, hi) if self.spec.segmented is not None else ((lo, hi),)
        pairs = [(data[a:b], grad[a - offset:b - offset]) for a, b in pieces]
        return Inner(lo, hi, pieces, self.optimizer_class(pairs[0] if len(pairs) == 1 else pairs, **self.kwargs))

    def _probe(self) -> Optimizer:
        """A throw-away optimizer over one element: checks the hyperparameters
        and shows the state a real one holds."""
        dummy = np.zeros(1, self.data.dtype)
        return self.optimizer_class((dummy, dummy.copy()), **self.kwargs)

    def _share_groups(self) -> None:
        probe = self._probe()
        values = {k: v for k, v in probe.param_groups[0].items() if k != "params"}
        self.param_groups = [SharedGroup({**values, "params": [self.data]}, [])]
        self.defaults = dict(probe.defaults)
        self._state_names = sorted(k for k, v in next(iter(probe.state.values())).items()
                                   if isinstance(v, np.ndarray))

    def _fingerprint(self) -> dict:
        hyper = {k: repr(v) for k, v in self.param_groups[0].items() if k != "params"}
        return {
            "mode": self.mode, "optimizer": self.spec.name, "elements": int(self.data.size),
            "dtype": str(self.data.dtype), "tensors": repr(self.ranges) if len(self.ranges) <= 8 else
            f"{len(self.ranges)} tensors, hash {hash(tuple(self.ranges))}",
            "hyperparameters": hyper,
            "options": {"max_grad_norm": self.max_grad_norm, "nonfinite": self.nonfinite,
                        "accumulate": self.accumulate, **{k: repr(self.kwargs.get(k)) for k in _PASSED_THROUGH},
                        **self._own_options()},
        }

    def _own_options(self) -> dict:
        return {}

    def _compare(self, prints: list) -> None:
        problems: list[str] = []
        for key in prints[0]:
            if key == "hyperparameters" and problems and problems[-1].startswith("optimizer:"):
                continue  # different optimizers: their hyperparameters differ too
            values = [p[key] for p in prints]
            if any(v != values[0] for v in values[1:]):
                if isinstance(values[0], dict):
                    for sub in values[0]:
                        subs = [v.get(sub) for v in values]
                        if any(s != subs[0] for s in subs[1:]):
                            problems.append(f"{key} {sub}: " + ", ".join(
                                f"rank {r} has {s}" for r, s in enumerate(subs)))
                else:
                    problems.append(f"{key}: " + ", ".join(f"rank {r} has {v}" for r, v in enumerate(values)))
        if problems:
            raise _mpi.RankMismatchError(
                f"{type(self).__name__}: the {len(prints)} ranks disagree on " + "; ".join(problems)
                + " (every rank must build the same model and optimizer)")

    # -- the step --------------------------------------------------------------

    def step(self, closure=None):
        """Reduce the gradients over the ranks and apply one update (see :meth:`apply_step`).

        Parameters
        ----------
        closure : callable, optional
            Re-evaluates the model and returns the loss (called first).
        """
        loss = closure() if closure is not None else None
        self.apply_step()
        return loss

    def apply_step(self, grad_scale: float = 1.0, nonfinite: str | None = None, warn: bool = True) -> bool:
        """Reduce the gradients over the ranks and apply the update with the
        mean gradient times ``grad_scale`` (the ``1/world`` of the mean is
        folded into the same factor: no extra pass). Same contract as
        :meth:`fastopt.Optimizer.apply_step`, so a
        :class:`~fastopt.LossScaler` drives it unchanged.

        Returns
        -------
        bool
            Whether the update was applied (False while accumulating, or when
            a non-finite gradient on any rank made every rank skip it).
        """
        if nonfinite is not None and nonfinite not in NONFINITE_POLICIES:
            raise ValueError(f"nonfinite must be one of {NONFINITE_POLICIES} or None, got {nonfinite!r}")
        if self.accumulate > 1:
            self._pending += 1
            if self._pending < self.accumulate:
                return False
            self._pending = 0
            grad_scale /= self.accumulate
        policy = nonfinite or self.nonfinite
        guarded = not (policy == "ignore" or (policy is None and self.max_grad_norm is None))
        return self._reduce_and_update(grad_scale / self.world_size, policy or "skip", guarded, warn)

    def _reduce_and_update(self, scale: float, policy: str, guarded: bool, warn: bool) -> bool:
        raise NotImplementedError

    def _decide(self, g_slice, scale: float, policy: str):
        """The agreed factor (None: skip), after the one small Allgather."""
        from ..backends.cpu import CPU

        t0 = time.perf_counter()
        mine = guard.partial(CPU, g_slice)
        t1 = time.perf_counter()
        factor, norm = guard.decide(self.comm, mine, scale, self.max_grad_norm, policy)
        self.comm_seconds += time.perf_counter() - t1
        self.update_seconds += t1 - t0
        self.last_grad_norm = norm
        return factor

    def _update(self, optimizers, factor: float) -> None:
        t0 = time.perf_counter()
        for inner in optimizers:
            inner.opt.apply_step(factor, nonfinite="ignore")
        self.update_seconds += time.perf_counter() - t0

    def _skip(self, policy: str, warn: bool) -> bool:
        if policy == "raise":
            error = NonFiniteGradientError("gradients contain NaN or inf on at least one rank; no rank applied "
                                           "the step")
            raise _mpi.raised_on_every_rank(error)
        self.skipped_steps += 1
        if warn and not self._warned_nonfinite:
            warnings.warn("fastopt.distributed: non-finite gradient on at least one rank, step skipped on every "
                          "rank (params and state unchanged); further skips are counted in skipped_steps",
                          RuntimeWarning, stacklevel=4)
            self._warned_nonfinite = True
        return False

    def zero_grad(self, set_to_none: bool = False) -> None:
        """Fill this rank's gradient buffer with zeros (nothing while accumulating, mid-cycle)."""
        if not self._pending:
            self.grad.fill(0)

    # -- EMA -------------------------------------------------------------------

    def swap_ema(self) -> None:
        """Exchange the params with their EMA on every rank (call again to swap back)."""
        if self.kwargs.get("ema_decay") is None:
            raise ValueError("this optimizer keeps no EMA; construct it with ema_decay=...")
        for inner in self._optimizers:
            inner.opt.swap_ema()
        self._after_swap()

    def _after_swap(self) -> None:
        pass

    @contextlib.contextmanager
    def ema_weights(self):
        """Context manager: the params hold their EMA inside the block."""
        self.swap_ema()
        try:
            yield self
        finally:
            self.swap_ema()

    # -- this rank's state as flat arrays -----------------------------------------

    @property
    def owned(self) -> tuple[int, int]:
        """The ``[start, stop)`` range of the flat buffer whose optimizer state this rank holds."""
        raise NotImplementedError

    def state_bytes(self) -> int:
        """Bytes of optimizer state arrays (moments, EMA...) this rank holds."""
        total = 0
        for inner in self._optimizers:
            for entry in inner.opt.state.values():
                total += sum(v.nbytes for v in entry.values() if isinstance(v, np.ndarray))
        return total

    def local_state(self) -> dict:
        """This rank's optimizer state over :attr:`owned`: ``{"arrays": {name:
        flat array}, "scalars": {"step": ..., ...}, "hyperparameters": {...},
        "skipped_steps", "pending"}``. Arrays are copies."""
        arrays: dict[str, list] = {}
        scalars = None
        for inner in self._optimizers:
            sd = inner.opt.state_dict()
            for buffer_id in sd["param_groups"][0]["params"]:
                entry = sd["state"][buffer_id]
                mine = {k: v for k, v in entry.items() if not isinstance(v, np.ndarray)}
                if scalars is None:
                    scalars = mine
                elif mine != scalars:  # pragma: no cover - the inner optimizers step in lockstep
                    raise RuntimeError(f"inner optimizers out of step: {mine} != {scalars}")
                for k, v in entry.items():
                    if isinstance(v, np.ndarray):
                        arrays.setdefault(k, []).append(v.reshape(-1))
        hyper = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        return {"arrays": {k: np.concatenate(v) for k, v in arrays.items()}, "scalars": scalars,
                "hyperparameters": hyper, "skipped_steps": self.skipped_steps, "pending": self._pending}

    def state_names(self) -> list[str]:
        """Names of the per-element state arrays (the same on every rank)."""
        return list(self._state_names)

    def check_local_state(self, state: dict) -> None:
        """Raise ValueError unless ``state`` (as :meth:`local_state` returns,
        over :attr:`owned`) fits this rank; changes nothing."""
        start, stop = self.owned
        names = set(self.state_names())
        if set(state["arrays"]) != names:
            raise ValueError(f"state arrays {sorted(state['arrays'])} do not match this optimizer's "
                             f"{sorted(names)}")
        for k, v in state["arrays"].items():
            if v.shape != (stop - start,) or v.dtype != self.data.dtype:
                raise ValueError(f"state array {k!r} has shape {v.shape} and dtype {v.dtype}, expected "
                                 f"({stop - start},) {self.data.dtype}")
        pending = int(state.get("pending", 0))
        if not 0 <= pending < self.accumulate:
            raise ValueError(f"state 'pending' must be in [0, {self.accumulate}), got {pending}")

    def load_local_state(self, state: dict) -> None:
        """Restore :meth:`local_state` output (over :attr:`owned`), checked first."""
        self.check_local_state(state)
        start = self.owned[0]
        hyper = state["hyperparameters"]
        for inner in self._optimizers:
            ids = list(inner.opt.state)  # buffer ids, in the order of the pieces
            entries = {}
            for buffer_id, (a, b) in zip(ids, inner.pieces):
                entries[buffer_id] = {**state["scalars"],
                                      **{k: v[a - start:b - start] for k, v in state["arrays"].items()}}
            inner.opt.load_state_dict({"optimizer": self.spec.name, "state": entries,
                                       "param_groups": [{**hyper, "params": list(ids)}]})
        for key, value in hyper.items():
            dict.__setitem__(self.param_groups[0], key, value)
        self.skipped_steps = int(state.get("skipped_steps", 0))
        self._pending = int(state.get("pending", 0))


__all__ = ["DistributedOptimizer", "Inner", "SharedGroup", "flat_buffers", "optimizer_class"]
