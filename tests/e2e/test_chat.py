"""Two real clients (slixmpp) log in and chat."""

from __future__ import annotations

from suricate.core.server import Server
from suricate.jid import JID
from tests.e2e.harness import connect, disconnect


async def test_two_clients_chat_over_starttls_and_direct_tls(server: Server) -> None:
    await server.auth.register(JID.parse("alice@localhost"), "alice-pw")
    await server.auth.register(JID.parse("bob@localhost"), "bob-pw")
    alice = await connect(server, "alice@localhost/phone", "alice-pw")
    bob = await connect(server, "bob@localhost/laptop", "bob-pw", direct_tls=True)
    alice.send_message(mto="bob@localhost/laptop", mbody="hello bob", mtype="chat")
    msg = await bob.next_message()
    assert msg["body"] == "hello bob"
    assert msg["from"] == "alice@localhost/phone"
    bob.send_message(mto="alice@localhost/phone", mbody="hi alice", mtype="chat")
    msg = await alice.next_message()
    assert msg["body"] == "hi alice"
    assert msg["from"] == "bob@localhost/laptop"
    await disconnect(alice, bob)
