"""Go's float rules that ``ollama create``'s bytes depend on: ``strconv.ParseFloat(s, 32)``, shortest digits.

A float ``PARAMETER`` is parsed by Ollama's client with ``ParseFloat(v, 32)`` (rounded straight from the
decimal to the nearest float32, not through a float64), sent as its shortest float32 decimal, and
re-encoded by the server as a float64. Getting one digit wrong changes the params blob's digest, so the
rounding here is exact (rationals), not Python's ``float`` followed by a second rounding.
"""

from __future__ import annotations

import math
import re
import struct
from decimal import Decimal
from fractions import Fraction

__all__ = [
    "FLOAT32_MAX",
    "format_json_float",
    "parse_float32",
    "round_to_float32",
    "shortest_digits",
    "to_float32",
]

FLOAT32_MAX = float.fromhex("0x1.fffffep127")
_F32_MANT_BITS = 24  # with the implicit bit
_F32_MIN_QUANTUM = -149  # exponent of the smallest subnormal: 2**-149

_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_HEX = re.compile(r"([+-]?)0[xX]([0-9a-fA-F_]*)(?:\.([0-9a-fA-F_]*))?[pP]([+-]?[0-9_]+)")
_INF = re.compile(r"([+-]?)(?:inf|infinity)", re.IGNORECASE)
_NAN = re.compile(r"nan", re.IGNORECASE)
_MAX_DECIMAL_EXPONENT = 400  # past this a float32 has long overflowed or underflowed to zero


def round_to_float32(q: Fraction) -> float:
    """The float32 nearest to the exact value *q* (ties to even), as a Python float.

    Raises:
        OverflowError: *q* rounds past the largest float32 (Go's ``ErrRange``).
    """
    if q == 0:
        return 0.0
    sign = -1.0 if q < 0 else 1.0
    a = abs(q)
    # e with 2**e <= a < 2**(e+1)
    e = a.numerator.bit_length() - a.denominator.bit_length()
    if Fraction(2) ** e > a:
        e -= 1
    quantum = max(e - (_F32_MANT_BITS - 1), _F32_MIN_QUANTUM)
    scaled = a / Fraction(2) ** quantum
    n = round(scaled)  # Fraction.__round__ rounds half to even
    value = math.ldexp(float(n), quantum)  # exact: n has at most 25 bits
    if value > FLOAT32_MAX:
        raise OverflowError("value out of range")
    return sign * value


def to_float32(x: float) -> float:
    """*x* rounded to float32 (ties to even), as C's ``(float)x`` and Go's ``float32(x)`` do.

    Raises:
        OverflowError: *x* is finite but past the float32 range.
    """
    if math.isnan(x) or math.isinf(x):
        return x
    return round_to_float32(Fraction(x)) if x else x


def _underscore_ok(s: str) -> bool:
    """Go's rule for '_' in a number literal: only between digits, or between a base prefix and a digit."""
    saw = "^"
    i = 0
    if s[:1] in ("+", "-"):
        i = 1
    hexa = False
    if len(s) - i >= 2 and s[i] == "0" and s[i + 1] in "xX":
        i += 2
        saw = "0"
        hexa = True
    for c in s[i:]:
        if c.isdigit() or (hexa and c in "abcdefABCDEF"):
            saw = "0"
        elif c == "_":
            if saw != "0":
                return False
            saw = "_"
        else:
            if saw == "_":
                return False
            saw = "!"
    return saw != "_"


def parse_float32(text: str) -> float:
    """``strconv.ParseFloat(text, 32)``: the nearest float32, or an error where Go gives one.

    Accepts what Go accepts: decimal (``1``, ``.5``, ``1.``, ``-2.5e-3``), hexadecimal with a ``p``
    exponent (``0x1.8p1``, underscores between digits), ``inf``/``infinity`` with a sign, ``nan``.
    Values too small for a float32 become zero, as in Go (no error).

    Raises:
        ValueError: not a number in Go's syntax (Go's ``ErrSyntax``).
        OverflowError: finite but past the float32 range (Go's ``ErrRange``).
    """
    if not isinstance(text, str) or not text.isascii():
        raise ValueError("invalid syntax")
    m = _INF.fullmatch(text)
    if m:
        return -math.inf if m.group(1) == "-" else math.inf
    if _NAN.fullmatch(text):
        return math.nan
    if _DECIMAL.fullmatch(text):
        d = Decimal(text)
        if d.is_zero():
            return -0.0 if text.startswith("-") else 0.0
        if d.adjusted() > _MAX_DECIMAL_EXPONENT:
            raise OverflowError("value out of range")
        if d.adjusted() < -_MAX_DECIMAL_EXPONENT:
            return -0.0 if d < 0 else 0.0
        return round_to_float32(Fraction(d))
    m = _HEX.fullmatch(text)
    if m and _underscore_ok(text):
        sign, exp = m.group(1), m.group(4)
        whole, frac = m.group(2).replace("_", ""), (m.group(3) or "").replace("_", "")
        if whole == "" and frac == "":
            raise ValueError("invalid syntax")
        mantissa = int(whole + frac or "0", 16)
        exponent = int(exp.replace("_", "")) - 4 * len(frac)
        if mantissa == 0:
            return -0.0 if sign == "-" else 0.0
        magnitude = mantissa.bit_length() + exponent
        if magnitude > 4 * _MAX_DECIMAL_EXPONENT:
            raise OverflowError("value out of range")
        if magnitude < -4 * _MAX_DECIMAL_EXPONENT:
            return -0.0 if sign == "-" else 0.0
        q = Fraction(mantissa) * Fraction(2) ** exponent
        return round_to_float32(-q if sign == "-" else q)
    raise ValueError("invalid syntax")


