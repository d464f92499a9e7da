"""Independent float64 NumPy reference of the low-precision optimizer-state codecs.

Written from the formats' definitions (IEEE-754 binary32, bfloat16, the
8-bit optimizer paper's dynamic tree map (Dettmers et al. 2021, "8-bit
Optimizers via Block-wise Quantization")), with no imports from ``fastopt``.
Every rounding is computed on *values* in float64 (``np.frexp``, exact
multiplications by powers of two, ``np.floor``), never with the bit tricks a
kernel uses, so that a kernel's integer recipe and this module are two
independent derivations of one result. The formats below are exact: for the
same float32 input (and the same random bits) a kernel must produce the same
codes, bit for bit.

Contents
--------
Random bits (for stochastic rounding)
    :func:`mix32`, :func:`stream_key`, :func:`random_words`, :func:`random16`:
    a counter-based generator, a pure function of ``(seed, step, index,
    slot)``, so that a step is reproducible and needs no generator state.
bfloat16
    :func:`bf16_encode` (float32 -> uint16 bits, rounding ``"nearest"``
    (to nearest, ties to even), ``"stochastic"`` or ``"up"``) and
    :func:`bf16_decode`.
Block floats (the recommended 8-bit codec)
    :class:`Minifloat8` formats (:data:`E4M3` signed, for first moments;
    :data:`E4M4` unsigned zero-less, for ``sqrt`` of second moments and for
    running maxima) with one power-of-two float32 scale per block:
    :func:`blockfloat_quantize`, :func:`blockfloat_dequantize`,
    :func:`blockfloat_roundtrip`, :func:`minifloat_values`; the second-moment wrapper
    :func:`encode_second_moment` / :func:`decode_second_moment` stores
    ``sqrt(v)`` (:func:`sqrt_for_storage`).
Table codecs (comparisons)
    :func:`dynamic_map` (the 8-bit optimizers' dynamic tree map, signed and
    unsigned), :func:`linear_map`, and a block codec over any sorted table
    with a float32 absmax per block: :func:`table_quantize`,
    :func:`table_dequantize`.

Conventions shared by every 8-bit codec here: the flat buffer is cut into
blocks of ``block`` consecutive elements starting at index 0; the last block
is padded with zeros up to ``block`` (so ``codes`` has ``nblocks * block``
entries, the padding codes are 0, and the padding never changes a block's
scale); inputs are first converted to float32 (what a kernel stores from); a
block holding a NaN or an infinity gets the scale NaN and all-zero codes, so
that every element of that block decodes to NaN (loud, never a silent
finite value).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "ROUNDINGS", "mix32", "stream_key", "random_words", "random16",
    "bf16_encode", "bf16_decode",
    "Minifloat8", "E4M3", "E4M4", "minifloat_values", "blockfloat_scales", "blockfloat_quantize",
    "blockfloat_dequantize", "blockfloat_roundtrip",
    "sqrt_for_storage", "encode_second_moment", "decode_second_moment",
    "dynamic_map", "linear_map", "table_quantize", "table_dequantize",
    "nblocks",
]

ROUNDINGS = ("nearest", "stochastic", "up")
"""``nearest``: to the nearest representable value, ties to the one with an
even last code bit. ``stochastic``: away from zero with probability equal to
the discarded fraction (16 bits of it; see each encoder). ``up``: away from
zero whenever anything is discarded (towards +inf for the non-negative states
it is meant for: running maxima)."""

_U32 = np.uint32
_GOLDEN = _U32(0x9E3779B9)


# --------------------------------------------------------------------------
# random bits
# --------------------------------------------------------------------------

def mix32(x) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, element-wise on uint32 (wrapping).

    ``h ^= h >> 16; h *= 0x85EBCA6B; h ^= h >> 13; h *= 0xC2B2AE35;
    h ^= h >> 16``: a bijection of the 32-bit integers with full avalanche.
    """
    h = np.array(x, dtype=_U32, copy=True)
    h ^= h >> _U32(16)
    h *= _U32(0x85EBCA6B)
    h ^= h >> _U32(13)
    h *= _U32(0xC2B2AE35)
    h ^= h >> _U32(16)
    return h


