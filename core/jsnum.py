"""Numbers printed exactly as JavaScript prints them (`String(x)`, `JSON.stringify`), and
read only where JavaScript would read the same number.

The indicator service stores `JSON.stringify(candle)`, so a member the Python side writes is
byte-identical to the service's only if its numbers are printed the JavaScript way: `310` not
`310.0`, `0.00001289` not `1.289e-05`, `1e-7` not `1e-07`, `10000000000000000` not `1e+16`.
Both languages use the shortest digits that round-trip (and, among
those, the closest to the value), so only the layout differs: this applies the ECMAScript
Number::toString layout to Python's `repr` digits and never re-rounds them.

Reading: Python's `float`/`int` accept text that JavaScript's `Number` does not (`"1_5"` is
15 in Python and NaN in JavaScript; so are Arabic-Indic or fullwidth digits, `"nan"`,
`"inf"`), so an exchange number is read with `js_decimal`/`js_integer` instead, never with
`float(str(x))`.
The grammar is the one `Number` accepts for a decimal string (ECMA-262 StringNumericLiteral,
StrDecimalLiteral: ASCII digits only, an optional sign, `1.`, `.5`, `1e-7`), minus what the
cache contract cannot hold or never came from the exchange: `Infinity` and any value that
overflows to it (JSON has no infinity), padding with white space and the empty string
(`Number(" ")` is 0: a number nobody sent; and the two languages disagree on what white
space is), and the non-decimal `0x`/`0o`/`0b` forms.
"""

from __future__ import annotations

import json
import math
import re

import orjson

__all__ = [
    "NumberTextError",
    "js_decimal",
    "js_integer",
    "js_json",
    "js_json_loads",
    "js_json_loads_fast",
    "js_number",
]

# ECMA-262 StrUnsignedDecimalLiteral without `Infinity`, with a sign; ASCII digits only.
_DECIMAL = re.compile(r"([+-]?)(?:([0-9]+)(?:\.([0-9]*))?|\.([0-9]+))(?:[eE]([+-]?[0-9]+))?")
# The exchanges' usual form, in the grammar as it is: ASCII digits with at most one dot
# (`60123.45`, also `1.`, `.5`); `float` reads it as `Number` does.
PLAIN_DECIMAL = r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)"
_PLAIN = re.compile(PLAIN_DECIMAL)
MAX_SAFE_INTEGER = 2**53 - 1  # Number.MAX_SAFE_INTEGER: larger integers are not exact in JS
_INF = math.inf


class NumberTextError(ValueError):
    """Text that is not a number in the strict grammar (see the module docstring)."""


def js_decimal(text: str) -> float:
    """The finite double JavaScript's `Number(text)` gives, for text in the strict decimal
    grammar; `NumberTextError` (a ValueError) for anything else.

    Both languages round a decimal string correctly to the nearest double, so where the
    grammar matches, Python's `float` gives the same double as `Number`.
    """
    if type(text) is not str:
        raise TypeError(f"js_decimal takes a str, got {type(text).__name__}")
    if _PLAIN.fullmatch(text):  # only a huge one can still overflow
        x = float(text)
        if x != _INF:
            return x
        raise NumberTextError(f"not a finite number: {text[:40]!r}")
    if not _DECIMAL.fullmatch(text):
        raise NumberTextError(f"not a decimal number: {text[:40]!r}")
    x = float(text)
    if not math.isfinite(x):
        raise NumberTextError(f"not a finite number: {text[:40]!r}")
    return x


def js_integer(text: str) -> int:
    """An integer written in the strict decimal grammar (`"1712192400"`; also `"17e8"`), exactly
    integral and a safe integer in JavaScript (|n| <= 2**53 - 1); `NumberTextError` otherwise
    (`"1.5"`, `"1_5"`, `"1712192400.0000001"`)."""
    if type(text) is str and text.isascii() and text.isdigit() and len(text) <= 16:
        n = int(text)  # plain digits, the exchanges' usual form: exact as they are
        if n <= MAX_SAFE_INTEGER:
            return n
    js_decimal(text)  # the grammar, and finite
    n = _exact_integer(text)
    if n is None or abs(n) > MAX_SAFE_INTEGER:
        raise NumberTextError(f"not an exact safe integer: {text[:40]!r}")
    return n


