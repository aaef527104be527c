"""Reading numbers: only the strict decimal grammar (`core.jsnum.js_decimal`), wherever an
exchange number or a cached member is read.

Python's `float`/`int` read `"1_5"` as 15, `"\\u0661\\u0665"` (Arabic-Indic) as 15, `"nan"` and
`"inf"`; JavaScript's `Number` reads NaN for each. The grammar is `Number`'s for a decimal
string minus what the cache contract cannot hold: `Infinity` (and overflow to it), white-space
padding and the empty string (`Number(" ")` is 0), and the `0x`/`0o`/`0b` forms. node, where
installed, is the oracle: every accepted text reads as the same double there, every refused
one is NaN there or named by one of those exclusions.
"""

from __future__ import annotations

import json
import math
import shutil
import struct
import subprocess
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.candle import Candle, parse_candle
from core.errors import CacheContractError, TransientError
from core.jsnum import NumberTextError, js_decimal, js_integer, js_json, js_json_loads
from core.member import validate_member
from core.series import Series
from core.timeframe import timeframe
from workers.coinbase.rows import BadRows, candle_rows
from workers.exchange.rows import select, start_of

NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed: no JS oracle")

H1 = timeframe("1h")
T0 = 1_700_000_000 - 1_700_000_000 % 3600

# (text, why it is refused): "NaN" where JavaScript's Number reads NaN; otherwise the
# exclusion the contract makes ("infinite", "padded", "empty", "non-decimal").
BAD = [
    ("1_5", "NaN"),
    ("_15", "NaN"),
    ("15_", "NaN"),
    ("1__5", "NaN"),
    ("1.5_0", "NaN"),
    ("1e1_0", "NaN"),
    ("0.00_1", "NaN"),
    ("1_000_000", "NaN"),
    ("\u0661\u0665", "NaN"),  # Arabic-Indic 15
    ("\u06f1\u06f5", "NaN"),  # Extended Arabic-Indic (Persian) 15
    ("\uff11\uff15", "NaN"),  # fullwidth 15
    ("\u0967\u096b", "NaN"),  # Devanagari 15
    ("\U0001d7cf\U0001d7d3", "NaN"),  # mathematical bold 15
    ("1\u0665", "NaN"),  # one ASCII digit, one Arabic-Indic
    ("\uff11.5", "NaN"),
    ("1.\u0665", "NaN"),
    ("1e\u0665", "NaN"),
    ("nan", "NaN"),
    ("NaN", "NaN"),
    ("-nan", "NaN"),
    ("inf", "NaN"),
    ("-inf", "NaN"),
    ("INF", "NaN"),
    ("infinity", "NaN"),
    ("Infinity", "infinite"),
    ("+Infinity", "infinite"),
    ("-Infinity", "infinite"),
    ("1e400", "infinite"),
    ("-1e400", "infinite"),
    ("1" + "0" * 400, "infinite"),
    ("0x10", "non-decimal"),
    ("0X10", "non-decimal"),
    ("0o17", "non-decimal"),
    ("0b101", "non-decimal"),
    ("-0x10", "NaN"),
    ("0x", "NaN"),
    ("1e", "NaN"),
    ("1e+", "NaN"),
    ("1E-", "NaN"),
    ("e5", "NaN"),
    (".", "NaN"),
    ("+", "NaN"),
    ("-", "NaN"),
    ("++1", "NaN"),
    ("+-1", "NaN"),
    ("--1", "NaN"),
    ("1.2.3", "NaN"),
    ("1,5", "NaN"),
    ("1e5.5", "NaN"),
    ("1d", "NaN"),
    ("1f", "NaN"),
    ("1.5f", "NaN"),
    ("\u00bd", "NaN"),  # vulgar fraction one half
    ("\u00b2", "NaN"),  # superscript two
    ("1 5", "NaN"),
    ("", "empty"),
    (" ", "empty"),
    ("\t\n", "empty"),
    (" 1.5", "padded"),
    ("1.5 ", "padded"),
    ("\t1.5", "padded"),
    ("1.5\n", "padded"),
    ("\r\n1.5", "padded"),
    ("\u00a01.5", "padded"),  # no-break space: JS white space, Python too
    ("\ufeff1.5", "padded"),  # BOM: JS white space, not Python's
    ("1.5\u2028", "padded"),  # line separator
    ("\u30001.5", "padded"),  # ideographic space
    ("\x1c1.5", "NaN"),  # Python strips it (str.isspace), JavaScript does not
    ("\x85" + "1.5", "NaN"),  # NEL: Python white space, not JavaScript's
]