def stream_key(seed: int, step: int, word: int = 0) -> np.uint32:
    """The per-launch key of random word ``word`` at optimizer step ``step``.

    ``key = mix32(mix32(seed32 ^ (0x9E3779B9 * (word + 1))) ^ step32)``, with
    ``seed32``/``step32`` the low 32 bits of ``seed``/``step`` and the
    product taken modulo 2**32. Computed once per step on the host.
    """
    salt = (0x9E3779B9 * (int(word) + 1)) & 0xFFFFFFFF
    inner = mix32(_U32((int(seed) & 0xFFFFFFFF) ^ salt))
    return mix32(inner ^ _U32(int(step) & 0xFFFFFFFF))[()]


def random_words(seed: int, step: int, n: int, word: int = 0, start: int = 0) -> np.ndarray:
    """Random uint32 word ``word`` of flat elements ``start .. start + n - 1``.

    ``w[i] = mix32(key ^ i32)`` with ``key = stream_key(seed, step, word)``
    and ``i32`` the low 32 bits of the element's index in the flat buffer
    (buffers of 2**32 elements or more reuse words, which only correlates
    the rounding of elements 2**32 apart).
    """
    idx = (np.arange(start, start + n, dtype=np.uint64) & np.uint64(0xFFFFFFFF)).astype(_U32)
    return mix32(idx ^ stream_key(seed, step, word))


