"""Independent float64 NumPy reference implementations of optimizer updates.

Written from the published algorithms (torch.optim's documented pseudo-code,
the Lion paper (Chen et al. 2023) and the LAMB paper (You et al. 2019)), not
from any library source, and with no imports from ``fastopt``. Everything is
computed in float64, one plain NumPy expression per line of the algorithm, so
that it is easy to check by eye. It is slow on purpose; it is the yardstick
the fast kernels are tested against.

Interface::

    init_state(name, param, hyper) -> dict
    reference_step(name, param, grad, state, hyper) -> new_param (float64)
    run_reference(name, param0, grads, hyper) -> [param after step 1, 2, ...]

``name`` is one of ``NAMES``. ``hyper`` uses torch.optim's keyword names;
missing keys take torch's defaults (``DEFAULTS``). Notation in the docstrings:
``t`` is the step count after incrementing (1 on the first step), ``g`` the
gradient (negated first when ``maximize``), ``p`` the parameter.

State keys follow torch's names: ``step`` (int, starts at 0, incremented at
the start of every step), ``momentum_buffer``, ``sum``, ``square_avg``,
``grad_avg``, ``acc_delta``, ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``,
``exp_inf``, ``mu_product`` (float).

LAMB segments: ``hyper["segments"]`` may be a list of ``(start, stop)`` index
ranges over the flat 1-D parameter (a flat buffer holding several tensors).
The LAMB trust ratio ``||p|| / ||r||`` is then computed separately for each
segment, over exactly that segment. Elements covered by no segment are not
updated. Default: one segment, the whole array. Other optimizers are
element-wise and ignore ``segments``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["NAMES", "DEFAULTS", "init_state", "reference_step", "run_reference"]

_BETAS = (0.9, 0.999)

#: torch.optim defaults (lion: the paper's recommended betas; lamb: common choice).
DEFAULTS: dict[str, dict] = {
    "sgd": dict(lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                nesterov=False, maximize=False),
    "adagrad": dict(lr=1e-2, lr_decay=0.0, weight_decay=0.0,
                    initial_accumulator_value=0.0, eps=1e-10, maximize=False),
    "rmsprop": dict(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0,
                    momentum=0.0, centered=False, maximize=False),
    "adadelta": dict(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, maximize=False),
    "adam": dict(lr=1e-3, betas=_BETAS, eps=1e-8, weight_decay=0.0,
                 amsgrad=False, maximize=False, decoupled_weight_decay=False),
    "adamw": dict(lr=1e-3, betas=_BETAS, eps=1e-8, weight_decay=1e-2,
                  amsgrad=False, maximize=False),
    "adamax": dict(lr=2e-3, betas=_BETAS, eps=1e-8, weight_decay=0.0, maximize=False),
    "nadam": dict(lr=2e-3, betas=_BETAS, eps=1e-8, weight_decay=0.0,
                  momentum_decay=4e-3, decoupled_weight_decay=False, maximize=False),
    "radam": dict(lr=1e-3, betas=_BETAS, eps=1e-8, weight_decay=0.0,
                  decoupled_weight_decay=False, maximize=False),
    "lion": dict(lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, maximize=False),
    "lamb": dict(lr=1e-3, betas=_BETAS, eps=1e-6, weight_decay=0.0,
                 bias_correction=True, maximize=False),
}

NAMES = tuple(DEFAULTS)

# Keys that are accepted and ignored: torch implementation switches that do
# not change the math, and LAMB's segments for the element-wise optimizers.
_IGNORED = {"foreach", "fused", "capturable", "differentiable", "segments"}


def _opts(name: str, hyper: dict | None) -> dict:
    """Merge ``hyper`` over torch's defaults for ``name``; reject unknown keys."""
    if name not in DEFAULTS:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(NAMES)}")
    hyper = dict(hyper or {})
    unknown = set(hyper) - set(DEFAULTS[name]) - _IGNORED
    if unknown:
        raise ValueError(f"{name}: unknown hyperparameter(s) {sorted(unknown)}")
    o = dict(DEFAULTS[name])
    o.update(hyper)
    if "betas" in o:
        b1, b2 = o["betas"]
        o["betas"] = (float(b1), float(b2))
    return o


