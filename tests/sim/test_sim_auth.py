"""JWT verification on the private endpoint and key file handling."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from sim_support import PRIVATE, Sim, make_token

from coinbase_sim.keys import ApiKey, load_key_file, parse_private_key, write_key_file

HOUR = 3600


def _params() -> dict[str, int | str]:
    end = int(time.time()) // HOUR * HOUR - 5 * HOUR
    return {"granularity": "ONE_HOUR", "start": end - 3 * HOUR, "end": end}


@pytest.mark.parametrize("which", ["ec", "ed"])
def test_token_accepted_with_local_or_public_host(sim: Sim, which: str) -> None:
    key: ApiKey = getattr(sim, which)
    path = PRIVATE.format("BTC-USD")
    for host in (sim.host, "api.coinbase.com"):
        token = make_token(key, f"GET {host}{path}")
        response = sim.private("BTC-USD", token=token, **_params())
        assert response.status_code == 200, response.text
        assert len(response.json()["candles"]) == 4
        assert response.headers["x-ratelimit-limit"] == "30"
    assert key.algorithm == ("ES256" if which == "ec" else "EdDSA")


def _assert_unauthorized(response) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 401
    assert response.text == "Unauthorized"
    assert response.headers["Content-Type"] == "text/plain"


def test_bad_tokens_get_401(sim: Sim) -> None:
    path = PRIVATE.format("BTC-USD")
    uri = f"GET {sim.host}{path}"
    now = int(time.time())
    stranger = ApiKey(sim.ec.name, "", ec.generate_private_key(ec.SECP256R1()))
    bad = [
        make_token(stranger, uri),  # wrong signature
        make_token(sim.ec, uri, exp=now - 60, nbf=now - 180),  # expired
        make_token(sim.ec, uri, nbf=now + 60, exp=now + 180),  # not yet valid
        make_token(sim.ec, f"GET {sim.host}/api/v3/brokerage/products/ETH-USD/candles"),
        make_token(sim.ec, uri + "?granularity=ONE_HOUR"),  # query string not allowed
        make_token(sim.ec, f"POST {sim.host}{path}"),
        make_token(sim.ec, uri, iss="coinbase-cloud"),
        make_token(sim.ec, uri, sub=sim.ed.name),
        "not-a-jwt",
    ]
    for token in bad:
        _assert_unauthorized(sim.private("BTC-USD", token=token, **_params()))
    missing = sim.session.get(sim.url + path, params=_params())
    _assert_unauthorized(missing)
    assert sim.stats()["responses_by_status"]["401"] == len(bad) + 1


def test_write_key_file_formats(tmp_path: Path) -> None:
    ec_path, ed_path = tmp_path / "ec.json", tmp_path / "ed.json"
    ec_name = write_key_file(ec_path, "ec")
    write_key_file(ed_path, "ed25519")
    for path in (ec_path, ed_path):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    data = json.loads(ec_path.read_text())
    assert data["name"] == ec_name and ec_name.startswith("organizations/")
    assert "/apiKeys/" in ec_name
    assert data["privateKey"].startswith("-----BEGIN EC PRIVATE KEY-----")
    raw = base64.b64decode(json.loads(ed_path.read_text())["privateKey"])
    assert len(raw) == 64
    assert load_key_file(ed_path).algorithm == "EdDSA"


def test_key_loading_variants(tmp_path: Path) -> None:
    ed = ed25519.Ed25519PrivateKey.generate()
    seed = ed.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    pkcs8 = ed.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    for text in (pkcs8, pkcs8.replace("\n", "\\n"), base64.b64encode(seed).decode()):
        parsed = parse_private_key(text)
        assert isinstance(parsed, ed25519.Ed25519PrivateKey)
        assert (
            parsed.private_bytes(
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )
            == seed
        )
    write_key_file(tmp_path / "k.json", "ec")
    data = json.loads((tmp_path / "k.json").read_text())
    escaped = {"id": "bare-uuid-name", "privateKey": data["privateKey"].replace("\n", "\\n")}
    (tmp_path / "id.json").write_text(json.dumps(escaped))
    key = load_key_file(tmp_path / "id.json")
    assert key.name == "bare-uuid-name"
    assert key.algorithm == "ES256"
    with pytest.raises(ValueError):
        parse_private_key("bm90IGEga2V5")


def test_cli_write_key(tmp_path: Path) -> None:
    path = tmp_path / "cli.json"
    done = subprocess.run(
        [sys.executable, "-m", "coinbase_sim", "--write-key", str(path), "--key-type", "ed25519"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert json.loads(done.stdout)["name"] == load_key_file(path).name
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_runtime_minted_key_is_trusted(sim: Sim, tmp_path: Path) -> None:
    path = tmp_path / "runtime.json"
    minted = sim.session.post(
        sim.url + "/_sim/keys", json={"key_type": "ed25519", "path": str(path)}
    ).json()
    key = load_key_file(path)
    assert key.name == minted["name"]
    response = sim.private("BTC-USD", key=key, **_params())
    assert response.status_code == 200
    bad = sim.session.post(sim.url + "/_sim/keys", json={"key_type": "rsa"})
    assert bad.status_code == 400
