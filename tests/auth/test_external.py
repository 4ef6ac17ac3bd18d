"""The external method: a real extauth program (tests/auth/extauth.py) run by the server;
logins over TLS with slixmpp, account operations, and the program crashing, hanging or
answering garbage give temporary-auth-failure, then a fresh program takes over."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from suricate.auth.methods import ExternalMethod
from suricate.jid import JID
from tests.auth.common import offered, plain_outcome
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
