"""MUC Light (MongooseIM's urn:xmpp:muclight:0) between two Redis nodes: two real ``suricate
serve`` processes sharing the real Redis and one SQLite file, real slixmpp clients (the MUC
Light IQs as raw XML, slixmpp has no plugin for them).

A room delivers to each member's sessions itself (a groupchat message to a bare JID is not
routed, RFC 6121 §8.5.2.1.1), and it did so only to the sessions of the node that handled the
stanza: a member connected to another node had every room message stored offline (and got it
only at its next login), and a member with devices on both nodes got it on one of them. What is
proven: a member whose only session is on the other node gets the message live and not again
from offline storage; a member with a session on each node gets it on both, once each.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import StanzaPath

from tests.cluster.test_redis_nodes import Node, _rows
from tests.cluster.test_sm_nodes import _two_nodes
from tests.cluster.test_workers import LIMIT
from tests.e2e.harness import MODULES_TOML, connect, disconnect, eventually

pytestmark = pytest.mark.xdist_group("redis_nodes")

MODULES = MODULES_TOML + "\n[modules.mod_muc_light]\n"
ROOM = "crew@muclight.localhost"
NS = "urn:xmpp:muclight:0"


@pytest.fixture
def nodes(tmp_path: Path, redis_db: int) -> Any:
    # Room for three sessions of an account (bob's phone, laptop and tablet).
    yield from _two_nodes(tmp_path, redis_db, MODULES, LIMIT.replace("value = 2", "value = 3"))


async def _client(node: Node, jid: str) -> Any:
    client: Any = await connect(node, jid, "pw")  # type: ignore[arg-type]
    client.bodies = asyncio.Queue()
    client.register_handler(Callback("room messages", StanzaPath("message@type=groupchat"),
                                     lambda msg: msg["body"] and client.bodies.put_nowait(
                                         str(msg["body"]))))
    client.send_presence()
    return client


async def _bodies(client: Any, wait: float = 0.5) -> list[str]:
    """The room messages with a body that reached ``client`` within ``wait`` seconds (the
    affiliation notifications have none)."""
    got: list[str] = []
    try:
        while True:
            got.append(await asyncio.wait_for(client.bodies.get(), wait))
    except TimeoutError:
        return got


def test_members_on_other_nodes_get_room_messages_live(nodes: tuple[Node, Node, int]) -> None:
    a, b, db = nodes

    async def run() -> None:
        alice = await _client(a, "alice@localhost/a")
        bob_b = await _client(b, "bob@localhost/b")
        carol_a, carol_b = (await _client(a, "carol@localhost/a"),
                            await _client(b, "carol@localhost/b"))
        clients = [alice, bob_b, carol_a, carol_b]
        bob_again: Any = None
        try:
            await eventually(lambda: len(_rows(db, "carol@localhost")) == 2
                             and len(_rows(db, "bob@localhost")) == 1)
            create = alice.make_iq_set(ito=ROOM)
            create.xml.append(ET.fromstring(
                f"<query xmlns='{NS}#create'><configuration><roomname>Crew</roomname>"
                f"</configuration><occupants><user affiliation='member'>bob@localhost</user>"
                f"<user affiliation='member'>carol@localhost</user></occupants></query>"))
            await create.send(timeout=5)
            alice.send_message(mto=ROOM, mbody="hello crew", mtype="groupchat")
            assert await _bodies(bob_b) == ["hello crew"]
            assert await _bodies(carol_a) == ["hello crew"]
            assert await _bodies(carol_b) == ["hello crew"]
            # Nothing waits in bob's offline storage: a new session of his gets nothing.
            bob_b.disconnect()
            await eventually(lambda: not _rows(db, "bob@localhost"))
            bob_again = await _client(a, "bob@localhost/again")
            clients.append(bob_again)
            assert await _bodies(bob_again, 1.0) == []
        finally:
            await disconnect(*clients)

    asyncio.run(run())
