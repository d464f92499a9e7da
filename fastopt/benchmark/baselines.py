"""The baselines fastopt is measured against.

* ``numpy_naive``: NumPy written the way optimizer tutorials write it, one
  expression per equation, each allocating temporaries.
* ``numpy_out``: the same math with every temporary preallocated and every
  ufunc writing through ``out=`` (the best plain NumPy does without fusing).
* ``torch_single`` / ``torch_foreach`` / ``torch_fused``: ``torch.optim`` with
  ``foreach=False``, ``foreach=True`` and ``fused=True`` on the same buffer,
  where torch is importable and offers that implementation.

Each NumPy update supports the configurations the benchmark uses (see
:mod:`.problems`) and follows torch.optim's semantics, so it computes the same
update as fastopt; ``tests/test_benchmark.py`` checks that it does.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from ..functional import init_state
from .problems import aligned_copy
from .timing import Contender

Cast = Callable[[float], Any]
"""The buffer dtype's scalar type (``numpy.float32``): constants cast by it never upcast a ufunc."""

# -- naive NumPy -------------------------------------------------------------


def _naive_sgd(p: np.ndarray, g: np.ndarray, s: dict, t: int, h: dict) -> None:
    if h["momentum"]:
        if t == 1:
            s["momentum_buffer"] = g.copy()
        else:
            s["momentum_buffer"] = h["momentum"] * s["momentum_buffer"] + (1 - h["dampening"]) * g
        g = s["momentum_buffer"]
    p -= h["lr"] * g


def _naive_adagrad(p: np.ndarray, g: np.ndarray, s: dict, t: int, h: dict) -> None:
    s["sum"] = s["sum"] + g**2
    lr = h["lr"] / (1 + (t - 1) * h["lr_decay"])
    p -= lr * g / (np.sqrt(s["sum"]) + h["eps"])


def _naive_rmsprop(p: np.ndarray, g: np.ndarray, s: dict, t: int, h: dict) -> None:
    s["square_avg"] = h["alpha"] * s["square_avg"] + (1 - h["alpha"]) * g**2
    p -= h["lr"] * g / (np.sqrt(s["square_avg"]) + h["eps"])


def _naive_adadelta(p: np.ndarray, g: np.ndarray, s: dict, t: int, h: dict) -> None:
    rho, eps = h["rho"], h["eps"]
    s["square_avg"] = rho * s["square_avg"] + (1 - rho) * g**2
    delta = np.sqrt(s["acc_delta"] + eps) / np.sqrt(s["square_avg"] + eps) * g
    s["acc_delta"] = rho * s["acc_delta"] + (1 - rho) * delta**2
    p -= h["lr"] * delta


def _naive_adam(p: np.ndarray, g: np.ndarray, s: dict, t: int, h: dict, decoupled: bool = False) -> None:
    b1, b2 = h["betas"]
    if decoupled:
        p *= 1 - h["lr"] * h["weight_decay"]
    s["exp_avg"] = b1 * s["exp_avg"] + (1 - b1) * g
    s["exp_avg_sq"] = b2 * s["exp_avg_sq"] + (1 - b2) * g**2
    m_hat = s["exp_avg"] / (1 - b1**t)
    v_hat = s["exp_avg_sq"] / (1 - b2**t)
    p -= h["lr"] * m_hat / (np.sqrt(v_hat) + h["eps"])


def _naive_adamw(p: np.ndarray, g: np.ndarray, s: dict, t: int, h: dict) -> None:
    _naive_adam(p, g, s, t, h, decoupled=True)


def _naive_adamax(p: np.ndarray, g: np.ndarray, s: dict, t: int, h: dict) -> None:
    b1, b2 = h["betas"]
    s["exp_avg"] = b1 * s["exp_avg"] + (1 - b1) * g
    s["exp_inf"] = np.maximum(b2 * s["exp_inf"], np.abs(g) + h["eps"])
    p -= h["lr"] / (1 - b1**t) * s["exp_avg"] / s["exp_inf"]


def _nadam_mu(h: dict, t: int) -> float:
    return h["betas"][0] * (1 - 0.5 * 0.96 ** (t * h["momentum_decay"]))


