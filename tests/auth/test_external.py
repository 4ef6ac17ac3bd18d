"""The external method: a real extauth program (tests/auth/extauth.py) run by the server;
logins over TLS with slixmpp, account operations, and the program crashing, hanging or
answering garbage give temporary-auth-failure, then a fresh program takes over."""

from __future__ import annotations

import asyncio
import re
import sys
import time
from pathlib import Path

import pytest

from suricate.auth.methods import ExternalMethod
from suricate.jid import JID
from tests.auth.common import offered, plain_auth, plain_outcome
from tests.e2e.harness import RawClient, connect, disconnect, running_server

PROGRAM = Path(__file__).with_name("extauth.py")
EXTERNAL = f"""
[auth.external]
program = "{sys.executable} {PROGRAM}"
instances = 2
"""


async def test_logins_accounts_and_a_misbehaving_program(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ExternalMethod, "TIMEOUT", 1.0)
    async with running_server(tmp_path, auth_extra='methods = ["external"]',
                              extra=EXTERNAL) as server:
        assert await offered(server) == ["PLAIN"]
        a = await connect(server, "alice@localhost/r", "wonderland")
        with pytest.raises(PermissionError):
            await connect(server, "alice@localhost/x", "wrong")
        bob = JID.parse("bob@localhost")
        assert not await server.auth.user_exists(bob)
        assert await server.auth.register(bob, "builder")
        # Two instances take requests in turn: the account lives in the one that registered
        # it, so ask the same questions twice to reach both.
        assert await server.auth.check_password(bob, "builder") \
            or await server.auth.check_password(bob, "builder")
        for bad in ("crash", "hang", "garbage"):
            assert await plain_outcome(server, "alice", bad) == "temporary-auth-failure", bad
        # The broken copies were replaced: logins work again.
        assert await plain_outcome(server, "alice", "wonderland") == "success"
        assert await plain_outcome(server, "alice", "wonderland") == "success"
        assert await plain_outcome(server, "alice", "nope") == "not-authorized"
        await disconnect(a)


async def test_in_band_registration_goes_to_the_program(tmp_path: Path) -> None:
    async with running_server(tmp_path, auth_extra='methods = ["external"]',
                              extra=EXTERNAL) as server:
        raw = await RawClient.open(server.tls_port, tls=True)  # type: ignore[attr-defined]
        try:
            await raw.open_stream()
            await raw.send("<iq type='set' id='r1'><query xmlns='jabber:iq:register'>"
                           "<username>zoe</username><password>zpw</password></query></iq>")
            answer = await raw.expect(r"<iq [^>]*id=.r1.[^>]*(/>|>.*?</iq>)")
        finally:
            await raw.close()
        assert re.search(r"type=[\"']result[\"']", answer), answer
        # Two instances, each with its own accounts: the one that registered zoe is one of them.
        logged = [await plain_outcome(server, "zoe", "zpw") for _ in range(2)]
        assert "success" in logged


async def test_a_hung_program_answers_before_the_state_timeout(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The program's own timeout (5 s by default) outlives the listener's state_timeout: the
    client still gets temporary-auth-failure (RFC 6120 §6.5.12) in time, not a
    connection-timeout stream error, and may try again on the same stream."""
    monkeypatch.setattr(ExternalMethod, "TIMEOUT", 3.0)
    async with running_server(tmp_path, auth_extra='methods = ["external"]', extra=EXTERNAL,
                              tls_mode="tls", c2s_extra="state_timeout = 1000") as server:
        raw = await RawClient.open(server.c2s_port, tls=True)  # type: ignore[attr-defined]
        try:
            await raw.open_stream()
            started = time.monotonic()
            await raw.send(plain_auth("alice", "hang"))
            got = await raw.expect(r"<failure.*?</failure>|<stream:error.*?</stream:error>")
            assert "<temporary-auth-failure/>" in got, got
            assert time.monotonic() - started < 1.0
            # A fresh state_timeout for the retry (the other instance answers it).
            await asyncio.sleep(0.5)
            await raw.send(plain_auth("alice", "wonderland"))
            assert (await raw.expect(r"<success.*?/>|<failure.*?</failure>|<stream:error.*?"
                                     r"</stream:error>")).startswith("<success")
        finally:
            await raw.close()
