"""`js_number` against a table, against node itself, and against the ECMAScript rules in Python.

The node check (one process for a large batch, one long-lived process for hypothesis) is the
real oracle; the pure-Python check restates Number::toString independently (round trip,
fewest digits, closest of those, layout by magnitude) so the suite means something without
node.
"""

from __future__ import annotations

import json
import math
import random
import re
import shutil
import struct
import subprocess
from collections.abc import Iterator
from decimal import ROUND_CEILING, ROUND_FLOOR, Context, Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.jsnum import js_json_loads, js_json_loads_fast, js_number

NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed: no JS oracle")

TABLE = [
    (310.0, "310"),
    (310.5, "310.5"),
    (0.00001289, "0.00001289"),
    (1e-6, "0.000001"),
    (9.99e-7, "9.99e-7"),
    (1e21, "1e+21"),
    (1e20, "100000000000000000000"),
    (123456789012345680000.0, "123456789012345680000"),
    (5e-324, "5e-324"),
    (1.7976931348623157e308, "1.7976931348623157e+308"),
    (-0.0, "0"),
    (0.0, "0"),
    (0.1 + 0.2, "0.30000000000000004"),
    (100.0, "100"),
    (65100.2, "65100.2"),
    (12.3456, "12.3456"),
    (1e-7, "1e-7"),
    (1.5e-7, "1.5e-7"),
    (1.2345e25, "1.2345e+25"),
    (1e16, "10000000000000000"),
    (1.5e16, "15000000000000000"),
    (-1e-7, "-1e-7"),
    (-65100.2, "-65100.2"),
    (0.0001, "0.0001"),
    (1.234e-5, "0.00001234"),
    (2.5e-308, "2.5e-308"),
    (2.2250738585072014e-308, "2.2250738585072014e-308"),
    (9007199254740993.0, "9007199254740992"),
]


@pytest.mark.parametrize(("x", "want"), TABLE)
def test_table(x: float, want: str) -> None:
    assert js_number(x) == want
    assert _spec_violations(x, want) == []


PYTHON_LAYOUTS = [
    (310.0, "310.0"),
    (1.289e-05, "1.289e-05"),
    (1e-7, "1e-07"),
    (1e16, "1e+16"),
    (0.1, "0.10000000000000001"),  # round-trips, but one digit too many
    (0.1, "0.1000000000000000055511151231257827"),
]


@pytest.mark.parametrize(("x", "wrong"), PYTHON_LAYOUTS)
def test_the_spec_check_catches_python_layouts(x: float, wrong: str) -> None:
    assert _spec_violations(x, wrong) != []


def test_ints_and_float_subclasses_print_as_the_double() -> None:
    assert js_number(310) == "310"
    assert js_number(2**53 + 1) == "9007199254740992"
    assert js_number(np.float64(1e-7)) == "1e-7"
    assert js_number(np.float64(65100.2)) == "65100.2"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 10**400])
def test_non_finite_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        js_number(bad)


@pytest.mark.parametrize("bad", [True, "1", None, Decimal("1")])
def test_non_numbers_refused(bad: object) -> None:
    with pytest.raises(TypeError):
        js_number(bad)  # type: ignore[arg-type]


# --- an independent restatement of Number::toString -------------------------------------

_PLAIN = re.compile(r"-?(0|[1-9]\d*)(\.\d*[1-9])?")
_EXP = re.compile(r"-?[1-9](\.\d*[1-9])?e[+-](0|[1-9]\d*)")


def _sig_digits(s: str) -> int:
    mant = s.lstrip("-").split("e")[0].replace(".", "")
    return len(mant.strip("0")) or 1


def _nearest_round_trip(x: float, k: int) -> Decimal | None:
    """The k-significant-digit decimal closest to x that reads back as x (ties: even)."""
    d = Decimal(x)
    cands = {Context(prec=k, rounding=r).plus(d) for r in (ROUND_FLOOR, ROUND_CEILING)}
    ok = sorted((abs(c - d), c) for c in cands if float(c) == x)
    if not ok:
        return None
    if len(ok) == 2 and ok[0][0] == ok[1][0]:
        return min((c for _, c in ok), key=lambda c: int(c.as_tuple().digits[-1]) % 2)
    return ok[0][1]


def _spec_violations(x: float, s: str) -> list[str]:
    """Ways `s` is not Number::toString(x); empty when it is. Uses no float formatting."""
    bad = []
    if x == 0:
        return [] if s == "0" else ["zero is '0'"]
    if float(s) != x:
        bad.append("does not round-trip")
    if 1e-6 <= abs(x) < 1e21:
        if not _PLAIN.fullmatch(s):
            bad.append("not plain decimal")
    elif not _EXP.fullmatch(s):
        bad.append("not JS exponent form")
    k = _sig_digits(s)
    if k > 1 and _nearest_round_trip(x, k - 1) is not None:
        bad.append(f"{k} digits but {k - 1} round-trip")
    want = _nearest_round_trip(x, k)
    if want is None or Decimal(s) != want:
        bad.append(f"not the closest {k}-digit value ({want})")
    return bad


