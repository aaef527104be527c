"""Below the exchange seam: what every exchange's candle requests share.

`client.CandleClient` holds every guarantee once (the fleet budget on every HTTP request,
the total deadline, body size caps, no redirects, rows checked against the asked range
and our clock, typed errors, text cleaned); an exchange module (`workers/coinbase/api.py`,
`workers/binance/api.py`) says only what differs: its paths and parameters, its row
shape, how it counts requests and what its throttling answers mean (`api.ExchangeApi`).
"""