GOOD = [
    ("0", 0.0),
    ("1", 1.0),
    ("1.5", 1.5),
    ("65100.2", 65100.2),
    ("0.00001289", 1.289e-05),
    ("12.3456", 12.3456),
    ("+1", 1.0),  # JavaScript reads it; nothing in the contract forbids a sign
    ("-1", -1.0),  # read; a price or volume < 0 is then refused by the candle's own rule
    ("-0", -0.0),
    (".5", 0.5),
    ("1.", 1.0),
    ("007", 7.0),
    ("1e5", 1e5),
    ("1E-7", 1e-7),
    ("1e+21", 1e21),
    ("1e-400", 0.0),  # underflows to 0 in both languages
    ("1.7976931348623157e308", 1.7976931348623157e308),
    ("0.1000000000000000055511151231257827", 0.1),
]


def _python_reads(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize(("text", "why"), BAD)
def test_bad_forms_are_refused(text: str, why: str) -> None:
    with pytest.raises(NumberTextError):
        js_decimal(text)
    with pytest.raises(NumberTextError):
        js_integer(text)


def test_python_alone_would_read_the_worst_of_them() -> None:
    """What the fix is for: each of these was cached as a number before."""
    assert float("1_5") == 15.0 and int("1_5") == 15
    assert float("\u0661\u0665") == 15.0 and int("\uff11\uff15") == 15
    assert float(" 1.5\n") == 1.5 and math.isnan(float("nan")) and float("1e400") == math.inf


@pytest.mark.parametrize(("text", "want"), GOOD)
def test_good_forms_read_as_javascript_reads_them(text: str, want: float) -> None:
    got = js_decimal(text)
    assert got == want and math.copysign(1, got) == math.copysign(1, want)
    assert isinstance(got, float)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("1712192400", 1712192400),
        ("+1712192400", 1712192400),
        ("1712192400.0", 1712192400),
        ("17121924e2", 1712192400),
        ("1.7121924e9", 1712192400),
        ("0", 0),
        ("-3600", -3600),
        ("9007199254740991", 2**53 - 1),
    ],
)
def test_integers(text: str, want: int) -> None:
    assert js_integer(text) == want and type(js_integer(text)) is int


@pytest.mark.parametrize(
    "text",
    [
        "1.5",
        "1712192400.0000001",  # the float is integral, the text is not
        "9007199254740992",  # beyond Number.MAX_SAFE_INTEGER
        "1e20",
        "1e-99999999999999999999",
        "1712192400e99999999999999999999",
        "1_712_192_400",
        "\u0661\u0667\u0661\u0662",
    ],
)
def test_not_integers(text: str) -> None:
    with pytest.raises(NumberTextError):
        js_integer(text)


def test_non_strings_are_a_type_error() -> None:
    for bad in (1.5, 15, None, b"15"):
        with pytest.raises(TypeError):
            js_decimal(bad)  # type: ignore[arg-type]


# --- every place an exchange number is read ----------------------------------------------

FIELDS = ("start", "open", "high", "low", "close", "volume")


def raw(**over: str) -> dict[str, str]:
    row = {"start": str(T0), "open": "10", "high": "16", "low": "9", "close": "11"}
    return {**row, "volume": "1.5", **over}


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize(("text", "why"), BAD)
def test_parse_candle_refuses_every_bad_form_in_every_field(field, text, why) -> None:
    with pytest.raises(TransientError, match=f"invalid candle: {field} not a"):
        parse_candle(raw(**{field: text}), H1, closed_before=T0 + 3600)


