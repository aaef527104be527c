"""Text in and out: comma-separated names from operators, and text from outside made safe.

Anything the exchange (or a proxy, or an attacker on the path) sends may end up in a log
line, an outcome in Redis, the gate's JSON or an operator's terminal: `clean_text` is
applied before it goes anywhere, so it is short and carries no control characters
(no ANSI escapes, no carriage returns that rewrite a terminal line).
"""

from __future__ import annotations

MAX_TEXT = 300


def split_names(text: str) -> list[str]:
    """The non-empty, stripped items of a comma-separated list (`BTC-USD, ETH-USD,`)."""
    return [item for item in (part.strip() for part in text.split(",")) if item]


def clean_text(text: object, limit: int = MAX_TEXT) -> str:
    """Printable, single-line, at most `limit` characters (an ellipsis marks a cut)."""
    s = text if isinstance(text, str) else str(text)
    # Not printable: C0/C1 controls (ANSI escapes), separators, bidi overrides, surrogates.
    s = "".join(ch if ch.isprintable() else " " for ch in s[: limit * 4])
    s = " ".join(s.split())
    return s if len(s) <= limit else s[: limit - 1] + "…"
