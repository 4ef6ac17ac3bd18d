"""The anonymous method (MongooseIM 6.4 ``auth.anonymous``) with slixmpp over TLS: an
anonymous account lives as long as its sessions, and goes like a removed one."""

from __future__ import annotations

from pathlib import Path

from suricate.jid import JID
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
