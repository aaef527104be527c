"""The fresh check's fast path reads a member exactly as the full parser does."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from core.errors import CacheContractError
from core.jsnum import js_number
from core.member import is_member_at, validate_member
from core.series import Series

S = Series.of("BTC-USD", "5m")
TS = 1712192400000
NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=1e-9, max_value=1e22),
    st.integers(min_value=-5, max_value=10**6).map(float),
)


def full(raw: bytes, score: float) -> bool:
    try:
        return validate_member(raw, S, "k")["timestamp"] == score
    except CacheContractError:
        return False


def text(x: float) -> str:
    return js_number(x) if math.isfinite(x) else repr(x)


@given(NUMBERS, NUMBERS, NUMBERS, NUMBERS, NUMBERS, st.sampled_from([TS, TS + 1, TS + 300_000]))
def test_fast_and_full_paths_agree(o, h, lo, c, v, ts):
    raw = (
        f'{{"timestamp":{ts},"open":{text(o)},"high":{text(h)},"low":{text(lo)},'
        f'"close":{text(c)},"volume":{text(v)},"symbol":"BTC-USD","timeframe":"5m"}}'
    ).encode()
    for score in (float(TS), float(ts)):
        assert is_member_at(raw, score, S) == full(raw, score), raw


def test_other_forms_go_the_full_way():
    spaced = b'{"timestamp": 1712192400000, "open": 1, "high": 2, "low": 1, "close": 1,' \
             b' "volume": 0, "symbol": "BTC-USD", "timeframe": "5m"}'  # fmt: skip
    assert is_member_at(spaced, float(TS), S) == full(spaced, float(TS)) is True
    assert not is_member_at(b'{"timestamp":1712192400000}', float(TS), S)
