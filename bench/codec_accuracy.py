"""Accuracy of low-precision optimizer states on a noisy quadratic (float64 simulation).

Only the *stored* optimizer states are low precision: every step decodes the
stored states, runs the update in float64 (``tests/reference.py``, the
project's independent reference), uses the fresh state values for the
parameter update, then encodes the new states with the codec under test
(``tests/reference_codecs.py``), as a fused kernel does with the states in
registers. Parameters and gradients stay float64, so every difference from
float32 states is the state codec's.

The problem
-----------
``n = 20480`` coordinates, loss ``L(x) = 0.5 * sum_i h_i * x_i**2`` with
curvatures ``h_i = exp(U(-3, 2))`` (0.05 .. 7.4, condition number 148),
``x0 ~ N(0, 1)`` (``L(x0)`` ~ 15000), stochastic gradient
``g = h * x + sigma * xi`` with fresh ``xi ~ N(0, 1)`` every step. Adam:
``lr = 0.03``, betas ``(0.9, 0.999)``, eps ``1e-8``, ``sigma = 0.1``, 300
steps. Why these: while the gradient is signal-dominated Adam moves each
coordinate by about ``lr`` a step, so ``|x0| ~ 1`` takes ~100 steps at
``lr = 0.03``; then the noise dominates and the loss settles on a floor
(~10.5, roughly ``n * lr * sigma / 6``): with float32 states the loss is
15000 -> 1200 (step 50) -> 120 (step 100) -> 12 (step 200) -> 10.5 (step 300),
flat over the last ~80 steps. The final loss thus checks that the codec lets
Adam converge and measures how much it moves the noise floor, which is
proportional to the effective step size and so sensitive to any bias in the
stored second moment. The ratio at step 100 (mid-descent) shows distortions
of the trajectory that the floor hides. A seed fixes the curvatures, ``x0``,
the noise and the stochastic-rounding bits; every codec sees the same draws
for a seed, so ``ratio = loss(codec) / loss(float32 states)`` is paired.

Also measured (3 seeds): other noise levels, learning rates and betas;
wide-range variants (the gradient of coordinate ``i`` multiplied by
``10**U(-d, d)``: a diagonal change of units to which Adam with float32
states is invariant up to eps, so that one block mixes gradient scales
``10**(2d)`` apart, as a block straddling two tensors can); AdamW, SGD with
momentum, Adagrad, AMSGrad, Adamax and Adadelta.

Run (about 150 s of CPU time in two worker processes: ~80 s wall on two idle
cores, longer on a shared machine)::

    python bench/codec_accuracy.py --out bench/results/codec-accuracy.md
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from reference import init_state, reference_step  # noqa: E402
from reference_codecs import (  # noqa: E402
    E4M3,
    E4M4,
    Minifloat8,
    bf16_decode,
    bf16_encode,
    blockfloat_roundtrip,
    dynamic_map,
    linear_map,
    minifloat_values,
    random16,
    sqrt_for_storage,
    table_dequantize,
    table_quantize,
)

# --------------------------------------------------------------------------
# codecs: what the next step reads back after a store (float64 in and out)
# --------------------------------------------------------------------------

_SHORT = {"nearest": "RNE", "stochastic": "SR", "up": "up"}


@dataclass
class Codec:
    nbytes: float            # bytes per element, block scales included

    def roundtrip(self, x, seed, step, slot):
        raise NotImplementedError

    def _random(self, rounding, x, seed, step, slot):
        return random16(seed, step, x.size, slot) if rounding == "stochastic" else None


class Float32(Codec):
    def __init__(self):
        super().__init__(4.0)

    def roundtrip(self, x, seed, step, slot):
        return x.astype(np.float32).astype(np.float64)


class BF16(Codec):
    def __init__(self, rounding="nearest"):
        super().__init__(2.0)
        self.rounding = rounding

    def roundtrip(self, x, seed, step, slot):
        r = self._random(self.rounding, x, seed, step, slot)
        return bf16_decode(bf16_encode(x, self.rounding, r)).astype(np.float64)


class BlockFloat(Codec):
    """Minifloat codes with a power-of-two scale per block; ``sqrt``: store sqrt(x)."""

    def __init__(self, fmt: Minifloat8, block=256, rounding="stochastic", sqrt=False, scale_bytes=4):
        super().__init__(1.0 + scale_bytes / block)
        self.fmt, self.block, self.rounding, self.sqrt = fmt, block, rounding, sqrt

    def roundtrip(self, x, seed, step, slot):
        y = sqrt_for_storage(x, self.rounding) if self.sqrt else x
        r = self._random(self.rounding, x, seed, step, slot)
        d = blockfloat_roundtrip(y, self.fmt, self.block, self.rounding, r)   # = dequantize(quantize(y))
        return (d * d).astype(np.float64) if self.sqrt else d.astype(np.float64)


class Table(Codec):
    """Entries of a sorted 256-value map times a float32 absmax per block (the
    8-bit optimizers' scheme); ``zeroless``: a positive value never decodes to 0."""

    def __init__(self, table, block=256, rounding="nearest", sqrt=False, zeroless=False):
        super().__init__(1.0 + 4.0 / block)
        self.table, self.block, self.rounding, self.sqrt, self.zeroless = table, block, rounding, sqrt, zeroless

    def roundtrip(self, x, seed, step, slot):
        y = np.sqrt(x.astype(np.float32)) if self.sqrt else x
        r = self._random(self.rounding, x, seed, step, slot)
        codes, absmax = table_quantize(y, self.table, self.block, self.rounding, r)
        if self.zeroless:
            head = codes[: x.size]
            head[(self.table[head.astype(np.int64)] == 0) & (y > 0)] += 1
        d = table_dequantize(codes, absmax, x.size, self.table, self.block).astype(np.float64)
        return d * d if self.sqrt else d


F32 = Float32()
DYN_S, DYN_U = dynamic_map(True), dynamic_map(False)
E5M2 = Minifloat8(5, 2, signed=True)
E3M5 = Minifloat8(3, 5, signed=False, zeroless=True)
E5M3 = Minifloat8(5, 3, signed=False, zeroless=True)


def adam_states(m, v):
    return {"exp_avg": m, "exp_avg_sq": v}


def bnb(block=256, rounding="nearest"):
    """The 8-bit optimizers' codec: dynamic tree maps (signed m, unsigned v), float32 absmax per block."""
    return adam_states(Table(DYN_S, block, rounding), Table(DYN_U, block, rounding))


def ours(block=256, m_round="stochastic", v_round="stochastic", m_fmt=E4M3, v_fmt=E4M4, sqrt=True, scale_bytes=4):
    return adam_states(BlockFloat(m_fmt, block, m_round, scale_bytes=scale_bytes),
                       BlockFloat(v_fmt, block, v_round, sqrt=sqrt, scale_bytes=scale_bytes))


RECOMMENDED = ours()

K_BF16 = "~6 int ops / 1 shift"
K_BF16_SR = "~4 int ops + hash / 1 shift"
K_TABLE = "binary search: 8 dependent gathers / table + 1 mul"
K_LINEAR = "1 mul + rint / 1 mul"
K_ABSMAX = "1 mul + closed form / table + 1 mul"
K_BLOCK = "closed form: ~25 / ~10 int ops"
K_BLOCK_SR = K_BLOCK + " + hash"
KERNEL_NOTES = (
    "*Kernel*: encode / decode work per element and state. *closed form*: integer operations on the float32 "
    "bit pattern (exponent, shift, round, carry, clamp; decode: fields, one int->float conversion, one "
    "multiply by a power of two built from bits, or a 256-entry float table and one multiply), plus the "
    "block's max (one max per element, one reduction per block). *hash*: one 32-bit counter-based hash "
    "(~9 int ops) per element serves two states' stochastic rounding. *binary search*: nearest entry of a "
    "non-uniform 256-entry map, 8 dependent compare-and-gather rounds per element. sqrt storage adds the "
    "sqrt on store (the kernel computes it for the denominator anyway) and one multiply on load.")

# --------------------------------------------------------------------------
# the simulation
# --------------------------------------------------------------------------

SLOTS = {"exp_avg": 0, "momentum_buffer": 0, "square_avg": 0, "sum": 0,
         "exp_avg_sq": 1, "exp_inf": 1, "acc_delta": 1, "max_exp_avg_sq": 2}


@dataclass(frozen=True)
class Problem:
    n: int = 20480
    steps: int = 300
    sigma: float = 0.1
    scale_decades: float = 0.0            # gradient of coordinate i times 10**U(-d, d)
    checkpoints: tuple = (100,)


@dataclass
class Outcome:
    losses: dict = field(default_factory=dict)     # step -> loss
    max_below: int = 0      # AMSGrad: elements x steps where the stored max is below the max the step used


def simulate(opt, hyper, codecs, seed, prob: Problem) -> Outcome:
    """Run ``opt`` (a ``tests/reference.py`` name) with the states in ``codecs``
    (state name -> Codec) stored through them; other states stay float64."""
    rng = np.random.default_rng([seed, 0])
    h = np.exp(rng.uniform(-3.0, 2.0, prob.n))
    x = rng.standard_normal(prob.n)
    c = 10.0 ** rng.uniform(-prob.scale_decades, prob.scale_decades, prob.n) if prob.scale_decades else 1.0
    noise = np.random.default_rng([seed, 1])
    st = init_state(opt, x, hyper)
    out = Outcome()
    for t in range(1, prob.steps + 1):
        g = c * (h * x + prob.sigma * noise.standard_normal(prob.n))
        x = reference_step(opt, x, g, st, hyper)
        for key, codec in codecs.items():
            fresh = st[key]
            st[key] = codec.roundtrip(fresh, seed, t, SLOTS[key])
            if key == "max_exp_avg_sq":   # against the float32 a kernel would hold
                out.max_below += int(np.sum(st[key] < fresh.astype(np.float32)))
        if t in prob.checkpoints or t == prob.steps:
            out.losses[t] = 0.5 * float(np.sum(h * x * x))
            if not np.isfinite(out.losses[t]) or out.losses[t] > 1e15:
                out.losses[prob.steps] = np.inf
                break
    return out


def ema_probe(codec, seed, steps=1000, n=8192, beta=0.999):
    """A second moment alone through ``codec``: ``v <- beta v + (1 - beta) g**2``
    with ``g ~ N(0, c_i**2)``, ``c_i = exp(U(-1, 1))``, stored every step, against
    the exact float64 EMA. Returns {step: (mean, sd) of decoded / exact}."""
    c = np.exp(np.random.default_rng([seed, 2]).uniform(-1.0, 1.0, n))
    rng = np.random.default_rng([seed, 3])
    v, exact, out = np.zeros(n), np.zeros(n), {}
    for t in range(1, steps + 1):
        g2 = (c * rng.standard_normal(n)) ** 2
        exact = beta * exact + (1 - beta) * g2
        v = codec.roundtrip(beta * v + (1 - beta) * g2, seed, t, 1)
        if t in (100, 300, 1000):
            r = v / exact
            out[t] = (float(r.mean()), float(r.std()))
    return out


def _run(job):
    if job[0] == "ema":
        return ema_probe(*job[1:])
    return simulate(*job)


# --------------------------------------------------------------------------
# experiments
# --------------------------------------------------------------------------

ADAM = dict(lr=0.03, betas=(0.9, 0.999), eps=1e-8)


@dataclass
class Row:
    label: str
    codecs: dict
    kernel: str = ""


def main_rows():
    lin_m = Table(linear_map(True))
    return [
        Row("bf16 RNE", adam_states(BF16(), BF16()), K_BF16),
        Row("bf16 SR", adam_states(BF16("stochastic"), BF16("stochastic")), K_BF16_SR),
        Row("bnb-style dynamic map, b256, nearest", bnb(256), K_TABLE),
        Row("bnb-style dynamic map, b2048, nearest", bnb(2048), K_TABLE),
        Row("bnb-style dynamic map, b256, SR", bnb(256, "stochastic"), K_TABLE + " + hash"),
        Row("linear m / linear v with zero (control)", adam_states(lin_m, Table(linear_map(False))), K_LINEAR),
        Row("linear m / zero-less linear v, nearest (control)",
            adam_states(lin_m, Table(linear_map(False, zero=False))), K_LINEAR),
        Row("linear m / zero-less linear v, SR", adam_states(lin_m, Table(linear_map(False, zero=False), 256,
                                                                          "stochastic")), K_LINEAR),
        Row("e4m3 m / sqrt-e4m4 v, both RNE", ours(m_round="nearest", v_round="nearest"), K_BLOCK),
        Row("e4m3 m RNE / sqrt-e4m4 v SR", ours(m_round="nearest"), K_BLOCK_SR),
        Row("**e4m3 m SR / sqrt-e4m4 v SR, b256 (recommended)**", RECOMMENDED, K_BLOCK_SR),
        Row("e4m3 m SR / e4m4 v SR (v itself, not sqrt)", ours(sqrt=False), K_BLOCK_SR),
        Row("e4m3 m SR / sqrt-e3m5 v SR", ours(v_fmt=E3M5), K_BLOCK_SR),
        Row("e5m2 m SR / sqrt-e5m3 v SR (more range)", ours(m_fmt=E5M2, v_fmt=E5M3), K_BLOCK_SR),
        Row("recommended, b64 with 1-byte exponent scales", ours(64, scale_bytes=1), K_BLOCK_SR),
        Row("recommended, b2048", ours(2048), K_BLOCK_SR),
        Row("recommended maps with a float32 absmax scale", adam_states(
            Table(np.unique(minifloat_values(E4M3) / E4M3.max_value), 256, "stochastic"),
            Table(np.unique(minifloat_values(E4M4) / E4M4.max_value), 256, "stochastic", sqrt=True, zeroless=True)),
            K_ABSMAX + " + hash"),
    ]


def robustness_rows():
    return [
        Row("bf16 RNE", adam_states(BF16(), BF16())),
        Row("bf16 SR", adam_states(BF16("stochastic"), BF16("stochastic"))),
        Row("bnb-style dynamic b256 nearest", bnb(256)),
        Row("e4m3 RNE / sqrt-e4m4 SR b256", ours(m_round="nearest")),
        Row("**e4m3 SR / sqrt-e4m4 SR b256 (recommended)**", RECOMMENDED),
        Row("e4m3 SR / e4m4 SR b256 (v, not sqrt)", ours(sqrt=False)),
        Row("e4m3 SR / sqrt-e3m5 SR b256", ours(v_fmt=E3M5)),
        Row("e5m2 SR / sqrt-e5m3 SR b256", ours(m_fmt=E5M2, v_fmt=E5M3)),
    ]


REGIMES = [
    ("lr 0.01, sigma 1", dict(ADAM, lr=0.01), Problem(sigma=1.0)),
    ("sigma 0.01", ADAM, Problem(sigma=0.01)),
    ("lr 0.1", dict(ADAM, lr=0.1), Problem()),
    ("betas (0.95, 0.99)", dict(ADAM, betas=(0.95, 0.99)), Problem()),
    ("wide 10^+-1", ADAM, Problem(scale_decades=1.0)),
    ("wide 10^+-2", ADAM, Problem(scale_decades=2.0)),
    ("wide 10^+-3", ADAM, Problem(scale_decades=3.0)),
]


def other_sections():
    """(title, optimizer, hyper, rows); every state not in a row's codecs stays float64."""
    sqrt_e4m4 = lambda r="stochastic": BlockFloat(E4M4, 256, r, sqrt=True)  # noqa: E731
    e4m4 = lambda r="stochastic": BlockFloat(E4M4, 256, r)  # noqa: E731
    m8 = BlockFloat(E4M3)
    ams = lambda vmax: dict(RECOMMENDED, max_exp_avg_sq=vmax)  # noqa: E731
    return [
        ("AdamW, weight_decay 0.01 (lr 0.03)", "adamw", dict(ADAM, weight_decay=0.01), [
            Row("bf16 RNE", adam_states(BF16(), BF16())),
            Row("bf16 SR", adam_states(BF16("stochastic"), BF16("stochastic"))),
            Row("bnb-style dynamic b256 nearest", bnb()),
            Row("recommended", RECOMMENDED)]),
        ("SGD, momentum 0.9 (lr 0.05): momentum_buffer", "sgd", dict(lr=0.05, momentum=0.9), [
            Row("bf16 RNE", {"momentum_buffer": BF16()}),
            Row("bnb-style dynamic signed b256 nearest", {"momentum_buffer": Table(DYN_S)}),
            Row("e4m3 b256 RNE", {"momentum_buffer": BlockFloat(E4M3, rounding="nearest")}),
            Row("e4m3 b256 SR (recommended)", {"momentum_buffer": m8})]),
        ("Adagrad (lr 0.3): sum", "adagrad", dict(lr=0.3), [
            Row("bf16 RNE", {"sum": BF16()}), Row("bf16 SR", {"sum": BF16("stochastic")}),
            Row("sqrt-e4m4 b256 RNE", {"sum": sqrt_e4m4("nearest")}),
            Row("sqrt-e4m4 b256 SR (recommended)", {"sum": sqrt_e4m4()})]),
        ("AMSGrad (lr 0.03): m, v as recommended; max_exp_avg_sq as below", "adam", dict(ADAM, amsgrad=True), [
            Row("vmax float32 (m, v recommended)", ams(F32)),
            Row("vmax bf16 RNE", ams(BF16())), Row("vmax bf16 up", ams(BF16("up"))),
            Row("vmax sqrt-e4m4 RNE", ams(sqrt_e4m4("nearest"))), Row("vmax sqrt-e4m4 SR", ams(sqrt_e4m4())),
            Row("vmax sqrt-e4m4 up (recommended)", ams(sqrt_e4m4("up")))]),
        ("Adamax (lr 0.03): exp_avg, exp_inf", "adamax", dict(lr=0.03, betas=(0.9, 0.999), eps=1e-8), [
            Row("bf16 RNE both", {"exp_avg": BF16(), "exp_inf": BF16()}),
            Row("bf16 SR both", {"exp_avg": BF16("stochastic"), "exp_inf": BF16("stochastic")}),
            Row("e4m3 SR / e4m4 RNE", {"exp_avg": m8, "exp_inf": e4m4("nearest")}),
            Row("e4m3 SR / e4m4 up", {"exp_avg": m8, "exp_inf": e4m4("up")}),
            Row("e4m3 SR / e4m4 SR (recommended)", {"exp_avg": m8, "exp_inf": e4m4()}),
            Row("e4m3 SR / e3m5 SR", {"exp_avg": m8, "exp_inf": BlockFloat(E3M5)})]),
        ("Adadelta (lr 1, rho 0.9): square_avg, acc_delta", "adadelta", dict(lr=1.0, rho=0.9, eps=1e-6), [
            Row("bf16 RNE both", {"square_avg": BF16(), "acc_delta": BF16()}),
            Row("bf16 SR both", {"square_avg": BF16("stochastic"), "acc_delta": BF16("stochastic")}),
            Row("sqrt-e4m4 RNE both", {"square_avg": sqrt_e4m4("nearest"), "acc_delta": sqrt_e4m4("nearest")}),
            Row("sqrt-e4m4 SR both (recommended)", {"square_avg": sqrt_e4m4(), "acc_delta": sqrt_e4m4()})]),
    ]


STATE_KEYS = {"adam": ["exp_avg", "exp_avg_sq"], "adamw": ["exp_avg", "exp_avg_sq"], "adamax": ["exp_avg", "exp_inf"],
              "sgd": ["momentum_buffer"], "adagrad": ["sum"], "adadelta": ["square_avg", "acc_delta"]}


def state_bytes(codecs, opt, hyper):
    keys = STATE_KEYS[opt] + (["max_exp_avg_sq"] if hyper.get("amsgrad") else [])
    return sum(codecs.get(k, F32).nbytes for k in keys)


def baseline(opt, hyper):
    keys = STATE_KEYS[opt] + (["max_exp_avg_sq"] if hyper.get("amsgrad") else [])
    return {k: F32 for k in keys}


def fmt_ratio(r, spread=True):
    r = np.asarray(r, dtype=np.float64)
    if not np.all(np.isfinite(r)):
        return f"diverged ({int(np.sum(~np.isfinite(r)))}/{r.size} seeds)"
    if r.mean() > 100:
        return f"{r.mean():.3g}"
    return f"{r.mean():.4f} [{r.min():.4f}, {r.max():.4f}]" if spread else f"{r.mean():.3f}"


class Runner:
    """Collects simulations, runs them on ``workers`` processes, hands back outcomes."""

    def __init__(self):
        self.jobs = []

    def add(self, opt, hyper, codecs, seeds, prob):
        first = len(self.jobs)
        if opt == "ema":           # ema_probe(codec=hyper, seed)
            self.jobs += [("ema", hyper, s) for s in seeds]
        else:
            self.jobs += [(opt, hyper, codecs, s, prob) for s in seeds]
        return range(first, len(self.jobs))

    def run(self, workers):
        # Fresh (spawned) workers with glibc's malloc told to keep the simulation's
        # 160 KB temporaries on the heap: without it every temporary is an mmap
        # and page faults take a third of the time.
        os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(4 << 20))
        os.environ.setdefault("MALLOC_TRIM_THRESHOLD_", str(64 << 20))
        with ProcessPoolExecutor(max(1, workers), mp_context=multiprocessing.get_context("spawn")) as ex:
            self.out = list(ex.map(_run, self.jobs, chunksize=1))

    def ratios(self, idx, base_idx, step):
        return [self.out[i].losses.get(step, np.inf) / self.out[b].losses[step] for i, b in zip(idx, base_idx)]

    def mean_loss(self, idx, step):
        return float(np.mean([self.out[i].losses[step] for i in idx]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5, help="seeds of the main Adam table")
    ap.add_argument("--few", type=int, default=3, help="seeds of every other table")
    ap.add_argument("--workers", type=int, default=2, help="worker processes")
    ap.add_argument("--out", default=None, help="write the markdown report here")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    seeds, few, prob = list(range(args.seeds)), list(range(args.few)), Problem()
    run = Runner()

    main_base = run.add("adam", ADAM, baseline("adam", ADAM), seeds, prob)
    main = [(row, run.add("adam", ADAM, row.codecs, seeds, prob)) for row in main_rows()]
    rob_rows = robustness_rows()
    rob = []
    for _, hyper, p in REGIMES:
        rob.append((run.add("adam", hyper, baseline("adam", hyper), few, p),
                    [run.add("adam", hyper, row.codecs, few, p) for row in rob_rows]))
    probe_rows = [("bf16 RNE", BF16()), ("bf16 SR", BF16("stochastic")),
                  ("bnb-style dynamic unsigned b256, nearest", Table(DYN_U)),
                  ("bnb-style dynamic unsigned b256, SR", Table(DYN_U, 256, "stochastic")),
                  ("sqrt-e4m4 b256 RNE", BlockFloat(E4M4, rounding="nearest", sqrt=True)),
                  ("sqrt-e4m4 b256 SR (recommended)", BlockFloat(E4M4, sqrt=True)),
                  ("e4m4 b256 SR (v itself)", BlockFloat(E4M4))]
    probes = [(label, run.add("ema", codec, None, [0], None)[0]) for label, codec in probe_rows]
    others = []
    for title, opt, hyper, rows in other_sections():
        others.append((title, opt, hyper, run.add(opt, hyper, baseline(opt, hyper), few, prob),
                       [(row, run.add(opt, hyper, row.codecs, few, prob)) for row in rows]))
    run.run(args.workers)

    cmd = "python bench/codec_accuracy.py" + ("" if args.seeds == 5 else f" --seeds {args.seeds}") + \
        ("" if args.few == 3 else f" --few {args.few}") + " --out bench/results/codec-accuracy.md"
    L = ["# Low-precision optimizer states: accuracy on a noisy quadratic", "",
         f"Command: `{cmd}` (float64 NumPy simulation; the problem and the method are in the script's "
         "docstring; the codecs are `tests/reference_codecs.py`).", "",
         "*Ratio*: loss with the codec / loss with float32 states, same seed (paired); mean [min, max] over "
         "seeds; at step 300 (*final*) and at step 100 (mid-descent). *Bytes*: state bytes per parameter, "
         "block scales included. *b256*: blocks of 256 elements. *RNE*: round to nearest, ties to even "
         "(table maps: nearest entry); *SR*: stochastic rounding (16 random bits per element and state, "
         "`random16`); *up*: magnitude rounded up. *e4m3*: signed 1-4-3 minifloat; *sqrt-e4m4*: sqrt(v) "
         "stored as unsigned zero-less 4-4 minifloat; minifloats have one power-of-two float32 scale per "
         "block unless stated.", "",
         f"## Adam, lr 0.03, betas (0.9, 0.999), eps 1e-8, sigma 0.1, n 20480, 300 steps, {len(seeds)} seeds", "",
         f"float32 states: final loss {run.mean_loss(main_base, 300):.3f}, "
         f"step 100 {run.mean_loss(main_base, 100):.1f} (start ~15000).", "",
         "| m / v codec | bytes | final ratio | step-100 ratio | kernel: encode / decode |",
         "|---|---|---|---|---|",
         "| float32 | 8 | 1 | 1 | plain load / store |"]
    for row, idx in main:
        L.append(f"| {row.label} | {state_bytes(row.codecs, 'adam', ADAM):.4g} | "
                 f"{fmt_ratio(run.ratios(idx, main_base, 300))} | {fmt_ratio(run.ratios(idx, main_base, 100))} | "
                 f"{row.kernel} |")
    L += ["", KERNEL_NOTES]

    L += ["", f"## Adam in other regimes ({len(few)} seeds): mean final ratio (mean step-100 ratio)", "",
          "Regimes change one thing from the main table. *wide 10^+-d*: gradients of coordinate i times "
          "10^U(-d, d) (Adam with float32 states is invariant to it).", "",
          "| codec | " + " | ".join(r[0] for r in REGIMES) + " |", "|---|" + "---|" * len(REGIMES),
          "| float32 final loss | " + " | ".join(f"{run.mean_loss(b, 300):.4g}" for b, _ in rob) + " |"]
    for k, row in enumerate(rob_rows):
        cells = []
        for b, idxs in rob:
            r300 = run.ratios(idxs[k], b, 300)
            cells.append(fmt_ratio(r300, spread=False) + (f" ({np.mean(run.ratios(idxs[k], b, 100)):.2f})"
                                                          if np.all(np.isfinite(r300)) else ""))
        L.append(f"| {row.label} | " + " | ".join(cells) + " |")

    L += ["", "## Why: a second moment alone through the codec", "",
          "`v <- 0.999 v + 0.001 g^2` from v = 0, g ~ N(0, c_i^2), c_i = exp(U(-1, 1)), n 8192, stored through "
          "the codec every step; decoded v / exact float64 EMA: mean and standard deviation over the elements. "
          "A mean away from 1 is a second moment that cannot follow its EMA: round to nearest loses every "
          "change below half a code step (the EMA moves v by ~0.1% a step, or 1/t while it fills up; code "
          "steps are 0.4-0.8% in bf16, 3-12% in 8 bits). bf16 RNE cannot decay (mean above 1); sqrt-e4m4 RNE, "
          "on a grid fixed by power-of-two scales, cannot grow; the dynamic map with a float32 absmax follows "
          "better under nearest rounding because the block's largest element is stored exactly and carries "
          "the others. The standard deviation is the noise that stochastic rounding pays for being unbiased "
          "(sqrt storage doubles its relative size on v).", "",
          "| v stored as | step 100 | step 300 | step 1000 |", "|---|---|---|---|"]
    for label, i in probes:
        o = run.out[i]
        L.append(f"| {label} | " + " | ".join(f"{o[t][0]:.4f} (sd {o[t][1]:.3f})" for t in (100, 300, 1000)) + " |")

    for title, opt, hyper, b, rows in others:
        amsgrad = hyper.get("amsgrad", False)
        L += ["", f"## {title}, {len(few)} seeds", "",
              f"float32 states: final loss {run.mean_loss(b, 300):.4g}.", "",
              "| stored as | bytes | final ratio | step-100 ratio |" + (
                  " stored max < max used in the step (elements x steps, against its float32 value) |"
                  if amsgrad else ""),
              "|---|---|---|---|" + ("---|" if amsgrad else "")]
        for row, idx in rows:
            extra = f" {sum(run.out[i].max_below for i in idx)} |" if amsgrad else ""
            L.append(f"| {row.label} | {state_bytes(row.codecs, opt, hyper):.4g} | "
                     f"{fmt_ratio(run.ratios(idx, b, 300))} | {fmt_ratio(run.ratios(idx, b, 100))} |{extra}")
    L += ["", "## Notes", "",
          "- A final ratio below 1 is not better fidelity: a second moment stuck high (bf16 RNE cannot decay) "
          "or a first moment with a dead zone (linear m) shrinks the steps and so the noise floor, and shows "
          "as a slower descent elsewhere (the step-100 column, the other regimes).",
          "- *bnb-style* is the dynamic tree map written from the 8-bit optimizers paper's description "
          "(`reference_codecs.dynamic_map`), not bitsandbytes itself; how far it misses depends on the regime "
          "(1.01 at lr 0.01, sigma 1; 1.6 here; divergence when v rounds to 0 under a non-zero m).",
          "- AMSGrad's last column counts the elements x steps where the stored max_exp_avg_sq decodes below "
          "the value the step used (its float32 value): 0 means the effective denominators never decrease.",
          "- The simulation computes in float64; a kernel computes in float32. Codes are bit-exact functions "
          "of the float32 value (`tests/test_reference_codecs.py` checks the integer recipes)."]
    L += ["", f"{len(run.jobs)} simulations, {time.perf_counter() - t0:.0f} s wall with {args.workers} worker(s)."]
    text = "\n".join(L) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
