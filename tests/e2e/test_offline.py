"""XEP-0160 with real clients: messages to an offline account are kept and delivered, in order
and stamped (XEP-0203), when it comes online; a full queue bounces; chat states are not kept."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from suricate.core import hooks as H
from suricate.core.server import Server
from suricate.jid import JID
from suricate.modules.mod_offline import parse_stored
from suricate.xml import ns
from tests.e2e.harness import (
    MODULES_TOML,
    Client,
    RawClient,
    connect,
    disconnect,
    eventually,
    running_server,
)
from tests.e2e.test_roster_presence import iq_reply, raw_session
from tests.e2e.tls_client import logged_in

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


async def test_stored_messages_follow_a_priority_raised_to_non_negative(
        server: Server) -> None:
    """XEP-0160 §2: stored messages are delivered when the account "next sends non-negative
    available presence": a phone that came online with a negative priority (it takes no
    messages to the bare JID, RFC 6121 §8.5.2.1.1) gets them once it raises its priority,
    not only at its next login."""
    await accounts(server, "alice", "bob")
    bob = await connect(server, "bob@localhost/laptop", "bob-pw", plugins=PING)
    bob.send_message(mto="alice@localhost", mbody="while you were away", mtype="chat")
    await stored(server, bob, "alice", 1)

    alice = await connect(server, "alice@localhost/phone", "alice-pw", plugins=PING)
    alice.send_presence(ppriority=-1)
    await alice.plugin["xep_0199"].send_ping("localhost", timeout=5)
    await server.drain(5)
    assert alice.messages.empty()  # XEP-0160 §2 step 5: not to a negative priority
    assert await server.modules["mod_offline"].store.count_offline("localhost", "alice") == 1

    alice.send_presence(ppriority=1)
    msg = await alice.next_message()
    assert msg["body"] == "while you were away"
    assert msg.xml.find(DELAY) is not None
    assert await server.modules["mod_offline"].store.count_offline("localhost", "alice") == 0
    await disconnect(alice, bob)


async def test_a_burst_is_stored_in_order_when_storage_answers_out_of_order(
        server: Server) -> None:
    """Each message's offline path waits for storage (on a database server, the waits end
    in any order): an account's messages still take it one after the other."""
    await accounts(server, "alice", "bob")
    delays = iter([0.05, 0.0, 0.03, 0.0, 0.01] * 2)

    async def slow_storage(stored: bool, *args: object) -> bool:
        await asyncio.sleep(next(delays))  # a database answering each message at its pace
        return stored

    server.hooks.add(H.OFFLINE_MESSAGE, slow_storage, 10)
    try:
        bob = await connect(server, "bob@localhost/laptop", "bob-pw", plugins=PING)
        for n in range(10):
            bob.send_message(mto="alice@localhost", mbody=f"message {n}", mtype="chat")
        await stored(server, bob, "alice", 10)
    finally:
        server.hooks.remove(H.OFFLINE_MESSAGE, slow_storage)
    kept = [parse_stored(m.packet) for m in
            await server.modules["mod_offline"].store.pop_offline("localhost", "alice")]
    assert [m.find_text("body") if m is not None else None for m in kept] == \
        [f"message {n}" for n in range(10)]
    await disconnect(bob)


async def test_messages_sent_as_the_account_comes_online_arrive_in_order(
        server: Server) -> None:
    """Messages still on the offline path when the account comes online are delivered (or
    stored, then delivered) before the ones sent after: none overtakes an earlier one."""
    await accounts(server, "alice", "bob")

    async def slow_storage(stored: bool, *args: object) -> bool:
        await asyncio.sleep(0.03)  # a database's round trip, per message
        return stored

    server.hooks.add(H.OFFLINE_MESSAGE, slow_storage, 10)
    try:
        bob = await connect(server, "bob@localhost/laptop", "bob-pw")
        for n in range(10):
            bob.send_message(mto="alice@localhost", mbody=f"message {n}", mtype="chat")
        alice = await connect(server, "alice@localhost/phone", "alice-pw")
        alice.send_presence()
        await asyncio.sleep(0.1)  # she is online; most of the ten are still on their way
        for n in range(10, 15):
            bob.send_message(mto="alice@localhost", mbody=f"message {n}", mtype="chat")
        bodies = [(await asyncio.wait_for(alice.next_message(), 5))["body"] for _ in range(15)]
        assert bodies == [f"message {n}" for n in range(15)]
    finally:
        server.hooks.remove(H.OFFLINE_MESSAGE, slow_storage)
    await disconnect(alice, bob)