def _f64(a) -> np.ndarray:
    return np.array(a, dtype=np.float64, copy=True)


# --------------------------------------------------------------------------
# state
# --------------------------------------------------------------------------

def init_state(name: str, param: np.ndarray, hyper: dict) -> dict:
    """float64 state arrays (copies) for optimizer `name` with hyperparameters `hyper` (torch names)."""
    o = _opts(name, hyper)
    z = lambda: np.zeros(np.shape(param), dtype=np.float64)  # noqa: E731
    st: dict = {"step": 0}
    if name == "sgd":
        st["momentum_buffer"] = z()  # filled with g on step 1 (torch semantics)
    elif name == "adagrad":
        st["sum"] = np.full(np.shape(param), float(o["initial_accumulator_value"]),
                            dtype=np.float64)
    elif name == "rmsprop":
        st["square_avg"] = z()
        st["grad_avg"] = z()
        st["momentum_buffer"] = z()
    elif name == "adadelta":
        st["square_avg"] = z()
        st["acc_delta"] = z()
    elif name in ("adam", "adamw"):
        st["exp_avg"] = z()
        st["exp_avg_sq"] = z()
        st["max_exp_avg_sq"] = z()
    elif name == "adamax":
        st["exp_avg"] = z()
        st["exp_inf"] = z()
    elif name == "nadam":
        st["exp_avg"] = z()
        st["exp_avg_sq"] = z()
        st["mu_product"] = 1.0
    elif name in ("radam", "lamb"):
        st["exp_avg"] = z()
        st["exp_avg_sq"] = z()
    elif name == "lion":
        st["exp_avg"] = z()
    return st


# --------------------------------------------------------------------------
# per-optimizer steps: (p, g, state, o) -> new p; p, g are private copies
# --------------------------------------------------------------------------

def _sgd(p, g, st, o):
    """SGD with momentum (torch.optim.SGD).

        g <- g + wd * p
        if momentum != 0:
            b <- g                                   (t == 1)
            b <- momentum * b + (1 - dampening) * g  (t > 1)
            g <- g + momentum * b   if nesterov else   g <- b
        p <- p - lr * g
    """
    lr, mom, damp, wd = o["lr"], o["momentum"], o["dampening"], o["weight_decay"]
    if o["nesterov"] and (mom <= 0 or damp != 0):
        raise ValueError("Nesterov momentum requires a momentum and zero dampening")
    if wd != 0:
        g = g + wd * p
    if mom != 0:
        if st["step"] == 1:
            b = g.copy()
        else:
            b = mom * st["momentum_buffer"] + (1.0 - damp) * g
        st["momentum_buffer"] = b
        if o["nesterov"]:
            g = g + mom * b
        else:
            g = b
    return p - lr * g


def _adagrad(p, g, st, o):
    """Adagrad (torch.optim.Adagrad).

        g <- g + wd * p
        clr <- lr / (1 + (t - 1) * lr_decay)
        s <- s + g^2                   (s starts at initial_accumulator_value)
        p <- p - clr * g / (sqrt(s) + eps)
    """
    t = st["step"]
    if o["weight_decay"] != 0:
        g = g + o["weight_decay"] * p
    clr = o["lr"] / (1.0 + (t - 1) * o["lr_decay"])
    s = st["sum"] + g * g
    st["sum"] = s
    return p - clr * g / (np.sqrt(s) + o["eps"])


