"""The per-request JWT Coinbase Advanced Trade expects (keys: `core/credentials.py`)."""

from __future__ import annotations

import secrets
import time

import jwt

from core.credentials import Credentials

TOKEN_LIFETIME_S = 120


def build_jwt(
    creds: Credentials, method: str, host: str, path: str, now: float | None = None
) -> str:
    """A fresh token for one request; `uri` is `METHOD host/path` without the query string."""
    now = int(time.time() if now is None else now)
    claims = {
        "sub": creds.name,
        "iss": "cdp",
        "nbf": now,
        "exp": now + TOKEN_LIFETIME_S,
        "uri": f"{method} {host}{path}",
    }
    headers = {"kid": creds.name, "nonce": secrets.token_hex(16), "typ": "JWT"}
    return jwt.encode(claims, creds.key, algorithm=creds.algorithm, headers=headers)
