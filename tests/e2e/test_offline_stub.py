"""mod_offline_stub with real clients: without mod_offline a message to an offline account is
answered service-unavailable (RFC 6121 §8.5.2.2.1); with the stub it is dropped silently,
while a message to an account that does not exist is still answered (§8.5.1), and mod_mam
still archives the message."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from suricate.core.server import Server
from suricate.jid import JID
from tests.e2e.harness import (
    ALL_MODULES,
    Client,
    connect,
    disconnect,
    eventually,
    running_server,
)
from tests.mam.conftest import MAM_TOML

PING = ("xep_0199",)
WITHOUT_OFFLINE = [m for m in ALL_MODULES if m != "mod_offline"]


def modules(*names: str) -> str:
    return "\n".join(f"[modules.{m}]" for m in names)


async def sender(server: Server) -> tuple[Client, asyncio.Queue[Any]]:
    for name in ("alice", "bob"):
        await server.auth.register(JID.parse(f"{name}@localhost"), f"{name}-pw")
    bob = await connect(server, "bob@localhost/laptop", "bob-pw", plugins=PING)
    errors: asyncio.Queue[Any] = asyncio.Queue()
    bob.add_event_handler("message_error", errors.put_nowait)
    return bob, errors


async def settled(server: Server, client: Client) -> None:
    """The server read what ``client`` sent before (it answered a later ping on the same
    stream) and finished the offline work it started: any bounce is on its way back."""
    await client.plugin["xep_0199"].send_ping("localhost", timeout=5)
    await server.drain(5)
    await client.plugin["xep_0199"].send_ping("localhost", timeout=5)


async def test_without_offline_storage_the_sender_is_told(tmp_path: Path) -> None:
    async with running_server(tmp_path, modules=modules(*WITHOUT_OFFLINE)) as server:
        bob, errors = await sender(server)
        bob.send_message(mto="alice@localhost", mbody="are you there?", mtype="chat")
        error = await asyncio.wait_for(errors.get(), 5)
        assert error["error"]["condition"] == "service-unavailable"
        assert error["body"] == "are you there?"
        await disconnect(bob)


async def test_stub_drops_the_message_silently(tmp_path: Path) -> None:
    names = (*WITHOUT_OFFLINE, "mod_offline_stub")
    async with running_server(tmp_path, modules=modules(*names)) as server:
        bob, errors = await sender(server)
        bob.send_message(mto="alice@localhost", mbody="are you there?", mtype="chat")
        bob.send_message(mto="alice@localhost", mbody="normal one")  # type normal too
        await settled(server, bob)
        assert errors.empty()
        # RFC 6121 §8.5.1: no such account is a different matter, and still answered.
        bob.send_message(mto="nobody@localhost", mbody="hello?", mtype="chat")
        error = await asyncio.wait_for(errors.get(), 5)
        assert error["error"]["condition"] == "service-unavailable"
        assert error["body"] == "hello?"
        # Nothing was kept: alice coming online finds no message.
        alice = await connect(server, "alice@localhost/phone", "alice-pw", plugins=PING)
        alice.send_presence()
        await settled(server, alice)
        assert alice.messages.empty()
        await disconnect(alice, bob)


async def test_stub_leaves_mod_offline_storing(tmp_path: Path) -> None:
    names = (*ALL_MODULES, "mod_offline_stub")
    async with running_server(tmp_path, modules=modules(*names)) as server:
        bob, errors = await sender(server)
        bob.send_message(mto="alice@localhost", mbody="kept", mtype="chat")
        await settled(server, bob)
        assert errors.empty()
        store = server.modules["mod_offline"].store
        assert await store.count_offline("localhost", "alice") == 1
        await disconnect(bob)


async def test_with_mam_the_dropped_message_is_still_archived(tmp_path: Path) -> None:
    # The deployment the stub is for: no mod_offline, the archive keeps the conversation.
    names = (*WITHOUT_OFFLINE, "mod_offline_stub")
    async with running_server(tmp_path, modules=modules(*names) + MAM_TOML) as server:
        bob, errors = await sender(server)
        bob.send_message(mto="alice@localhost", mbody="read me later", mtype="chat")
        await settled(server, bob)
        assert errors.empty()
        alice = await connect(server, "alice@localhost/phone", "alice-pw",
                              plugins=("xep_0059", "xep_0313"))

        async def archived() -> list[str]:
            return [str(m["mam_result"]["forwarded"]["stanza"]["body"])
                    async for m in alice.plugin["xep_0313"].iterate(rsm={"max": 10})]

        await eventually(lambda: archived(), timeout=5)
        assert await archived() == ["read me later"]
        await disconnect(alice, bob)
