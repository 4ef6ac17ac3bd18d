"""Nothing lost: graceful shutdown stores what is in flight, a failing module handler is
answered with internal-server-error on a connection that stays up, a database outage fails
operations loudly and recovers."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from suricate.config import parse_config
from suricate.core import hooks as H
from suricate.core.iq import IqRequest
from suricate.core.router import Router
from suricate.core.server import Server
from suricate.jid import JID
from suricate.modules import MODULES
from suricate.modules.mod_offline.store import OfflineStore
from suricate.xml.element import Element
from tests.robustness.conftest import Client, limited_server

MESSAGES = 300


async def test_shutdown_stores_every_message_in_flight(tmp_path: Path) -> None:
    accepted: list[str] = []
    stopping: list[asyncio.Task[None]] = []

    def record(stanza: Element | None, c2s: Any) -> Element | None:
        # Everything the server took from alice must reach bob or an offline store.
        if stanza is not None and stanza.name == "message":
            accepted.append(stanza.attrs["id"])
            if len(accepted) == MESSAGES // 2:
                # SIGTERM in the middle of the burst (the CLI's handler calls the same stop)
                stopping.append(asyncio.get_running_loop().create_task(server.stop()))
        return stanza

    quota = '[access]\nmax_user_offline_messages = [{acl = "all", value = 1000}]'
    async with limited_server(tmp_path, users=("alice", "bob", "carol"), extra=quota) as server:
        port = server.plain_port  # type: ignore[attr-defined]
        server.hooks.add(H.USER_SEND_PACKET, record, priority=0)
        bob = await Client.plain(port)
        await bob.login("bob")
        await bob.send("<presence/>")
        alice = await Client.plain(port)
        await alice.login("alice")
        await alice.ping()
        # Half to bob (online), half to carol (offline: each one a storage task in flight
        # when the server is told to stop).
        await alice.send("".join(
            f"<message to='{'bob' if i % 2 else 'carol'}@localhost' id='m{i}' type='chat'>"
            f"<body>{i}</body></message>" for i in range(MESSAGES)))
        for client in (alice, bob):
            text = (await client.closed(timeout=10)).decode()
            assert "<system-shutdown" in text and text.endswith("</stream:stream>")
        await asyncio.gather(*stopping)
        received = set(re.findall(r"<message [^>]*id=\"(m\d+)\"", bob.buffer.decode()))
        assert not any(listener.server is not None and listener.server.is_serving()
                       for listener in server.listeners)

    # The same database, opened again: what bob did not get, and all of carol's, is stored.
    cfg = parse_config(_storage_only(tmp_path), tmp_path)
    again = Server(cfg, tmp_path, MODULES)
    await again.storage.open()
    try:
        offline = await again.open_module_store("mod_offline", OfflineStore)
        assert isinstance(offline, OfflineStore)
        stored = [*await offline.pop_offline("localhost", "bob"),
                  *await offline.pop_offline("localhost", "carol")]
    finally:
        await again.storage.close()
    stored_ids = [m for msg in stored for m in re.findall(r"id=\"(m\d+)\"", msg.packet)]
    assert len(accepted) >= MESSAGES // 2
    assert sorted(accepted) == sorted([*received, *stored_ids]), (
        len(accepted), len(received), len(stored_ids))  # each exactly once
    assert stored_ids, "nothing was in flight"
    print(f"shutdown: accepted={len(accepted)} delivered={len(received)} "
          f"stored={len(stored_ids)}")


def _storage_only(tmp: Path) -> str:
    return f"""
[general]
hosts = ["localhost"]
default_server_domain = "localhost"
[outgoing_pools.rdbms.default.connection]
driver = "sqlite"
database = "{tmp / 'suricate.db'}"
"""


async def test_a_failing_iq_handler_is_answered_and_the_connection_kept(tmp_path: Path) -> None:
    def broken(iq: IqRequest) -> Element:
        raise RuntimeError("a bug in a module")

    async with limited_server(tmp_path) as server:
        server.iq.register("local", "urn:example:broken", broken)
        client = await Client.plain(server.plain_port)  # type: ignore[attr-defined]
        await client.login("alice")
        await client.send("<iq type='get' id='b1' to='localhost'>"
                          "<query xmlns='urn:example:broken'/></iq>")
        reply = await client.expect(r"<iq [^>]*id=\"b1\".*?</iq>")
        assert "type=\"error\"" in reply and "<internal-server-error" in reply
        await client.ping()  # still connected
        await client.close()


async def test_a_failure_while_routing_is_answered_and_the_connection_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with limited_server(tmp_path) as server:
        original = Router._route_local

        def route_local(self: Router, frm: JID, to: JID, stanza: Element) -> None:
            if stanza.attrs.get("id") == "boom" and to.local == "bob":
                raise RuntimeError("a bug on the routing path")
            original(self, frm, to, stanza)

        monkeypatch.setattr(Router, "_route_local", route_local)
        client = await Client.plain(server.plain_port)  # type: ignore[attr-defined]
        await client.login("alice")
        await client.send("<message to='bob@localhost' id='boom'><body>x</body></message>")
        reply = await client.expect(r"<message [^>]*id=\"boom\".*?</message>")
        assert "type=\"error\"" in reply and "<internal-server-error" in reply
        await client.ping()
        await client.close()


async def test_a_failing_hook_handler_is_skipped(tmp_path: Path) -> None:
    def broken(stanza: Element | None, c2s: Any) -> Element | None:
        raise RuntimeError("a bug in a filter")

    async with limited_server(tmp_path) as server:
        server.hooks.add(H.USER_RECEIVE_PACKET, broken)
        port = server.plain_port  # type: ignore[attr-defined]
        bob = await Client.plain(port)
        await bob.login("bob")
        await bob.send("<presence/>")
        await bob.ping()
        alice = await Client.plain(port)
        await alice.login("alice")
        await alice.send("<message to='bob@localhost' id='x1' type='chat'><body>hi</body>"
                         "</message>")
        await bob.expect("<body>hi</body>")
        await alice.ping()
        await alice.close()
        await bob.close()


async def test_a_database_outage_fails_loudly_and_recovers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with limited_server(tmp_path) as server:
        port = server.plain_port  # type: ignore[attr-defined]
        alice = await Client.plain(port)
        await alice.login("alice")
        storage = type(server.modules["mod_offline"].store)
        real_store = storage.store_offline

        async def down(*args: Any, **kwargs: Any) -> None:
            raise ConnectionError("database unreachable")

        monkeypatch.setattr(storage, "store_offline", down)
        await alice.send("<message to='bob@localhost' id='lost?' type='chat'><body>1</body>"
                         "</message>")
        reply = await alice.expect(r"<message [^>]*id=\"lost\?\".*?</message>")
        # not stored, and alice knows it (not service-unavailable: bob could take it)
        assert "<internal-server-error" in reply

        monkeypatch.setattr(storage, "store_offline", real_store)
        await alice.send("<message to='bob@localhost' id='kept' type='chat'><body>2</body>"
                         "</message>")
        await alice.ping()
        await server.drain()
        bob = await Client.plain(port)
        await bob.login("bob")
        await bob.send("<presence/>")
        text = await bob.expect(r"<message [^>]*id=\"kept\".*?</message>")
        assert "<body>2</body>" in text
        await bob.ping()
        assert "lost?" not in bob.buffer.decode()
        await alice.close()
        await bob.close()
