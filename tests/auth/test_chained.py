"""Several methods in ``auth.methods``, and a c2s listener's ``allowed_auth_methods``
(MongooseIM 6.4): a listener limited to some methods checks passwords with those only."""

from __future__ import annotations

from pathlib import Path

from suricate.jid import JID
from tests.auth.common import plain_outcome
from tests.e2e.harness import running_server

DUMMY = "\n[auth.dummy]\nbase_time = 0\nvariance = 0\n"


async def test_allowed_auth_methods_limits_the_password_check(tmp_path: Path) -> None:
    async with running_server(
        tmp_path,
        auth_extra='methods = ["rdbms", "dummy", "anonymous"]\nanonymous.protocol = "both"',
        extra=DUMMY,
        tls_mode="tls",
        c2s_extra='allowed_auth_methods = ["rdbms"]',
    ) as srv:
        await srv.auth.register(JID.parse("alice@localhost"), "pw")
        limited = srv.c2s_port  # type: ignore[attr-defined]
        assert await plain_outcome(srv, "alice", "pw", limited) == "success"
        # dummy (any password) and login_anon (any name) are not this listener's methods
        assert await plain_outcome(srv, "alice", "wrong", limited) == "not-authorized"
        assert await plain_outcome(srv, "nobody", "x", limited) == "not-authorized"
        # the other listener has them all: the first method that accepts wins
        assert await plain_outcome(srv, "alice", "wrong") == "success"
