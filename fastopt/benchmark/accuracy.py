"""Accuracy of low-precision optimizer states, measured with the real kernels.

The float64 simulation in ``bench/codec_accuracy.py`` isolates the state
codecs; this module runs the optimizers themselves (float32 params and
grads, float32 arithmetic, states stored through the codec the optimizer
allocated) on the same noisy quadratic, and reads back what each optimizer
really allocated.

The noisy quadratic (the main table of ``bench/codec_accuracy.py``, same
draws for a seed): ``n = 20480`` coordinates, loss
``L(x) = 0.5 * sum_i h_i x_i**2`` with curvatures ``h_i = exp(U(-3, 2))``,
``x0 ~ N(0, 1)``, stochastic gradient ``g = h * x + sigma * xi`` with fresh
``xi ~ N(0, 1)`` every step, ``sigma = 0.1``, 300 steps. Curvatures and
``x0`` come from ``default_rng([seed, 0])``, the noise from
``default_rng([seed, 1])``; every state dtype sees the same draws for a
seed, so ``loss(state dtype) / loss(float32 states)`` is a paired ratio.

The MLP (:func:`mlp_run`): :class:`fastopt.nn.MLP` trained as ``fastopt
compare`` trains it (the optimizer presets, the data set's epochs and batch
size, one seed for data, weights and batches), with a held-out accuracy: the
digits test split, or for spiral a fresh draw of 3000 points.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["QUADRATIC_OPTIMIZERS", "MLPRun", "NoisyQuadratic", "mlp_run", "noisy_quadratic_losses", "state_summary"]

#: The optimizers of the noisy-quadratic tables: label -> (registry name,
#: hyperparameters), as in ``bench/codec_accuracy.py`` (Adam and AdamW at
#: lr 0.03, SGD with momentum 0.9 at lr 0.05).
QUADRATIC_OPTIMIZERS: dict[str, tuple[str, dict]] = {
    "adam": ("adam", {"lr": 0.03, "betas": (0.9, 0.999), "eps": 1e-8}),
    "adamw": ("adamw", {"lr": 0.03, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01}),
    "momentum": ("sgd", {"lr": 0.05, "momentum": 0.9}),
}


@dataclass(frozen=True)
class NoisyQuadratic:
    """The problem (see the module docs); ``draw(seed)`` gives its random parts."""

    n: int = 20480
    steps: int = 300
    sigma: float = 0.1

    def draw(self, seed: int) -> tuple[np.ndarray, np.ndarray, np.random.Generator]:
        """``(h, x0, noise)``: float64 curvatures and start, and the generator
        of the gradient noise (one ``standard_normal(n)`` per step)."""
        rng = np.random.default_rng([seed, 0])
        h = np.exp(rng.uniform(-3.0, 2.0, self.n))
        x0 = rng.standard_normal(self.n)
        return h, x0, np.random.default_rng([seed, 1])


def noisy_quadratic_losses(optimizer: str, seed: int, problem: NoisyQuadratic = NoisyQuadratic(),
                           hyperparameters: dict | None = None, **options: Any) -> tuple[np.ndarray, Any]:
    """Run one optimizer of :data:`QUADRATIC_OPTIMIZERS` on the noisy quadratic.

    Parameters
    ----------
    optimizer : str
        A key of :data:`QUADRATIC_OPTIMIZERS`.
    seed : int
        Seed of the problem; also the ``rounding_seed`` unless `options` sets one.
    problem : NoisyQuadratic
    hyperparameters : dict, optional
        Overrides of the label's hyperparameters.
    **options
        Optimizer options: ``state_dtype``, ``stochastic_rounding``...

    Returns
    -------
    losses : ndarray of float64, shape (steps + 1,)
        The loss before the first step and after every step (inf once the
        iterate is no longer finite).
    opt : fastopt.Optimizer
        The optimizer, with its state as allocated (see :func:`state_summary`).
    """
    from ..optim import OPTIMIZERS

    name, hyper = QUADRATIC_OPTIMIZERS[optimizer]
    h, x0, noise = problem.draw(seed)
    x, g = x0.astype(np.float32), np.zeros(problem.n, np.float32)
    options.setdefault("rounding_seed", seed)
    opt = OPTIMIZERS[name]([(x, g)], **{**hyper, **(hyperparameters or {})}, **options)
    losses = np.empty(problem.steps + 1)
    losses[0] = 0.5 * float(np.dot(h, x0 * x0))
    for t in range(1, problem.steps + 1):
        xi = noise.standard_normal(problem.n)
        np.add(h * x, problem.sigma * xi, out=g, casting="same_kind")
        opt.step()
        x64 = x.astype(np.float64)
        losses[t] = 0.5 * float(np.dot(h, x64 * x64))
        if not np.isfinite(losses[t]):
            losses[t:] = np.inf
            break
    return losses, opt


_STORAGE = {"uint8": "int8", "uint16": "bfloat16", "float32": "float32", "float64": "float64"}
_NOT_STATE = ("step", "master_param", "ema")


def state_summary(opt: Any, n_params: int) -> tuple[str, float, dict[str, str]]:
    """What ``opt`` really allocated for its optimizer state.

    Parameters
    ----------
    opt : fastopt.Optimizer
    n_params : int
        Parameters it updates (the denominator of the bytes per parameter).

    Returns
    -------
    storage : str
        The storage of its states (``"int8"``: 8-bit block floats with their
        float32 block scales; ``"bfloat16"``; ``"float32"``; several joined
        by ``"+"`` when states differ; ``"none"`` for a stateless step).
    bytes_per_param : float
        Bytes of every state array (codes, padding to whole blocks and block
        scales included) over `n_params`; the master copy and EMA are not
        optimizer state and are left out.
    per_state : dict
        State name -> storage (``"int8"`` entries name their codes; the
        ``*_scale`` arrays are counted in the bytes).
    """
    total, per_state = 0, {}
    for entry in opt.state.values():
        for key, value in entry.items():
            if key in _NOT_STATE or not hasattr(value, "dtype"):
                continue
            total += int(value.nbytes)
            if not key.endswith("_scale"):
                per_state[key] = _STORAGE.get(np.dtype(value.dtype).name, np.dtype(value.dtype).name)
    kinds = sorted(set(per_state.values()))
    return "+".join(kinds) or "none", total / max(1, int(n_params)), per_state


@dataclass
class MLPRun:
    """One MLP training run (see :func:`mlp_run`)."""

    epoch_losses: list
    train_loss: float
    train_acc: float
    test_acc: float
    n_params: int
    storage: str
    bytes_per_param: float
    per_state: dict


HELD_OUT_SEED = 10_000
"""Spiral's held-out points for seed ``s`` are ``spiral(n_per_class=1000, seed=HELD_OUT_SEED + s)``."""


