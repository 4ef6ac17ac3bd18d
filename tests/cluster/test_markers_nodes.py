"""XEP-0333 chat markers and the inbox (MongooseIM's) of a mod_muc room whose occupants are on
two nodes (``sm_backend = "redis"``): two real ``suricate serve`` processes sharing the real
Redis and one SQLite file, slixmpp clients. The room lives on node A; bob is in it from his
laptop on A and his phone on B, each node delivering to its own session."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from slixmpp import JID as SJID

from tests.cluster.test_redis_nodes import Node
from tests.cluster.test_sm_nodes import _two_nodes
from tests.cluster.test_workers import LIMIT
from tests.e2e.harness import MODULES_TOML, Client, disconnect, eventually
from tests.inbox.conftest import INBOX_TOML
from tests.inbox.test_inbox import MARKERS, SMART, inbox, iq, login
from tests.muc.conftest import create_instant, next_groupchat

pytestmark = pytest.mark.xdist_group("redis_nodes")

ROOM = "room@conference.localhost"


@pytest.fixture
def nodes(tmp_path: Path, redis_db: int) -> Any:
    # Room for three sessions of an account.
    yield from _two_nodes(
        tmp_path,
        redis_db,
        MODULES_TOML + "\n[modules.mod_muc]\n" + INBOX_TOML,
        LIMIT.replace("value = 2", "value = 3"),
    )


async def _occupant(node: Node, jid: str) -> Client:
    client = await login(node, jid)  # type: ignore[arg-type]
    for plugin in ("xep_0030", "xep_0004", "xep_0045"):
        client.register_plugin(plugin)
    return client


async def _unread(client: Client) -> list[tuple[int, str]]:
    entries, _ = await inbox(client)
    return [(e["unread"], e["body"]) for e in entries]


def test_markers_and_unread_counts_of_a_room_on_another_node(nodes: tuple[Node, Node, int]) -> None:
    a, b, _ = nodes

    async def run() -> None:
        alice = await _occupant(a, "alice@localhost/r")
        laptop = await _occupant(a, "bob@localhost/laptop")
        phone = await _occupant(b, "bob@localhost/phone")
        carol = await login(b, "carol@localhost/c")  # type: ignore[arg-type]
        try:
            await create_instant(alice, ROOM, "al")
            await laptop.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "bo-laptop", timeout=5)
            await phone.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "bo-phone", timeout=5)
            for i in range(2):
                msg = alice.make_message(mto=ROOM, mbody=f"g{i}", mtype="groupchat")
                msg["id"] = f"g{i}"
                msg.send()
                for client in (alice, laptop, phone):
                    await next_groupchat(client)
            # One unread per message of the room for bob, whichever of his sessions (on both
            # nodes) got it; none for alice, whose own messages they are.
            await eventually(lambda: _unread(phone), timeout=3)
            assert await _unread(alice) == [(0, "g1")]
            assert await _unread(phone) == [(2, "g1")]
            assert await _unread(laptop) == [(2, "g1")]
            # bob's phone (B) marks the last message displayed: he has read the room, as
            # every node tells.
            marker = phone.make_message(mto=ROOM, mtype="groupchat")
            marker.xml.append(ET.fromstring(f"<displayed xmlns='{MARKERS}' id='g1'/>"))
            marker.send()
            await eventually(lambda: _unread_is(laptop, [(0, "g1")]), timeout=3)
            assert await _unread(phone) == [(0, "g1")]
            # carol (B), not in the room, sends it a marker: the room (A) refuses it
            # (XEP-0045 §7.4) and it is not kept among the occupants' smart markers.
            errors: asyncio.Queue[Any] = asyncio.Queue()
            carol.add_event_handler("message_error", errors.put_nowait)
            marker = carol.make_message(mto=ROOM, mtype="groupchat")
            marker.xml.append(ET.fromstring(f"<displayed xmlns='{MARKERS}' id='g1'/>"))
            marker.send()
            await asyncio.wait_for(errors.get(), 5)
            await asyncio.sleep(0.3)  # past the markers' write interval
            for client in (alice, phone):
                answer = await iq(client, f"<query xmlns='{SMART}' peer='{ROOM}'/>", "get")
                assert sorted(m.get("from", "") for m in answer.iter(f"{{{SMART}}}marker")) == [
                    "bob@localhost"
                ], client
        finally:
            await disconnect(alice, laptop, phone, carol)

    asyncio.run(run())


async def _unread_is(client: Client, expected: list[tuple[int, str]]) -> bool:
    return await _unread(client) == expected