@pytest.mark.parametrize("field", ["open", "high", "low", "close", "volume"])
def test_underscored_fifteen_was_the_bug(field: str) -> None:
    fifteen = {"start": str(T0), **dict.fromkeys(("open", "high", "low", "close", "volume"), "15")}
    assert getattr(parse_candle(fifteen, H1, closed_before=T0 + 3600), field) == 15.0
    with pytest.raises(TransientError, match=f"invalid candle: {field} not a decimal number"):
        parse_candle({**fifteen, field: "1_5"}, H1, closed_before=T0 + 3600)


def test_volume_text_is_the_exchanges_text_when_decimal_holds_it() -> None:
    c = parse_candle(raw(volume="1.50"), H1, closed_before=T0 + 3600)
    assert c.volume == 1.5 and c.volume_text == "1.50"
    tiny = parse_candle(raw(volume="1e-99999999999999999999"), H1, closed_before=T0 + 3600)
    assert tiny.volume == 0.0 and tiny.volume_text is None  # Decimal refuses that exponent


@pytest.mark.parametrize(("text", "why"), [b for b in BAD if b[1] != "infinite"][:20])
def test_rows_start_is_read_strictly(text: str, why: str) -> None:
    with pytest.raises(BadRows, match="not an integer"):
        start_of({"start": text})


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400", "-1E999"])
def test_rows_body_with_what_json_parse_refuses_is_not_json(literal: str) -> None:
    row = f'"start":"{T0}","low":"9","high":"16","open":"10","close":"11","volume":{literal}'
    body = ('{"candles":[{' + row + "}]}").encode()
    with pytest.raises(BadRows, match="not JSON"):
        candle_rows(body)


def test_rows_body_with_a_json_number_field_still_reads() -> None:
    body = json.dumps({"candles": [{**raw(), "volume": 1.5, "start": T0}]}).encode()
    (row,) = candle_rows(body)
    (c,) = select([row], H1, T0, T0, now=T0 + 7200, closed_before=T0 + 7200)
    assert (c.start, c.volume) == (T0, 1.5)


def test_rows_select_refuses_an_underscored_volume() -> None:
    rows = candle_rows(json.dumps({"candles": [raw(volume="1_5")]}).encode())
    with pytest.raises(BadRows, match="invalid candle: volume not a decimal number: '1_5'"):
        select(rows, H1, T0, T0, now=T0 + 7200, closed_before=T0 + 7200)


# --- cached members -------------------------------------------------------------------------

S = Series.of("BTC-USD", "1h")
GOOD_MEMBER = Candle(T0, 10.0, 16.0, 9.0, 11.0, 1.5).member("BTC-USD", "1h")


@pytest.mark.parametrize(
    "number", ["NaN", "Infinity", "-Infinity", "1e400", "1" + "0" * 400, "1E999"]
)
@pytest.mark.parametrize("field", ["open", "high", "close", "volume"])
def test_members_with_what_json_parse_refuses_or_no_price_is_are_refused(field, number) -> None:
    m = json.loads(GOOD_MEMBER)
    text = GOOD_MEMBER.replace(f'"{field}":{json.dumps(m[field])}', f'"{field}":{number}')
    assert text != GOOD_MEMBER
    with pytest.raises(CacheContractError):
        validate_member(text, S, S.cache_key())


def test_a_member_still_reads() -> None:
    assert validate_member(GOOD_MEMBER, S, S.cache_key())["volume"] == 1.5


def test_json_loads_reads_big_integers_as_javascript_holds_them() -> None:
    assert js_json_loads("[9007199254740991, 9007199254740993]") == [2**53 - 1, 2.0**53]
    with pytest.raises(NumberTextError):
        js_json_loads('{"a": NaN}')


# --- node: the oracle ------------------------------------------------------------------------

_NODE_READ = r"""
const rl = require('readline').createInterface({input: process.stdin});
const b = Buffer.alloc(8);
rl.on('line', (line) => {
  const s = JSON.parse(line);
  const x = Number(s);
  b.writeDoubleBE(x);
  const t = s.trim();
  process.stdout.write(JSON.stringify([b.toString('hex'), t === s, t === '']) + '\n');
});
"""

_NODE_STRINGIFY = (
    "process.stdout.write(JSON.stringify(JSON.parse(require('fs').readFileSync(0,'utf8'))))"
)


