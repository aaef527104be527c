"""The page-wide fast paths give what the row-by-row rules give: `select` on the usual
answer (every row asked for, one per bucket) and `check_candles` on sound candles."""

from hypothesis import given, settings
from hypothesis import strategies as st

from core.candle import Candle
from core.errors import InvalidCandle
from core.series import Series
from core.timeframe import timeframe
from workers.cache import check_candles
from workers.exchange.rows import BadRows, select

H1 = timeframe("1h")
T0 = 1_700_000_000 - 1_700_000_000 % 14400
SERIES = Series.of("BTC-USD", "1h")

price = st.sampled_from(["1", "2.5", "2.50", "10", "0", "-1", "1e3", "x", "", "1,5"])
row = st.tuples(st.integers(-3, 12), st.lists(price, min_size=5, max_size=5))


def _outcome(f):
    try:
        return f()
    except BadRows as e:
        return ("BadRows", str(e))


@given(st.lists(row, max_size=10), st.integers(1, 12), st.randoms(use_true_random=False))
@settings(max_examples=400)
def test_select_fast_path_is_the_general_one(rows, newest, rnd):
    """An identical duplicate row (which collapses) sends the same page down the general
    path: both give the same candles, or the same error."""
    raws = []
    for bucket, (o, h, low, c, v) in rows:
        raws.append({"start": str(T0 + bucket * 3600), "open": o, "high": h, "low": low,
                     "close": c, "volume": v})  # fmt: skip
    rnd.shuffle(raws)
    args = dict(tf=H1, start=T0, end=T0 + 10 * 3600, now=T0 + 9 * 3600 + 5,
                closed_before=T0 + 9 * 3600 + 5, newest=newest)  # fmt: skip
    fast = _outcome(lambda: select(raws, **args))
    general = _outcome(lambda: select([*raws, *raws[:1]], **args))
    assert fast == general


number = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(0.5, 2.0),
    st.sampled_from([0.0, -0.0, 1.0, 2.5]),
    st.integers(-1, 3),
)


@given(
    st.lists(
        st.tuples(
            st.integers(-1, 3),
            st.lists(number, min_size=5, max_size=5),
            st.booleans(),  # prices in order (low <= open, close <= high): usually sound
            st.booleans(),
        ),
        max_size=5,
    )
)
@settings(max_examples=500)
def test_check_candles_fast_path_is_candle_problem(specs):
    """The write refuses exactly the pages with a candle in progress or one `problem()`
    names, with the first such candle's message."""
    candles = []
    for k, nums, ordered, closed in specs:
        o, h, low, c, v = nums
        if ordered and all(x == x for x in nums[:4]):  # NaN does not sort
            low, o, c, h = sorted(nums[:4])
        candles.append(Candle(T0 + k * 3600 + (7 if k == 3 else 0), o, h, low, c, v, closed))
    want = None
    for c in candles:
        if not c.closed:
            want = f"{SERIES}: candle at {c.start} is still in progress"
            break
        if (problem := c.problem(H1)) is not None:
            want = f"{SERIES}: candle at {c.start}: {problem}"
            break
    try:
        check_candles(SERIES, candles)
        got = None
    except InvalidCandle as e:
        got = str(e)
    assert got == want
