"""`backfill`: a thin layer over functions that are usable from Python.

Exit codes: 0 ok / every series ready, 1 timeout (`health`: unhealthy), 2 bad input or
unreachable Redis, 3 the run finished with failed or not-ready series.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace

from pydantic import ValidationError

from core.errors import BackfillError
from core.settings import load_settings
from core.text import split_names

EXIT_BAD_INPUT = 2


def _configs(args, settings) -> list:
    """One validated config per exchange the run serves (--exchanges, else
    BACKFILL_EXCHANGES), the command line's overrides applied to each."""
    from core.errors import InvalidInput

    names = settings.exchanges()
    if getattr(args, "exchanges", None):
        names = list(dict.fromkeys(split_names(args.exchanges)))
        settings = settings.model_copy(update={"backfill_exchanges": ",".join(names)})
        names = settings.exchanges()  # unknown names: InvalidInput naming them
    if getattr(args, "symbols", None) is not None and len(names) > 1:
        raise InvalidInput(
            "--symbols names one exchange's symbols: with several exchanges set "
            "BACKFILL_SYMBOLS (Coinbase) and BINANCE_SYMBOLS instead"
        )
    return [_config(args, settings, n) for n in names]


def _config(args, settings, exchange_name: str | None = None):
    config = settings.backfill_config(exchange_name)
    if getattr(args, "symbols", None) is not None:
        config = replace(config, symbols=tuple(split_names(args.symbols)))
    if getattr(args, "timeframes", None) is not None:
        config = replace(config, timeframes=tuple(split_names(args.timeframes)))
    if getattr(args, "candle_count", None) is not None:
        config = replace(config, candle_count=args.candle_count)
    if getattr(args, "full", False):
        config = replace(config, full=True)
    return config.validated()


def _client(settings):
    from backfill.dispatch import check_redis

    return check_redis(settings.redis_url)


def cmd_dispatch(args, settings) -> int:
    from backfill.dispatch import dispatch
    from backfill.progress import watch_with_bar

    d = dispatch(_configs(args, settings), redis_url=settings.redis_url, settings=settings)
    if not args.wait:
        print(json.dumps({"run_id": d.run_id, "series_total": d.total}) if args.json else d.run_id)
        return 0
    result = watch_with_bar(_client(settings), d.run_id, args.timeout)
    return _report_gate(result, args.json)


def cmd_wait_ready(args, settings) -> int:
    from backfill.gate import wait_ready

    return _report_gate(wait_ready(_client(settings), args.run, args.timeout), args.json)


def _report_gate(result, as_json: bool) -> int:
    s = result.summary
    if as_json:
        print(json.dumps(s if s is not None else {"run_id": result.run_id, "status": "timeout"}))
    elif s is None:
        print(f"run {result.run_id}: gate not open (timeout)", file=sys.stderr)
    else:
        print(
            f"run {s['run_id']}: {s['status']}: {len(s['ready'])} ready, "
            f"{len(s['failed'])} failed, {len(s['not_ready'])} not ready"
        )
        for f in s["failed"]:
            print(f"  failed {f['series']}: {f['reason']}: {f['error']}")
        for f in s["not_ready"]:
            print(f"  not ready {f['series']}: {f['reason']}")
    return result.exit_code


def cmd_status(args, settings) -> int:
    from backfill.app import app, use_redis
    from backfill.freshness import freshness, prometheus
    from backfill.status import print_status, unconsumed_queues

    client = _client(settings)
    cache = client if settings.cache_url == settings.redis_url else _cache_client(settings)
    fresh = freshness(cache, client, _status_config(settings), settings)
    if args.prometheus:
        sys.stdout.write(prometheus(fresh))
        return 0
    use_redis(settings.redis_url)
    unconsumed = unconsumed_queues(client, app, args.timeout)
    return print_status(client, args.run, as_json=args.json, fresh=fresh, unconsumed=unconsumed)


def _status_config(settings):
    """The configured series for the freshness report: bad `BACKFILL_SYMBOLS` entries are
    named on stderr and skipped (a run's status must not depend on them); none valid: the
    report has no series."""
    from core.config import bad_symbols_message, split_symbols

    config = settings.backfill_config()
    valid, bad = split_symbols(config.symbols)
    if bad:
        print(f"warning: {bad_symbols_message(bad)}", file=sys.stderr)
    if not valid:
        return replace(config, symbols=())
    return replace(config, symbols=valid).validated()


def _cache_client(settings):
    from backfill.dispatch import check_redis

    return check_redis(settings.cache_url)


def cmd_indicators(args, settings) -> int:
    from rich.console import Console

    from backfill.gate import wait_ready
    from backfill.indicators import indicator_rows, print_indicators
    from core.run import RunStore

    client = _client(settings)
    result = wait_ready(client, args.run, args.timeout)
    if result.summary is None:
        print(f"run {result.run_id}: gate not open (timeout)", file=sys.stderr)
        return 1
    run = RunStore(client).meta(result.run_id)
    configs = run.configs if run else settings.backfill_configs()
    rows = [row for c in configs for row in indicator_rows(client, c, result.summary)]
    if args.json:
        print(json.dumps(rows))
    else:
        print_indicators(Console(), rows)
    return 0


