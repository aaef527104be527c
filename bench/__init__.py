"""Reproducible benchmark of the backfill: `python -m bench [--json] [--smoke]`.

Everything runs on this machine: an embedded redis-server, the Coinbase simulator
(with realistic latency and the per-key limit for the budgeted scenarios) and real
`celery worker` processes. See bench/RESULTS.md for a full run's figures.
"""
