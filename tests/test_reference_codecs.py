"""The reference codecs (``tests/reference_codecs.py``) against their definitions,
and against the integer recipes a kernel implements (written here a second
time, on bit patterns, independently of the value-based reference)."""

from __future__ import annotations

import numpy as np
import pytest
from reference_codecs import (
    E4M3,
    E4M4,
    Minifloat8,
    bf16_decode,
    bf16_encode,
    blockfloat_dequantize,
    blockfloat_quantize,
    blockfloat_roundtrip,
    blockfloat_scales,
    decode_second_moment,
    dynamic_map,
    encode_second_moment,
    linear_map,
    minifloat_values,
    mix32,
    random16,
    random_words,
    sqrt_for_storage,
    table_dequantize,
    table_quantize,
)

FORMATS = [E4M3, E4M4, Minifloat8(5, 2, signed=True), Minifloat8(3, 5, signed=False, zeroless=True),
           Minifloat8(5, 3, signed=False)]
ROUNDINGS = ["nearest", "stochastic", "up"]


def wide_floats(n, seed, lo=-45, hi=38, signed=True):
    """float32 values with log-uniform magnitudes over [10**lo, 10**hi] (subnormals included)."""
    rng = np.random.default_rng(seed)
    x = (10.0 ** rng.uniform(lo, hi, n)).astype(np.float32)
    if signed:
        x = np.where(rng.random(n) < 0.5, -x, x)
    return x


# --------------------------------------------------------------------------
# kernel-style integer recipes (the second derivation)
# --------------------------------------------------------------------------

def bf16_bits_recipe(x, rounding="nearest", r=None):
    """What a kernel does: integer arithmetic on the float32 pattern."""
    b = np.asarray(x, np.float32).view(np.uint32).astype(np.int64)
    if rounding == "nearest":
        out = (b + 0x7FFF + ((b >> 16) & 1)) >> 16
    elif rounding == "stochastic":
        out = (b + np.asarray(r, np.int64)) >> 16
    else:
        out = (b + 0xFFFF) >> 16
    nan = np.isnan(np.asarray(x, np.float32))
    out = np.where(nan, ((b >> 16) & 0x8000) | 0x7FC0, out)
    return (out & 0xFFFF).astype(np.uint16)


