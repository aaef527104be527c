"""JWT auth for every key format: decode the token and check every claim."""

import base64
import json

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from core.credentials import load_credentials, parse_private_key, read_key_file
from core.errors import InvalidInput
from workers.coinbase.auth import build_jwt

NAME = (
    "organizations/1f6a2b7c-0000-4000-8000-000000000001/apiKeys/2a7b3c8d-0000-4000-8000-0000000002"
)
PATH = "/api/v3/brokerage/products/BTC-USD/candles"


def ec_pem() -> tuple[str, object]:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    return pem, key.public_key()


def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def ed_pkcs8(key) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def ed_raw(key, with_public: bool) -> str:
    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(seed + pub if with_public else seed).decode()


def formats():
    pem, pub = ec_pem()
    yield "ec-sec1", pem, pub, "ES256"
    yield "ec-literal-newlines", pem.replace("\n", "\\n"), pub, "ES256"
    k = ed_key()
    yield "ed25519-pkcs8", ed_pkcs8(k), k.public_key(), "EdDSA"
    k = ed_key()
    yield "ed25519-raw64", ed_raw(k, True), k.public_key(), "EdDSA"
    k = ed_key()
    yield "ed25519-raw32", ed_raw(k, False), k.public_key(), "EdDSA"
    k = ed_key()
    yield "ed25519-pkcs8-literal", ed_pkcs8(k).replace("\n", "\\n"), k.public_key(), "EdDSA"


@pytest.mark.parametrize(
    "fmt,secret,public,alg",
    list(formats()),
    ids=lambda v: v if isinstance(v, str) and len(v) < 30 else "",
)
def test_token_claims_for_each_key_format(fmt, secret, public, alg):
    creds = load_credentials(None, NAME, secret)
    token = build_jwt(creds, "GET", "api.coinbase.com", PATH, now=1_800_000_000)
    header = jwt.get_unverified_header(token)
    assert header["alg"] == alg and header["kid"] == NAME and header["typ"] == "JWT"
    assert len(header["nonce"]) >= 16 and int(header["nonce"], 16) >= 0
    claims = jwt.decode(
        token, public, algorithms=[alg], options={"verify_exp": False, "verify_nbf": False}
    )
    assert claims == {
        "sub": NAME,
        "iss": "cdp",
        "nbf": 1_800_000_000,
        "exp": 1_800_000_120,
        "uri": f"GET api.coinbase.com{PATH}",
    }


def test_fresh_nonce_per_token():
    pem, _ = ec_pem()
    creds = load_credentials(None, NAME, pem)
    a, b = (
        jwt.get_unverified_header(build_jwt(creds, "GET", "h", PATH))["nonce"] for _ in range(2)
    )
    assert a != b


@pytest.mark.parametrize("field", ["name", "id"])
def test_key_file_portal_format(tmp_path, field):
    pem, _ = ec_pem()
    path = tmp_path / "key.json"
    path.write_text(json.dumps({field: NAME, "privateKey": pem}))
    assert read_key_file(path).name == NAME


@pytest.mark.parametrize(
    "bad",
    [
        "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----",
        "not a key at all!",
        base64.b64encode(b"x" * 31).decode(),
        "  ",
    ],
)
def test_corrupt_key_clear_error_without_key_text(bad):
    with pytest.raises(InvalidInput) as e:
        parse_private_key(bad)
    if bad.strip():
        assert bad.strip()[:12] not in str(e.value) or bad.startswith("-----BEGIN")
        assert "AAAA" not in str(e.value)


def test_key_never_in_repr_or_errors():
    pem, _ = ec_pem()
    creds = load_credentials(None, NAME, pem)
    body = "".join(pem.splitlines()[1:-1])
    assert body[:20] not in repr(creds) and "hidden" in repr(creds)
    from workers.coinbase.client import CoinbaseClient

    assert body[:20] not in repr(CoinbaseClient("http://x", creds))


def test_name_without_key_is_an_error():
    with pytest.raises(InvalidInput, match="together"):
        load_credentials(None, NAME, None)
