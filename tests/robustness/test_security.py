"""Security defaults over real sockets: TLS 1.2+ with forward-secret AEAD suites only, and a
password never written to the log."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from suricate.jid import JID
from suricate.net.certs import ensure_self_signed
from suricate.net.proxy_protocol import v1_header
from tests.e2e.harness import free_port, running_server, server_toml
from tests.e2e.test_cli import _wait_port
from tests.ops.harness import basic, http, ops_server
from tests.robustness.conftest import HEADER, Client, limited_server
from tests.web.conftest import web_server


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


async def _plain_attempt(client: Client, user: str, password: str) -> tuple[str, float]:
    """One PLAIN attempt on an open stream: the answer and how long it took."""
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    loop = asyncio.get_running_loop()
    start = loop.time()
    await client.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                      f"{token}</auth>")
    answer = await client.expect(r"<success[^>]*/>|<failure.*?</failure>")
    return answer, loop.time() - start


async def _guesses(port: int, attempts: list[tuple[str, str]],
                   preamble: bytes = b"") -> list[tuple[str, float]]:
    """Each (user, password) on a fresh stream (3 failures end a stream anyway)."""
    out = []
    for user, password in attempts:
        client = await Client.plain(port, preamble=preamble)
        await client.open_stream()
        out.append(await _plain_attempt(client, user, password))
        await client.close()
    return out


async def test_guessing_passwords_gets_slow(tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    """Past 5 failures for one account, or from one address, within 10 minutes, each login
    attempt waits (0.5 s, doubling up to 4 s) before its password is checked; the right
    password still logs in (no lockout) and ends the account's wait. Each failure is logged
    for fail2ban with the client's address and the account."""
    caplog.set_level(logging.INFO, logger="suricate.c2s")
    async with limited_server(tmp_path, listener="proxy_protocol = true") as server:
        port = server.plain_port  # type: ignore[attr-defined]
        loopback = v1_header(("127.0.0.1", 50000), ("127.0.0.1", 5222))
        # One account, guessed at: five quick failures, then waits.
        answers = await _guesses(port, [("alice", f"guess{i}") for i in range(6)], loopback)
        assert all("<not-authorized/>" in a for a, _ in answers)
        assert max(t for _, t in answers[:5]) < 0.4
        assert answers[5][1] >= 0.45
        # bob, from the same (loopback) address, is not slowed for alice's guesses
        [(answer, took)] = await _guesses(port, [("bob", "nope")], loopback)
        assert "<not-authorized/>" in answer and took < 0.4
        # the owner still logs in, after the wait, and the account owes nothing more
        [(answer, took)] = await _guesses(port, [("alice", "pw")], loopback)
        assert "<success" in answer and took >= 0.9
        [(answer, took)] = await _guesses(port, [("alice", "typo")], loopback)
        assert took < 0.4
        # One address trying many names: past five, every attempt from it waits, a real
        # account's too; another address does not.
        attacker = v1_header(("203.0.113.7", 50000), ("198.51.100.1", 5222))
        answers = await _guesses(port, [(f"user{i}", "x") for i in range(5)] + [("bob", "pw")],
                                 attacker)
        assert max(t for _, t in answers[:5]) < 0.4
        assert "<success" in answers[5][0] and answers[5][1] >= 0.45
        other = v1_header(("203.0.113.8", 50000), ("198.51.100.1", 5222))
        [(answer, took)] = await _guesses(port, [("bob", "pw")], other)
        assert "<success" in answer and took < 0.4
    lines = [r.getMessage() for r in caplog.records if "c2s_auth_failed" in r.getMessage()]
    assert any(line.startswith("c2s_auth_failed ip=203.0.113.7 user=user0@localhost ")
               for line in lines), lines


