"""Issue 22 item 7/8: our own settings are input too. Every run setting is checked (range,
variable named, bad value shown) before anything is enqueued; a bad symbol entry is named,
cleaned, and does not stop the valid ones where a process can go on (keeper, beat, status)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.config import BackfillConfig, bad_symbols_message, split_symbols
from core.errors import InvalidInput
from core.settings import load_settings


@pytest.mark.parametrize(
    "field,value",
    [
        ("backfill_min_candles", 0),
        ("backfill_min_candles", -5),
        ("backfill_min_candles", -1),
        ("backfill_min_candles", 59),
        ("backfill_min_candles", 2000),
        ("backfill_candle_count", 0),
        ("backfill_candle_count", 1001),
        ("backfill_max_retries", -1),
        ("backfill_max_retries", 1000),
        ("backfill_visibility_timeout_s", 0),
        ("backfill_visibility_timeout_s", 2),
        ("backfill_cache_ttl_s", 0),
        ("backfill_cache_ttl_s", -1),
        ("backfill_user_id", -1),
        ("backfill_exchange_id", -2),
        ("backfill_request_timeout_s", 0),
        ("backfill_exhausted_recheck_s", -1),
        ("backfill_fleet_rate", 0),
    ],
)
def test_a_bad_setting_names_its_variable_and_value(field, value):
    with pytest.raises(ValidationError) as info:
        load_settings(**{field: value})
    text = str(info.value)
    assert field.upper() in text and str(value) in text, text


def test_the_defaults_and_the_tests_settings_are_valid():
    s = load_settings()
    assert s.backfill_config().validated().min_candles == 60
    load_settings(backfill_visibility_timeout_s=3, backfill_max_retries=0)


@pytest.mark.parametrize(
    "kw,words",
    [
        ({"min_candles": 0}, ["min_candles", "BACKFILL_MIN_CANDLES", "0"]),
        ({"min_candles": -1}, ["min_candles", "-1"]),
        ({"min_candles": 2000}, ["min_candles", "2000"]),
        ({"min_candles": 150}, ["min_candles", "150", "candle_count", "100"]),
        ({"min_candles": 61, "candle_count": 60}, ["min_candles", "61", "60"]),
        ({"min_candles": True}, ["min_candles", "True"]),
        ({"candle_count": 59}, ["candle_count", "59"]),
        ({"candle_count": 1001}, ["candle_count", "1001"]),
        ({"user_id": -1}, ["user_id", "-1"]),
        ({"exchange_id": "1"}, ["exchange_id", "'1'"]),
    ],
)
def test_the_python_api_validates_the_same_rule(kw, words):
    with pytest.raises(InvalidInput) as info:
        BackfillConfig(**kw).validated()
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_min_candles_between_macd_v_needs_and_the_candle_count():
    assert BackfillConfig(min_candles=60, candle_count=60).validated().min_candles == 60
    assert BackfillConfig(min_candles=1000, candle_count=1000).validated().candle_count == 1000
    assert BackfillConfig(min_candles=80, candle_count=100).validated().min_candles == 80


def test_bad_symbol_entries_are_split_off_and_named_cleanly():
    valid, bad = split_symbols(["BTC-USD", "btc-usd", "\x1b[31mEVIL\x1b[0m", "BTC-USD", "ETH-USD"])
    assert valid == ("BTC-USD", "ETH-USD")
    assert bad == ("btc-usd", "\x1b[31mEVIL\x1b[0m")
    msg = bad_symbols_message(bad)
    assert "BACKFILL_SYMBOLS" in msg and "btc-usd" in msg and "EVIL" in msg
    assert msg.isprintable() and "\x1b" not in msg
    long = bad_symbols_message(tuple(f"bad{i}" * 50 for i in range(100)))
    assert len(long) < 1200 and long.isprintable()