finite = st.floats(allow_nan=False, allow_infinity=False)
prices = st.decimals(min_value=0, max_value=10**7, places=8, allow_nan=False).map(float)


@settings(max_examples=3000, deadline=None)
@given(st.one_of(finite, prices))
def test_follows_number_to_string(x: float) -> None:
    assert _spec_violations(x, js_number(x)) == []


@settings(max_examples=200, deadline=None)
@given(st.integers(-330, 310), st.integers(1, 10**17))
def test_follows_number_to_string_across_magnitudes(e: int, m: int) -> None:
    x = float(f"{m}e{e}")
    if math.isfinite(x):
        assert _spec_violations(x, js_number(x)) == []


# --- node as the oracle -----------------------------------------------------------------

_NODE_BATCH = """
const bits = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const b = Buffer.alloc(8);
const out = bits.map((h) => {
  b.write(h, 'hex');
  const x = b.readDoubleBE(0);
  const s = String(x);
  if (JSON.stringify(x) !== s) throw new Error('JSON.stringify differs for ' + h);
  return s;
});
process.stdout.write(JSON.stringify(out));
"""

_NODE_LINES = """
const rl = require('readline').createInterface({input: process.stdin});
const b = Buffer.alloc(8);
rl.on('line', (h) => {
  b.write(h, 'hex');
  process.stdout.write(String(b.readDoubleBE(0)) + '\\n');
});
"""


def _bits(x: float) -> str:
    return struct.pack(">d", x).hex()


def _interesting_doubles(rng: random.Random) -> list[float]:
    out: list[float] = []
    while len(out) < 20_000:  # uniformly random bit patterns: every magnitude and subnormals
        x = struct.unpack(">d", rng.getrandbits(64).to_bytes(8, "big"))[0]
        if math.isfinite(x):
            out.append(x)
    out += [round(rng.uniform(0, 100_000), rng.randint(0, 8)) for _ in range(20_000)]
    out += [rng.uniform(0, 1e-4) * 10 ** -rng.randint(0, 4) for _ in range(5_000)]
    out += [float(rng.randint(0, 10**22)) for _ in range(2_000)]
    for e in range(-330, 310):  # the layout switch points and their neighbours
        for base in (1.0, 9.99, 5.0, 1.5):
            x = float(f"{base}e{e}")
            if math.isfinite(x) and x:
                out += [x, math.nextafter(x, 0), math.nextafter(x, math.inf), -x]
    out += [0.0, -0.0, 5e-324, 1.7976931348623157e308, 2.2250738585072014e-308]
    return out


@needs_node
def test_matches_node_on_a_batch() -> None:
    xs = _interesting_doubles(random.Random(20240404))
    done = subprocess.run(
        [NODE, "-e", _NODE_BATCH],
        input=json.dumps([_bits(x) for x in xs]),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    want = json.loads(done.stdout)
    assert len(want) == len(xs)
    diff = [(repr(x), js_number(x), w) for x, w in zip(xs, want, strict=True) if js_number(x) != w]
    assert diff[:20] == []


@pytest.fixture(scope="module")
def node_lines() -> Iterator[subprocess.Popen[str]]:
    if NODE is None:
        pytest.skip("node is not installed: no JS oracle")
    proc = subprocess.Popen(
        [NODE, "-e", _NODE_LINES], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    yield proc
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(timeout=10)


@needs_node
@settings(max_examples=2000, deadline=None)
@given(x=st.one_of(finite, prices))
def test_matches_node_property(node_lines: subprocess.Popen[str], x: float) -> None:
    assert node_lines.stdin is not None and node_lines.stdout is not None
    node_lines.stdin.write(_bits(x) + "\n")
    node_lines.stdin.flush()
    assert js_number(x) == node_lines.stdout.readline().rstrip("\n")


def _verdict(loads, text):
    try:
        return ("value", repr(loads(text)))
    except RecursionError:
        return ("refused", "RecursionError")
    except ValueError:
        return ("refused", "ValueError")


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip


@given(json_values)
def test_fast_loads_reads_what_the_reference_reads(value):
    text = json.dumps(value).encode()
    assert _verdict(js_json_loads_fast, text) == _verdict(js_json_loads, text)


@pytest.mark.parametrize(
    "text",
    [b"NaN", b"[Infinity]", b"[-Infinity]", b"[1e400]", b"[-1e400]", b"1" + b"0" * 400,
     b'"\\ud800"', b'"\\ud834\\udd1e"', "[1]".encode("utf-16"), b"\xef\xbb\xbf[1]",
     b"[" * 5000 + b"]" * 5000, b"[1,]", b"{'a': 1}", b"", b"\xff", b"[-0]", b"[-0.0]",
     b"[2.4703282292062328e-324]", b"[1.7976931348623157e308]", b'{"a":1,"a":2}',
     b"[123456789012345678901234567890]", b"[1E2]", b" [1] "],
)  # fmt: skip
def test_fast_loads_refuses_what_the_reference_refuses(text):
    """The same value or the same refusal; only integers beyond 2**53 - 1 may differ (the
    callers check their range)."""
    assert _verdict(js_json_loads_fast, text) == _verdict(js_json_loads, text)