async def test_guessing_over_the_user_api_gets_slow(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """HTTP Basic on the user API (keep-alive: any number of guesses per connection) counts
    with the c2s failures: past five, each attempt waits; each failure is logged with the
    client's address (X-Forwarded-For from a local proxy) and the account."""
    caplog.set_level(logging.INFO, logger="suricate.admin")
    async with ops_server(tmp_path) as server:
        await server.auth.register(JID.parse("alice@localhost"), "pw")
        query = json.dumps({"query": "{ checkAuth { username } }"}).encode()
        loop = asyncio.get_running_loop()
        took = []
        # the first request pays for a thread and the schema: not measured
        warm_up = {"content-type": "application/json", **basic("alice@localhost", "pw")}
        status, _, _ = await http(server, "/api/graphql/user", query, warm_up)
        assert status == 200
        for i in range(7):
            password = "pw" if i == 6 else f"guess{i}"
            headers = {"content-type": "application/json", "x-forwarded-for": "203.0.113.9",
                       **basic("alice@localhost", password)}
            start = loop.time()
            status, _, _ = await http(server, "/api/graphql/user", query, headers)
            took.append(loop.time() - start)
            assert status == (200 if i == 6 else 401), (i, status)
        assert max(took[:5]) < 0.4 and took[5] >= 0.45 and took[6] >= 0.9
    assert any(r.getMessage().startswith(
        "http_auth_failed ip=203.0.113.9 user=alice@localhost endpoint=user ")
        for r in caplog.records)


def _served_certificate(port: int) -> bytes:
    """The DER certificate a direct-TLS handshake on ``port`` presents."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return der


def _renew(tmp: Path, certs: Path) -> bytes:
    """Write a new certificate and key over ``certs``'s (as certbot's renewal does)."""
    fresh, _ = ensure_self_signed(tmp / "renewed", ["localhost"])
    for src, dst in ((fresh.certfile, certs / "server.crt"), (fresh.keyfile, certs / "server.key")):
        Path(dst).write_bytes(Path(src).read_bytes())
    pem = Path(fresh.certfile).read_text()
    return ssl.PEM_cert_to_DER_cert(pem[:pem.index("-----END CERTIFICATE-----") + 25])


def test_sighup_reloads_the_certificates(tmp_path: Path) -> None:
    """A renewed certificate is served after SIGHUP, without a restart."""
    c2s, tls = free_port(), free_port()
    config = tmp_path / "suricate.toml"
    config.write_text(server_toml(tmp_path, c2s, tls))
    proc = subprocess.Popen([sys.executable, "-m", "suricate", "serve", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_port(tls)
        old = _served_certificate(tls)
        new = _renew(tmp_path, tmp_path / "certs")
        assert new != old and _served_certificate(tls) == old  # read at start only
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while _served_certificate(tls) != new:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=15)
    assert "tls_reloaded reloaded=2 failed=0" in err, err


async def test_a_broken_renewal_keeps_the_certificate_in_use(tmp_path: Path) -> None:
    """A certificate file that cannot be used (half written, wrong key) is reported and the
    one in use stays; connections made before a reload keep working."""
    async with limited_server(tmp_path) as server:
        port = server.tls_port  # type: ignore[attr-defined]
        client = await Client.open(port, tls=True)
        await client.login("alice")
        old = await asyncio.to_thread(_served_certificate, port)
        certs = tmp_path / "certs"
        (certs / "server.crt").write_text("-----BEGIN CERTIFICATE-----\ntruncated")
        assert server.reload_certificates() == 2  # both TLS c2s listeners of the harness
        assert await asyncio.to_thread(_served_certificate, port) == old
        new = _renew(tmp_path, certs)
        assert server.reload_certificates() == 0
        assert await asyncio.to_thread(_served_certificate, port) == new
        await client.ping()  # the connection from before goes on
        await client.close()


async def test_https_listener_reloads_too(tmp_path: Path) -> None:
    async with web_server(tmp_path, https=True) as server:
        port = server.http_port  # type: ignore[attr-defined]
        old = await asyncio.to_thread(_served_certificate, port)
        new = _renew(tmp_path, tmp_path / "certs")
        assert new != old
        assert server.reload_certificates() == 0
        assert await asyncio.to_thread(_served_certificate, port) == new


async def test_a_mechanism_name_cannot_forge_a_log_line(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The mechanism attribute is the client's: a character reference for a line feed in it
    must not start a forged c2s_auth_failed line naming someone else's address."""
    caplog.set_level(logging.INFO, logger="suricate.c2s")
    forged = "c2s_auth_failed ip=198.51.100.99 user=a@localhost mech=PLAIN " \
             "condition=not-authorized"
    async with limited_server(tmp_path) as server:
        client = await Client.plain(server.plain_port)  # type: ignore[attr-defined]
        await client.open_stream()
        await client.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
                          f"mechanism='X&#10;{forged}'/>")
        await client.expect("<invalid-mechanism/>")
        await client.close()
    lines = [r.getMessage() for r in caplog.records if "c2s_auth_failed" in r.getMessage()]
    assert lines and all("\n" not in line and "198.51.100.99" not in line for line in lines)


def _scram_salt(port: int, user: str) -> str:
    """The salt of the server-first-message SCRAM-SHA-256 answers ``user`` (direct TLS)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    initial = base64.b64encode(f"n,,n={user},r=abc".encode()).decode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw) as tls:
        tls.sendall(HEADER.encode())
        data = b""
        while b"</stream:features>" not in data:
            data += tls.recv(65536)
        tls.sendall(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
                    f"mechanism='SCRAM-SHA-256'>{initial}</auth>".encode())
        while b"</challenge>" not in data:
            data += tls.recv(65536)
    challenge = data.split(b"<challenge", 1)[1].split(b">", 1)[1].split(b"<", 1)[0]
    first = base64.b64decode(challenge).decode()
    return next(a[2:] for a in first.split(",") if a.startswith("s="))


def test_an_unknown_name_keeps_its_salt_across_a_restart(tmp_path: Path) -> None:
    """A real account's salt is stored: the same after a restart. An unknown name's fake
    salt must be too, or probing it before and after a restart tells it has no account."""
    c2s, tls = free_port(), free_port()
    config = tmp_path / "suricate.toml"
    config.write_text(server_toml(tmp_path, c2s, tls))
    salts = []
    for _ in range(2):
        proc = subprocess.Popen([sys.executable, "-m", "suricate", "serve", "--config",
                                 str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            _wait_port(tls)
            salts.append(_scram_salt(tls, "nobody"))
        finally:
            proc.terminate()
            proc.communicate(timeout=15)
    assert salts[0] == salts[1]
