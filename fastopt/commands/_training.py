"""The training loop shared by ``fastopt demo``, ``train`` and ``compare``.

Everything the commands need to turn names (data set, optimizer preset,
schedule) into objects lives here, plus one loop that trains the NumPy MLP
and times the ``optimizer.step()`` calls separately from the rest.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "DATASETS", "PRESETS", "available_presets", "SCHEDULE_NAMES", "Dataset", "TrainResult",
    "add_common_arguments", "check_positive", "load_dataset", "make_optimizer",
    "make_schedule", "preset_name", "schedule_name", "steps_per_epoch", "train", "warm_up",
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


def _spiral(seed):
    from ..data import spiral

    X, y = spiral(n_classes=3, n_per_class=100, seed=seed)
    return Dataset("spiral", X, y, None, None, (2, 64, 3), epochs=100, batch_size=32)


def _digits(seed):
    from ..data import digits

    (X, y), (Xt, yt) = digits(test_fraction=0.2, seed=seed)
    return Dataset("digits", X, y, Xt, yt, (64, 128, 10), epochs=30, batch_size=32)


#: Data set loaders by name.
DATASETS = {"spiral": _spiral, "digits": _digits}


def _lookup(kind: str, name: str, choices) -> str:
    key = str(name).strip().lower().replace("-", "_")
    if key not in choices:
        raise ValueError(f"unknown {kind} {name!r}; choose from {', '.join(choices)}")
    return key


def preset_name(name: str) -> str:
    """Normalise an optimizer preset name; ValueError listing the choices if unknown."""
    return _lookup("optimizer", name, list(available_presets()))


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


def make_optimizer(name: str, params, lr=None, **overrides):
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


def make_schedule(name: str, lr: float, total_steps: int):
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


def warm_up(optimizer, dtype) -> None:
    """Compile (or load from the cache) the kernel `optimizer` will use, on a
    throw-away one-element buffer, so that timed steps exclude compilation."""
    from ..params import FlatParams

    hyper = {k: v for k, v in optimizer.param_groups[0].items() if k != "params"}
    dummy = FlatParams({"w": (1,)}, dtype=dtype)
    type(optimizer)(dummy, **hyper).step()


def _epochs(model, optimizer, data, epochs, batch_size, rng, scheduler, progress, result, distributed=None):
    """The loop of :func:`train`; fills `result` in place."""
    from ..data import batches

    clock = time.perf_counter
    for _ in range(epochs):
        total, count = 0.0, 0
        for xb, yb in batches(data.X_train, data.y_train, batch_size, shuffle=True, seed=rng):
            if distributed is None:
                loss, _ = model.loss_and_grad(xb, yb)
            else:  # this rank's share of the global batch; the global batch's loss
                loss, _ = distributed.loss_and_grad(model, xb, yb)
            t0 = clock()
            optimizer.step()
            result.step_seconds += clock() - t0
            result.steps += 1
            if scheduler is not None:
                scheduler.step()
            total += loss * len(xb)
            count += len(xb)
        epoch_loss = total / count
        result.epoch_losses.append(epoch_loss)
        if progress is not None:
            progress.update(loss=epoch_loss)
        if not math.isfinite(epoch_loss):
            result.diverged = True
            break


def train(model, optimizer, data: Dataset, epochs: int, batch_size: int, seed=0,
          schedule=None, progress=None, distributed=None) -> TrainResult:
    """Train `model` on `data` with `optimizer`, timing the optimizer steps.

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

    warm_up(optimizer, model.params.dtype)
    if distributed is not None:
        optimizer = distributed.optimizer
    scheduler = Scheduler(optimizer, schedule) if schedule is not None else None
    rng = np.random.default_rng(seed)
    result = TrainResult()
    clock = time.perf_counter
    start = clock()
    with np.errstate(over="ignore", invalid="ignore"):  # divergence is reported, not warned about
        _epochs(model, optimizer, data, epochs, batch_size, rng, scheduler, progress, result, distributed)
    result.seconds = clock() - start
    with np.errstate(all="ignore"):
        result.train_loss = model.loss(data.X_train, data.y_train)
        result.train_acc = model.accuracy(data.X_train, data.y_train)
        if data.X_test is not None:
            result.test_acc = model.accuracy(data.X_test, data.y_test)
    result.diverged = result.diverged or not math.isfinite(result.train_loss)
    return result


def check_positive(name: str, value, integer=False):
    """Raise ValueError ``"{name} must be > 0, got ..."`` unless `value` is a positive (finite) number."""
    if value is None:
        return
    ok = math.isfinite(value) and value > 0 and (not integer or int(value) == value)
    if not ok:
        kind = "an integer >= 1" if integer else "> 0"
        raise ValueError(f"{name} must be {kind}, got {value!r}")


def run_setup(args):
    """The checks and data loading shared by ``train`` and ``compare``: bad
    ``--epochs``/``--batch-size`` and a missing matplotlib for ``--plot`` fail
    before any work. Returns ``(data, epochs, batch_size)``."""
    from ._plot import require_matplotlib

    check_positive("--epochs", args.epochs, integer=True)
    check_positive("--batch-size", args.batch_size, integer=True)
    if args.plot:
        require_matplotlib()
    data = load_dataset(args.dataset, seed=args.seed)
    return data, args.epochs or data.epochs, args.batch_size or data.batch_size


def add_common_arguments(parser, epochs_help="epochs (default: the data set's)") -> None:
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