async def test_a_message_stored_as_its_account_comes_online_is_delivered(
        server: Server) -> None:
    """The account's initial presence delivers what is stored; a message whose write ends
    after that delivery read storage is delivered then, not at the next login."""
    await accounts(server, "alice", "bob")
    offline = server.modules["mod_offline"]
    store = offline.store
    writing = asyncio.Event()
    online = asyncio.Event()
    real_store = store.store_offline

    async def slow_write(*args: object) -> None:
        writing.set()
        await asyncio.wait_for(online.wait(), 5)  # alice logs in while this is written
        await real_store(*args)

    store.store_offline = slow_write
    try:
        bob = await connect(server, "bob@localhost/laptop", "bob-pw")
        bob.send_message(mto="alice@localhost", mbody="while you log in", mtype="chat")
        await asyncio.wait_for(writing.wait(), 5)
        alice = await connect(server, "alice@localhost/phone", "alice-pw")
        available = asyncio.Event()
        alice.add_event_handler("presence_available", lambda p: available.set())
        alice.send_presence()
        await asyncio.wait_for(available.wait(), 5)  # her own presence: she is online
        await server.drain(1)  # and her stored messages (none yet) were delivered
        online.set()
        msg = await asyncio.wait_for(alice.next_message(), 5)
        assert msg["body"] == "while you log in"
        assert await store.count_offline("localhost", "alice") == 0
    finally:
        store.store_offline = real_store
    await disconnect(alice, bob)


@pytest.mark.parametrize("stub", [False, True], ids=["offline", "with-offline-stub"])
async def test_full_queue_bounces_resource_constraint(tmp_path: Path, stub: bool) -> None:
    """A message over ``access_max_user_messages`` is answered as MongooseIM 6.4 does:
    resource-constraint (type wait) with its text, not lost. With ``mod_offline_stub``
    too: the stub silences the error for a message nobody stores on purpose, not one a
    full queue refused (it was dropped silently before)."""
    extra = '[access]\nmax_user_offline_messages = [{acl = "all", value = 2}]\n'
    modules = MODULES_TOML + ("\n[modules.mod_offline_stub]\n" if stub else "")
    async with running_server(tmp_path, extra=extra, modules=modules) as server:
        await accounts(server, "alice", "bob")
        bob = await connect(server, "bob@localhost/laptop", "bob-pw", plugins=PING)
        errors: asyncio.Queue[object] = asyncio.Queue()
        bob.add_event_handler("message_error", errors.put_nowait)
        for n in range(3):
            bob.send_message(mto="alice@localhost", mbody=f"message {n}", mtype="chat")
        error = await asyncio.wait_for(errors.get(), 5)
        assert error["error"]["condition"] == "resource-constraint"  # type: ignore[index]
        assert error["error"]["type"] == "wait"  # type: ignore[index]
        assert "queue is full" in error["error"]["text"]  # type: ignore[index]
        assert error["body"] == "message 2"  # type: ignore[index]
        await stored(server, bob, "alice", 2)
        assert errors.empty()  # one answer only
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


