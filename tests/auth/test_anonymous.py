"""The anonymous method (MongooseIM 6.4 ``auth.anonymous``) with slixmpp over TLS: an
anonymous account lives as long as its sessions, and goes like a removed one."""

from __future__ import annotations

from pathlib import Path

from suricate.jid import JID
from tests.auth.common import offered, plain_outcome
from tests.e2e.harness import connect, disconnect, running_server

ANON_AND_RDBMS = 'methods = ["rdbms", "anonymous"]\nsasl_mechanisms = ["scram_sha256", "anonymous"]'


async def test_contacts_are_told_when_an_anonymous_account_ends(tmp_path: Path) -> None:
    """RFC 6121 §2.5.2, as for a removed account: the subscription request an anonymous
    user left is withdrawn when its account ends, so the contact's roster keeps no
    request from a JID that no longer exists."""
    async with running_server(tmp_path, auth_extra=ANON_AND_RDBMS) as srv:
        await srv.auth.register(JID.parse("alice@localhost"), "pw")
        alice = await connect(srv, "alice@localhost/x", "pw")
        alice.auto_authorize = None  # she leaves the request unanswered
        alice.send_presence()
        await alice.next_presence()  # her own, back: she is available
        anon = await connect(srv, "localhost", "", sasl_mech="ANONYMOUS")
        who = anon.boundjid.bare
        anon.send_presence(pto="alice@localhost", ptype="subscribe")
        assert (await alice.next_presence(type_="subscribe"))["from"].bare == who
        await disconnect(anon)
        assert (await alice.next_presence(type_="unsubscribe"))["from"].bare == who
        await srv.drain()
        roster = srv.module_stores["mod_roster"]
        assert await roster.get_roster("localhost", "alice") == []  # type: ignore[attr-defined]
        await disconnect(alice)


LOGIN_ANON = 'methods = ["rdbms", "anonymous"]\nanonymous.protocol = "login_anon"'


async def test_login_anon_any_unregistered_name_and_password(tmp_path: Path) -> None:
    """6.4's ``protocol = "login_anon"``: PLAIN logs in any name no other method knows,
    with any password, as an anonymous account; registered names
    still need their password; one connection per name unless
    ``allow_multiple_connections``."""
    async with running_server(tmp_path, auth_extra=LOGIN_ANON) as srv:
        await srv.auth.register(JID.parse("alice@localhost"), "pw")
        mechanisms = await offered(srv)
        assert "PLAIN" in mechanisms and "SCRAM-SHA-256" in mechanisms
        assert "ANONYMOUS" not in mechanisms
        guest = await connect(srv, "guest@localhost/g", "whatever", sasl_mech="PLAIN")
        assert await srv.user_exists(JID.parse("guest@localhost"))
        assert await plain_outcome(srv, "guest", "again") == "not-authorized"
        # the name is taken while the guest is there (else its purge would remove the
        # account registered meanwhile)
        assert not await srv.auth.register(JID.parse("guest@localhost"), "mine")
        assert await plain_outcome(srv, "alice", "wrong") == "not-authorized"
        assert await plain_outcome(srv, "alice", "pw") == "success"
        await disconnect(guest)
        await srv.drain()
        assert not await srv.user_exists(JID.parse("guest@localhost"))
    multiple = (
        'methods = ["anonymous"]\nanonymous.protocol = "both"'
        + "\nanonymous.allow_multiple_connections = true"
    )
    async with running_server(tmp_path / "2", auth_extra=multiple) as srv:
        assert await offered(srv) == ["PLAIN", "ANONYMOUS"]  # nothing else logs in a guest
        assert "PLAIN" not in await offered(srv, direct_tls=False)
        one = await connect(srv, "guest@localhost/1", "x", sasl_mech="PLAIN")
        two = await connect(srv, "guest@localhost/2", "y", sasl_mech="PLAIN")
        await disconnect(one)
        await srv.drain()
        assert await srv.user_exists(JID.parse("guest@localhost"))  # one session is left
        await disconnect(two)