def _rmsprop(p, g, st, o):
    """RMSprop (torch.optim.RMSprop).

        g <- g + wd * p
        v <- alpha * v + (1 - alpha) * g^2
        if centered:  a <- alpha * a + (1 - alpha) * g;  d <- sqrt(v - a^2) + eps
        else:         d <- sqrt(v) + eps
        if momentum > 0:  b <- momentum * b + g / d;  p <- p - lr * b
        else:             p <- p - lr * g / d
    """
    alpha, eps = o["alpha"], o["eps"]
    if o["weight_decay"] != 0:
        g = g + o["weight_decay"] * p
    v = alpha * st["square_avg"] + (1.0 - alpha) * g * g
    st["square_avg"] = v
    if o["centered"]:
        a = alpha * st["grad_avg"] + (1.0 - alpha) * g
        st["grad_avg"] = a
        d = np.sqrt(v - a * a) + eps
    else:
        d = np.sqrt(v) + eps
    if o["momentum"] > 0:
        b = o["momentum"] * st["momentum_buffer"] + g / d
        st["momentum_buffer"] = b
        return p - o["lr"] * b
    return p - o["lr"] * g / d


def _adadelta(p, g, st, o):
    """Adadelta (torch.optim.Adadelta).

        g <- g + wd * p
        v <- rho * v + (1 - rho) * g^2
        dx <- sqrt(u + eps) / sqrt(v + eps) * g
        u <- rho * u + (1 - rho) * dx^2
        p <- p - lr * dx
    """
    rho, eps = o["rho"], o["eps"]
    if o["weight_decay"] != 0:
        g = g + o["weight_decay"] * p
    v = rho * st["square_avg"] + (1.0 - rho) * g * g
    st["square_avg"] = v
    dx = np.sqrt(st["acc_delta"] + eps) / np.sqrt(v + eps) * g
    st["acc_delta"] = rho * st["acc_delta"] + (1.0 - rho) * dx * dx
    return p - o["lr"] * dx


def _adam(p, g, st, o, decoupled):
    """Adam / AdamW (torch.optim.Adam, torch.optim.AdamW).

        Adam:  g <- g + wd * p          AdamW:  p <- p * (1 - lr * wd)
        m <- b1 * m + (1 - b1) * g
        v <- b2 * v + (1 - b2) * g^2
        amsgrad:  vmax <- max(vmax, v);  v_used = vmax   else  v_used = v
        p <- p - (lr / (1 - b1^t)) * m / (sqrt(v_used) / sqrt(1 - b2^t) + eps)
    """
    lr, eps, wd = o["lr"], o["eps"], o["weight_decay"]
    b1, b2 = o["betas"]
    t = st["step"]
    if wd != 0:
        if decoupled:
            p = p * (1.0 - lr * wd)
        else:
            g = g + wd * p
    m = b1 * st["exp_avg"] + (1.0 - b1) * g
    v = b2 * st["exp_avg_sq"] + (1.0 - b2) * g * g
    st["exp_avg"], st["exp_avg_sq"] = m, v
    if o["amsgrad"]:
        v = np.maximum(st["max_exp_avg_sq"], v)
        st["max_exp_avg_sq"] = v
    bc1 = 1.0 - b1 ** t
    bc2 = 1.0 - b2 ** t
    denom = np.sqrt(v) / math.sqrt(bc2) + eps
    return p - (lr / bc1) * m / denom


def _adamax(p, g, st, o):
    """Adamax (torch.optim.Adamax).

        g <- g + wd * p
        m <- b1 * m + (1 - b1) * g
        u <- max(b2 * u, |g| + eps)
        p <- p - (lr / (1 - b1^t)) * m / u
    """
    b1, b2 = o["betas"]
    t = st["step"]
    if o["weight_decay"] != 0:
        g = g + o["weight_decay"] * p
    m = b1 * st["exp_avg"] + (1.0 - b1) * g
    u = np.maximum(b2 * st["exp_inf"], np.abs(g) + o["eps"])
    st["exp_avg"], st["exp_inf"] = m, u
    return p - (o["lr"] / (1.0 - b1 ** t)) * m / u


