"""Security defaults over real sockets: TLS 1.2+ with forward-secret AEAD suites only, and a
password never written to the log."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import ssl
from pathlib import Path

import pytest

from suricate.jid import JID
from tests.e2e.harness import running_server
from tests.robustness.conftest import HEADER, Client, limited_server


async def _handshake(port: int, ctx: ssl.SSLContext) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    try:
        version = writer.get_extra_info("ssl_object").version()
        writer.write(HEADER.encode())
        await writer.drain()
        await asyncio.wait_for(reader.readuntil(b"</stream:features>"), 5)
        return str(version)
    finally:
        writer.close()


def _context(max_version: ssl.TLSVersion, ciphers: str | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    ctx.maximum_version = max_version
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
async def test_tls_defaults(tmp_path: Path) -> None:
    async with limited_server(tmp_path) as server:
        port = server.tls_port  # type: ignore[attr-defined]
        assert await _handshake(port, _context(ssl.TLSVersion.TLSv1_3)) == "TLSv1.3"
        assert await _handshake(port, _context(ssl.TLSVersion.TLSv1_2)) == "TLSv1.2"
        for refused in (_context(ssl.TLSVersion.TLSv1_1, "ALL:@SECLEVEL=0"),
                        # TLS 1.2 without forward secrecy, or without AEAD
                        _context(ssl.TLSVersion.TLSv1_2, "AES128-GCM-SHA256"),
                        _context(ssl.TLSVersion.TLSv1_2, "ECDHE-RSA-AES128-SHA")):
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await _handshake(port, refused)


async def test_no_password_in_the_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "correct-horse-battery"
    async with limited_server(tmp_path) as server:
        port = server.plain_port  # type: ignore[attr-defined]
        bad = await Client.plain(port)
        await bad.open_stream()
        token = base64.b64encode(f"\0alice\0{secret}".encode()).decode()
        await bad.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                       f"{token}</auth>")
        await bad.expect("<not-authorized/>")
        await bad.close()
        good = await Client.plain(port)
        await good.open_stream()
        await good.send("<iq type='set' id='r'><query xmlns='jabber:iq:register'><username>"
                        f"zed</username><password>{secret}</password></query></iq>")
        await good.expect("id=\"r\"")
        await good.close()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "c2s_auth_failed" in text
    assert secret not in text and token not in text


def _count_pbkdf2(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The iteration counts of the PBKDF2 runs from now on."""
    runs: list[int] = []
    real = hashlib.pbkdf2_hmac

    def counting(name: str, password: bytes, salt: bytes, iterations: int,
                 dklen: int | None = None) -> bytes:
        runs.append(iterations)
        return real(name, password, salt, iterations, dklen)
    monkeypatch.setattr(hashlib, "pbkdf2_hmac", counting)
    return runs


async def _first_answer(port: int, mechanism: str, initial: bytes) -> str:
    """Over TLS: the server's answer to <auth/> with this initial response."""
    client = await Client.open(port, tls=True)
    try:
        await client.open_stream()
        await client.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
                          f"mechanism='{mechanism}'>{base64.b64encode(initial).decode()}</auth>")
        return await client.expect("<challenge[^>]*>[^<]*</challenge>|<failure.*?</failure>")
    finally:
        await client.close()


async def test_unknown_user_costs_what_a_known_one_costs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown name must not fail faster than a wrong password (account enumeration by
    timing): PLAIN on SCRAM storage, SCRAM on plain storage both spend the PBKDF2 a real
    account costs (here 4096 iterations, the harness's password.scram_iterations)."""
    async with limited_server(tmp_path / "scram") as server:
        port = server.tls_port  # type: ignore[attr-defined]
        runs = _count_pbkdf2(monkeypatch)
        for user in ("alice", "nobody"):
            runs.clear()
            answer = await _first_answer(port, "PLAIN", f"\0{user}\0wrong".encode())
            assert "<not-authorized/>" in answer
            assert runs == [4096], (user, runs)
        monkeypatch.undo()
    plain = 'methods = ["rdbms"]\npassword.format = "plain"'
    async with running_server(tmp_path / "plain", auth_extra=plain) as server:
        await server.auth.register(JID.parse("alice@localhost"), "pw")
        port = server.tls_port  # type: ignore[attr-defined]
        runs = _count_pbkdf2(monkeypatch)
        for user in ("alice", "nobody"):
            runs.clear()
            answer = await _first_answer(port, "SCRAM-SHA-256", f"n,,n={user},r=abc".encode())
            assert "<challenge" in answer
            assert runs == [4096], (user, runs)