def cmd_demo(args, settings, simulate: bool = True) -> int:
    from backfill.demo import StackOptions, run_stack

    configs = _configs(args, settings)
    opts = StackOptions(
        simulate=simulate,
        workers=args.workers,
        keep=args.keep,
        json_out=args.json,
        timeout=args.timeout,
        keep_fresh=args.keep_fresh,
    )
    return run_stack(settings, configs, opts)


def cmd_health(args, settings) -> int:
    """0 when at least --min-workers nodes answer and every queue holding messages has a
    live consumer; 1 otherwise (the JSON line says which); 2 when Redis is unreachable."""
    from backfill.app import app, use_redis
    from backfill.status import unconsumed_queues, unconsumed_warning

    client = _client(settings)
    use_redis(settings.redis_url)
    replies = app.control.ping(timeout=args.timeout) or []
    names = [next(iter(r)) for r in replies]
    unconsumed = unconsumed_queues(client, app, args.timeout)
    ok = len(names) >= args.min_workers and not unconsumed
    print(json.dumps({"workers": names, "ok": ok, "unconsumed_queues": unconsumed}))
    if unconsumed:
        print(unconsumed_warning(unconsumed), file=sys.stderr)
    return 0 if ok else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="backfill", description=__doc__.splitlines()[0])
    p.add_argument("--log-json", action="store_true", help="JSON log lines even on a terminal")
    sub = p.add_subparsers(dest="command", required=True)

    def run_args(sp, wait_default=600.0):
        sp.add_argument(
            "--exchanges",
            "--exchange",
            help="comma-separated: coinbase, binance or both (default: BACKFILL_EXCHANGES)",
        )
        sp.add_argument("--symbols", help="comma-separated product ids (default: BACKFILL_SYMBOLS)")
        sp.add_argument(
            "--timeframes", help="comma-separated, e.g. 5m,1h (default: BACKFILL_TIMEFRAMES)"
        )
        sp.add_argument(
            "--candle-count", type=int, help="newest closed candles per series (60-1000)"
        )
        sp.add_argument("--full", action="store_true", help="refetch everything, ignore the cache")
        sp.add_argument(
            "--timeout", type=float, default=wait_default, help="seconds to wait for the gate"
        )
        sp.add_argument("--json", action="store_true", help="print one JSON object")

    d = sub.add_parser("dispatch", help="plan and enqueue one run (the deploy-time step)")
    run_args(d)
    d.add_argument("--wait", action="store_true", help="follow progress until the gate opens")
    d.set_defaults(func=cmd_dispatch)

    w = sub.add_parser("wait-ready", help="block until a run's gate opens (exit 0/3/1)")
    w.add_argument("--run", help="run id (default: the latest)")
    w.add_argument("--timeout", type=float, required=True)
    w.add_argument("--json", action="store_true")
    w.set_defaults(func=cmd_wait_ready)

    s = sub.add_parser(
        "status", help="the last run's progress, failures and gate; the cache's freshness"
    )
    s.add_argument("--run", help="run id (default: the latest)")
    s.add_argument("--json", action="store_true")
    s.add_argument(
        "--prometheus", action="store_true", help="freshness as Prometheus text (textfile)"
    )
    s.add_argument(
        "--timeout",
        type=float,
        default=1.0,
        help="seconds to wait for the workers' replies when a queue holds messages",
    )
    s.set_defaults(func=cmd_status)

    i = sub.add_parser("indicators", help="wait for the gate, read the cache, compute MACD-V")
    i.add_argument("--run")
    i.add_argument("--timeout", type=float, default=600.0)
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_indicators)

    for name, simulate, text in (
        ("demo", True, "the whole system on this machine against the built-in simulator"),
        ("run", False, "the whole system on this machine against the real exchange"),
    ):
        sp = sub.add_parser(name, help=text)
        run_args(sp)
        sp.add_argument("--workers", type=int, default=2)
        sp.add_argument("--keep", action="store_true", help="leave Redis and the simulator up")
        sp.add_argument(
            "--keep-fresh",
            action="store_true",
            help="after the gate, keep the cache fresh at every bucket close (beat) until Ctrl-C",
        )
        sp.set_defaults(func=lambda a, st, _s=simulate: cmd_demo(a, st, simulate=_s))

    h = sub.add_parser(
        "health",
        help="ping the workers; exit 1 if too few answer or a queue with messages has no consumer",
    )
    h.add_argument("--timeout", type=float, default=2.0)
    h.add_argument("--min-workers", type=int, default=1)
    h.set_defaults(func=cmd_health)

    sub.add_parser("sim", help="the Coinbase simulator (see `backfill sim --help`)", add_help=False)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sim"]:
        from coinbase_sim.cli import main as sim_main

        return sim_main(argv[1:])
    args = build_parser().parse_args(argv)
    from core.logs import configure

    try:
        settings = load_settings()
        configure(True if args.log_json else settings.backfill_log_json)
        return args.func(args, settings)
    except BackfillError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ValidationError as e:  # a setting from the environment or .env
        for err in e.errors():
            name = str(err["loc"][0]).upper() if err["loc"] else "setting"
            msg = err["msg"].removeprefix("Value error, ")
            print(f"error: {msg}" if name in msg else f"error: {name}: {msg}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
