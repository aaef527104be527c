"""A faithful local simulator of Coinbase Advanced Trade's candle endpoints.

Deterministic market data (same seed, same candles), CDP JWT authentication,
exchange-like rate limits, fault injection and a control plane under /_sim/.
"""
