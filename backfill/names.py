"""Comma-separated names, as env vars and CLI flags carry them (`BTC-USD, ETH-USD,`)."""


def split_names(text: str) -> list[str]:
    """The non-empty, stripped items of a comma-separated list."""
    return [item for item in (part.strip() for part in text.split(",")) if item]
