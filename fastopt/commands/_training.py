"""The training loop shared by ``fastopt demo``, ``train`` and ``compare``.

Everything the commands need to turn names (data set, optimizer preset,
schedule) into objects lives here, plus one loop that trains the NumPy MLP
and times the ``optimizer.step()`` calls separately from the rest.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..progress import ProgressBar

if TYPE_CHECKING:
    from ..nn import MLP

__all__ = [
    "DATASETS", "PRESETS", "available_presets", "SCHEDULE_NAMES", "Dataset", "TrainResult",
    "add_common_arguments", "check_positive", "divergence_warning", "load_dataset", "make_optimizer",
    "make_schedule", "preset_lr", "preset_name", "run_setup", "schedule_name", "state_dtype_names", "steps_per_epoch",
    "train", "warm_up",
]

#: Optimizer presets for the MLPs here: registry name and hyperparameters.
#: ``lr`` is the default learning rate of ``fastopt train`` and ``compare``.
#: Optimizers registered in ``fastopt.OPTIMIZERS`` without a preset are
#: available under their own name with their default hyperparameters.
PRESETS: dict[str, tuple[str, dict]] = {
    "sgd": ("sgd", {"lr": 0.2}),
    "momentum": ("sgd", {"lr": 0.05, "momentum": 0.9}),
    "adagrad": ("adagrad", {"lr": 0.1}),
    "rmsprop": ("rmsprop", {"lr": 1e-2}),
    "adadelta": ("adadelta", {"lr": 1.0}),
    "adam": ("adam", {"lr": 1e-2}),
    "adamw": ("adamw", {"lr": 1e-2, "weight_decay": 1e-2}),
    "adamax": ("adamax", {"lr": 2e-2}),
    "nadam": ("nadam", {"lr": 1e-2}),
    "radam": ("radam", {"lr": 1e-2}),
    "lion": ("lion", {"lr": 1e-3}),
    "lamb": ("lamb", {"lr": 5e-3}),
}


def available_presets() -> dict[str, tuple[str, dict]]:
    """:data:`PRESETS` whose optimizer is registered, plus every other registered optimizer."""
    from ..optim import OPTIMIZERS

    out = {k: v for k, v in PRESETS.items() if v[0] in OPTIMIZERS}
    covered = {registry for registry, _ in out.values()}
    out.update({name: (name, {}) for name in OPTIMIZERS if name not in covered and name not in out})
    return out


#: Schedule names accepted by ``--schedule``.
SCHEDULE_NAMES = ("constant", "inverse_time", "step", "exponential", "cosine", "onecycle")


@dataclass
class Dataset:
    """A classification problem with its default MLP and training settings."""

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray | None
    y_test: np.ndarray | None
    sizes: tuple
    epochs: int
    batch_size: int


def _spiral(seed: int) -> Dataset:
    from ..data import spiral

    X, y = spiral(n_classes=3, n_per_class=100, seed=seed)
    return Dataset("spiral", X, y, None, None, (2, 64, 3), epochs=100, batch_size=32)


def _digits(seed: int) -> Dataset:
    from ..data import digits

    (X, y), (Xt, yt) = digits(test_fraction=0.2, seed=seed)
    return Dataset("digits", X, y, Xt, yt, (64, 128, 10), epochs=30, batch_size=32)


#: Data set loaders by name.
DATASETS = {"spiral": _spiral, "digits": _digits}


def _lookup(kind: str, name: str, choices: Iterable[str]) -> str:
    key = str(name).strip().lower().replace("-", "_")
    if key not in choices:
        raise ValueError(f"unknown {kind} {name!r}; choose from {', '.join(choices)}")
    return key


def preset_name(name: str) -> str:
    """Normalise an optimizer preset name; ValueError listing the choices if unknown."""
    return _lookup("optimizer", name, list(available_presets()))


def preset_lr(name: str) -> float:
    """The learning rate of preset `name` (the optimizer's default where the preset sets none)."""
    from ..rules import SPECS

    registry_name, hyper = available_presets()[preset_name(name)]
    return float(hyper.get("lr", SPECS[registry_name].defaults["lr"]))


#: Other spellings accepted for state dtypes on the command line.
STATE_DTYPE_ALIASES = {"bf16": "bfloat16", "fp32": "float32", "f32": "float32", "fp64": "float64",
                       "f64": "float64"}


def state_dtype_names(text: str, option: str = "--state-dtypes") -> list[str]:
    """The state dtypes of a comma-separated list (in order, each once); ValueError
    naming `option` and the choices for an unknown or empty one."""
    from .._precision import STATE_DTYPES

    names: list[str] = []
    for item in str(text).split(","):
        key = item.strip().lower()
        if not key:
            continue
        key = STATE_DTYPE_ALIASES.get(key, key)
        if key not in STATE_DTYPES:
            raise ValueError(f"{option}: unknown state dtype {item.strip()!r}; choose from {', '.join(STATE_DTYPES)}")
        if key not in names:
            names.append(key)
    if not names:
        raise ValueError(f"{option} must name at least one of {', '.join(STATE_DTYPES)}")
    return names


def schedule_name(name: str) -> str:
    """Normalise a schedule name; ValueError listing the choices if unknown."""
    return _lookup("schedule", name, SCHEDULE_NAMES)


def load_dataset(name: str, seed: int = 0) -> Dataset:
    """Load data set `name` (``"spiral"`` or ``"digits"``).

    Parameters
    ----------
    name : str
    seed : int, default 0
        Seed of the data (spiral noise, digits train/test split).

    Returns
    -------
    Dataset
    """
    return DATASETS[_lookup("dataset", name, list(DATASETS))](seed)


def make_optimizer(name: str, params: Any, lr: float | None = None, **overrides: Any) -> Any:
    """Build the optimizer of preset `name` on `params`.

    Parameters
    ----------
    name : str
        A key of :func:`available_presets`.
    params
        Anything a fastopt optimizer accepts (e.g. ``mlp.params``).
    lr : float or None
        Learning rate; None keeps the preset's.
    **overrides
        Further hyperparameters; None values are ignored.

    Returns
    -------
    fastopt.Optimizer
    """
    from ..optim import OPTIMIZERS

    registry_name, hyper = available_presets()[preset_name(name)]
    hyper = dict(hyper)
    if lr is not None:
        hyper["lr"] = lr
    hyper.update({k: v for k, v in overrides.items() if v is not None})
    return OPTIMIZERS[registry_name](params, **hyper)


def make_schedule(name: str, lr: float, total_steps: int) -> Callable[[float], float]:
    """A learning-rate schedule over `total_steps` optimizer steps.

    The decaying schedules are scaled to the run: ``inverse_time`` and
    ``exponential`` end near ``lr / 10`` and ``lr / 100``, ``step`` divides by
    10 after each third, ``cosine`` warms up over the first 5 %, ``onecycle``
    peaks at `lr`.

    Parameters
    ----------
    name : str
        One of :data:`SCHEDULE_NAMES`.
    lr : float
        Base (or peak) learning rate.
    total_steps : int
        Optimizer steps in the run (>= 1).

    Returns
    -------
    fastopt.schedules.Schedule
    """
    from .. import schedules

    key = schedule_name(name)
    n = max(1, int(total_steps))
    kwargs = {
        "constant": {"lr": lr},
        "inverse_time": {"lr": lr, "decay": 9.0 / n},
        "step": {"lr": lr, "step_size": max(1, math.ceil(n / 3)), "gamma": 0.1},
        "exponential": {"lr": lr, "gamma": 0.01 ** (1.0 / n)},
        "cosine": {"lr": lr, "total_steps": n, "warmup_steps": n // 20},
        "onecycle": {"max_lr": lr, "total_steps": n},
    }[key]
    return schedules.get(key, **kwargs)


@dataclass
class TrainResult:
    """What one training run produced.

    Attributes
    ----------
    epoch_losses : list of float
        Mean batch loss of every epoch (the loss curve).
    train_loss : float
        Loss on the whole training set after the last step.
    train_acc, test_acc : float
        Accuracies after training (`test_acc` is None without a test set).
    steps : int
        Optimizer steps taken.
    step_seconds : float
        Total time inside ``optimizer.step()``.
    seconds : float
        Wall time of the whole loop.
    diverged : bool
        True when the loss became NaN or infinite (training stopped there).
    """

    epoch_losses: list = field(default_factory=list)
    train_loss: float = float("nan")
    train_acc: float = float("nan")
    test_acc: float | None = None
    steps: int = 0
    step_seconds: float = 0.0
    seconds: float = 0.0
    diverged: bool = False

    @property
    def us_per_step(self) -> float:
        """Mean microseconds per ``optimizer.step()`` call."""
        return 1e6 * self.step_seconds / self.steps if self.steps else float("nan")

    @property
    def step_share(self) -> float:
        """Fraction of the loop's wall time spent in ``optimizer.step()``."""
        return self.step_seconds / self.seconds if self.seconds > 0 else float("nan")


def steps_per_epoch(n_samples: int, batch_size: int) -> int:
    """Number of mini-batches (optimizer steps) in one epoch."""
    return max(1, math.ceil(n_samples / batch_size))


def warm_up(optimizer: Any, params: Any) -> None:
    """Compile (or load from the cache) the kernels `optimizer` will use, on a
    throw-away buffer with the layout of `params` (a FlatParams) and the same
    state storage (``state_dtype``), so that timed steps exclude compilation."""
    from ..params import FlatParams

    hyper = {k: v for k, v in optimizer.param_groups[0].items() if k != "params"}
    precision = getattr(optimizer, "precision", None)
    if precision is not None:  # the same state codec, so the same kernel
        hyper.update(state_dtype=precision.state_dtype, stochastic_rounding=precision.stochastic_rounding)
    dummy = FlatParams(params.shapes, dtype=params.dtype)
    type(optimizer)(dummy, **hyper).step()


class _TimedOptimizer:
    """Stands in for the optimizer in :meth:`fastopt.nn.MLP.train_epoch`,
    timing each ``step()`` call apart from the forward and backward passes."""

    def __init__(self, optimizer: Any, result: TrainResult) -> None:
        self.optimizer, self.result = optimizer, result

    def step(self) -> None:
        t0 = time.perf_counter()
        self.optimizer.step()
        self.result.step_seconds += time.perf_counter() - t0
        self.result.steps += 1


def train(model: MLP, optimizer: Any, data: Dataset, epochs: int, batch_size: int, seed: int = 0,
          schedule: Callable[[int], float] | None = None, progress: ProgressBar | None = None,
          distributed: Any = None) -> TrainResult:
    """Train `model` on `data` with `optimizer`, timing the optimizer steps.

    The epochs run :meth:`fastopt.nn.MLP.train_epoch` (the one training loop);
    the run stops at the first epoch whose loss is not finite.

    Parameters
    ----------
    model : fastopt.nn.MLP
    optimizer : fastopt.Optimizer
        Built on ``model.params``.
    data : Dataset
    epochs, batch_size : int
    seed : int, default 0
        Seed of the mini-batch shuffling (one generator across epochs).
    schedule : callable or None
        ``schedule(t) -> lr`` applied per step through
        :class:`fastopt.schedules.Scheduler`; None keeps the optimizer's lr.
    progress : ProgressBar or None
        Advanced by one per epoch, with the epoch loss as postfix.
    distributed : fastopt.commands._distributed.DistributedRun or None
        Data-parallel run under mpiexec: each rank computes its share of
        every global batch and ``distributed.optimizer`` steps instead of
        `optimizer`.

    Returns
    -------
    TrainResult
    """
    from ..schedules import Scheduler

    warm_up(optimizer, model.params)
    gradient = None
    if distributed is not None:
        optimizer, gradient = distributed.optimizer, distributed.loss_and_grad
    scheduler = Scheduler(optimizer, schedule) if schedule is not None else None
    rng = np.random.default_rng(seed)
    result = TrainResult()
    timed = _TimedOptimizer(optimizer, result)
    start = time.perf_counter()
    with np.errstate(over="ignore", invalid="ignore"):  # divergence is reported, not warned about
        for _ in range(epochs):
            loss = model.train_epoch(data.X_train, data.y_train, timed, batch_size, shuffle=True, seed=rng,
                                     scheduler=scheduler, gradient=gradient)
            result.epoch_losses.append(loss)
            if progress is not None:
                progress.update(loss=loss)
            if not math.isfinite(loss):
                result.diverged = True
                break
    result.seconds = time.perf_counter() - start
    with np.errstate(all="ignore"):
        result.train_loss = model.loss(data.X_train, data.y_train)
        result.train_acc = model.accuracy(data.X_train, data.y_train)
        if data.X_test is not None and data.y_test is not None:
            result.test_acc = model.accuracy(data.X_test, data.y_test)
    result.diverged = result.diverged or not math.isfinite(result.train_loss)
    return result


def divergence_warning(command: str, label: str, result: TrainResult, lr: float,
                       option: str = "--lr") -> str | None:
    """One line for stderr when `result` diverged (None otherwise): where the
    loss stopped being finite and what to try."""
    if not result.diverged:
        return None
    finite = [v for v in result.epoch_losses if math.isfinite(v)]
    where = (f"in epoch {len(finite) + 1}" if len(finite) < len(result.epoch_losses)
             else "after the last epoch")
    return (f"fastopt {command}: warning: {label} with lr={lr:g}: the training loss became NaN or infinite "
            f"{where} and the run stopped there; try a smaller {option}")


def check_positive(name: str, value: float | None, integer: bool = False) -> None:
    """Raise ValueError ``"{name} must be > 0, got ..."`` unless `value` is a positive (finite) number."""
    if value is None:
        return
    ok = math.isfinite(value) and value > 0 and (not integer or int(value) == value)
    if not ok:
        kind = "an integer >= 1" if integer else "> 0"
        raise ValueError(f"{name} must be {kind}, got {value!r}")


def run_setup(args: argparse.Namespace) -> tuple[Dataset, int, int]:
    """The checks and data loading shared by ``train`` and ``compare``: bad
    ``--epochs``/``--batch-size``, an unwritable ``--plot`` path and a missing
    matplotlib fail before any work. Returns ``(data, epochs, batch_size)``."""
    from ..plotting import require_matplotlib
    from ._outputs import check_output_path

    check_positive("--epochs", args.epochs, integer=True)
    check_positive("--batch-size", args.batch_size, integer=True)
    if args.plot:
        check_output_path("--plot", args.plot)
        require_matplotlib("--plot")
    data = load_dataset(args.dataset, seed=args.seed)
    return data, args.epochs or data.epochs, args.batch_size or data.batch_size


def add_common_arguments(parser: argparse.ArgumentParser,
                         epochs_help: str = "epochs (default: the data set's)") -> None:
    """Arguments shared by ``train`` and ``compare``."""
    parser.add_argument("--dataset", default="spiral", metavar="{" + ",".join(DATASETS) + "}",
                        help="data set (default spiral; digits needs scikit-learn)")
    parser.add_argument("--epochs", type=int, default=None, help=epochs_help)
    parser.add_argument("--batch-size", type=int, default=None,
                        help="mini-batch size (default: the data set's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of data, initial weights and shuffling")
    parser.add_argument("--plot", metavar="PNG", default=None,
                        help='write a loss-curve PNG (needs matplotlib: pip install "fastopt[plot]")')
    parser.add_argument("--no-progress", action="store_true", help="do not draw the progress bar")
