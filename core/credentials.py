"""CDP API keys: parsed once into a key object whose text is never kept, logged,
raised or shown in a repr.

Both planes load them: the dispatcher to refuse a corrupt key before it enqueues and to
name the fleet budget, a worker to sign requests (`workers/coinbase/auth.py`).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from core.errors import InvalidInput

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@dataclass(frozen=True)
class Credentials:
    """An API key name and its parsed private key; the repr never shows the key."""

    name: str
    key: PrivateKey = field(repr=False)

    @property
    def algorithm(self) -> str:
        return "ES256" if isinstance(self.key, ec.EllipticCurvePrivateKey) else "EdDSA"

    def __repr__(self) -> str:
        return f"Credentials(name={self.name!r}, algorithm={self.algorithm}, key=<hidden>)"


def parse_private_key(text: str) -> PrivateKey:
    """Accept EC SEC1 PEM, Ed25519 PKCS8 PEM, raw base64 Ed25519 (32 or 64 bytes), literal `\\n`."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("the Coinbase private key is empty")
    text = text.strip().replace("\\n", "\n")
    if "-----BEGIN" in text:
        try:
            key = load_pem_private_key(text.encode(), password=None)
        except (ValueError, TypeError):
            raise InvalidInput(
                "the Coinbase private key is a PEM block that cannot be parsed "
                "(expected EC SEC1 or Ed25519 PKCS8, unencrypted)"
            ) from None
        if isinstance(key, ec.EllipticCurvePrivateKey):
            if not isinstance(key.curve, ec.SECP256R1):
                raise InvalidInput(f"the Coinbase EC key is on {key.curve.name}, expected P-256")
            return key
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return key
        raise InvalidInput(f"the Coinbase private key is a {type(key).__name__}, not EC or Ed25519")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(
            "the Coinbase private key is neither PEM nor base64 (Ed25519 portal format)"
        ) from None
    if len(raw) not in (32, 64):
        raise InvalidInput(
            f"the Coinbase Ed25519 key decodes to {len(raw)} bytes, expected 32 or 64"
        )
    return ed25519.Ed25519PrivateKey.from_private_bytes(raw[:32])


def read_key_file(path: Path | str) -> Credentials:
    """Read the JSON key file the Coinbase portal downloads (`name` or `id`, `privateKey`)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidInput(f"COINBASE_API_KEY_FILE {str(path)!r} does not exist") from None
    except (OSError, ValueError) as e:
        raise InvalidInput(
            f"COINBASE_API_KEY_FILE {str(path)!r} is not a readable JSON key file "
            f"({type(e).__name__})"
        ) from None
    if not isinstance(data, dict):
        data = {}
    name = data.get("name") or data.get("id")
    if not isinstance(name, str) or not isinstance(data.get("privateKey"), str):
        raise InvalidInput(
            f'COINBASE_API_KEY_FILE {str(path)!r} needs "name" (or "id") and "privateKey"'
        )
    return Credentials(name=name, key=parse_private_key(data["privateKey"]))


def load_credentials(
    key_file: Path | str | None, key_name: str | None, private_key: str | None
) -> Credentials | None:
    """Credentials from a key file, or from a name + key pair; None means the public endpoint."""
    if key_file:
        return read_key_file(key_file)
    if key_name or private_key:
        if not (key_name and private_key):
            raise InvalidInput(
                "COINBASE_API_KEY_NAME and COINBASE_API_PRIVATE_KEY must be set together"
            )
        return Credentials(name=key_name, key=parse_private_key(private_key))
    return None