async def test_message_of_unknown_type_is_handled_as_normal(server: Server) -> None:
    """RFC 6121 §5.2.2: a message whose 'type' the server does not understand MUST be
    considered "normal": delivered to an available recipient, to the bare JID when its full
    JID is gone (§8.5.3.2.1, as for normal), and stored offline with its body (XEP-0160),
    not bounced service-unavailable. The stanza itself goes on unchanged."""
    await accounts(server, "alice", "bob")
    port = server.c2s_port  # type: ignore[attr-defined]
    foo = ("<message to='{to}' type='foo' id='{id}'><body>{id}</body></message>")

    def online() -> list[str]:
        alice = logged_in(port, "alice", "alice-pw", "phone")
        bob = logged_in(port, "bob", "bob-pw", "laptop")
        try:
            alice.send("<presence/>")
            alice.expect(r"<presence[^>]*/>|<presence[^>]*>.*?</presence>")  # her own
            got = []
            for to, id_ in [("alice@localhost", "bare"), ("alice@localhost/phone", "full"),
                            ("alice@localhost/gone", "gone")]:
                bob.send(foo.format(to=to, id=id_))
                got.append(alice.expect(r"<message[^>]*>.*?</message>").group(0))
            return got
        finally:
            alice.close()
            bob.close()

    bare, full, gone = await asyncio.to_thread(online)
    for msg, id_ in [(bare, "bare"), (full, "full"), (gone, "gone")]:
        assert f"<body>{id_}</body>" in msg, msg
        assert 'type="foo"' in msg, msg

    bob = await asyncio.to_thread(logged_in, port, "bob", "bob-pw", "laptop")
    try:
        await asyncio.to_thread(bob.send, foo.format(to="alice@localhost", id="stored"))
        await asyncio.to_thread(bob.send, "<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/>"
                                "</iq>")
        await asyncio.to_thread(bob.expect, r"<iq[^>]*id=\"p1\"")
        await server.drain(5)  # the offline path (and any bounce) is done
        await asyncio.to_thread(bob.send, "<iq type='get' id='p2'><ping xmlns='urn:xmpp:ping'/>"
                                "</iq>")
        # everything that came before the second pong: a bounce would be there
        before = await asyncio.to_thread(bob.expect, r"^(.*?)<iq[^>]*id=\"p2\"")
    finally:
        bob.close()
    assert "<message" not in before.group(1), before.group(1)
    assert await server.modules["mod_offline"].store.count_offline("localhost", "alice") == 1

    def login() -> str:
        alice = logged_in(port, "alice", "alice-pw", "phone")
        try:
            alice.send("<presence/>")
            return alice.expect(r"<message[^>]*>.*?</message>").group(0)
        finally:
            alice.close()

    assert "<body>stored</body>" in await asyncio.to_thread(login)