def _decimal_parts(text: str) -> tuple[int, int]:
    """``'1.25e-7'`` -> ``(125, -9)``: an integer without trailing zeros and its power of ten."""
    _, digits, exponent = Decimal(text).normalize().as_tuple()
    assert isinstance(exponent, int)
    return int("".join(map(str, digits))), exponent


def shortest_digits(x: float, bits: int = 64) -> tuple[int, int]:
    """The shortest decimal ``n * 10**e`` (n > 0, no trailing zeros) that reads back as *x*.

    *x* must be finite and non-zero; with ``bits=32`` it must be a float32 value and "reads back" means
    through float32 rounding, as Go's ``strconv.FormatFloat(x, 'e', -1, 32)`` decides.
    """
    x = abs(x)
    if bits == 64:
        return _decimal_parts(repr(x))
    if bits != 32:
        raise ValueError(f"bits must be 32 or 64, not {bits}")
    exact = Fraction(x)
    for p in range(1, 10):
        n, e = _decimal_parts(f"{x:.{p - 1}e}")
        pad = p - len(str(n))  # back to exactly p digits
        n, e = n * 10**pad, e - pad
        # the closest p-digit decimal and its neighbours: the round-trip interval is lopsided at powers
        # of two, so the closest one may miss while a neighbour hits
        candidates = [(n - 1, e), (n, e), (n + 1, e)]
        if n == 10 ** (p - 1):
            candidates[0] = (10**p - 1, e - 1)
        found: list[tuple[Fraction, int, int, int]] = []
        for m, me in candidates:
            q = Fraction(m) * Fraction(10) ** me
            try:
                if round_to_float32(q) == x:
                    found.append((abs(q - exact), m % 2, m, me))
            except OverflowError:
                continue
        if found:
            _, _, best, e = min(found)
            while best % 10 == 0:
                best //= 10
                e += 1
            return best, e
    raise ValueError(f"{x!r} is not a float32 value")


def _format_fixed(n: int, e: int) -> str:
    digits = str(n)
    if e >= 0:
        return digits + "0" * e
    digits = digits.rjust(-e + 1, "0")
    return f"{digits[:e]}.{digits[e:]}"


def _format_exponent(n: int, e: int) -> str:
    digits = str(n)
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    exp10 = e + len(digits) - 1
    if exp10 < 0:
        return f"{mantissa}e-{-exp10}"  # Go writes e-07, then encoding/json trims it to e-7
    return f"{mantissa}e+{exp10:02d}"


_F32_SMALL = struct.unpack("<f", struct.pack("<f", 1e-6))[0]
_F32_LARGE = struct.unpack("<f", struct.pack("<f", 1e21))[0]


def format_json_float(x: float, bits: int = 64) -> str:
    """A float as Go's ``encoding/json`` writes a float64 (``bits=64``) or a float32 (``bits=32``).

    Plain decimal with the shortest round-trip digits when 1e-6 <= |x| < 1e21 (no ``.0`` on whole
    numbers), otherwise exponent form (``1e-7``, ``1.5e+21``); ``-0`` for negative zero.

    Raises:
        ValueError: NaN or an infinity, with Go's text (``json: unsupported value: NaN``).
    """
    if math.isnan(x):
        raise ValueError("json: unsupported value: NaN")
    if math.isinf(x):
        raise ValueError(f"json: unsupported value: {'-' if x < 0 else '+'}Inf")
    sign = "-" if math.copysign(1.0, x) < 0 else ""
    if x == 0:
        return sign + "0"
    a = abs(x)
    small, large = (_F32_SMALL, _F32_LARGE) if bits == 32 else (1e-6, 1e21)
    exponent_form = a < small or a >= large
    n, e = shortest_digits(a, bits)
    return sign + (_format_exponent(n, e) if exponent_form else _format_fixed(n, e))
