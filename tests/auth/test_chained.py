"""Several methods in ``auth.methods``, and a c2s listener's ``allowed_auth_methods``
(MongooseIM 6.4): a listener limited to some methods checks passwords with those only."""

from __future__ import annotations

from pathlib import Path

from suricate.core.server import Server
from suricate.jid import JID
from tests.auth.common import plain_outcome
from tests.e2e.harness import RawClient, running_server

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


async def register(srv: Server, user: str) -> str:
    """XEP-0077 §3.1 in-band registration over direct TLS: the IQ answer."""
    raw = await RawClient.open(srv.tls_port, tls=True)  # type: ignore[attr-defined]
    try:
        await raw.open_stream()
        await raw.send(
            "<iq type='set' id='r1'><query xmlns='jabber:iq:register'>"
            f"<username>{user}</username><password>pw</password></query></iq>"
        )
        return await raw.expect(r"<iq [^>]*id=.r1.[^>]*(/>|>.*?</iq>)")
    finally:
        await raw.close()


async def test_max_users_per_domain(tmp_path: Path) -> None:
    """6.4's ``auth.max_users_per_domain``: registration stops at the limit (not-allowed),
    and an account removed frees a place."""
    async with running_server(
        tmp_path, auth_extra='methods = ["rdbms"]\nmax_users_per_domain = 2'
    ) as srv:
        # [general] registration_timeout = "infinity": the test registers from one address
        srv.modules["mod_register"].registration_timeout = None  # type: ignore[attr-defined]
        await srv.auth.register(JID.parse("alice@localhost"), "pw")
        assert "type='result'" in (await register(srv, "bob")).replace('"', "'")
        refused = await register(srv, "carol")
        assert "<not-allowed" in refused, refused
        # a taken name is still a conflict (XEP-0077 §3.1), as 6.4 checks it first
        assert "<conflict" in await register(srv, "bob")
        assert not await srv.user_exists(JID.parse("carol@localhost"))
        assert await srv.auth.remove(JID.parse("alice@localhost"))
        assert "type='result'" in (await register(srv, "carol")).replace('"', "'")


async def test_mechanisms_are_worked_out_once_per_question(tmp_path: Path) -> None:
    """A login asks the offered mechanisms two or three times: the answers are kept per
    question (TLS, channel-binding types, the listener's allowed methods, a client
    certificate), each caller gets its own list, and two listeners that allow different
    methods keep different answers."""
    async with running_server(
        tmp_path, auth_extra='methods = ["rdbms", "anonymous"]', tls_mode="tls",
        c2s_extra='allowed_auth_methods = ["rdbms"]',
    ) as srv:
        auth = srv.auth
        worked_out = []
        find = auth._find_mechanisms

        def counting(*args: object) -> list[str]:
            worked_out.append(args)
            return find(*args)  # type: ignore[arg-type]

        auth._find_mechanisms = counting  # type: ignore[method-assign]
        limited = {"allowed_auth_methods": ["rdbms"]}
        first = auth.mechanisms(True, ["tls-exporter"], limited)
        assert "ANONYMOUS" not in first
        first.append("X-CHANGED-BY-A-CALLER")
        assert auth.mechanisms(True, ["tls-exporter"], limited) == first[:-1]
        assert len(worked_out) == 1
        everything = auth.mechanisms(True, ["tls-exporter"], {})
        assert "ANONYMOUS" in everything and len(worked_out) == 2
        assert auth.mechanisms(False, [], {}) != everything and len(worked_out) == 3