def blockfloat_recipe(x, fmt, block, rounding="nearest", r=None):
    """Integer recipe for :func:`blockfloat_quantize` (codes, scales)."""
    x32 = np.asarray(x, np.float32).reshape(-1)
    n = x32.size
    nb = -(-n // block)
    pad = np.zeros(nb * block, np.float32)
    pad[:n] = x32
    bits = pad.view(np.uint32).astype(np.int64).reshape(nb, block)
    m, emax = fmt.mbits, fmt.emax
    amax = (bits & 0x7FFFFFFF).max(axis=1)     # positive float32 patterns order like the values
    bad = amax >= 0x7F800000
    # A tiny block (absmax < 2**-64) is first multiplied by 2**64 (exact in
    # float32), so that no float32 subnormal meets a normal target code; the
    # stored scale keeps the true exponent.
    tiny = (amax > 0) & (amax < (127 - 64) << 23)
    with np.errstate(over="ignore", invalid="ignore"):
        pre = pad.reshape(nb, block) * np.where(tiny, np.float32(2.0 ** 64), np.float32(1.0))[:, None]
    bits = pre.view(np.uint32).astype(np.int64)
    sign, a = bits >> 31, bits & 0x7FFFFFFF
    am = a.max(axis=1)
    k = (am >> 23) - 127
    k = k + ((am & 0x7FFFFF) > (((1 << m) - 1) << (23 - m)))
    k = np.minimum(k, 127)
    k_true = k - np.where(tiny, 64, 0)
    kk = k[:, None]
    ex = a >> 23
    S = (a & 0x7FFFFF) | ((ex != 0).astype(np.int64) << 23)
    E = np.maximum(ex, 1) - 127 - kk + emax
    sh = 23 - m + np.maximum(0, 1 - E)
    base = (np.maximum(E, 1) - 1) << m
    if rounding == "stochastic":
        rr = np.zeros(nb * block, np.int64)
        rr[:n] = np.asarray(r, np.int64)
        t = S >> np.minimum(sh - 16, 31)
        q, up = t >> 16, ((t & 0xFFFF) + rr.reshape(nb, block)) >> 16
    else:
        shc = np.minimum(sh, 31)
        q, rem = S >> shc, S & ((1 << shc) - 1)
        if rounding == "nearest":
            half = 1 << (shc - 1)
            up = (rem > half) | ((rem == half) & ((q & 1) == 1))
        else:
            up = rem != 0
    mag = np.minimum(base + q + up, (1 << (fmt.ebits + m)) - 1)
    if fmt.zeroless:
        mag = np.maximum(mag, (a != 0).astype(np.int64))
    if fmt.signed:
        mag = mag | (sign << 7)
    zero = amax == 0
    mag = np.where((bad | zero)[:, None], 0, mag)
    scale = np.where(k_true >= -126, (k_true + 127) << 23, 1 << np.clip(k_true + 149, 0, 62))
    scale = scale.astype(np.uint32).view(np.float32)
    scale = np.where(bad, np.float32(np.nan), np.where(zero, np.float32(0), scale))
    return mag.astype(np.uint8).reshape(-1), scale.astype(np.float32)


def blockfloat_decode_recipe(codes, scales, n, fmt, block):
    """Decode with integer ops, one int->float conversion and float32 multiplies."""
    c = np.asarray(codes, np.int64)
    m, emax = fmt.mbits, fmt.emax
    mag = c & 0x7F if fmt.signed else c
    E, F = mag >> m, mag & ((1 << m) - 1)
    N = (F + ((E != 0).astype(np.int64) << m)).astype(np.float32)
    p2 = ((np.maximum(E, 1) - emax - m + 127) << 23).astype(np.uint32).view(np.float32)
    s = np.repeat(np.asarray(scales, np.float32), block)
    v = (N * p2) * s                           # N * p2 is exact; one rounding in the last multiply
    if fmt.signed:
        v = np.where((c >> 7) == 1, -v, v)
    return v[:n].astype(np.float32)


# --------------------------------------------------------------------------
# random bits
# --------------------------------------------------------------------------

def test_mix32_is_a_bijection_on_a_sample_and_wraps():
    x = np.arange(1 << 20, dtype=np.uint32) * np.uint32(2654435761)
    assert np.unique(mix32(x)).size == x.size
    assert mix32(np.uint32(0)) == 0


def test_random_bits_are_reproducible_and_differ_across_steps_words_and_seeds():
    a = random_words(7, 3, 1000)
    assert np.array_equal(a, random_words(7, 3, 1000))
    assert np.array_equal(a[500:], random_words(7, 3, 500, start=500))
    for other in (random_words(7, 4, 1000), random_words(8, 3, 1000), random_words(7, 3, 1000, word=1)):
        assert np.mean(a == other) < 0.01
    lo, hi = random16(7, 3, 1000, slot=0), random16(7, 3, 1000, slot=1)
    assert np.array_equal(lo, (a & 0xFFFF).astype(np.uint16))
    assert np.array_equal(hi, (a >> 16).astype(np.uint16))
    assert np.array_equal(random16(7, 3, 1000, slot=2), (random_words(7, 3, 1000, word=1) & 0xFFFF))


def test_random16_is_uniform():
    r = random16(1, 1, 1 << 18, slot=1).astype(np.float64)
    assert abs(r.mean() / 65535.0 - 0.5) < 0.005
    hist = np.bincount((r // 4096).astype(int), minlength=16)
    expected = r.size / 16
    assert np.sum((hist - expected) ** 2 / expected) < 40   # chi-square, 15 dof: p ~ 5e-4


# --------------------------------------------------------------------------
# bfloat16
# --------------------------------------------------------------------------

def _all_high_halves(lows):
    hi = np.arange(1 << 16, dtype=np.uint32) << np.uint32(16)
    return (hi[:, None] | np.asarray(lows, np.uint32)[None, :]).reshape(-1).view(np.float32)


LOWS = [0x0000, 0x0001, 0x7FFF, 0x8000, 0x8001, 0xFFFF, 0x1234, 0xC000]


@pytest.mark.parametrize("rounding", ["nearest", "up"])
def test_bf16_matches_bit_recipe_exhaustively(rounding):
    x = _all_high_halves(LOWS)
    assert np.array_equal(bf16_encode(x, rounding), bf16_bits_recipe(x, rounding))


def test_bf16_stochastic_matches_bit_recipe():
    x = _all_high_halves(LOWS)
    r = np.random.default_rng(0).integers(0, 1 << 16, x.size).astype(np.uint16)
    assert np.array_equal(bf16_encode(x, "stochastic", r), bf16_bits_recipe(x, "stochastic", r))


def test_bf16_ties_to_even_and_special_values():
    ones = np.float32(1.0)
    ulp = np.float32(2.0 ** -7)
    cases = [
        (ones + ulp / 2, 0x3F80),                   # tie, even stays
        (ones + ulp * 1.5, 0x3F82),                 # tie, odd goes up
        (np.nextafter(ones + ulp / 2, np.float32(2)), 0x3F81),
        (np.inf, 0x7F80), (-np.inf, 0xFF80),
        (0.0, 0x0000), (-0.0, 0x8000),
        (3.3895313892515355e38, 0x7F7F),            # largest finite bf16
        (3.4e38, 0x7F80),                           # rounds past it: inf, no saturation
        (1e-40, 0x0001),                            # subnormal
    ]
    x = np.array([c[0] for c in cases], np.float32)
    assert [hex(b) for b in bf16_encode(x)] == [hex(c[1]) for c in cases]
    nan = np.array([np.nan, -np.nan, np.uint32(0x7F800001).view(np.float32)], np.float32)
    nan[1] = -np.abs(nan[1])
    for rounding in ("nearest", "up", "stochastic"):
        b = bf16_encode(nan, rounding, np.full(3, 0xFFFF, np.uint16))
        assert list(b) == [0x7FC0, 0xFFC0, 0x7FC0]
        assert np.all(np.isnan(bf16_decode(b)))
    inf = np.array([np.inf, -np.inf], np.float32)
    assert list(bf16_encode(inf, "stochastic", np.full(2, 0xFFFF, np.uint16))) == [0x7F80, 0xFF80]


def test_bf16_round_trip_error_bounds_and_exact_values():
    x = wide_floats(200_000, 1, lo=-37, hi=38)
    d = bf16_decode(bf16_encode(x)).astype(np.float64)
    rel = np.abs(d - x) / np.abs(x.astype(np.float64))
    assert rel.max() <= 2.0 ** -8 * (1 + 1e-12)
    exact = bf16_decode(np.arange(1 << 16, dtype=np.uint16))
    finite = np.isfinite(exact)
    assert np.array_equal(bf16_encode(exact[finite]), np.arange(1 << 16, dtype=np.uint16)[finite])
    for rounding in ("up", "stochastic"):
        r = np.random.default_rng(2).integers(0, 1 << 16, x.size).astype(np.uint16)
        d = bf16_decode(bf16_encode(x, rounding, r)).astype(np.float64)
        assert np.all(np.abs(d) >= np.abs(x)) if rounding == "up" else True
        assert np.all(np.abs(d - x) / np.abs(x.astype(np.float64)) < 2.0 ** -7)


def test_bf16_stochastic_rounding_is_exactly_unbiased_over_all_random_values():
    x = np.array([1.0 + 3 * 2.0 ** -20, -2.75e-3, 12345.678, 1e-39], np.float32)
    r = np.arange(1 << 16, dtype=np.uint16)
    for xi in x:
        d = bf16_decode(bf16_encode(np.full(r.size, xi), "stochastic", r)).astype(np.float64)
        assert d.mean() == float(xi)


def test_bf16_up_is_the_smallest_bf16_not_below():
    x = wide_floats(50_000, 3, lo=-30, hi=30, signed=False)
    d = bf16_decode(bf16_encode(x, "up"))
    assert np.all(d >= x)
    below = bf16_decode(bf16_encode(x, "up") - np.uint16(1))
    assert np.all(below < x)


def test_bf16_encode_checks_arguments():
    with pytest.raises(ValueError, match="rounding"):
        bf16_encode([1.0], "zero")
    with pytest.raises(ValueError, match="random"):
        bf16_encode([1.0], "stochastic")


# --------------------------------------------------------------------------
# block floats
# --------------------------------------------------------------------------

def test_minifloat_value_tables():
    for fmt in FORMATS:
        v = minifloat_values(fmt)
        nmag = 2 ** (fmt.ebits + fmt.mbits)
        mags = v[:nmag]
        assert np.all(np.diff(mags) > 0), fmt.name               # code -> value strictly increasing
        assert mags[0] == 0 and mags[1] == fmt.min_value and mags[-1] == fmt.max_value
        assert np.array_equal(mags.astype(np.float32).astype(np.float64), mags)   # exact in float32
        if fmt.signed:
            assert np.array_equal(v[nmag:], -mags) and np.signbit(v[0x80])
    assert E4M3.max_value / E4M3.min_value == 1.875 * 2.0 ** 17
    assert E4M4.max_value / E4M4.min_value == 1.9375 * 2.0 ** 18


@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_blockfloat_matches_integer_recipe(fmt, rounding):
    rng = np.random.default_rng(4)
    parts = []
    for lo, hi in [(-45, 38), (-3, 3), (-8, 0), (-40, -36)]:      # wide, narrow, tiny blocks
        parts.append(wide_floats(4096, int(rng.integers(1 << 30)), lo, hi, signed=fmt.signed))
    x = np.concatenate(parts + [np.zeros(100, np.float32)])
    x[::97] = 0.0
    if fmt.signed:
        x[5::101] = -0.0
    r = rng.integers(0, 1 << 16, x.size).astype(np.uint16)
    for block in (32, 256):
        codes, scales = blockfloat_quantize(x, fmt, block, rounding, r)
        rc, rs = blockfloat_recipe(x, fmt, block, rounding, r)
        assert np.array_equal(scales.view(np.uint32), rs.view(np.uint32))
        assert np.array_equal(codes, rc)
        d = blockfloat_dequantize(codes, scales, x.size, fmt, block)
        assert np.array_equal(d.view(np.uint32), blockfloat_decode_recipe(codes, scales, x.size, fmt, block)
                              .view(np.uint32))
        assert np.array_equal(blockfloat_roundtrip(x, fmt, block, rounding, r).view(np.uint32), d.view(np.uint32))


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_blockfloat_round_trip_error_bounds(fmt):
    block = 256
    x = wide_floats(block * 64, 5, lo=-4, hi=4, signed=fmt.signed)
    r = np.random.default_rng(6).integers(0, 1 << 16, x.size).astype(np.uint16)
    xb = np.abs(x.astype(np.float64)).reshape(-1, block)
    for rounding, half in (("nearest", 0.5), ("stochastic", 1.0), ("up", 1.0)):
        codes, scales = blockfloat_quantize(x, fmt, block, rounding, r)
        d = blockfloat_dequantize(codes, scales, x.size, fmt, block).astype(np.float64).reshape(-1, block)
        s = scales.astype(np.float64)[:, None]
        assert np.all(xb.max(axis=1) <= s[:, 0] * fmt.max_value)        # no saturation
        assert np.all(xb.max(axis=1) > s[:, 0] * fmt.max_value / 2)     # top binade used
        # the grid spacing at |x|: 2^(floor(log2|x|) - m), and at least the subnormal spacing
        _, e = np.frexp(xb / s)
        ulp = np.ldexp(1.0, np.maximum(e - 1, 1 - fmt.emax) - fmt.mbits) * s
        err = np.abs(np.abs(d) - xb)
        if fmt.zeroless:   # values below the smallest code go up to it
            err = np.where(xb < fmt.min_value * s, 0, err)
        assert np.all(err <= half * ulp * (1 + 1e-12)), rounding
        if rounding == "up":
            assert np.all(np.abs(d) >= xb)
        assert np.array_equal(np.signbit(d[d != 0]), np.signbit(x.reshape(-1, block)[d != 0]))


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_blockfloat_representable_values_are_exact(fmt):
    vals = minifloat_values(fmt)
    for scale_exp in (-130, -20, 0, 7, 100):
        x = (vals * 2.0 ** scale_exp).astype(np.float32)
        x[1] = fmt.max_value * 2.0 ** scale_exp       # pin the block's scale to 2^scale_exp
        for rounding in ROUNDINGS:
            codes, scales = blockfloat_quantize(x, fmt, x.size, rounding, np.zeros(x.size, np.uint16))
            assert scales[0] == np.float32(2.0 ** scale_exp)
            d = blockfloat_dequantize(codes, scales, x.size, fmt, x.size)
            if scale_exp >= -126 + fmt.emax + fmt.mbits:   # all values are float32 normals
                assert np.array_equal(d, x), (scale_exp, rounding)


def test_blockfloat_quantize_is_monotone_in_the_value():
    for fmt in (E4M3, E4M4):
        x = np.sort(wide_floats(4096, 8, lo=-6, hi=0, signed=fmt.signed))
        x[-1] = 1.0
        codes, scales = blockfloat_quantize(x, fmt, x.size, "nearest")
        d = blockfloat_dequantize(codes, scales, x.size, fmt, x.size)
        assert np.all(np.diff(d.astype(np.float64)) >= 0)


def test_blockfloat_padding_zeros_and_zeroless():
    x = np.linspace(0.5, 3.0, 1000).astype(np.float32)
    codes, scales = blockfloat_quantize(x, E4M4, 256, "nearest")
    assert codes.size == 1024 and scales.size == 4
    assert np.all(codes[1000:] == 0)
    full = np.concatenate([x, np.zeros(24, np.float32)])
    c2, s2 = blockfloat_quantize(full, E4M4, 256, "nearest")
    assert np.array_equal(codes, c2) and np.array_equal(scales, s2)   # padding == explicit zeros
    assert blockfloat_dequantize(codes, scales, 1000, E4M4, 256).shape == (1000,)
    z, zs = blockfloat_quantize(np.zeros(300), E4M3, 256)
    assert np.all(z == 0) and np.all(zs == 0)
    assert np.all(blockfloat_dequantize(z, zs, 300, E4M3, 256) == 0)
    # zero-less: a positive value far below the block's range takes the smallest code, zero stays zero
    y = np.array([1.0, 1e-30, 0.0, 2.0 ** -19], np.float32)
    for rounding in ROUNDINGS:
        c, s = blockfloat_quantize(y, E4M4, 4, rounding, np.zeros(4, np.uint16))
        assert list(c[1:]) == [1, 0, 1]
        c, s = blockfloat_quantize(-y, E4M3, 4, rounding, np.zeros(4, np.uint16))
        # signed (not zero-less): -1e-30 flushes to -0 (0x80) unless rounded away from zero
        assert list(c[1:3]) == [0x81 if rounding == "up" else 0x80, 0x80]


def test_blockfloat_nonfinite_blocks_decode_to_nan_and_stay_local():
    x = np.ones(1024, np.float32)
    x[10] = np.nan
    x[600] = -np.inf
    for fmt in (E4M3, E4M4):
        xx = np.abs(x) if not fmt.signed else x
        codes, scales = blockfloat_quantize(xx, fmt, 256)
        assert np.isnan(scales[0]) and np.isnan(scales[2]) and scales[1] == 1 and scales[3] == 1
        d = blockfloat_dequantize(codes, scales, x.size, fmt, 256)
        np.testing.assert_array_equal(blockfloat_roundtrip(xx, fmt, 256), d)
        assert np.all(np.isnan(d[:256])) and np.all(np.isnan(d[512:768]))
        assert np.all(d[256:512] == 1) and np.all(d[768:] == 1)


def test_blockfloat_stochastic_rounding_mean_over_all_random_values():
    # P(up) = floor(frac * 2^16) / 2^16: over all 2^16 random values the mean is
    # the value with its discarded fraction truncated to 16 bits
    r = np.arange(1 << 16, dtype=np.uint16)
    for xi in (1.2345678, 0.01234, 1.0 + 2.0 ** -10, 3e-5):
        x = np.full(r.size, xi, np.float32)
        x[0] = 1.9                                     # scale 1 for every block
        codes, scales = blockfloat_quantize(x, E4M4, r.size, "stochastic", r)
        d = blockfloat_dequantize(codes, scales, r.size, E4M4, r.size).astype(np.float64)[1:]
        xs = float(np.float32(xi))
        _, e = np.frexp(xs)
        ulp = 2.0 ** (max(e - 1, 1 - E4M4.emax) - E4M4.mbits)
        q = xs / ulp
        expected = (np.floor(q) + np.floor((q - np.floor(q)) * 65536) / 65536) * ulp
        # the mean over r = 1..65535 (r = 0 is the pinned element): remove r = 0's contribution
        total = expected * 65536 - np.floor(q) * ulp
        assert abs(d.sum() - total) <= 1e-9 * abs(total)


def test_blockfloat_scales():
    s = blockfloat_scales(np.array([1.0, 1.875, 1.9, 3.0, 0.0, np.nan, np.inf, 1e-45, 3.4e38], np.float32), E4M3)
    assert list(s[:5]) == [1.0, 1.0, 2.0, 2.0, 0.0]
    assert np.isnan(s[5]) and np.isnan(s[6])
    assert s[7] == np.float32(2.0 ** -149) and s[8] == np.float32(2.0 ** 127)


def test_blockfloat_checks_arguments():
    with pytest.raises(ValueError, match="unsigned"):
        blockfloat_quantize([-1.0, 2.0], E4M4, 2)
    with pytest.raises(ValueError, match="random"):
        blockfloat_quantize([1.0], E4M3, 2, "stochastic", np.zeros(2, np.uint16))
    with pytest.raises(ValueError, match="blocks"):
        blockfloat_dequantize(np.zeros(10, np.uint8), np.ones(1, np.float32), 10, E4M3, 256)
    with pytest.raises(ValueError, match="minifloat"):
        Minifloat8(4, 4, signed=True)


def test_up_rounding_keeps_a_running_maximum_monotone_through_rescaling():
    """AMSGrad's max_exp_avg_sq stored as sqrt in E4M4 with rounding up: the
    decoded maximum never decreases, although block scales change."""
    rng = np.random.default_rng(9)
    n, block = 2048, 256
    stored = np.zeros(n, np.float32)
    codes, scales = encode_second_moment(stored, block, "up")
    for _ in range(200):
        v = (rng.lognormal(0, 3, n) * rng.random()).astype(np.float32)
        prev = decode_second_moment(codes, scales, n, block)
        vmax = np.maximum(prev, v)
        codes, scales = encode_second_moment(vmax, block, "up")
        now = decode_second_moment(codes, scales, n, block)
        assert np.all(now >= vmax) and np.all(now >= prev)


def test_up_rounding_of_a_stored_sqrt_never_decodes_below_v():
    # fl(sqrt(v)) can fall exactly on a grid point below the true sqrt: 1.0625 is
    # an e4m4 value and sqrt(1.0625**2 + 1 ulp) rounds to 1.0625 in float32
    v = np.array([np.nextafter(np.float32(1.0625 ** 2), np.float32(3)), 1.9, 2.25, 0.0, 1e-30], np.float32)
    assert np.sqrt(v[0]) == np.float32(1.0625)
    s = sqrt_for_storage(v, "up")
    assert s[0] > 1.0625 and s[2] == 1.5 and s[3] == 0
    assert np.array_equal(sqrt_for_storage(v, "nearest"), np.sqrt(v))
    codes, scales = encode_second_moment(v, 8, "up")
    d = decode_second_moment(codes, scales, v.size, 8)
    assert np.all(d >= v) and d[2] == np.float32(2.25)
    rng = np.random.default_rng(13)
    v = (10.0 ** rng.uniform(-6, 6, 1 << 16)).astype(np.float32)
    codes, scales = encode_second_moment(v, 256, "up")
    assert np.all(decode_second_moment(codes, scales, v.size, 256) >= v)


def test_second_moment_round_trip():
    v = (10.0 ** np.random.default_rng(10).uniform(-10, 0, 4096)).astype(np.float32)
    v[7] = 0.0
    codes, scales = encode_second_moment(v, 256, "nearest")
    d = decode_second_moment(codes, scales, v.size, 256).astype(np.float64)
    s = np.sqrt(v.astype(np.float64))
    sd = np.sqrt(d)
    ok = s > np.repeat(scales.astype(np.float64), 256) * 2.0 ** -14     # normal range of sqrt(v)
    assert np.all(np.abs(sd - s)[ok] <= s[ok] * 2.0 ** -5 * 1.0001)
    assert d[7] == 0 and np.all(d[v > 0] > 0)                           # zero-less: v > 0 never decodes to 0


# --------------------------------------------------------------------------
# table codecs (dynamic tree map, linear maps)
# --------------------------------------------------------------------------

def test_dynamic_map_shape():
    s, u = dynamic_map(True), dynamic_map(False)
    for t in (s, u):
        assert t.size == 256 and np.all(np.diff(t) > 0) and 0.0 in t and t[-1] == 1.0
    assert s[0] < -0.99 and u[0] == 0.0
    pos = s[s > 0]
    assert np.allclose(-s[(s < 0)][::-1], pos[:-1])                     # symmetric but for +1
    assert 1e-7 < pos[0] < 1e-6 and 1e-7 < u[1] < 1e-6
    # linear fraction within a decade: 64 values in (0.1, 1] for signed, 128 for unsigned
    assert np.sum((pos > 0.1) & (pos < 1)) == 64 and np.sum((u > 0.1) & (u < 1)) == 128


@pytest.mark.parametrize("table", [dynamic_map(True), dynamic_map(False), linear_map(True),
                                   linear_map(False), linear_map(False, zero=False)],
                         ids=["dyn-signed", "dyn-unsigned", "lin-signed", "lin-unsigned", "lin-zeroless"])
def test_table_codec(table):
    signed = table[0] < 0
    rng = np.random.default_rng(11)
    x = rng.standard_normal(1000).astype(np.float32)
    x = x if signed else np.abs(x)
    codes, absmax = table_quantize(x, table, 256)
    assert codes.size == 1024 and absmax.size == 4
    d = table_dequantize(codes, absmax, x.size, table, 256).astype(np.float64)
    am = np.repeat(absmax.astype(np.float64), 256)[:1000]
    z = x.astype(np.float64) / am
    i = np.clip(np.searchsorted(table, z), 1, table.size - 1)
    gap = table[i] - table[i - 1]
    outside = np.maximum(table[0] - z, 0) + np.maximum(z - table[-1], 0)   # clipped to the table's ends
    bound = np.where(outside > 0, outside, gap / 2) * am
    assert np.all(np.abs(d - x) <= bound * (1 + 1e-6) + 1e-6 * np.abs(x))   # + float32 rounding of d
    # entries times absmax are exact; each block's absmax element is exact when +1 is in the table
    entries = (table * 2.0).astype(np.float32)
    c, a = table_quantize(entries, table, 256)
    assert np.array_equal(table_dequantize(c, a, entries.size, table, 256), entries)
    # stochastic: between the two neighbours
    r = rng.integers(0, 1 << 16, x.size).astype(np.uint16)
    c, a = table_quantize(x, table, 256, "stochastic", r)
    ds = table_dequantize(c, a, x.size, table, 256).astype(np.float64)
    assert np.all(np.abs(ds - x) <= np.where(outside > 0, outside, gap) * am * (1 + 1e-6) + 1e-6 * np.abs(x))
    # non-finite block decodes to NaN
    y = x.copy()
    y[300] = np.nan
    c, a = table_quantize(y, table, 256)
    dy = table_dequantize(c, a, y.size, table, 256)
    assert np.all(np.isnan(dy[256:512])) and not np.any(np.isnan(dy[:256]))


def test_table_quantize_is_monotone_and_checks_arguments():
    t = dynamic_map(True)
    x = np.sort(np.random.default_rng(12).uniform(-1, 1, 4096)).astype(np.float32)
    c, a = table_quantize(x, t, x.size)
    assert np.all(np.diff(table_dequantize(c, a, x.size, t, x.size).astype(np.float64)) >= 0)
    with pytest.raises(ValueError, match="sorted"):
        table_quantize(x, t[::-1])
    with pytest.raises(ValueError, match="nearest and stochastic"):
        table_quantize(x, t, 256, "up")
