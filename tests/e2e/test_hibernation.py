"""Idle connections drop their parser and wake up intact (DESIGN §3, hibernate_after)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from suricate.core import hibernation
from suricate.core.c2s import C2S
from suricate.core.server import Server
from suricate.jid import JID
from tests.e2e.harness import connect, disconnect, eventually, running_server
from tests.e2e.tls_client import logged_in


def _session(server: Server, jid: str) -> C2S:
    session = server.sessions.lookup(JID.parse(jid))
    assert isinstance(session, C2S)
    return session


async def test_idle_session_hibernates_and_wakes(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hibernation, "MIN_SWEEP_SECONDS", 0.1)
    async with running_server(tmp_path) as srv:
        await srv.auth.register(JID.parse("alice@localhost"), "pw")
        await srv.auth.register(JID.parse("bob@localhost"), "pw")
        alice = await connect(srv, "alice@localhost/a", "pw")
        bob = await connect(srv, "bob@localhost/b", "pw")
        session = _session(srv, "alice@localhost/a")

        async def hibernated() -> bool:
            return session.parser is None

        await eventually(hibernated)
        # delivery to a hibernated session needs no parser
        bob.send_message(mto="alice@localhost/a", mbody="wake up", mtype="chat")
        assert (await alice.next_message())["body"] == "wake up"
        # and its next bytes make a new one, inside the same stream
        alice.send_message(mto="bob@localhost/b", mbody="I am up", mtype="chat")
        assert (await bob.next_message())["body"] == "I am up"
        assert session.parser is not None
        await disconnect(alice, bob)


async def test_half_a_stanza_keeps_the_parser(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hibernation, "MIN_SWEEP_SECONDS", 0.1)
    sweeps: list[float] = []
    sweep = hibernation.HibernationSweep._sweep

    def counted(self: hibernation.HibernationSweep) -> None:
        sweep(self)
        sweeps.append(asyncio.get_running_loop().time())

    monkeypatch.setattr(hibernation.HibernationSweep, "_sweep", counted)
    async with running_server(tmp_path) as srv:
        await srv.auth.register(JID.parse("carol@localhost"), "pw")
        client = await asyncio.to_thread(logged_in, srv.c2s_port,  # type: ignore[attr-defined]
                                         "carol", "pw", "r")
        try:
            session = _session(srv, "carol@localhost/r")
            await eventually(lambda: session.parser is None)
            await asyncio.to_thread(client.send, "<iq type='get' id='p1'><ping xmlns='urn:x")
            await eventually(lambda: session.parser is not None)  # the bytes arrived
            # several sweeps (counted, not assumed from a sleep) while the stanza is unfinished
            start = len(sweeps)
            await eventually(lambda: len(sweeps) >= start + 3)
            assert session.parser is not None
            await asyncio.to_thread(client.send, "mpp:ping'/></iq>")
            answer = await asyncio.to_thread(client.expect, r"<iq[^>]*id=\"p1\"[^>]*/?>")
            assert 'type="result"' in answer.group(0)
        finally:
            client.close()