def _naive_nadam(p: np.ndarray, g: np.ndarray, s: dict, t: int, h: dict) -> None:
    b1, b2 = h["betas"]
    mu, mu_next = _nadam_mu(h, t), _nadam_mu(h, t + 1)
    s["mu_product"] = s.get("mu_product", 1.0) * mu
    s["exp_avg"] = b1 * s["exp_avg"] + (1 - b1) * g
    s["exp_avg_sq"] = b2 * s["exp_avg_sq"] + (1 - b2) * g**2
    denom = np.sqrt(s["exp_avg_sq"] / (1 - b2**t)) + h["eps"]
    p -= h["lr"] * (1 - mu) / (1 - s["mu_product"]) * g / denom
    p -= h["lr"] * mu_next / (1 - s["mu_product"] * mu_next) * s["exp_avg"] / denom


def _radam_rect(b2: float, t: int) -> float | None:
    rho_inf = 2 / (1 - b2) - 1
    rho_t = rho_inf - 2 * t * b2**t / (1 - b2**t)
    if rho_t <= 5:
        return None
    return np.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))


def _naive_radam(p: np.ndarray, g: np.ndarray, s: dict, t: int, h: dict) -> None:
    b1, b2 = h["betas"]
    s["exp_avg"] = b1 * s["exp_avg"] + (1 - b1) * g
    s["exp_avg_sq"] = b2 * s["exp_avg_sq"] + (1 - b2) * g**2
    m_hat = s["exp_avg"] / (1 - b1**t)
    rect = _radam_rect(b2, t)
    if rect is None:
        p -= h["lr"] * m_hat
    else:
        adaptive = np.sqrt(1 - b2**t) / (np.sqrt(s["exp_avg_sq"]) + h["eps"])
        p -= h["lr"] * m_hat * rect * adaptive


def _naive_lion(p: np.ndarray, g: np.ndarray, s: dict, t: int, h: dict) -> None:
    b1, b2 = h["betas"]
    update = np.sign(b1 * s["exp_avg"] + (1 - b1) * g)
    p *= 1 - h["lr"] * h["weight_decay"]
    p -= h["lr"] * update
    s["exp_avg"] = b2 * s["exp_avg"] + (1 - b2) * g


# -- NumPy with out= ---------------------------------------------------------
# ``w`` is a list of two preallocated scratch arrays; constants are NumPy
# scalars of the buffer's dtype so that no ufunc upcasts.


def _out_sgd(p: np.ndarray, g: np.ndarray, s: dict, t: int, h: dict, w: list[np.ndarray], f: Cast) -> None:
    d = g
    if h["momentum"]:
        buf = s["momentum_buffer"]
        if t == 1:
            np.copyto(buf, g)
        else:
            np.multiply(buf, f(h["momentum"]), out=buf)
            np.multiply(g, f(1 - h["dampening"]), out=w[0])
            np.add(buf, w[0], out=buf)
        d = buf
    np.multiply(d, f(h["lr"]), out=w[0])
    np.subtract(p, w[0], out=p)


def _out_adagrad(p: np.ndarray, g: np.ndarray, s: dict, t: int, h: dict, w: list[np.ndarray], f: Cast) -> None:
    acc = s["sum"]
    np.multiply(g, g, out=w[0])
    np.add(acc, w[0], out=acc)
    np.sqrt(acc, out=w[0])
    np.add(w[0], f(h["eps"]), out=w[0])
    np.divide(g, w[0], out=w[0])
    np.multiply(w[0], f(h["lr"] / (1 + (t - 1) * h["lr_decay"])), out=w[0])
    np.subtract(p, w[0], out=p)


def _out_rmsprop(p: np.ndarray, g: np.ndarray, s: dict, t: int, h: dict, w: list[np.ndarray], f: Cast) -> None:
    sq, alpha = s["square_avg"], h["alpha"]
    np.multiply(sq, f(alpha), out=sq)
    np.multiply(g, g, out=w[0])
    np.multiply(w[0], f(1 - alpha), out=w[0])
    np.add(sq, w[0], out=sq)
    np.sqrt(sq, out=w[0])
    np.add(w[0], f(h["eps"]), out=w[0])
    np.divide(g, w[0], out=w[0])
    np.multiply(w[0], f(h["lr"]), out=w[0])
    np.subtract(p, w[0], out=p)


