"""XEP-0160 with real clients: messages to an offline account are kept and delivered, in order
and stamped (XEP-0203), when it comes online; a full queue bounces; chat states are not kept."""

from __future__ import annotations

import asyncio
from pathlib import Path

from suricate.core.server import Server
from suricate.jid import JID
from tests.e2e.harness import Client, connect, disconnect, running_server

DELAY = "{urn:xmpp:delay}delay"
PING = ("xep_0199",)


async def accounts(server: Server, *names: str) -> None:
    for name in names:
        await server.auth.register(JID.parse(f"{name}@localhost"), f"{name}-pw")


async def stored(server: Server, sender: Client, user: str, count: int) -> None:
    """Once the server has read what ``sender`` sent (it answered a later ping on the same
    stream) and finished the storage work it started, ``user`` has ``count`` messages."""
    await sender.plugin["xep_0199"].send_ping("localhost", timeout=5)
    await server.drain(5)
    assert await server.modules["mod_offline"].store.count_offline("localhost", user) == count


async def test_offline_messages_are_delivered_in_order_with_delay(server: Server) -> None:
    await accounts(server, "alice", "bob")
    bob = await connect(server, "bob@localhost/laptop", "bob-pw", plugins=PING)
    for n in range(3):
        bob.send_message(mto="alice@localhost", mbody=f"message {n}", mtype="chat")
    await stored(server, bob, "alice", 3)

    alice = await connect(server, "alice@localhost/phone", "alice-pw")
    alice.send_presence()  # XEP-0160 §2: non-negative available presence releases them
    bodies = []
    for _ in range(3):
        msg = await alice.next_message()
        delay = msg.xml.find(DELAY)
        assert delay is not None
        assert delay.get("from") == "localhost"
        assert delay.get("stamp", "").endswith("Z")
        assert msg["from"] == "bob@localhost/laptop"
        bodies.append(msg["body"])
    assert bodies == ["message 0", "message 1", "message 2"]
    assert await server.modules["mod_offline"].store.count_offline("localhost", "alice") == 0
    await disconnect(alice, bob)


async def test_full_queue_bounces_service_unavailable(tmp_path: Path) -> None:
    extra = '[access]\nmax_user_offline_messages = [{acl = "all", value = 2}]\n'
    async with running_server(tmp_path, extra=extra) as server:
        await accounts(server, "alice", "bob")
        bob = await connect(server, "bob@localhost/laptop", "bob-pw", plugins=PING)
        errors: asyncio.Queue[object] = asyncio.Queue()
        bob.add_event_handler("message_error", errors.put_nowait)
        for n in range(3):
            bob.send_message(mto="alice@localhost", mbody=f"message {n}", mtype="chat")
        error = await asyncio.wait_for(errors.get(), 5)
        assert error["error"]["condition"] == "service-unavailable"  # type: ignore[index]
        assert error["body"] == "message 2"  # type: ignore[index]
        await stored(server, bob, "alice", 2)
        await disconnect(bob)


async def test_standalone_chat_state_is_not_stored_nor_bounced(server: Server) -> None:
    await accounts(server, "alice", "bob")
    bob = await connect(server, "bob@localhost/laptop", "bob-pw", plugins=PING)
    errors: asyncio.Queue[object] = asyncio.Queue()
    bob.add_event_handler("message_error", errors.put_nowait)
    bob.send_raw("<message to='alice@localhost' type='chat'>"
                 "<composing xmlns='http://jabber.org/protocol/chatstates'/></message>")
    bob.send_message(mto="alice@localhost", mbody="real content", mtype="chat")
    await stored(server, bob, "alice", 1)
    await bob.plugin["xep_0199"].send_ping("localhost", timeout=5)  # a bounce would be before
    assert errors.empty()
    await disconnect(bob)