def mlp_run(dataset: str, optimizer: str, seed: int, state_dtype: str | None = None, sizes: tuple | None = None,
            epochs: int | None = None, **options: Any) -> MLPRun:
    """Train the NumPy MLP on `dataset` with preset `optimizer` (``fastopt
    compare``'s names: ``"adam"``, ``"adamw"``, ``"momentum"``...).

    Parameters
    ----------
    dataset : {"spiral", "digits"}
    optimizer : str
        A preset of :func:`fastopt.commands._training.available_presets`.
    seed : int
        Seed of the data (split), initial weights, batches and stochastic rounding.
    state_dtype : str, optional
        The optimizer's ``state_dtype``.
    sizes : tuple, optional
        Layer widths (default: the data set's MLP).
    epochs : int, optional
        Default: the data set's.
    **options
        Further optimizer options (``stochastic_rounding``...).
    """
    from ..commands._training import load_dataset, make_optimizer, train
    from ..data import spiral
    from ..nn import MLP

    data = load_dataset(dataset, seed=seed)
    model = MLP(sizes or data.sizes, seed=seed)
    opt = make_optimizer(optimizer, model.params, state_dtype=state_dtype, rounding_seed=seed, **options)
    result = train(model, opt, data, epochs or data.epochs, data.batch_size, seed=seed)
    if data.X_test is not None and data.y_test is not None:
        X, y = data.X_test, data.y_test
    else:
        X, y = spiral(n_per_class=1000, seed=HELD_OUT_SEED + seed)
    with np.errstate(all="ignore"):
        test_acc = model.accuracy(X, y)
    storage, per_param, per_state = state_summary(opt, model.n_params)
    return MLPRun(list(result.epoch_losses), result.train_loss, result.train_acc, test_acc, model.n_params, storage,
                  per_param, per_state)
