"""The jwt method: the PLAIN password is a JSON Web Token naming the user in its
`username_key` claim (HS256 from a value, RS256 from a public key file); expired, forged,
malformed tokens and tokens for another user are refused. SASL2 with Bind 2 works with it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from suricate.core.server import Server
from tests.auth.common import offered, plain_outcome
from tests.e2e.harness import connect, disconnect, running_server
from tests.mobile.client import Sasl2Client, bind2
from tests.mobile.conftest import modules_toml

SECRET = "a-shared-secret-of-32-bytes-long!"


def jwt_toml(secret: str = f'secret.value = "{SECRET}"', algorithm: str = "HS256") -> str:
    return f"""
[auth.jwt]
{secret}
algorithm = "{algorithm}"
username_key = "bookingNumber"
"""


def token(user: str, key: str = SECRET, algorithm: str = "HS256", exp: float | None = None,
          claim: str = "bookingNumber") -> str:
    claims: dict[str, object] = {claim: user}
    if exp is not None:
        claims["exp"] = int(exp)
    return jwt.encode(claims, key, algorithm=algorithm)


async def test_hs256_token_logs_in_and_bad_tokens_are_refused(tmp_path: Path) -> None:
    async with running_server(tmp_path, auth_extra='methods = ["jwt"]',
                              extra=jwt_toml(), modules=modules_toml()) as server:
        assert await offered(server) == ["PLAIN"]
        assert await offered(server, direct_tls=False) == []
        client = await connect(server, "alice@localhost/r", token("alice"))
        assert str(client.boundjid) == "alice@localhost/r"
        await disconnect(client)
        refused = {
            "expired": token("alice", exp=time.time() - 60),
            "other user": token("bob"),
            "forged": token("alice", key="another-secret-of-32-bytes-long!!"),
            "malformed": "not.a.jwt",
            "garbage": "x" * 50,
            "alg none": jwt.encode({"bookingNumber": "alice"}, None, algorithm="none"),
            "no claim": token("alice", claim="sub"),
        }
        for what, tok in refused.items():
            assert await plain_outcome(server, "alice", tok) == "not-authorized", what
        assert await plain_outcome(server, "alice", token("alice", exp=time.time() + 60)) \
            == "success"
        # SASL2 (XEP-0388) PLAIN with Bind 2 inline works with a token as the password.
        await asyncio.to_thread(_sasl2_login, server, token("alice"))


def _sasl2_login(server: Server, tok: str) -> None:
    c = Sasl2Client(server.tls_port, direct_tls=True)  # type: ignore[attr-defined]
    try:
        c.features()
        out = c.plain("alice", tok, bind2())
        assert out.ok, out.xml
        assert out.jid is not None and out.jid.startswith("alice@localhost/")
    finally:
        c.close()


async def test_rs256_public_key_file(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = tmp_path / "jwt.pub"
    public.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    private = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    toml = jwt_toml(f'secret.file = "{public}"', "RS256")
    async with running_server(tmp_path, auth_extra='methods = ["jwt"]', extra=toml) as server:
        client = await connect(server, "alice@localhost/r",
                               token("alice", private.decode(), "RS256"), direct_tls=True)
        await disconnect(client)
        # An HS256 token made with the public key as the secret (key confusion) is refused.
        confused = token("alice", "x" * 40, "HS256")
        assert await plain_outcome(server, "alice", confused) == "not-authorized"


async def test_secret_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SURICATE_TEST_JWT", "env-secret-of-at-least-32-bytes!!")
    toml = jwt_toml('secret.env = "SURICATE_TEST_JWT"')
    async with running_server(tmp_path, auth_extra='methods = ["jwt"]', extra=toml) as server:
        good = token("alice", "env-secret-of-at-least-32-bytes!!")
        assert await plain_outcome(server, "alice", good) == "success"
        assert await plain_outcome(server, "alice", token("alice")) == "not-authorized"
