"""Candle backfill control plane."""
