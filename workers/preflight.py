"""`python -m workers.preflight SYMBOL`: one request with this machine's settings.

`backfill run` starts it before anything else, as a process (the control plane never
imports the data plane): a wrong key or no route to the exchange is one clear line now,
not every task retrying for minutes. Exit 0 when the exchange answered, 2 otherwise.
"""

from __future__ import annotations

import sys
import time

from core.errors import BackfillError
from core.settings import load_settings
from core.text import clean_text
from core.timeframe import timeframe
from workers.coinbase.client import CoinbaseClient


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    symbol = args[0] if args else "BTC-USD"
    settings = load_settings()
    try:
        client = CoinbaseClient(
            settings.coinbase_api_base_url, settings.credentials(), timeout=(5, 10)
        )
        day = timeframe("1d")
        start = day.last_closed_start(time.time())
        client.get_page(symbol, day, start, start)
    except BackfillError as e:
        print(
            f"the exchange at {clean_text(settings.coinbase_api_base_url)} cannot be used: "
            f"{clean_text(str(e))}",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