def _out_adadelta(p: np.ndarray, g: np.ndarray, s: dict, t: int, h: dict, w: list[np.ndarray], f: Cast) -> None:
    sq, acc, rho, eps = s["square_avg"], s["acc_delta"], h["rho"], f(h["eps"])
    np.multiply(sq, f(rho), out=sq)
    np.multiply(g, g, out=w[0])
    np.multiply(w[0], f(1 - rho), out=w[0])
    np.add(sq, w[0], out=sq)
    np.add(acc, eps, out=w[0])
    np.sqrt(w[0], out=w[0])
    np.add(sq, eps, out=w[1])
    np.sqrt(w[1], out=w[1])
    np.divide(w[0], w[1], out=w[0])
    np.multiply(w[0], g, out=w[0])  # delta
    np.multiply(acc, f(rho), out=acc)
    np.multiply(w[0], w[0], out=w[1])
    np.multiply(w[1], f(1 - rho), out=w[1])
    np.add(acc, w[1], out=acc)
    np.multiply(w[0], f(h["lr"]), out=w[0])
    np.subtract(p, w[0], out=p)


def _out_adam(p: np.ndarray, g: np.ndarray, s: dict, t: int, h: dict, w: list[np.ndarray], f: Cast,
              decoupled: bool = False) -> None:
    m, v, (b1, b2) = s["exp_avg"], s["exp_avg_sq"], h["betas"]
    if decoupled:
        np.multiply(p, f(1 - h["lr"] * h["weight_decay"]), out=p)
    _out_moments(g, m, v, b1, b2, w, f)
    np.sqrt(v, out=w[0])
    np.multiply(w[0], f(1 / np.sqrt(1 - b2**t)), out=w[0])
    np.add(w[0], f(h["eps"]), out=w[0])
    np.divide(m, w[0], out=w[0])
    np.multiply(w[0], f(h["lr"] / (1 - b1**t)), out=w[0])
    np.subtract(p, w[0], out=p)


def _out_adamw(p: np.ndarray, g: np.ndarray, s: dict, t: int, h: dict, w: list[np.ndarray], f: Cast) -> None:
    _out_adam(p, g, s, t, h, w, f, decoupled=True)


def _out_adamax(p: np.ndarray, g: np.ndarray, s: dict, t: int, h: dict, w: list[np.ndarray], f: Cast) -> None:
    m, u, (b1, b2) = s["exp_avg"], s["exp_inf"], h["betas"]
    np.multiply(m, f(b1), out=m)
    np.multiply(g, f(1 - b1), out=w[0])
    np.add(m, w[0], out=m)
    np.multiply(u, f(b2), out=u)
    np.abs(g, out=w[0])
    np.add(w[0], f(h["eps"]), out=w[0])
    np.maximum(u, w[0], out=u)
    np.divide(m, u, out=w[0])
    np.multiply(w[0], f(h["lr"] / (1 - b1**t)), out=w[0])
    np.subtract(p, w[0], out=p)


def _out_moments(g: np.ndarray, m: np.ndarray, v: np.ndarray, b1: float, b2: float, w: list[np.ndarray],
                 f: Cast) -> None:
    """m <- b1 m + (1 - b1) g and v <- b2 v + (1 - b2) g^2, in place."""
    np.multiply(m, f(b1), out=m)
    np.multiply(g, f(1 - b1), out=w[0])
    np.add(m, w[0], out=m)
    np.multiply(v, f(b2), out=v)
    np.multiply(g, g, out=w[0])
    np.multiply(w[0], f(1 - b2), out=w[0])
    np.add(v, w[0], out=v)


def _out_nadam(p: np.ndarray, g: np.ndarray, s: dict, t: int, h: dict, w: list[np.ndarray], f: Cast) -> None:
    m, v, (b1, b2) = s["exp_avg"], s["exp_avg_sq"], h["betas"]
    mu, mu_next = _nadam_mu(h, t), _nadam_mu(h, t + 1)
    s["mu_product"] = product = s.get("mu_product", 1.0) * mu
    _out_moments(g, m, v, b1, b2, w, f)
    np.multiply(v, f(1 / (1 - b2**t)), out=w[0])
    np.sqrt(w[0], out=w[0])
    np.add(w[0], f(h["eps"]), out=w[0])  # denom
    np.multiply(g, f(h["lr"] * (1 - mu) / (1 - product)), out=w[1])
    np.divide(w[1], w[0], out=w[1])
    np.subtract(p, w[1], out=p)
    np.multiply(m, f(h["lr"] * mu_next / (1 - product * mu_next)), out=w[1])
    np.divide(w[1], w[0], out=w[1])
    np.subtract(p, w[1], out=p)


