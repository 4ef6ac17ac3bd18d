"""The external method: a real extauth program (tests/auth/extauth.py) run by the server;
logins over TLS with slixmpp, account operations, and the program crashing, hanging or
answering garbage give temporary-auth-failure, then a fresh program takes over."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from suricate.auth.methods import ExternalMethod
from suricate.jid import JID
from tests.auth.common import offered, plain_outcome
from tests.e2e.harness import connect, disconnect, running_server

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