def _nadam(p, g, st, o):
    """NAdam (torch.optim.NAdam, Dozat 2016 with momentum decay).

        decoupled:  p <- p * (1 - lr * wd)     else  g <- g + wd * p
        mu_t    = b1 * (1 - 0.5 * 0.96^(t * psi))          psi = momentum_decay
        mu_t+1  = b1 * (1 - 0.5 * 0.96^((t + 1) * psi))
        P <- P * mu_t                                      (P = mu_product, starts at 1)
        m <- b1 * m + (1 - b1) * g
        v <- b2 * v + (1 - b2) * g^2
        d = sqrt(v / (1 - b2^t)) + eps
        p <- p - lr * (1 - mu_t) / (1 - P) * g / d
               - lr * mu_t+1 / (1 - P * mu_t+1) * m / d
    """
    lr, wd, psi = o["lr"], o["weight_decay"], o["momentum_decay"]
    b1, b2 = o["betas"]
    t = st["step"]
    if wd != 0:
        if o["decoupled_weight_decay"]:
            p = p * (1.0 - lr * wd)
        else:
            g = g + wd * p
    mu = b1 * (1.0 - 0.5 * 0.96 ** (t * psi))
    mu_next = b1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * psi))
    prod = st["mu_product"] * mu
    st["mu_product"] = prod
    m = b1 * st["exp_avg"] + (1.0 - b1) * g
    v = b2 * st["exp_avg_sq"] + (1.0 - b2) * g * g
    st["exp_avg"], st["exp_avg_sq"] = m, v
    d = np.sqrt(v / (1.0 - b2 ** t)) + o["eps"]
    p = p - lr * (1.0 - mu) / (1.0 - prod) * g / d
    p = p - lr * mu_next / (1.0 - prod * mu_next) * m / d
    return p


def _radam(p, g, st, o):
    """RAdam (torch.optim.RAdam, Liu et al. 2019).

        decoupled:  p <- p * (1 - lr * wd)     else  g <- g + wd * p
        m <- b1 * m + (1 - b1) * g
        v <- b2 * v + (1 - b2) * g^2
        m_hat = m / (1 - b1^t)
        rho_inf = 2 / (1 - b2) - 1
        rho_t = rho_inf - 2 t b2^t / (1 - b2^t)
        if rho_t > 5:
            r = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
            p <- p - lr * m_hat * r * sqrt(1 - b2^t) / (sqrt(v) + eps)
        else:
            p <- p - lr * m_hat
    """
    lr, wd = o["lr"], o["weight_decay"]
    b1, b2 = o["betas"]
    t = st["step"]
    if wd != 0:
        if o["decoupled_weight_decay"]:
            p = p * (1.0 - lr * wd)
        else:
            g = g + wd * p
    m = b1 * st["exp_avg"] + (1.0 - b1) * g
    v = b2 * st["exp_avg_sq"] + (1.0 - b2) * g * g
    st["exp_avg"], st["exp_avg_sq"] = m, v
    bc1 = 1.0 - b1 ** t
    bc2 = 1.0 - b2 ** t
    m_hat = m / bc1
    rho_inf = 2.0 / (1.0 - b2) - 1.0
    rho_t = rho_inf - 2.0 * t * b2 ** t / bc2
    if rho_t > 5.0:
        rect = math.sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf
                         / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
        return p - lr * m_hat * rect * math.sqrt(bc2) / (np.sqrt(v) + o["eps"])
    return p - lr * m_hat


def _lion(p, g, st, o):
    """Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms").

        c = b1 * m + (1 - b1) * g
        p <- p * (1 - lr * wd)            (decoupled weight decay)
        p <- p - lr * sign(c)             (sign(0) = 0)
        m <- b2 * m + (1 - b2) * g
    """
    lr, wd = o["lr"], o["weight_decay"]
    b1, b2 = o["betas"]
    c = b1 * st["exp_avg"] + (1.0 - b1) * g
    if wd != 0:
        p = p * (1.0 - lr * wd)
    p = p - lr * np.sign(c)
    st["exp_avg"] = b2 * st["exp_avg"] + (1.0 - b2) * g
    return p