@pytest.fixture(scope="module")
def node_read() -> Iterator[subprocess.Popen[str]]:
    if NODE is None:
        pytest.skip("node is not installed: no JS oracle")
    proc = subprocess.Popen(
        [NODE, "-e", _NODE_READ], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    yield proc
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(timeout=10)


def _node_number(proc: subprocess.Popen[str], text: str) -> tuple[float, str]:
    """Number(text) in node, and whether the text is "blank", "padded" (JavaScript's white
    space around it, by String.prototype.trim) or "bare"."""
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(text) + "\n")  # ASCII-escaped: one line, any code point
    proc.stdin.flush()
    bits, trimmed, blank = json.loads(proc.stdout.readline())
    space = "blank" if blank else "bare" if trimmed else "padded"
    return struct.unpack(">d", bytes.fromhex(bits))[0], space


def _excluded(text: str, x: float, space: str) -> str | None:
    """Which exclusion of the contract a text JavaScript reads as a number falls under."""
    if math.isnan(x):
        return "NaN"
    if space != "bare":
        return {"blank": "empty", "padded": "padded"}[space]
    if text[:2].lower() in ("0x", "0o", "0b"):
        return "non-decimal"
    if math.isinf(x):
        return "infinite"
    return None


def _same_double(a: float, b: float) -> bool:
    return struct.pack(">d", a) == struct.pack(">d", b)


@needs_node
@pytest.mark.parametrize(("text", "why"), BAD)
def test_node_agrees_each_bad_form_is_nan_or_excluded(node_read, text: str, why: str) -> None:
    x, space = _node_number(node_read, text)
    assert _excluded(text, x, space) == why, (text, x)


@needs_node
@pytest.mark.parametrize(("text", "want"), GOOD)
def test_node_reads_each_good_form_as_the_same_double(node_read, text: str, want: float) -> None:
    x, space = _node_number(node_read, text)
    assert space == "bare" and _same_double(x, js_decimal(text))


TOKENS = (
    list("0123456789") * 3
    + list(".eE+-_xXoObB ")
    + [
        "\t",
        "\n",
        "\u00a0",
        "\ufeff",
        "\u2028",
        "\x1c",
        "\x85",
        "\u0665",
        "\uff15",
        "\U0001d7d3",
        "Infinity",
        "NaN",
        "inf",
        "nan",
        "e400",
        "e-400",
    ]
)
weird = st.lists(st.sampled_from(TOKENS), max_size=10).map("".join)
decimal_like = st.from_regex(
    r"[+-]?([0-9]{1,20}(\.[0-9]{0,20})?|\.[0-9]{1,20})([eE][+-]?[0-9]{1,3})?", fullmatch=True
)


@needs_node
@settings(max_examples=3000, deadline=None)
@given(text=st.one_of(weird, decimal_like))
def test_accepted_exactly_where_javascript_reads_a_decimal_number(node_read, text: str) -> None:
    """js_decimal reads a text iff node reads a finite number from it that no exclusion names,
    and then it reads the same double."""
    x, space = _node_number(node_read, text)
    try:
        ours: float | None = js_decimal(text)
    except NumberTextError:
        ours = None
    if _excluded(text, x, space) is None:
        assert ours is not None and _same_double(ours, x), (text, x, ours)
    else:
        assert ours is None, (text, x, ours)


@needs_node
def test_js_json_is_json_stringify() -> None:
    value = {
        "timestamp": 1712192400000,
        "s": 'a"b\\c\n\t\x01\x1f\x7f\u2028\u00e9\U0001f600\ud800',
        "n": [0.0, -0.0, 310.0, 1e-7, 1.289e-05, 1e21, 1e16, 0.1 + 0.2, 5e-324, 2**53 + 1],
        "o": {"b": True, "f": False, "z": None, "": []},
    }
    assert NODE is not None
    want = subprocess.run(
        [NODE, "-e", _NODE_STRINGIFY],
        input=json.dumps(value),  # ASCII: the lone surrogate travels as \ud800
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    assert js_json(value) == want


def test_js_json_refuses_what_it_cannot_write() -> None:
    for bad in (math.nan, math.inf, {"a": -math.inf}):
        with pytest.raises(ValueError):
            js_json(bad)
    for bad in ({1: 2}, object(), b"x"):
        with pytest.raises(TypeError):
            js_json(bad)