def _exact_integer(text: str) -> int | None:
    """The integer the decimal text denotes exactly, or None (not integral, or absurd)."""
    m = _DECIMAL.fullmatch(text)
    assert m is not None
    sign, whole, frac, only_frac, exp = m.groups()
    frac = only_frac if whole is None else (frac or "")
    digits = ((whole or "") + frac).lstrip("0")
    significant = digits.rstrip("0")
    if not significant:
        return 0
    exp_digits = (exp or "0").lstrip("+-").lstrip("0")
    if len(exp_digits) > 7:  # |exponent| >= 10**7 with a non-zero value: never an integer we hold
        return None
    e = int(exp or "0") - len(frac) + len(digits) - len(significant)
    if e < 0 or e + len(significant) > 16:  # a fraction, or >= 10**16 > 2**53
        return None
    n = int(significant) * 10**e
    return -n if sign == "-" else n


def _refuse_constant(name: str) -> float:
    raise NumberTextError(f"{name} is not JSON")


def _json_int(text: str) -> int | float:
    """A JSON integer as `JSON.parse` holds it: exact up to 2**53 - 1, the nearest double
    beyond, and refused where that double is infinite."""
    n = int(text)
    if abs(n) <= MAX_SAFE_INTEGER:
        return n
    x = float(text)
    if not math.isfinite(x):
        raise NumberTextError(f"not a finite number: {text[:40]!r}")
    return x


def js_json_loads(text: str | bytes) -> object:
    """`json.loads` reading numbers as `JSON.parse` does: `NaN`, `Infinity` and `-Infinity`
    (Python accepts them, JavaScript refuses the whole text) raise `NumberTextError`, and so
    does a number that overflows to infinity (`1e400`: no cached value may hold one); an
    integer beyond 2**53 - 1 becomes the double JavaScript holds."""
    return json.loads(
        text, parse_constant=_refuse_constant, parse_float=js_decimal, parse_int=_json_int
    )


def js_json_loads_fast(text: bytes) -> object:
    """`js_json_loads` for an exchange's answer, by orjson (C: half the time of `json` on a
    page of candles). orjson refuses what `js_json_loads` refuses (`NaN`, the infinities,
    a number that overflows); what it refuses beyond that (a lone surrogate, UTF-16 text)
    is read again by `js_json_loads`, which decides. One difference is left: an integer
    beyond 2**53 - 1 is read exactly (JavaScript holds the nearest double), so a caller
    that takes integers from the result checks their range (`MAX_SAFE_INTEGER`)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return js_json_loads(text)


def js_json(value: object) -> str:
    """`JSON.stringify(value)` for dicts (str keys, insertion order), lists, str, bool, None
    and numbers (`js_number`: as JavaScript prints them). Unlike `JSON.stringify`, a
    non-finite number raises rather than becoming `null`: nothing is written that stands for
    a value nobody computed."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _js_string(value)
    if isinstance(value, int | float):
        return js_number(value)
    if isinstance(value, dict):
        parts = []
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"js_json: object keys must be str, got {type(k).__name__}")
            parts.append(f"{_js_string(k)}:{js_json(v)}")
        return "{" + ",".join(parts) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(js_json(v) for v in value) + "]"
    raise TypeError(f"js_json: cannot stringify {type(value).__name__}")


def _js_string(s: str) -> str:
    """JSON.stringify's QuoteJSONString: the same escapes as Python's (short forms, \\u00xx in
    lower case for other controls, non-ASCII raw), and a lone surrogate as \\udxxx."""
    out = json.dumps(s, ensure_ascii=False)
    if any("\ud800" <= c <= "\udfff" for c in out):
        out = "".join(f"\\u{ord(c):04x}" if "\ud800" <= c <= "\udfff" else c for c in out)
    return out


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
