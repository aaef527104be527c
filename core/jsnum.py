"""Numbers printed exactly as JavaScript prints them (`String(x)`, `JSON.stringify`).

The indicator service stores `JSON.stringify(candle)`, so a member the Python side writes is
byte-identical to the service's only if its numbers are printed the JavaScript way: `310` not
`310.0`, `0.00001289` not `1.289e-05`, `1e-7` not `1e-07`, `10000000000000000` not `1e+16`.
Both languages use the shortest digits that round-trip (and, among
those, the closest to the value), so only the layout differs: this applies the ECMAScript
Number::toString layout to Python's `repr` digits and never re-rounds them.
"""

from __future__ import annotations

__all__ = ["js_number"]


def js_number(x: float) -> str:
    """`x` as JavaScript's `String(x)` prints it; NaN and infinities raise ValueError.

    JSON has no NaN or Infinity (`JSON.stringify` would write `null`), and a candle never has
    one, so they are refused rather than printed. An `int` is printed as the double JavaScript
    would hold; a bool is refused (JavaScript prints `true`).
    """
    if type(x) is not float:
        x = _as_float(x)
    r = repr(x)
    if "e" not in r:
        # repr is positional for 1e-4 <= |x| < 1e16 with the same digits JavaScript uses
        # there; the only differences are the integral `.0` and the sign of zero.
        if r[-2:] == ".0":
            return "0" if r == "-0.0" else r[:-2]
        if "n" in r:  # 'nan', 'inf', '-inf'
            raise ValueError(f"JavaScript number must be finite for JSON, got {r}")
        return r
    return _from_exponent_repr(r)


def _as_float(x: object) -> float:
    if isinstance(x, bool) or not isinstance(x, int | float):
        raise TypeError(f"js_number takes a float or an int, got {type(x).__name__}")
    try:
        return float(x)  # an int as the double JavaScript holds; a float subclass as a float
    except OverflowError:
        raise ValueError(f"JavaScript number must be finite for JSON, got {x}") from None


def _from_exponent_repr(r: str) -> str:
    """Number::toString (ECMA-262, 6.1.6.1.20) from repr's `d.ddde±XX` digits and exponent."""
    mantissa, _, exp = r.partition("e")
    sign = ""
    if mantissa[0] == "-":
        sign, mantissa = "-", mantissa[1:]
    digits = mantissa.replace(".", "").rstrip("0")  # s: k digits, value = 0.s * 10**n
    k = len(digits)
    n = int(exp) + 1
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * -n + digits
    e = n - 1
    head = digits if k == 1 else digits[0] + "." + digits[1:]
    return f"{sign}{head}e{'+' if e >= 0 else '-'}{abs(e)}"
