"""CDP API keys: minting them like the portal does, loading them, verifying request JWTs.

Key files hold `{"name": ..., "privateKey": ...}` exactly as Coinbase's portal
downloads them, so the same file drives both the client and the simulator
(which derives the public key from it).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

KeyType = Literal["ec", "ed25519"]
PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

JWT_LEEWAY_S = 5
PUBLIC_HOST = "api.coinbase.com"


class KeyFormatError(ValueError):
    """A key file or private key text could not be understood."""


@dataclass(frozen=True)
class ApiKey:
    """A named API key as loaded from a key file."""

    name: str
    secret: str  # the private key text, as found in the file
    private_key: PrivateKey

    @property
    def algorithm(self) -> str:
        """JWT `alg` for this key type."""
        return "EdDSA" if isinstance(self.private_key, ed25519.Ed25519PrivateKey) else "ES256"


def mint_key(key_type: KeyType = "ec") -> tuple[str, str]:
    """A fresh (name, privateKey text) pair in the portal's formats.

    EC keys are SEC1 PEM P-256; Ed25519 keys are base64 of the 64-byte
    seed + public key.
    """
    name = f"organizations/{uuid.uuid4()}/apiKeys/{uuid.uuid4()}"
    if key_type == "ec":
        private = ec.generate_private_key(ec.SECP256R1())
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        return name, pem.decode()
    if key_type == "ed25519":
        private_ed = ed25519.Ed25519PrivateKey.generate()
        seed = private_ed.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        public = private_ed.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return name, base64.b64encode(seed + public).decode()
    raise KeyFormatError(f"unknown key type {key_type!r}")


def write_key_file(path: str | os.PathLike[str], key_type: KeyType = "ec") -> str:
    """Mint a key, write it as a portal-style JSON file with mode 0600; return its name."""
    name, secret = mint_key(key_type)
    data = json.dumps({"name": name, "privateKey": secret}, indent=2).encode()
    fd = os.open(os.fspath(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)
    return name


def parse_private_key(text: str) -> PrivateKey:
    """Accept SEC1/PKCS8 PEM (literal `\\n` allowed) or raw base64 Ed25519 (32/64 bytes)."""
    text = text.strip().replace("\\n", "\n")
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(text.encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise KeyFormatError(f"unreadable PEM private key: {exc}") from exc
        if isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
            return key
        raise KeyFormatError(f"unsupported key type {type(key).__name__}")
    try:
        raw = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KeyFormatError("private key is neither PEM nor base64") from exc
    if len(raw) not in (32, 64):
        raise KeyFormatError(f"raw Ed25519 key must be 32 or 64 bytes, got {len(raw)}")
    return ed25519.Ed25519PrivateKey.from_private_bytes(raw[:32])


def load_key_file(path: str | os.PathLike[str]) -> ApiKey:
    """Read a portal-style key file (`name` or `id`, and `privateKey`)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise KeyFormatError(f"cannot read key file {path}: {exc}") from exc
    name = data.get("name") or data.get("id")
    secret = data.get("privateKey")
    if not isinstance(name, str) or not isinstance(secret, str):
        raise KeyFormatError(f"key file {path} needs 'name' (or 'id') and 'privateKey'")
    return ApiKey(name, secret, parse_private_key(secret))


class KeyRegistry:
    """Public keys the simulator trusts, by key name; verifies request JWTs."""

    def __init__(self) -> None:
        self._keys: dict[str, PublicKey] = {}
        self._lock = threading.Lock()

    def add(self, name: str, private_key: PrivateKey) -> None:
        """Trust tokens signed by this key under this name."""
        with self._lock:
            self._keys[name] = private_key.public_key()

    def load_file(self, path: str | os.PathLike[str]) -> str:
        """Trust the key in a key file; return its name."""
        key = load_key_file(path)
        self.add(key.name, key.private_key)
        return key.name

    def names(self) -> list[str]:
        """Names of the trusted keys."""
        with self._lock:
            return list(self._keys)

    def verify(self, token: str, path: str, host: str | None) -> str | None:
        """Return the key name if the token is valid for `GET {host}{path}`, else None.

        The `uri` claim may name api.coinbase.com or the Host the request was
        sent to.  Times are checked against the real clock (not the simulated
        market clock), with a small leeway.
        """
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return None
        kid = header.get("kid")
        alg = header.get("alg")
        public = self._keys.get(kid) if isinstance(kid, str) else None
        if public is None:
            return None
        expected_alg = "EdDSA" if isinstance(public, ed25519.Ed25519PublicKey) else "ES256"
        if alg != expected_alg:
            return None
        try:
            claims = jwt.decode(
                token,
                public,
                algorithms=[expected_alg],
                issuer="cdp",
                leeway=JWT_LEEWAY_S,
                options={"require": ["exp", "nbf", "sub", "iss", "uri"]},
            )
        except jwt.PyJWTError:
            return None
        if claims.get("sub") != kid:
            return None
        allowed = {f"GET {PUBLIC_HOST}{path}"}
        if host:
            allowed.add(f"GET {host}{path}")
        if claims.get("uri") not in allowed:
            return None
        if claims["exp"] - time.time() > 3600:  # portal tokens live 2 minutes
            return None
        return kid