async def test_a_flood_larger_than_the_stream_management_buffer_is_delivered(
        tmp_path: Path) -> None:
    """A phone with stream management (XEP-0198, buffer_max 100 by default, as MongooseIM)
    logs in to more stored messages than that: it gets them all, the stream goes on (it
    ended with resource-constraint "too many unacknowledged stanzas" before, every login
    again, the messages going back to storage each time). If the connection then dies, what
    the phone acknowledged stays delivered and the rest goes back to storage, in order,
    keeping its first stamp."""
    count = 150
    extra = '[access]\nmax_user_offline_messages = [{acl = "all", value = 1000}]\n'
    modules = MODULES_TOML + "\n[modules.mod_stream_management]\nresume_timeout = 1\n"
    async with running_server(tmp_path, extra=extra, modules=modules) as server:
        await accounts(server, "alice", "bob")
        port = server.c2s_port  # type: ignore[attr-defined]
        store = server.modules["mod_offline"].store

        def send() -> None:
            bob = logged_in(port, "bob", "bob-pw", "laptop")
            try:
                for n in range(count):
                    bob.send(f"<message to='alice@localhost' type='chat' id='m{n}'>"
                             f"<body>message {n}</body></message>")
                bob.send("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
                bob.expect(r"<iq[^>]*id=\"p1\"")
            finally:
                bob.close()

        await asyncio.to_thread(send)
        # One account's messages are stored one after the other: with PostgreSQL 2 ms away,
        # about 50 ms each (docs/delivery.md, "A database a few milliseconds away").
        await server.drain(30)
        assert await store.count_offline("localhost", "alice") == count

        def phone() -> list[str]:
            alice = logged_in(port, "alice", "alice-pw", "phone")
            try:
                alice.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
                alice.expect(r"<enabled[^>]*>")
                alice.send("<presence/>")
                ids = [alice.expect(r"<message[^>]*id=\"(m\d+)\"").group(1)
                       for _ in range(count)]
                alice.send("<iq type='get' id='p2'><ping xmlns='urn:xmpp:ping'/></iq>")
                alice.expect(r"<iq[^>]*id=\"p2\"")  # the stream is still there
                # her own presence and the first 50 messages handled; then the train's tunnel
                alice.send("<a xmlns='urn:xmpp:sm:3' h='51'/>")
                alice.send("<iq type='get' id='p3'><ping xmlns='urn:xmpp:ping'/></iq>")
                alice.expect(r"<iq[^>]*id=\"p3\"")
            finally:
                alice.close()
            return ids

        assert await asyncio.to_thread(phone) == [f"m{n}" for n in range(count)]

        async def back_in_storage() -> bool:
            return await store.count_offline("localhost", "alice") == count - 50

        await eventually(back_in_storage, timeout=10)  # resume_timeout: 1 s
        kept = [parse_stored(m.packet) for m in await store.pop_offline("localhost", "alice")]
        assert [m.attrs["id"] for m in kept if m is not None] == \
            [f"m{n}" for n in range(50, count)]
        for m in kept:
            assert m is not None and len(m.find_all("delay", ns.DELAY)) == 1


async def test_a_message_sent_while_stored_ones_are_read_comes_after_them(
        server: Server) -> None:
    """Messages sent to an account after it came online arrive after those stored while it
    was away, even when reading storage takes a while (a busy database): before, the new one
    went straight to the session and overtook the stored ones (RFC 6120 §10.1)."""
    await accounts(server, "alice", "bob")
    bob = await connect(server, "bob@localhost/laptop", "bob-pw", plugins=PING)
    for n in range(3):
        bob.send_message(mto="alice@localhost", mbody=f"stored {n}", mtype="chat")
    await stored(server, bob, "alice", 3)

    store = server.modules["mod_offline"].store
    real_pop = store.pop_offline
    reading = asyncio.Event()
    release = asyncio.Event()

    async def slow_pop(*args: object, **kwargs: object) -> object:
        reading.set()
        await asyncio.wait_for(release.wait(), 5)  # the database answers later
        return await real_pop(*args, **kwargs)

    store.pop_offline = slow_pop
    try:
        alice = await connect(server, "alice@localhost/phone", "alice-pw")
        alice.send_presence()
        await asyncio.wait_for(reading.wait(), 5)  # she is online, storage is being read
        bob.send_message(mto="alice@localhost", mbody="live", mtype="chat")
        await bob.plugin["xep_0199"].send_ping("localhost", timeout=5)  # routed by now
        release.set()
        bodies = [(await alice.next_message())["body"] for _ in range(4)]
    finally:
        store.pop_offline = real_pop
    assert bodies == ["stored 0", "stored 1", "stored 2", "live"]
    await disconnect(alice, bob)


async def _offline_backlog(server: Server, count: int) -> tuple[RawClient, RawClient]:
    """alice (raw, direct TLS) and bob's bound, not yet available session; ``count`` messages
    from alice stored for bob."""
    await accounts(server, "alice", "bob")
    alice = await raw_session(server, "alice", "alice-pw", "desk")
    await alice.send("".join(f"<message to='bob@localhost' type='chat'><body>stored {n}</body>"
                             "</message>" for n in range(count))
                     + "<iq type='get' id='s'><ping xmlns='urn:xmpp:ping'/></iq>")
    await alice.expect(iq_reply("s"))
    await server.drain(5)
    assert await server.modules["mod_offline"].store.count_offline("localhost", "bob") == count
    bob = await raw_session(server, "bob", "bob-pw", "phone")
    return alice, bob


async def _bodies(server: Server, client: RawClient, last: str) -> list[str]:
    """The bodies ``client`` got up to ``last``, and anything more routed meanwhile (a
    duplicate would be there): up to the answer to a ping sent once the server is idle."""
    # \A: a search that may start anywhere retries each position, quadratic in the backlog.
    got = await client.expect(rf"\A.*?<body>{last}</body>", timeout=10)
    await server.drain(5)
    await client.send("<iq type='get' id='end'><ping xmlns='urn:xmpp:ping'/></iq>")
    got += await client.expect(r"\A.*?" + iq_reply("end"))
    return re.findall(r"<body>(.*?)</body>", got)


async def test_messages_routed_with_the_initial_presence_come_after_the_stored_ones(
        server: Server) -> None:
    """The contact's messages reach the server in the same instant as the account's initial
    presence (one write each, read in the same turn of the server's loop): each arrives once,
    after the 30 stored messages. Before, the stored ones were taken out in a task, and
    whatever was routed before that task took the account's offline turn went straight to
    the session (or, routed just before the presence, took the turn first), overtaking them
    (RFC 6120 §10.1, XEP-0160)."""
    alice, bob = await _offline_backlog(server, 30)
    try:
        bob.writer.write(b"<presence/>")
        alice.writer.write("".join(
            f"<message to='bob@localhost' type='chat'><body>live {n}</body></message>"
            for n in range(10)).encode())
        await asyncio.gather(bob.writer.drain(), alice.writer.drain())
        bodies = await _bodies(server, bob, "live 9")
        assert bodies == [f"stored {n}" for n in range(30)] + [f"live {n}" for n in range(10)]
        assert not server.router._turns_held  # noqa: SLF001 - nothing keeps the turn
    finally:
        await alice.close()
        await bob.close()


async def test_messages_to_the_full_and_bare_jid_wait_for_the_stored_ones(
        server: Server) -> None:
    """A contact answers the account's presence at once, to its full JID and to its bare JID,
    while other user_available work is still running (mod_pubsub's last items reading its
    database, say: it ran before mod_offline's delivery in the same hook) and the storage is
    still being read. Everything comes after the stored messages, in the order sent, once
    each."""
    alice, bob = await _offline_backlog(server, 30)
    started, release = asyncio.Event(), asyncio.Event()
    store = server.modules["mod_offline"].store
    real_pop = store.pop_offline

    async def slow_neighbour(acc: None, c2s: object) -> None:
        started.set()
        await asyncio.wait_for(release.wait(), 5)

    async def slow_pop(*args: object, **kwargs: object) -> object:
        await asyncio.wait_for(release.wait(), 5)  # the database answers later
        return await real_pop(*args, **kwargs)

    server.hooks.add(H.USER_AVAILABLE, slow_neighbour, 0)
    store.pop_offline = slow_pop
    try:
        await bob.send("<presence/>")
        await asyncio.wait_for(started.wait(), 5)  # bob is available
        await alice.send("".join(
            f"<message to='bob@localhost{'/phone' if n % 2 else ''}' type='chat'>"
            f"<body>live {n}</body></message>" for n in range(10))
            + "<iq type='get' id='r'><ping xmlns='urn:xmpp:ping'/></iq>")
        await alice.expect(iq_reply("r"))  # all ten routed
        release.set()
        bodies = await _bodies(server, bob, "live 9")
        assert bodies == [f"stored {n}" for n in range(30)] + [f"live {n}" for n in range(10)]
    finally:
        release.set()
        server.hooks.remove(H.USER_AVAILABLE, slow_neighbour)
        store.pop_offline = real_pop
        await alice.close()
        await bob.close()
