"""Command line: serve the simulator, or mint a portal-style key file."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from types import FrameType
from typing import Any

from coinbase_sim import prefork
from coinbase_sim.config import ConfigError, settings_from
from coinbase_sim.keys import write_key_file
from coinbase_sim.quietgc import keep_collections_short
from coinbase_sim.server import make_server

LISTENING = "SIM_LISTENING"


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The simulator's arguments (optionally added to a parser given by the caller)."""
    p = parser or argparse.ArgumentParser(
        prog="python -m coinbase_sim",
        description="Local Coinbase Advanced Trade (or Binance spot) candle simulator.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8123, help="0 picks a free port")
    p.add_argument("--seed", type=int, default=1, help="market data seed")
    p.add_argument("--key-file", action="append", default=[], help="trusted key file (repeat)")
    p.add_argument("--write-key", metavar="PATH", help="mint a key file and exit")
    p.add_argument("--key-type", choices=["ec", "ed25519"], default="ec")
    p.add_argument("--latency-ms", help="MIN,MAX added to each candle request")
    for name in ("p429", "p500", "p503", "ptimeout", "ptruncated", "pnonjson"):
        p.add_argument(f"--{name}", type=float, help=f"share of candle requests hit by {name}")
    p.add_argument("--timeout-hold-s", type=float, help="how long a timeout fault holds")
    p.add_argument("--timeout-mode", choices=["hold", "close"])
    p.add_argument("--no-four-hour", action="store_true", help="reject FOUR_HOUR like old API")
    p.add_argument("--cap", type=int, help="max buckets per request (300, up to 350)")
    p.add_argument("--no-rate-limits", action="store_true")
    p.add_argument("--key-rate", type=int, help="requests/s per key (30)")
    p.add_argument("--ip-rate", type=int, help="requests/s per IP on public endpoint (10)")
    p.add_argument("--clock-offset", type=float, help="seconds added to the market clock")
    p.add_argument("--synthetic-products", type=int, default=0, metavar="N",
                   help="add N liquid products SYN0001-USD ... (for scale runs)")
    p.add_argument("--processes", type=int, default=1, metavar="N",
                   help="serving processes on the one port (limits and stats stay shared)")
    p.add_argument("--render-cache-mb", type=int, metavar="MB",
                   help="per-process budget of rendered closed pages (64; 0 = off)")
    p.add_argument("--exchange", choices=["coinbase", "binance"], default="coinbase",
                   help="API personality: Coinbase Advanced Trade or Binance spot klines")
    p.add_argument("--weight-limit", type=int, metavar="N",
                   help="binance: request weight per IP per minute (6000)")
    p.add_argument("--ban-after", type=int, metavar="N",
                   help="binance: requests tolerated after a 429 in a minute before a 418 ban (10)")
    p.add_argument("--ban-duration-s", type=float, metavar="S",
                   help="binance: how long a 418 ban lasts (120)")
    p.add_argument("--omit-empty-klines", action="store_true",
                   help="binance: omit intervals without trades instead of zero-volume klines")
    p.add_argument("--config", help="JSON object of settings, applied after the flags")
    return p


def settings_args(args: argparse.Namespace) -> dict[str, Any]:
    """Settings given on the command line, as /_sim/config keys."""
    values: dict[str, Any] = {"seed": args.seed, "key_files": args.key_file}
    if args.exchange != "coinbase":
        values["exchange"] = args.exchange
    if args.synthetic_products:
        values["synthetic_products"] = args.synthetic_products
    if args.processes != 1:
        values["processes"] = args.processes
    if args.render_cache_mb is not None:
        values["render_cache_mb"] = args.render_cache_mb
    optional = {
        "latency_ms": args.latency_ms,
        "p429": args.p429,
        "p500": args.p500,
        "p503": args.p503,
        "ptimeout": args.ptimeout,
        "ptruncated": args.ptruncated,
        "pnonjson": args.pnonjson,
        "timeout_hold_s": args.timeout_hold_s,
        "timeout_mode": args.timeout_mode,
        "cap": args.cap,
        "key_rate": args.key_rate,
        "ip_rate": args.ip_rate,
        "clock_offset_s": args.clock_offset,
        "weight_limit": args.weight_limit,
        "ban_after": args.ban_after,
        "ban_duration_s": args.ban_duration_s,
    }
    values.update({k: v for k, v in optional.items() if v is not None})
    if args.no_four_hour:
        values["four_hour"] = False
    if args.no_rate_limits:
        values["rate_limits"] = False
    if args.omit_empty_klines:
        values["zero_volume_klines"] = False
    if args.config:
        values.update(json.loads(args.config))
    return values


def main(argv: list[str] | None = None) -> int:
    """Entry point: returns a process exit code."""
    args = build_parser().parse_args(argv)
    return run(args)


def run(args: argparse.Namespace) -> int:
    """Act on parsed arguments (shared with the project's `backfill sim` command)."""
    if args.write_key:
        name = write_key_file(args.write_key, args.key_type)
        print(json.dumps({"name": name, "path": args.write_key}), flush=True)
        return 0
    try:
        settings = settings_from(**settings_args(args))
        if settings.processes > 1:
            return prefork.serve(args.host, args.port, settings, _announce)
        server = make_server(args.host, args.port, settings)
    except (ConfigError, ValueError, OSError) as exc:
        print(f"coinbase_sim: {exc}", file=sys.stderr)
        return 2

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    keep_collections_short(server.state.stopping)
    _announce(server.url)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.state.stopping.set()
        server.server_close()
    return 0


def _announce(url: str) -> None:
    """The line SimProcess (and scripts) wait for."""
    print(f"{LISTENING} {url}", flush=True)
