"""What a SCRAM login costs the server, by construction (docs/performance.md, "Logins"):
a real Server on SQLite drives a C2S over a recording connection, as the bench's clients
log in (SCRAM-SHA-256 with stored keys, bind, close): the login reads the account once,
a roster-less account's next login reads no roster rows, the session's close hooks run
without a task of their own, and the SCRAM exchange runs no PBKDF2."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from suricate.config import parse_config
from suricate.core import hooks as H
from suricate.core.c2s import C2S
from suricate.core.server import Server
from suricate.jid import JID
from suricate.modules import MODULES
from suricate.sasl import scram_client
from tests.recording_connection import RecordingConnection

HEADER = (b"<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' "
          b"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")
OPTS = {"max_stanza_size": 65536, "state_timeout": 5000, "access": "all",
        "backwards_compatible_session": True}


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    cfg = parse_config(f"""
[general]
hosts = ["localhost"]
default_server_domain = "localhost"
[auth]
methods = ["rdbms"]
sasl_mechanisms = ["scram_sha256"]
password.hash = ["sha256"]
password.scram_iterations = 4096
[outgoing_pools.rdbms.default.connection]
driver = "sqlite"
database = "{tmp_path}/s.db"
[modules.mod_presence]
[modules.mod_roster]
[modules.mod_muc]
""", tmp_path)
    srv = Server(cfg, tmp_path, MODULES)
    await srv.start()
    await srv.auth.register(JID("alice", "localhost", None), "pw")
    try:
        yield srv
    finally:
        await srv.stop()


def _login(server: Server, salted: bytes) -> tuple[C2S, RecordingConnection]:
    conn = RecordingConnection(asyncio.get_running_loop())
    c2s = C2S(server, conn, OPTS, None)  # type: ignore[arg-type]
    c2s.data_received(HEADER)
    client = scram_client.ScramClient("SHA-256", "alice", "pw")
    c2s.data_received(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>"
                      + base64.b64encode(client.first()) + b"</auth>")
    out = b"".join(conn.out)
    start = out.rindex(b"<challenge")
    challenge = base64.b64decode(out[out.index(b">", start) + 1:out.index(b"</challenge>", start)])
    with pytest.MonkeyPatch.context() as patch:
        # The client's SaltedPassword, cached (RFC 5802 §5.1) as the bench's clients do.
        patch.setattr(scram_client, "salted_password", lambda *_: salted)
        final = client.final(challenge)
    c2s.data_received(b"<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
                      + base64.b64encode(final) + b"</response>")
    assert b"<success" in b"".join(conn.out)
    c2s.data_received(HEADER)
    c2s.data_received(b"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
    assert b"<jid>alice@localhost/" in b"".join(conn.out)
    return c2s, conn


async def test_a_login_reads_the_account_once_and_an_empty_roster_once(
        server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    salted = hashlib.pbkdf2_hmac("sha256", b"pw", _salt(server), 4096)
    statements: list[str] = []
    conn = server.storage._conn  # type: ignore[attr-defined]
    monkeypatch.setattr(server.storage, "_conn", _Tracing(conn, statements))
    monkeypatch.setattr(server.storage._executor, "_conn",  # type: ignore[attr-defined]
                        _Tracing(conn, statements))
    pbkdf2: list[Any] = []
    real_pbkdf2 = hashlib.pbkdf2_hmac
    monkeypatch.setattr(hashlib, "pbkdf2_hmac", lambda *a: pbkdf2.append(a) or real_pbkdf2(*a))
    for attempt in range(3):
        statements.clear()
        c2s, _ = _login(server, salted)
        await asyncio.sleep(0)
        c2s.data_received(b"</stream:stream>")
        c2s.connection_lost(None)
        await asyncio.sleep(0)
        reads = [s.split()[0] + " " + s.split("FROM")[1].split()[0] for s in statements
                 if s.startswith("SELECT")]
        # The account's record each time; the (empty) roster only at the first login.
        assert reads == (["SELECT users", "SELECT roster_items"] if attempt == 0
                         else ["SELECT users"]), statements
    assert pbkdf2 == []  # stored keys: HMACs and hashes only


async def test_the_close_hooks_run_without_a_task(server: Server) -> None:
    salted = hashlib.pbkdf2_hmac("sha256", b"pw", _salt(server), 4096)
    closed: list[str] = []

    async def session_closed(acc: None, c2s: Any, reason: str) -> None:
        closed.append(reason)
        return acc

    server.hooks.add(H.SESSION_CLOSED, session_closed, 90)
    c2s, _ = _login(server, salted)
    await asyncio.sleep(0)
    tasks = len(server._tasks)  # type: ignore[attr-defined]
    c2s.data_received(b"</stream:stream>")
    c2s.connection_lost(None)
    assert closed == ["closed"]  # before any loop turn
    assert len(server._tasks) == tasks  # type: ignore[attr-defined]


def _salt(server: Server) -> bytes:
    row = server.storage._conn.execute(  # type: ignore[attr-defined]
        "SELECT pass_details FROM users WHERE username = 'alice'").fetchone()
    return base64.b64decode(row[0].split("==SHA256==")[1].split("|")[0])


class _Tracing:
    """A sqlite3 connection that records the statements it runs."""

    def __init__(self, conn: Any, log: list[str]) -> None:
        self._conn = conn
        self._log = log

    def execute(self, sql: str, *args: Any) -> Any:
        self._log.append(sql.strip())
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


async def test_the_stored_keys_are_decoded_once_and_a_new_password_is_seen(
        server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    from suricate.sasl import scram

    scram._record_keys.cache_clear()
    decoded: list[str] = []
    parse = scram.parse_scram_record
    monkeypatch.setattr(scram, "parse_scram_record", lambda s: decoded.append(s) or parse(s))
    salted = hashlib.pbkdf2_hmac("sha256", b"pw", _salt(server), 4096)
    for _ in range(3):
        c2s, _ = _login(server, salted)
        c2s.connection_lost(None)
    assert len(decoded) == 1
    await server.auth.set_password(JID("alice", "localhost", None), "new")
    with pytest.raises(AssertionError):
        _login(server, salted)  # the old password's keys are not used any more
    _login(server, hashlib.pbkdf2_hmac("sha256", b"new", _salt(server), 4096))
    assert len(decoded) == 2
