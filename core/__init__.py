"""The vocabulary both planes share: errors, timeframe, series, candle, outcome, run config,
settings, Redis names. Imports neither `backfill` (control plane) nor `workers` (data
plane), and loads no Celery app: importing the candle parser costs only the parser.
"""
