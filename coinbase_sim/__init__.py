"""A faithful local simulator of Coinbase Advanced Trade's candle endpoints.

Routes:
- ``GET /api/v3/brokerage/products/{id}/candles`` (CDP JWT, 30 req/s per key)
- ``GET /api/v3/brokerage/market/products/{id}/candles`` (public, 10 req/s per IP)
- ``GET /_sim/health | stats | config | products``, ``GET /_sim/truth/{id}``
- ``POST /_sim/reset | config | keys``

Conventions:
- a request returns buckets with ``start <= bucket_start <= end`` (both ends
  inclusive), newest first; it is refused when ``(end - start) / granularity``
  exceeds the cap (300, up to 350), so an aligned span of exactly cap buckets
  can return cap + 1 candles; ``limit`` keeps the newest ``limit`` of them.
- buckets in the future are omitted; the one containing the simulated "now"
  (real time + ``clock_offset_s``) is in progress and changes on every call;
  ``/_sim/truth`` returns closed buckets only, without cap, auth, limits or faults.
- ``x-ratelimit-reset`` is the number of seconds (decimal) until a slot in the
  sliding one-second window frees up, not a UNIX time.
- JWT ``nbf``/``exp`` are checked against the real clock, not the simulated one.
- ``POST /_sim/reset`` zeroes the stats and rate windows and restarts the seeded
  fault stream, so a run is reproducible given the request order.

Load: ``--processes N`` (``SimProcess(processes=N)``) serves the one port from N
forked workers (coinbase_sim.prefork); settings, keys, rate windows, stats and
the fault stream are shared (the stream then differs from the one-process one
for the same seed), market caches are per worker.  Closed buckets of a page are
rendered once (coinbase_sim.pages, ``--render-cache-mb``, 64 per worker).
``python -m coinbase_sim.loadtest`` measures requests/s and CPU per request.

Binance spot personality (coinbase_sim.binance): ``--exchange binance``
(``make_server(exchange="binance")``, ``SimProcess(exchange="binance")``) serves
``GET /api/v3/klines | exchangeInfo | ping | time`` from the same Market (same
seed, same prices: BTCUSDT is BTC-USD, see ``GET /_sim/symbols``), with request
weights per IP per calendar minute (``weight_limit``, 6000), 429 then 418 bans
(``ban_after``, ``ban_duration_s``), ``X-MBX-USED-WEIGHT-1M`` on every answer and
zero-volume klines for empty intervals (``zero_volume_klines``).  Its
``/_sim/stats`` counts weight (``weight_total``, ``max_weight_in_any_60s``,
``max_weight_in_any_minute``, ``responses_429``, ``responses_418``, ``bans``);
``POST /_sim/config {"ban_s": 30}`` bans the caller now (0 lifts it);
``GET /_sim/klines/{symbol}`` is its truth (closed klines, no limits).
"""
