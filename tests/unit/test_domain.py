"""Timeframes, product ids, config validation: pure logic."""

import pytest

from backfill import DEFAULT_BACKFILL_CONFIG, TIMEFRAME_PRIORITY, BackfillConfig
from backfill.plan import plan
from core.errors import InvalidInput
from core.series import Series, validate_product_id
from core.timeframe import TIMEFRAMES, parse_timeframes


def test_granularity_enum_for_every_timeframe():
    assert {n: t.granularity for n, t in TIMEFRAMES.items()} == {
        "1m": "ONE_MINUTE",
        "5m": "FIVE_MINUTE",
        "15m": "FIFTEEN_MINUTE",
        "30m": "THIRTY_MINUTE",
        "1h": "ONE_HOUR",
        "2h": "TWO_HOUR",
        "4h": "FOUR_HOUR",
        "6h": "SIX_HOUR",
        "1d": "ONE_DAY",
    }


def test_priority_order_then_by_duration():
    assert TIMEFRAME_PRIORITY == ("5m", "15m", "1h", "4h", "1d")
    got = [t.name for t in parse_timeframes("1d,30m,5m,1m,4h,6h,1h,15m,2h")]
    assert got == ["5m", "15m", "1h", "4h", "1d", "1m", "30m", "2h", "6h"]


@pytest.mark.parametrize("bad", ["3m", "5M", "", "1w", "5m;DROP"])
def test_unknown_timeframe_named_in_error(bad):
    with pytest.raises(InvalidInput) as e:
        parse_timeframes([bad] if bad else [])
    assert (repr(bad) in str(e.value)) if bad else "no timeframes" in str(e.value)


@pytest.mark.parametrize("good", ["BTC-USD", "1INCH-USD", "USDT-USDC", "ETH-EUR"])
def test_product_ids_accepted(good):
    assert validate_product_id(good) == good


@pytest.mark.parametrize(
    "bad",
    [
        "BTC-USD/../accounts",
        "btc usd",
        "BTC-USD?x=1",
        "btc-usd",
        "BTC_USD",
        "BTC-USD ",
        "BTC-%55SD",
        "BTC-USD.json",
        "BTCUSD",
        "-USD",
        "BTC-",
        "",
        None,
        5,
        "BTC-USD-X",
    ],
)
def test_bad_product_ids_refused(bad):
    with pytest.raises(InvalidInput) as e:
        validate_product_id(bad)
    assert repr(bad) in str(e.value)


def test_cache_key_and_channel():
    s = Series.of("BTC-USD", "5m")
    assert s.cache_key() == "candles:1:1:BTC-USD:5m"
    assert s.close_channel(2, 3) == "channel:candle:close:2:3:BTC-USD:5m"


def test_seed_defaults():
    c = DEFAULT_BACKFILL_CONFIG
    assert (c.candle_count, c.min_candles, c.user_id, c.exchange_id) == (100, 60, 1, 1)
    assert c.timeframes == ("5m", "15m", "1h", "4h", "1d")
    assert len(c.symbols) == 25 and all(s.endswith("-USD") for s in c.symbols)


@pytest.mark.parametrize("count", [0, 10_000, -1, 59, 1001])
def test_candle_count_out_of_range(count):
    with pytest.raises(InvalidInput, match=str(count)):
        BackfillConfig(candle_count=count).validated()


def test_empty_symbol_list():
    with pytest.raises(InvalidInput, match="empty"):
        BackfillConfig(symbols=()).validated()


def test_plan_is_priority_ordered_one_task_per_series():
    series = plan(BackfillConfig(symbols=("ETH-USD", "BTC-USD"), timeframes=("1d", "5m", "1h")))
    assert [s.name for s in series] == [
        "ETH-USD:5m",
        "BTC-USD:5m",
        "ETH-USD:1h",
        "BTC-USD:1h",
        "ETH-USD:1d",
        "BTC-USD:1d",
    ]


def test_settings_read_dotenv_and_environment(tmp_path, monkeypatch):
    from core.settings import Settings

    monkeypatch.chdir(tmp_path)
    for var in ("BACKFILL_CANDLE_COUNT", "BACKFILL_TIMEFRAMES", "COINBASE_API_KEY_FILE"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / ".env").write_text(
        "BACKFILL_CANDLE_COUNT=120\nBACKFILL_TIMEFRAMES=5m,1h\nCOINBASE_API_KEY_FILE=\n"
    )
    s = Settings()
    assert s.backfill_candle_count == 120 and s.coinbase_api_key_file is None
    assert s.backfill_config().timeframes == ("5m", "1h") and s.fleet_rate() == 8.0
    monkeypatch.setenv("BACKFILL_CANDLE_COUNT", "200")  # the environment wins over .env
    assert Settings().backfill_candle_count == 200