def _segments(n, o):
    segs = o.get("segments")
    if segs is None:
        return [(0, n)]
    out = []
    for a, b in segs:
        a, b = int(a), int(b)
        if not (0 <= a <= b <= n):
            raise ValueError(f"lamb: segment ({a}, {b}) outside [0, {n}]")
        out.append((a, b))
    return out


def _lamb(p, g, st, o):
    """LAMB (You et al. 2019, "Large Batch Optimization for Deep Learning").

        m <- b1 * m + (1 - b1) * g
        v <- b2 * v + (1 - b2) * g^2
        m_hat = m / (1 - b1^t),  v_hat = v / (1 - b2^t)   (if bias_correction,
                                                          else m_hat = m, v_hat = v)
        r = m_hat / (sqrt(v_hat) + eps) + wd * p
        for each segment S (default: the whole array):
            ratio = ||p_S|| / ||r_S||   (L2 norms over S; ratio = 1 if either is 0)
            p_S <- p_S - lr * ratio * r_S
    Elements in no segment keep their value (their m, v are still updated).
    """
    lr, eps, wd = o["lr"], o["eps"], o["weight_decay"]
    b1, b2 = o["betas"]
    t = st["step"]
    m = b1 * st["exp_avg"] + (1.0 - b1) * g
    v = b2 * st["exp_avg_sq"] + (1.0 - b2) * g * g
    st["exp_avg"], st["exp_avg_sq"] = m, v
    if o["bias_correction"]:
        m_hat = m / (1.0 - b1 ** t)
        v_hat = v / (1.0 - b2 ** t)
    else:
        m_hat, v_hat = m, v
    r = m_hat / (np.sqrt(v_hat) + eps) + wd * p
    new = p.copy()
    for a, b in _segments(p.size, o):
        w_norm = math.sqrt(float(np.dot(p[a:b], p[a:b])))
        r_norm = math.sqrt(float(np.dot(r[a:b], r[a:b])))
        ratio = w_norm / r_norm if (w_norm > 0.0 and r_norm > 0.0) else 1.0
        new[a:b] = p[a:b] - lr * ratio * r[a:b]
    return new


_STEPS = {
    "sgd": _sgd,
    "adagrad": _adagrad,
    "rmsprop": _rmsprop,
    "adadelta": _adadelta,
    "adam": lambda p, g, st, o: _adam(p, g, st, o, o.get("decoupled_weight_decay", False)),
    "adamw": lambda p, g, st, o: _adam(p, g, st, o, True),
    "adamax": _adamax,
    "nadam": _nadam,
    "radam": _radam,
    "lion": _lion,
    "lamb": _lamb,
}


# --------------------------------------------------------------------------
# public driver
# --------------------------------------------------------------------------

def reference_step(name: str, param: np.ndarray, grad: np.ndarray, state: dict, hyper: dict) -> np.ndarray:
    """One step in float64. `param`, `grad` are float64 1-D arrays (not modified); `state` is the dict from
    init_state, updated in place (including state["step"], an int starting at 0, incremented first, as torch).
    Returns the new param (float64)."""
    o = _opts(name, hyper)
    p = _f64(param)
    g = _f64(grad)
    if p.shape != g.shape:
        raise ValueError(f"param shape {p.shape} != grad shape {g.shape}")
    if o["maximize"]:
        g = -g
    state["step"] = int(state["step"]) + 1
    return _STEPS[name](p, g, state, o)


def run_reference(name, param0, grads, hyper) -> list[np.ndarray]:
    """Apply len(grads) steps from param0 (cast to float64); return the list of params after each step."""
    p = _f64(param0)
    state = init_state(name, p, hyper)
    out = []
    for g in grads:
        p = reference_step(name, p, g, state, hyper)
        out.append(p.copy())
    return out
