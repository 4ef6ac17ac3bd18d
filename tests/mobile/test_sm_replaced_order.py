"""A phone with XEP-0198 stream management loses its connection, then logs in afresh (no
<resume/>) with the same resource: what its old session held unacknowledged must come before
what is sent to it after the new login (slixmpp, over direct TLS)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path
from typing import Any

import pytest

from suricate.core.server import Server
from suricate.protocol.c2s import C2SState
from tests.e2e.harness import Client, connect, disconnect, eventually, running_server
from tests.mobile.client import Outcome, Sasl2Client, bind2
from tests.mobile.conftest import add_user, modules_toml
from tests.mobile.test_stream_management import (
    _kill,
    _no_more,
    _session,
    _sm_enabled,
    _sm_login,
    _state,
)

PHONE = "alice@localhost/phone"
CARBONS = "urn:xmpp:carbons:2"


def _record_raw(client: Client) -> list[str]:
    """What ``client`` receives, as "<how> <body>" (how: direct, or the carbon's direction),
    read before slixmpp's carbons plugin unwraps it."""
    seen: list[str] = []

    def incoming(stanza: Any) -> Any:
        xml = stanza.xml
        if xml.tag == "{jabber:client}message":
            how = "direct"
            for direction in ("received", "sent"):
                wrapper = xml.find(f"{{{CARBONS}}}{direction}")
                if wrapper is not None:
                    how, xml = direction, wrapper.find(
                        "{urn:xmpp:forward:0}forwarded/{jabber:client}message")
            body = xml.find("{jabber:client}body") if xml is not None else None
            if body is not None:
                seen.append(f"{how} {body.text}")
        return stanza

    client.add_filter("in", incoming)
    return seen


@pytest.mark.parametrize("old_connection", ["lost", "unnoticed"])
async def test_a_fresh_login_gets_the_old_sessions_unacknowledged_messages_first(
        tmp_path: Path, old_connection: str) -> None:
    # lost: the old session waits for resumption (XEP-0198 §5); unnoticed: its connection
    # is dead but the server does not know yet (the phone reads nothing, acknowledges
    # nothing), and learns it from the new login.
    async with running_server(tmp_path, modules=modules_toml()) as server:
        await add_user(server, "alice")
        await add_user(server, "bob")
        alice = await connect(server, PHONE, "secret", direct_tls=True, plugins=("xep_0198",))
        bob = await connect(server, "bob@localhost/desk", "secret")
        desk = await connect(server, "alice@localhost/desk", "secret", plugins=("xep_0280",))
        desk_saw = _record_raw(desk)
        phone = None
        try:
            await desk.plugin["xep_0280"].enable(timeout=5)
            desk.send_presence()
            alice.send_presence()
            await eventually(lambda: _sm_enabled(server, PHONE)
                             and _session(server, PHONE).available
                             and _session(server, "alice@localhost/desk").available)
            # The logins' offline reads are over: a message to the bare JID routed while one
            # still waits follows it (docs/offline.md), and is delivered to the resources
            # there are by then (with PostgreSQL 5 ms away, after the phone's new login).
            await server.drain(5)
            if old_connection == "lost":
                await _kill(alice)
                await eventually(lambda: _state(server, PHONE) == C2SState.RESUME_SESSION)
            else:
                alice.transport.pause_reading()
            # Held by the waiting session, never acknowledged: one to the full JID (the
            # contact's client is locked on it, RFC 6121 §5.1), one to the bare JID.
            bob.send_message(mto=PHONE, mbody="old-full", mtype="chat")
            bob.send_message(mto="alice@localhost", mbody="old-bare", mtype="chat")
            await bob.get_roster()  # bob's stanzas are handled in order (RFC 6120 §10.1)
            # The phone logs in afresh with the same resource: the old session is replaced
            # (RFC 6120 §7.7.2.2). Bob answers at once, before and after its presence.
            phone = await connect(server, PHONE, "secret", direct_tls=True)
            bob.send_message(mto=PHONE, mbody="new-full", mtype="chat")
            await bob.get_roster()
            phone.send_presence()
            # Sent once the server has processed the phone's presence (two connections: no
            # order between them otherwise; with a database a few ms away, it came later).
            await eventually(lambda: _session(server, PHONE).available)
            bob.send_message(mto="alice@localhost", mbody="new-bare", mtype="chat")
            got: list[str] = []  # what came, in the failure's message
            with contextlib.suppress(TimeoutError):
                while len(got) < 4:
                    got.append((await phone.next_message(3))["body"])
            assert got == ["old-full", "old-bare", "new-full", "new-bare"]
            await _no_more(phone)
            # The desk had each once: the phone's second chance gives it no second carbon.
            await asyncio.sleep(0.3)
            assert desk_saw == ["received old-full", "direct old-bare", "received new-full",
                                "direct new-bare"]
        finally:
            await disconnect(bob, desk, *([phone] if phone else []))
            with contextlib.suppress(Exception):
                alice.abort()


async def test_a_bind2_login_of_the_same_client_gets_the_old_sessions_messages_first(
        server: Server) -> None:
    # XEP-0386 §3: the new login (same SASL2 user-agent id, a new resource) ends the earlier
    # session of the client, which waited for resumption with two messages unacknowledged.
    old, _ = await asyncio.to_thread(_sm_login, server,
                                     "<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
    bob = await connect(server, "bob@localhost/desk", "secret")
    try:
        await asyncio.to_thread(old.send, "<presence/>")
        old_jid = next(str(s.jid) for s in server.sessions if s.jid.local == "alice")
        await eventually(lambda: _session(server, old_jid).available)
        bob.send_message(mto=old_jid, mbody="old-full", mtype="chat")
        bob.send_message(mto="alice@localhost", mbody="old-bare", mtype="chat")
        # read, never acknowledged; then the connection dies
        await asyncio.to_thread(old.expect, r"<body>old-bare</body>")
        old.close()
        await eventually(lambda: _state(server, old_jid) == C2SState.RESUME_SESSION)

        def login() -> tuple[Sasl2Client, Outcome]:
            new = Sasl2Client(server.tls_port, direct_tls=True)  # type: ignore[attr-defined]
            new.features()
            return new, new.plain("alice", "secret", bind2("raw"))

        new, out = await asyncio.to_thread(login)
        assert out.ok and out.jid and out.jid != old_jid, out.xml
        assert _session(server, old_jid) is None
        bob.send_message(mto=out.jid, mbody="new-full", mtype="chat")
        await bob.get_roster()
        await asyncio.to_thread(new.send, "<presence/>")
        bob.send_message(mto="alice@localhost", mbody="new-bare", mtype="chat")
        seen = (await asyncio.to_thread(new.expect, r".*<body>new-bare</body>")).group(0)
        new.close()
        assert re.findall(r"<body>([a-z-]+)</body>", seen) == [
            "old-full", "old-bare", "new-full", "new-bare"], seen
    finally:
        await disconnect(bob)
