"""XEP-0191 with real clients (slixmpp's xep_0191): block, what a block stops in each
direction, pushes to the other resources, unblock, and offline messages from a blocked JID.

"Nothing arrived" is shown without sleeping: the sender's stanza is followed by a ping the
server answers on the same stream (so the server has handled it), then the recipient pings:
anything routed to it earlier would have been written before that pong.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from slixmpp.exceptions import IqError

from suricate.core.server import Server
from suricate.jid import JID
from tests.e2e.harness import Client, connect, disconnect

PLUGINS = ("xep_0030", "xep_0191", "xep_0199")
BLOCKED_ERRORS = "urn:xmpp:blocking:errors"
STANZA_ERRORS = "urn:ietf:params:xml:ns:xmpp-stanzas"


async def barrier(*clients: Client) -> None:
    for client in clients:
        await client.plugin["xep_0199"].send_ping("localhost", timeout=5)


def message_errors(client: Client) -> asyncio.Queue[Any]:
    queue: asyncio.Queue[Any] = asyncio.Queue()
    client.add_event_handler("message_error", queue.put_nowait)
    return queue


async def accounts(server: Server, *names: str) -> None:
    for name in names:
        await server.auth.register(JID.parse(f"{name}@localhost"), f"{name}-pw")


async def test_block_stops_both_directions_and_unblock_restores(server: Server) -> None:
    await accounts(server, "alice", "bob")
    alice = await connect(server, "alice@localhost/phone", "alice-pw", plugins=PLUGINS)
    bob = await connect(server, "bob@localhost/laptop", "bob-pw", plugins=PLUGINS)
    alice_errors = message_errors(alice)
    bob_errors = message_errors(bob)

    assert await alice.plugin["xep_0191"].get_blocked_jids() == set()
    await alice.plugin["xep_0191"].block("bob@localhost")
    assert await alice.plugin["xep_0191"].get_blocked_jids() == {"bob@localhost"}

    # Inbound: bob's message never reaches alice, and bob is not told (silent drop).
    bob.send_message(mto="alice@localhost/phone", mbody="can you hear me?", mtype="chat")
    await barrier(bob, alice)
    assert alice.messages.empty()
    assert bob_errors.empty()

    # Outbound: alice's message to bob is refused with not-acceptable + <blocked/> (§3.3).
    alice.send_message(mto="bob@localhost/laptop", mbody="hello?", mtype="chat")
    error = await asyncio.wait_for(alice_errors.get(), 5)
    assert error["error"]["condition"] == "not-acceptable"
    assert error.xml.find(f"{{jabber:client}}error/{{{BLOCKED_ERRORS}}}blocked") is not None
    assert (await alice.next_message())["type"] == "error"  # slixmpp queues it there too
    await barrier(alice, bob)
    assert bob.messages.empty()

    # Inbound IQ get from the blocked contact: service-unavailable, as from an offline user.
    iq = bob.make_iq_get(queryxmlns="jabber:iq:version", ito="alice@localhost/phone")
    with pytest.raises(IqError) as refused:
        await iq.send(timeout=5)
    assert refused.value.condition == "service-unavailable"

    await alice.plugin["xep_0191"].unblock("bob@localhost")
    bob.send_message(mto="alice@localhost/phone", mbody="and now?", mtype="chat")
    msg = await alice.next_message()
    assert msg["body"] == "and now?"
    await disconnect(alice, bob)


async def test_block_is_pushed_to_resources_that_asked_for_the_list(server: Server) -> None:
    await accounts(server, "alice")
    phone = await connect(server, "alice@localhost/phone", "alice-pw", plugins=PLUGINS)
    tablet = await connect(server, "alice@localhost/tablet", "alice-pw", plugins=PLUGINS)
    watcher = await connect(server, "alice@localhost/watch", "alice-pw", plugins=PLUGINS)
    pushes: dict[str, asyncio.Queue[Any]] = {}
    for name, client in (("tablet", tablet), ("watch", watcher)):
        queue: asyncio.Queue[Any] = asyncio.Queue()
        client.add_event_handler("blocked", queue.put_nowait)
        client.add_event_handler("unblocked", queue.put_nowait)
        pushes[name] = queue
    await tablet.plugin["xep_0191"].get_blocked()  # the watch never asks

    await phone.plugin["xep_0191"].block(["mallory@evil.example", "spam.example"])
    push = await asyncio.wait_for(pushes["tablet"].get(), 5)
    assert {item["jid"] for item in push["block"]} == {"mallory@evil.example", "spam.example"}

    await phone.plugin["xep_0191"].unblock(["spam.example"])
    push = await asyncio.wait_for(pushes["tablet"].get(), 5)
    assert [item["jid"] for item in push["unblock"]] == ["spam.example"]

    await barrier(watcher)
    assert pushes["watch"].empty()  # §3.3: only resources that requested the blocklist
    await disconnect(phone, tablet, watcher)


async def test_offline_messages_from_a_blocked_jid_are_not_stored(server: Server) -> None:
    await accounts(server, "alice", "bob", "carol")
    await server.modules["mod_blocking"].store.block("localhost", "alice", ["bob@localhost"])
    bob = await connect(server, "bob@localhost/laptop", "bob-pw", plugins=PLUGINS)
    bob_errors = message_errors(bob)
    bob.send_message(mto="alice@localhost", mbody="are you there?", mtype="chat")
    bob.send_message(mto="carol@localhost", mbody="are you there?", mtype="chat")
    await barrier(bob)
    await server.drain(5)
    assert await server.modules["mod_offline"].store.count_offline("localhost", "alice") == 0
    assert await server.modules["mod_offline"].store.count_offline("localhost", "carol") == 1
    await barrier(bob)
    assert bob_errors.empty()
    await disconnect(bob)


async def test_blocked_domain_covers_its_users(server: Server) -> None:
    await accounts(server, "alice", "bob")
    alice = await connect(server, "alice@localhost/phone", "alice-pw", plugins=PLUGINS)
    bob = await connect(server, "bob@localhost/laptop", "bob-pw", plugins=PLUGINS)
    await alice.plugin["xep_0191"].block("localhost")
    bob.send_message(mto="alice@localhost/phone", mbody="hi", mtype="chat")
    # The server itself and alice's own account stay reachable: the pings still work.
    await barrier(bob, alice)
    assert alice.messages.empty()
    await disconnect(alice, bob)
