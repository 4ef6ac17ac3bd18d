"""A restart as its clients see it (docs/operations.md, "Restarts and rolling upgrades"):
a graceful stop first asks every stream-management client what it received, so what it
acknowledges is not stored offline again (XEP-0198 §4: a duplicate at the next login)."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

from suricate.config import parse_config
from suricate.core.server import Server
from suricate.jid import JID
from suricate.modules import MODULES
from suricate.modules.mod_offline.store import OfflineStore
from tests.e2e.harness import eventually
from tests.robustness.conftest import Client, limited_server
from tests.robustness.test_nothing_lost import _storage_only

SM = "[modules.mod_stream_management]"


async def _stored(tmp: Path, user: str) -> list[str]:
    """The ids of the messages stored offline for ``user`` (the server stopped)."""
    again = Server(parse_config(_storage_only(tmp), tmp), tmp, MODULES)
    await again.storage.open()
    try:
        offline = await again.open_module_store("mod_offline", OfflineStore)
        assert isinstance(offline, OfflineStore)
        rows = await offline.pop_offline("localhost", user)
    finally:
        await again.storage.close()
    return [m for row in rows for m in re.findall(r"id=\"(m\d+)\"", row.packet)]


async def _enable(client: Client) -> None:
    await client.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
    await client.expect(r"<enabled[^>]*/>")


async def test_a_stop_asks_for_acknowledgements_before_shutting_streams(tmp_path: Path) -> None:
    async with limited_server(tmp_path, extra=SM) as server:
        port = server.plain_port  # type: ignore[attr-defined]
        bob = await Client.plain(port)
        await bob.login("bob")
        await _enable(bob)
        alice = await Client.plain(port)
        await alice.login("alice")
        await alice.send("".join(f"<message to='bob@localhost/r' type='chat' id='m{i}'>"
                                 f"<body>{i}</body></message>" for i in range(5)))
        for i in range(5):
            await bob.expect(f"id=\"m{i}\"")
            # bob has not answered the server's <r/> yet (a phone's latency)
            await bob.expect(r"<r xmlns=\"urn:xmpp:sm:3\"/>")
        started = time.monotonic()
        stopping = asyncio.create_task(server.stop())
        # The stop asks again; the client answers with what it received.
        await bob.expect(r"<r xmlns=\"urn:xmpp:sm:3\"/>")
        # A message routed to bob meanwhile is kept, not written: his answer covers all
        # that was written, and this one reaches him once, from offline storage.
        await alice.send("<message to='bob@localhost/r' type='chat' id='m5'><body/></message>")
        # What offline storage would not keep (a headline, a room's message) is written.
        await alice.send("<message to='bob@localhost/r' type='headline' id='h6'><body/>"
                         "</message>")
        await alice.ping()
        await bob.send("<a xmlns='urn:xmpp:sm:3' h='5'/>")
        text = (await bob.closed()).decode()
        assert "<system-shutdown" in text and "m5" not in text and "h6" in text
        await stopping
        print(f"stop with one acknowledging client: {time.monotonic() - started:.3f} s")
    assert await _stored(tmp_path, "bob") == ["m5"]  # the five acknowledged: not again


async def test_a_client_that_does_not_answer_delays_the_stop_by_a_second_at_most(
        tmp_path: Path) -> None:
    async with limited_server(tmp_path, extra=SM) as server:
        port = server.plain_port  # type: ignore[attr-defined]
        bob = await Client.plain(port)
        await bob.login("bob")
        await _enable(bob)
        alice = await Client.plain(port)
        await alice.login("alice")
        await alice.send("<message to='bob@localhost/r' type='chat' id='m0'><body/></message>")
        await bob.expect("id=\"m0\"")
        started = time.monotonic()
        await server.stop()
        elapsed = time.monotonic() - started
        assert "<system-shutdown" in (await bob.closed()).decode()
    assert elapsed < 2.0, elapsed
    # Never acknowledged: stored offline (XEP-0198 §4: the client may see it twice).
    assert await _stored(tmp_path, "bob") == ["m0"]


async def test_a_stop_tells_each_client_how_many_of_its_stanzas_were_handled(
        tmp_path: Path) -> None:
    """XEP-0198 §4 (an <a/> may be sent unasked): without it a client sends again, on its
    next session, what the server handled but had not acknowledged yet (a duplicate)."""
    async with limited_server(tmp_path, extra=SM) as server:
        port = server.plain_port  # type: ignore[attr-defined]
        alice = await Client.plain(port)
        await alice.login("alice")
        await _enable(alice)
        await alice.send("".join(f"<message to='bob@localhost' type='chat' id='m{i}'>"
                                 "<body/></message>" for i in range(3)))
        await alice.send("<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/>"
                         "</iq>")
        await alice.expect("id=\"p\"")
        await server.stop()
        text = (await alice.closed()).decode()
    assert re.search(r"<a xmlns=\"urn:xmpp:sm:3\" h=\"4\"/><stream:error><system-shutdown",
                     text), text


async def test_a_session_waiting_for_its_resumption_at_the_stop_has_its_stanzas_stored(
        tmp_path: Path) -> None:
    """XEP-0198 §5: a client whose connection died leaves its session waiting; a stop then
    ends it, and what it held (received or not) is stored offline, not lost."""
    async with limited_server(tmp_path, extra=SM) as server:
        port = server.plain_port  # type: ignore[attr-defined]
        bob = await Client.plain(port)
        await bob.login("bob")
        await _enable(bob)
        alice = await Client.plain(port)
        await alice.login("alice")
        await alice.send("<message to='bob@localhost/r' type='chat' id='m0'><body/></message>")
        await bob.expect("id=\"m0\"")
        bob.writer.transport.abort()  # the phone lost its network
        session: Any = server.sessions.lookup(JID.parse("bob@localhost/r"))
        await eventually(lambda: session.state.value == "resume_session")
        await alice.send("<message to='bob@localhost/r' type='chat' id='m1'><body/></message>")
        await alice.ping()
        await server.stop()
    assert sorted(await _stored(tmp_path, "bob")) == ["m0", "m1"]