def _out_radam(p: np.ndarray, g: np.ndarray, s: dict, t: int, h: dict, w: list[np.ndarray], f: Cast) -> None:
    m, v, (b1, b2) = s["exp_avg"], s["exp_avg_sq"], h["betas"]
    _out_moments(g, m, v, b1, b2, w, f)
    rect = _radam_rect(b2, t)
    if rect is None:
        np.multiply(m, f(h["lr"] / (1 - b1**t)), out=w[0])
    else:
        np.sqrt(v, out=w[0])
        np.add(w[0], f(h["eps"]), out=w[0])
        np.divide(m, w[0], out=w[0])
        np.multiply(w[0], f(h["lr"] * rect * np.sqrt(1 - b2**t) / (1 - b1**t)), out=w[0])
    np.subtract(p, w[0], out=p)


def _out_lion(p: np.ndarray, g: np.ndarray, s: dict, t: int, h: dict, w: list[np.ndarray], f: Cast) -> None:
    m, (b1, b2) = s["exp_avg"], h["betas"]
    np.multiply(m, f(b1), out=w[0])
    np.multiply(g, f(1 - b1), out=w[1])
    np.add(w[0], w[1], out=w[0])
    np.sign(w[0], out=w[0])
    np.multiply(p, f(1 - h["lr"] * h["weight_decay"]), out=p)
    np.multiply(w[0], f(h["lr"]), out=w[0])
    np.subtract(p, w[0], out=p)
    np.multiply(m, f(b2), out=m)
    np.multiply(g, f(1 - b2), out=w[1])
    np.add(m, w[1], out=m)


NAIVE = {"sgd": _naive_sgd, "adagrad": _naive_adagrad, "rmsprop": _naive_rmsprop,
         "adadelta": _naive_adadelta, "adam": _naive_adam, "adamw": _naive_adamw, "adamax": _naive_adamax,
         "nadam": _naive_nadam, "radam": _naive_radam, "lion": _naive_lion}
"""Optimizer name -> ``update(p, g, state, t, h)``, tutorial-style NumPy."""

OUT = {"sgd": _out_sgd, "adagrad": _out_adagrad, "rmsprop": _out_rmsprop,
       "adadelta": _out_adadelta, "adam": _out_adam, "adamw": _out_adamw, "adamax": _out_adamax,
       "nadam": _out_nadam, "radam": _out_radam, "lion": _out_lion}
"""Optimizer name -> ``update(p, g, state, t, h, scratch, cast)``, NumPy with ``out=``."""

_UNSUPPORTED = {
    "sgd": lambda h: h["nesterov"] or h["weight_decay"] or h["maximize"],
    "adagrad": lambda h: h["weight_decay"] or h["maximize"],
    "rmsprop": lambda h: h["centered"] or h["momentum"] or h["weight_decay"] or h["maximize"],
    "adadelta": lambda h: h["weight_decay"] or h["maximize"],
    "adam": lambda h: h["amsgrad"] or h["weight_decay"] or h["maximize"],
    "adamw": lambda h: h["amsgrad"] or h["maximize"],
    "adamax": lambda h: h["weight_decay"] or h["maximize"],
    "nadam": lambda h: h["weight_decay"] or h["decoupled_weight_decay"] or h["maximize"],
    "radam": lambda h: h["weight_decay"] or h["decoupled_weight_decay"] or h["maximize"],
    "lion": lambda h: h["maximize"],
}


def numpy_supports(name: str, h: dict) -> bool:
    """Whether the NumPy baselines implement optimizer ``name`` with ``h``
    (they cover the benchmark's configurations, not every option)."""
    return name in NAIVE and not _UNSUPPORTED[name](h)


