"""Command-line flags map onto the /_sim/config settings."""

from __future__ import annotations

from coinbase_sim.cli import build_parser, settings_args
from coinbase_sim.config import settings_from


def test_flags_become_settings() -> None:
    args = build_parser().parse_args(
        [
            "--port", "0", "--seed", "9", "--key-file", "a.json", "--key-file", "b.json",
            "--latency-ms", "80,150", "--p429", "0.3", "--p500", "0.1", "--p503", "0.05",
            "--ptimeout", "0.01", "--no-four-hour", "--cap", "350", "--no-rate-limits",
            "--clock-offset", "-10800", "--config", '{"ip_rate": 20}',
        ]
    )  # fmt: skip
    settings = settings_from(**settings_args(args))
    assert settings.seed == 9
    assert settings.key_files == ["a.json", "b.json"]
    assert settings.latency_ms == (80.0, 150.0)
    assert (settings.p429, settings.p500, settings.p503, settings.ptimeout) == (
        0.3,
        0.1,
        0.05,
        0.01,
    )
    assert settings.four_hour is False
    assert settings.cap == 350
    assert settings.rate_limits is False
    assert settings.clock_offset_s == -10800
    assert settings.ip_rate == 20
    assert settings.key_rate == 30


def test_defaults() -> None:
    settings = settings_from(**settings_args(build_parser().parse_args([])))
    assert settings.cap == 300 and settings.four_hour and settings.rate_limits
    assert settings.latency_ms == (0.0, 0.0)


def test_processes_and_render_cache_flags() -> None:
    args = build_parser().parse_args(["--processes", "4", "--render-cache-mb", "0"])
    settings = settings_from(**settings_args(args))
    assert (settings.processes, settings.render_cache_mb) == (4, 0)
    defaults = settings_from(**settings_args(build_parser().parse_args([])))
    assert (defaults.processes, defaults.render_cache_mb) == (1, 64)