def random16(seed: int, step: int, n: int, slot: int, start: int = 0) -> np.ndarray:
    """The 16 random bits state ``slot`` of a rule uses for stochastic rounding.

    Slot ``s`` (0 for Adam's ``exp_avg``, 1 for ``exp_avg_sq``, ...) takes
    word ``s // 2``: its low half when ``s`` is even, its high half when odd.
    One 32-bit hash per element thus serves two states.
    """
    w = random_words(seed, step, n, word=slot // 2, start=start)
    return ((w >> _U32(16 * (slot % 2))) & _U32(0xFFFF)).astype(np.uint16)


def _check_rounding(rounding, random, n):
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")
    if rounding == "stochastic":
        if random is None:
            raise ValueError("stochastic rounding needs `random` (uint16 per element)")
        r = np.asarray(random)
        if r.shape != (n,):
            raise ValueError(f"random must have shape ({n},), got {r.shape}")
        return r.astype(np.float64)
    return None


def _round_up(frac, n_low, rounding, r):
    """Whether to round the magnitude up, given the exact discarded fraction
    ``frac`` in [0, 1) and the kept integer ``n_low`` (float64 arrays)."""
    if rounding == "nearest":
        return (frac > 0.5) | ((frac == 0.5) & (np.mod(n_low, 2.0) == 1.0))
    if rounding == "up":
        return frac > 0.0
    # stochastic: the discarded fraction truncated to 16 bits, plus 16 random
    # bits, carries into the kept part: P(up) = floor(frac * 2^16) / 2^16.
    return np.floor(frac * 65536.0) + r >= 65536.0


# --------------------------------------------------------------------------
# bfloat16
# --------------------------------------------------------------------------

_BF16_MAX = float(np.ldexp(255.0, 120))  # 0x7F7F: (2 - 2^-7) * 2^127


def bf16_encode(x, rounding: str = "nearest", random=None) -> np.ndarray:
    """float32 values -> bfloat16 bit patterns (uint16).

    Parameters
    ----------
    x : array_like
        Converted to float32 first (the value a kernel holds in a register).
    rounding : {"nearest", "stochastic", "up"}
        ``nearest``: IEEE round to nearest, ties to even. ``stochastic``: with
        ``r = random[i]`` uniform in [0, 2**16), the magnitude rounds up iff
        ``low16 + r >= 2**16``, where ``low16`` is the float32 pattern's low
        16 bits (the discarded fraction in units of 2**-16 ulp); this is
        exactly ``(bits + r) >> 16`` on the float32 pattern, so
        ``P(up) = low16 / 2**16`` and the rounding is unbiased. ``up``: the
        magnitude rounds up iff ``low16 != 0``.
    random : array_like of uint16, optional
        Required for ``stochastic``, one per element (see :func:`random16`).

    Returns
    -------
    numpy.ndarray of uint16

    Notes
    -----
    Special values, identical in every rounding mode:

    - NaN -> the quiet NaN ``0x7FC0`` with the input's sign bit (canonical:
      the payload is not kept).
    - +-inf -> +-inf (``0x7F80`` / ``0xFF80``); +-0 -> +-0 (sign kept).
    - Overflow is not saturated: a finite value whose magnitude rounds up
      past the largest finite bfloat16 (``0x7F7F``, 3.3895e38) becomes
      +-inf, as an IEEE conversion does (``nearest``: magnitudes
      >= 0x7F7F8000's value; ``stochastic``: with probability ``low16/2**16``
      above 0x7F7F0000's value; ``up``: anything above 0x7F7F0000's value).
    - float32 subnormals round within bfloat16's subnormals (same exponent
      range): no flush to zero, carry into the smallest normal allowed.
    """
    x32 = np.asarray(x, dtype=np.float32).reshape(-1)
    r = _check_rounding(rounding, random, x32.size)
    with np.errstate(invalid="ignore"):           # signalling NaN patterns
        a = np.abs(x32.astype(np.float64))
    finite = np.isfinite(a)
    af = np.where(finite, a, 0.0)
    # ulp of bfloat16 at |x|: 2^(floor(log2|x|) - 7) for normals, 2^-133 below 2^-126
    _, e = np.frexp(af)
    ulp = np.ldexp(1.0, np.maximum(e - 1, -126) - 7)
    q = af / ulp                          # exact: |x| has 24 significant bits
    n_low = np.floor(q)
    up = _round_up(q - n_low, n_low, rounding, r)
    mag = (n_low + up) * ulp              # exact
    mag = np.where(mag > _BF16_MAX, np.inf, mag)
    mag = np.where(finite, mag, a)        # inf stays inf, NaN stays NaN
    sign = np.signbit(x32)
    val = np.where(sign, -mag, mag).astype(np.float32)   # exact: val is a bfloat16 value
    bits = (val.view(np.uint32) >> np.uint32(16)).astype(np.uint16)
    nan = np.isnan(x32)
    bits[nan] = np.where(sign[nan], 0xFFC0, 0x7FC0).astype(np.uint16)
    return bits.reshape(np.shape(x))


def bf16_decode(bits) -> np.ndarray:
    """bfloat16 bit patterns (uint16) -> float32 values (exact: the pattern is
    the float32's high half, the low half zero)."""
    b = np.asarray(bits, dtype=np.uint16)
    return (b.astype(np.uint32) << np.uint32(16)).view(np.float32)


# --------------------------------------------------------------------------
# 8-bit block floats
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Minifloat8:
    """An 8-bit minifloat with no infinities or NaNs, used under a block scale.

    The magnitude field is ``ebits + mbits`` bits: ``E`` (exponent, the top
    ``ebits``) and ``F`` (fraction, the low ``mbits``); signed formats put
    the sign in bit 7 (``ebits + mbits == 7``), unsigned ones use all 8 bits
    for the magnitude (``ebits + mbits == 8``). With ``Emax = 2**ebits - 1``
    the magnitude code's value (before the block scale) is::

        E >= 1:  (1 + F / 2**mbits) * 2**(E - Emax)      top binade [1, 2)
        E == 0:  (F / 2**mbits) * 2**(1 - Emax)          subnormals, and 0

    so the largest value is ``2 - 2**-mbits`` and the smallest positive one
    ``2**(1 - Emax - mbits)``. ``zeroless``: a non-zero input never encodes
    to code 0 (it takes at least the smallest positive code); code 0 means
    exactly zero (second moments: an element whose ``v`` decodes to 0 while
    its ``m`` does not would step by ``m / eps``).
    """

    ebits: int
    mbits: int
    signed: bool
    zeroless: bool = False

    def __post_init__(self):
        if self.ebits < 1 or self.mbits < 0 or self.ebits + self.mbits != (7 if self.signed else 8):
            raise ValueError(f"bad minifloat: ebits={self.ebits} mbits={self.mbits} signed={self.signed}")

    @property
    def name(self) -> str:
        return f"{'s' if self.signed else 'u'}e{self.ebits}m{self.mbits}{'nz' if self.zeroless else ''}"

    @property
    def emax(self) -> int:
        return 2 ** self.ebits - 1

    @property
    def max_value(self) -> float:
        """Largest magnitude before the block scale: ``2 - 2**-mbits``."""
        return 2.0 - 2.0 ** -self.mbits

    @property
    def min_value(self) -> float:
        """Smallest positive magnitude before the block scale."""
        return 2.0 ** (1 - self.emax - self.mbits)


E4M3 = Minifloat8(4, 3, signed=True)
"""Signed 1-4-3 (first moments, momentum buffers): 3 fraction bits (relative
step <= 12.5%), 1.875 * 2**17 (5.4 decades) from the smallest positive to the
largest magnitude."""

E4M4 = Minifloat8(4, 4, signed=False, zeroless=True)
"""Unsigned zero-less 4-4 (``sqrt`` of second moments, running maxima): 4
fraction bits (relative step <= 6.25%), 1.9375 * 2**18 (5.7 decades) from the
smallest positive to the largest value: 11.4 decades of ``v`` when it holds
``sqrt(v)``."""


def minifloat_values(fmt: Minifloat8) -> np.ndarray:
    """The value of every code 0..255 before the block scale (float64).

    Signed formats: code ``0x80 | c`` is ``-value(c)``; ``0x80`` is -0.0.
    """
    nmag = 2 ** (fmt.ebits + fmt.mbits)
    c = np.arange(nmag)
    E, F = c >> fmt.mbits, c & (2 ** fmt.mbits - 1)
    mag = np.where(E >= 1, (1.0 + F / 2.0 ** fmt.mbits) * np.ldexp(1.0, E - fmt.emax),
                   F / 2.0 ** fmt.mbits * 2.0 ** (1 - fmt.emax))
    if fmt.signed:
        return np.concatenate([mag, -mag])
    return mag


def nblocks(n: int, block: int) -> int:
    """Number of blocks covering ``n`` elements (the last one padded)."""
    return -(-int(n) // int(block))


def _blocks(x, block):
    if int(block) < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    x32 = np.asarray(x, dtype=np.float32).reshape(-1)
    n = x32.size
    nb = nblocks(n, block)
    padded = np.zeros(nb * block, dtype=np.float32)
    padded[:n] = x32
    return x32, padded.reshape(nb, block)


def blockfloat_scales(absmax, fmt: Minifloat8) -> np.ndarray:
    """The power-of-two block scale for blocks whose largest magnitude is ``absmax``.

    ``scale = 2**k`` with ``k = floor(log2(absmax))``, plus 1 when
    ``absmax / 2**k > fmt.max_value`` (so every element fits without
    saturation), capped at ``k <= 127``. ``absmax == 0`` gives 0;
    a non-finite ``absmax`` gives NaN. Returned as float32 (exact).
    """
    a = np.asarray(absmax, dtype=np.float32).astype(np.float64)
    fin = np.isfinite(a) & (a > 0)
    af = np.where(fin, a, 1.0)
    _, e = np.frexp(af)
    k = e - 1
    k = k + (af / np.ldexp(1.0, k) > fmt.max_value)
    k = np.minimum(k, 127)
    s = np.where(fin, np.ldexp(1.0, k), np.where(a == 0, 0.0, np.nan))
    return s.astype(np.float32)


def _minifloat_round(y, fmt, rounding, r, nonzero):
    """Scaled magnitudes ``y >= 0`` (float64, exact) rounded onto the format's grid (float64 values)."""
    m, emax = fmt.mbits, fmt.emax
    yf = np.where(y > 0, y, 1.0)
    _, e = np.frexp(yf)
    fl = np.maximum(e - 1, 1 - emax)          # binade exponent, subnormals share 1 - Emax
    ulp = np.ldexp(1.0, fl - m)
    q = np.where(y > 0, y / ulp, 0.0)         # exact: y has <= 24 significant bits
    n_low = np.floor(q)
    val = (n_low + _round_up(q - n_low, n_low, rounding, r)) * ulp
    val = np.minimum(val, fmt.max_value)      # saturate (only reachable when the scale was capped)
    if fmt.zeroless:
        val = np.where(nonzero & (val == 0.0), fmt.min_value, val)
    return val


def _minifloat_codes(val, fmt):
    """Magnitude codes of grid values ``val`` (from :func:`_minifloat_round`)."""
    m, emax = fmt.mbits, fmt.emax
    sub = val < 2.0 ** (1 - emax)
    vf = np.where(sub, 1.0, val)
    _, ev = np.frexp(vf)
    E = ev - 1 + emax
    F = (vf / np.ldexp(1.0, ev - 1) - 1.0) * 2.0 ** m
    code = np.where(sub, val / fmt.min_value, E * 2.0 ** m + F)
    return code.astype(np.int64)


def _blockfloat_grid(x, fmt, block, rounding, random):
    """Shared by quantize and roundtrip: (x32, signs, scales, grid values, ok mask), blocked."""
    x32, xb = _blocks(x, block)
    r = _check_rounding(rounding, random, x32.size)
    if not fmt.signed and np.any(x32 < 0):
        raise ValueError(f"{fmt.name} is unsigned: negative values cannot be stored")
    a = np.abs(xb.astype(np.float64))
    scales = blockfloat_scales(a.max(axis=1), fmt)
    s = scales.astype(np.float64)[:, None]
    ok = np.isfinite(s) & (s > 0)
    y = np.where(ok, a / np.where(ok, s, 1.0), 0.0)     # exact (power-of-two divisor)
    rb = None
    if r is not None:
        rb = np.zeros(xb.size)
        rb[: x32.size] = r
        rb = rb.reshape(xb.shape)
    val = _minifloat_round(y, fmt, rounding, rb, a > 0)
    return x32, xb, scales, val, ok


def blockfloat_quantize(x, fmt: Minifloat8 = E4M3, block: int = 256, rounding: str = "nearest", random=None):
    """Quantize a flat buffer to 8-bit minifloat codes with a power-of-two scale per block.

    Parameters
    ----------
    x : array_like
        The state values (any shape; flattened, converted to float32).
        Unsigned formats need ``x >= 0`` (-0.0 allowed).
    fmt : Minifloat8
    block : int
        Block length; the last block is padded with zeros.
    rounding : {"nearest", "stochastic", "up"}
        Applied to ``|x| / scale`` on the format's grid (see
        :data:`ROUNDINGS`). ``stochastic``: with ``q = |x| / scale / ulp``
        (exact), the magnitude rounds up iff
        ``floor(frac(q) * 2**16) + random[i] >= 2**16``.
    random : array_like of uint16, optional
        One per element of ``x`` (not of the padding), for ``stochastic``.

    Returns
    -------
    codes : numpy.ndarray of uint8, shape (nblocks * block,)
        Signed formats: bit 7 is the float32 sign bit of the input (so -0.0
        and negative values that round to zero give ``0x80``, which decodes
        to -0.0). Padding codes are 0.
    scales : numpy.ndarray of float32, shape (nblocks,)
        ``2**k`` (see :func:`blockfloat_scales`), 0 for an all-zero block,
        NaN for a block holding a NaN or an infinity (its codes are all 0).
    """
    x32, xb, scales, val, ok = _blockfloat_grid(x, fmt, block, rounding, random)
    mag = _minifloat_codes(val, fmt)
    mag = np.where(ok, mag, 0)
    if fmt.signed:
        mag = mag | (np.signbit(xb) & ok).astype(np.int64) << 7
    return mag.astype(np.uint8).reshape(-1), scales


def blockfloat_dequantize(codes, scales, n: int, fmt: Minifloat8 = E4M3, block: int = 256) -> np.ndarray:
    """Codes and per-block scales -> the first ``n`` float32 values.

    ``value = float32(minifloat_values(fmt)[code] * scale)``: the table value
    is exact in float32 and the product is rounded once (RNE), as one float32
    multiply in a kernel rounds it (only a result below float32's normal
    range can round at all).
    """
    codes = np.asarray(codes, dtype=np.uint8).reshape(-1)
    scales = np.asarray(scales, dtype=np.float32).reshape(-1)
    if codes.size != scales.size * block or n > codes.size:
        raise ValueError(f"{codes.size} codes and {scales.size} scales do not make blocks of {block} "
                         f"covering {n} elements")
    table = minifloat_values(fmt)
    vals = table[codes.astype(np.int64)].reshape(-1, block) * scales.astype(np.float64)[:, None]
    return vals.reshape(-1)[:n].astype(np.float32)


def blockfloat_roundtrip(x, fmt: Minifloat8 = E4M3, block: int = 256, rounding: str = "nearest",
                         random=None) -> np.ndarray:
    """``blockfloat_dequantize(*blockfloat_quantize(x, ...), x.size, ...)`` without forming the codes
    (float32, flat; the same values, faster: what a simulation of the stored state needs)."""
    x32, xb, scales, val, ok = _blockfloat_grid(x, fmt, block, rounding, random)
    s = scales.astype(np.float64)[:, None]
    d = np.where(ok, val * np.where(ok, s, 0.0), s)        # non-finite block: NaN; all-zero block: 0
    d = np.where(np.signbit(xb) & ok & fmt.signed, -d, d)       # as the codes: no sign in a zero block
    return d.reshape(-1)[: x32.size].astype(np.float32)


def sqrt_for_storage(v, rounding: str = "nearest") -> np.ndarray:
    """The float32 ``s`` a second moment (or a running maximum of one) ``v >= 0`` is stored as.

    ``s = sqrt(float32 v)``, IEEE correctly rounded. For ``rounding == "up"``
    (running maxima), ``s`` is moved to the next float32 up when
    ``s * s < v`` exactly (decided in float64, where ``s * s`` is exact), so
    that a code rounded up from ``s`` decodes to ``d`` with ``d * d >= v``
    (``d`` has at most 8 significant bits, so ``d * d`` is exact in float32).
    """
    v32 = np.asarray(v, dtype=np.float32)
    s = np.sqrt(v32)
    if rounding == "up":
        s64 = s.astype(np.float64)
        s = np.where(s64 * s64 < v32.astype(np.float64), np.nextafter(s, np.float32(np.inf)), s)
    return s


def encode_second_moment(v, block: int = 256, rounding: str = "stochastic", random=None, fmt: Minifloat8 = E4M4):
    """Store a second moment ``v >= 0`` as ``sqrt(v)`` in ``fmt`` (default :data:`E4M4`).

    ``s = sqrt_for_storage(v, rounding)``, then :func:`blockfloat_quantize`.
    Storing the square root halves the logarithmic range the codes must span
    (``sqrt(v)`` lives on the gradient's scale, like ``m``), and the kernel
    computes ``sqrt(v)`` for the denominator anyway. With ``rounding="up"``
    the decoded value is never below ``v`` (running maxima: AMSGrad).
    """
    return blockfloat_quantize(sqrt_for_storage(v, rounding), fmt, block, rounding, random)


def decode_second_moment(codes, scales, n: int, block: int = 256, fmt: Minifloat8 = E4M4) -> np.ndarray:
    """Inverse of :func:`encode_second_moment`: ``d = decode(codes)``, then
    ``v = float32(d * d)`` (one float32 multiply; exact unless ``d`` is below
    2**-75)."""
    d = blockfloat_dequantize(codes, scales, n, fmt, block)
    return (d.astype(np.float64) * d.astype(np.float64)).astype(np.float32)


# --------------------------------------------------------------------------
# table codecs: the dynamic tree map (comparison) and linear maps
# --------------------------------------------------------------------------

def dynamic_map(signed: bool = True) -> np.ndarray:
    """The 8-bit optimizers' dynamic tree map, sorted ascending (256 float64 values in [-1, 1]).

    From the paper's description: after the sign bit (signed map only), a run
    of ``E`` zero bits gives the decimal exponent ``10**-E``, a one bit
    (the indicator) ends the run, and the remaining ``F`` bits are a linear
    fraction in (0.1, 1]. Here the ``2**F`` fractions are the midpoints of
    ``2**F`` equal intervals of [0.1, 1]. Signed: ``F = 6 - E`` for
    ``E = 0..6``, 127 magnitudes per sign from 0.1 * 10**-6 up, plus 0 and
    +1 (the block's absmax element is stored exactly if positive). Unsigned
    (second moments; the sign bit becomes one more fraction bit):
    ``F = 7 - E``, 254 values, plus 0 and 1.
    """
    fbits = 6 if signed else 7
    vals = [0.0, 1.0]
    for E in range(7):
        F = fbits - E
        k = np.arange(2 ** F)
        mids = (0.1 + 0.9 * (k + 0.5) / 2 ** F) * 10.0 ** -E
        vals.extend(mids)
        if signed:
            vals.extend(-mids)
    table = np.unique(np.array(vals, dtype=np.float64))
    assert table.size == 256
    return table


def linear_map(signed: bool = True, zero: bool = True) -> np.ndarray:
    """Linear 8-bit maps (comparisons), sorted ascending, values in [-1, 1].

    Signed: ``k / 127`` for ``k = -127..127`` (255 values; one code unused).
    Unsigned with zero: ``k / 255``, ``k = 0..255``. Unsigned zero-less:
    ``k / 256``, ``k = 1..256`` (the 4-bit optimizers' remedy for the
    zero-point problem; still a linear grid).
    """
    if signed:
        return np.arange(-127, 128) / 127.0
    if zero:
        return np.arange(256) / 255.0
    return np.arange(1, 257) / 256.0


def table_quantize(x, table, block: int = 256, rounding: str = "nearest", random=None):
    """Block-wise quantization to the nearest entry of a sorted table, with a
    float32 absmax per block (the 8-bit optimizers' scheme).

    Parameters
    ----------
    x : array_like
        Flattened, converted to float32.
    table : array_like
        Sorted ascending, values in [-1, 1] (e.g. :func:`dynamic_map`).
    block : int
    rounding : {"nearest", "stochastic"}
        ``nearest``: the closer of the two neighbouring entries of
        ``z = x / absmax`` (float64), ties to the lower entry. ``stochastic``:
        the upper neighbour with probability ``floor(p * 2**16) / 2**16``,
        ``p = (z - lo) / (hi - lo)``, using ``random[i]`` as for
        :func:`blockfloat_quantize`.
    random : array_like of uint16, optional

    Returns
    -------
    codes : numpy.ndarray of uint8, shape (nblocks * block,)
        Index into ``table``. Padding (and an all-zero or non-finite block)
        gets the index of the entry nearest 0.
    absmax : numpy.ndarray of float32, shape (nblocks,)
        ``max |x|`` over the block; NaN for a block with a NaN or an
        infinity (its codes then decode to NaN); 0 for an all-zero block.
    """
    t = np.asarray(table, dtype=np.float64)
    if t.size > 256 or np.any(np.diff(t) <= 0):
        raise ValueError("table must be sorted, distinct, at most 256 entries")
    if rounding == "up":
        raise ValueError("table codecs support nearest and stochastic rounding")
    x32, xb = _blocks(x, block)
    r = _check_rounding(rounding, random, x32.size)
    absmax = np.abs(xb.astype(np.float64)).max(axis=1)
    absmax = np.where(np.isfinite(absmax), absmax, np.nan).astype(np.float32)
    a = absmax.astype(np.float64)[:, None]
    ok = np.isfinite(a) & (a > 0)
    z = np.where(ok, xb / np.where(ok, a, 1.0), 0.0)
    z = np.clip(z, t[0], t[-1])
    i = np.clip(np.searchsorted(t, z, side="left"), 1, t.size - 1)
    lo, hi = t[i - 1], t[i]
    exact_hi = z == hi
    if rounding == "nearest":
        up = (hi - z) < (z - lo)
    else:
        rb = np.zeros(xb.size)
        rb[: x32.size] = r
        p = (z - lo) / (hi - lo)
        up = np.floor(p * 65536.0) + rb.reshape(xb.shape) >= 65536.0
    idx = np.where(exact_hi | up, i, i - 1)
    idx = np.where(ok, idx, int(np.argmin(np.abs(t))))
    return idx.astype(np.uint8).reshape(-1), absmax


def table_dequantize(codes, absmax, n: int, table, block: int = 256) -> np.ndarray:
    """``float32(table[code] * absmax)`` for the first ``n`` elements."""
    t = np.asarray(table, dtype=np.float64)
    codes = np.asarray(codes, dtype=np.uint8).reshape(-1)
    absmax = np.asarray(absmax, dtype=np.float32).reshape(-1)
    if codes.size != absmax.size * block or n > codes.size:
        raise ValueError(f"{codes.size} codes and {absmax.size} scales do not make blocks of {block} "
                         f"covering {n} elements")
    vals = t[codes.astype(np.int64)].reshape(-1, block) * absmax.astype(np.float64)[:, None]
    return vals.reshape(-1)[:n].astype(np.float32)