class NumpyStepper:
    """Applies NumPy baseline steps to its own copy of the parameters.

    Parameters
    ----------
    name : str
        Optimizer name.
    h : dict
        Full hyperparameters (see :func:`.problems.hyperparameters`).
    p0, g : numpy.ndarray
        Initial parameters (copied) and the gradient (shared, read only).
    style : {"naive", "out"}
    """

    def __init__(self, name: str, h: dict, p0: np.ndarray, g: np.ndarray, style: str) -> None:
        if not numpy_supports(name, h):
            raise ValueError(f"the NumPy baselines do not implement {name} with {h}")
        if style not in ("naive", "out"):
            raise ValueError(f"style must be 'naive' or 'out', got {style!r}")
        self.p, self.g, self.h, self.t = aligned_copy(p0), g, h, 0
        self.state = {k: aligned_copy(v.reshape(-1)) if isinstance(v, np.ndarray) else v
                      for k, v in init_state(name, self.p, **h).items()}
        self._scratch = [aligned_copy(np.zeros_like(self.p)) for _ in range(2)] if style == "out" else None
        self._naive = NAIVE[name] if style == "naive" else None
        self._out = OUT[name] if style == "out" else None
        self._cast = self.p.dtype.type

    def step(self) -> None:
        """One update of ``self.p`` (and ``self.state``)."""
        self.t += 1
        if self._naive is not None:
            self._naive(self.p, self.g, self.state, self.t, self.h)
        elif self._out is not None and self._scratch is not None:
            self._out(self.p, self.g, self.state, self.t, self.h, self._scratch, self._cast)


def numpy_contender(name: str, h: dict, p0: np.ndarray, g: np.ndarray, style: str) -> Contender:
    """A NumPy baseline (``style`` "naive" or "out") as a timed contender."""
    step = NumpyStepper(name, h, p0, g, style).step

    def run(k: int) -> None:
        for _ in range(k):
            step()

    label = "NumPy, tutorial style (temporaries)" if style == "naive" else "NumPy, preallocated out= buffers"
    return Contender(f"numpy_{style}", run, label)


# -- torch.optim --------------------------------------------------------------

TORCH_CLASSES = {"sgd": "SGD", "adagrad": "Adagrad", "rmsprop": "RMSprop", "adadelta": "Adadelta",
                 "adam": "Adam", "adamw": "AdamW", "adamax": "Adamax", "nadam": "NAdam", "radam": "RAdam"}
"""fastopt name -> torch.optim class name (same hyperparameter names)."""

TORCH_MODES = {"torch_single": {"foreach": False}, "torch_foreach": {"foreach": True}, "torch_fused": {"fused": True}}
"""Contender name -> the torch.optim keyword choosing that implementation."""


def torch_available() -> bool:
    """Whether torch can be imported."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def torch_contender(name: str, h: dict, p0: np.ndarray, g: np.ndarray, mode: str) -> Contender:
    """torch.optim's ``name`` in ``mode`` (a key of :data:`TORCH_MODES`) as a contender.

    Raises
    ------
    ImportError
        torch is not installed.
    ValueError
        torch has no such implementation for this optimizer (e.g. no fused
        RMSprop); the message says why.
    """
    import torch

    if name not in TORCH_CLASSES:
        raise ValueError(f"torch.optim has no {name}")
    cls = getattr(torch.optim, TORCH_CLASSES[name])
    (flag,) = TORCH_MODES[mode]
    if flag not in inspect.signature(cls).parameters:
        raise ValueError(f"torch.optim.{cls.__name__} has no {flag} implementation")
    param = torch.nn.Parameter(torch.from_numpy(aligned_copy(p0)))
    param.grad = torch.from_numpy(g)
    try:
        opt = cls([param], **h, **TORCH_MODES[mode])
        opt.step()  # builds the state; a missing kernel fails here, not in the timed loop
    except (TypeError, RuntimeError, ValueError) as exc:
        raise ValueError(f"torch.optim.{cls.__name__}({flag}=True) failed: {str(exc).splitlines()[0][:120]}") from None
    step = opt.step

    def run(k: int) -> None:
        for _ in range(k):
            step()

    flags = ", ".join(f"{k}={v}" for k, v in TORCH_MODES[mode].items())
    return Contender(mode, run, f"torch.optim.{cls.__name__}({flags})")
