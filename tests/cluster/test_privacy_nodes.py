"""XEP-0016 privacy lists across Redis nodes (``sm_backend = "redis"``): two real ``suricate
serve`` processes sharing the real Redis and one SQLite file, real slixmpp clients. What is
proven: a list edited by the account's session on node A is pushed to its session on node B
(§2.2 rule 10) and B applies the new definition of the active list there (§2.2 rule 8); a
default list set on A applies to B's session once it declines its active list (§2.2 rule 2)."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import StanzaPath

from tests.cluster.test_redis_nodes import _rows, run_on_two_nodes, shared
from tests.e2e.harness import connect, disconnect, eventually

pytestmark = pytest.mark.xdist_group("redis_nodes")
__all__ = ["shared"]  # the module fixture of test_redis_nodes, used here

PLUGINS = ("xep_0016", "xep_0199")
PRIVACY = "jabber:iq:privacy"


async def _client(node: Any, jid: str) -> Any:
    client: Any = await connect(node, jid, "pw", plugins=PLUGINS)
    client.pushes = asyncio.Queue()

    def on_push(iq: Any) -> None:
        client.pushes.put_nowait(iq.xml.find(f"{{{PRIVACY}}}query/{{{PRIVACY}}}list").get("name"))
        iq.reply().send()

    client.register_handler(Callback("privacy push", StanzaPath("iq@type=set/privacy"), on_push))
    client.send_presence()
    return client


async def _set_list(client: Any, name: str, denied: str) -> None:
    iq = client.make_iq_set()
    iq.append(ET.fromstring(
        f"<query xmlns='{PRIVACY}'><list name='{name}'><item type='jid' value='{denied}' "
        "action='deny' order='1'><message/></item></list></query>"))
    await iq.send(timeout=5)


async def _refused(sender: Any, to: str) -> bool:
    """A chat message from ``sender`` to ``to`` comes back service-unavailable (else it
    arrived, which the caller checks)."""
    errors: asyncio.Queue[Any] = asyncio.Queue()
    sender.add_event_handler("message_error", errors.put_nowait)
    try:
        sender.send_message(mto=to, mbody="hi", mtype="chat")
        try:
            error = await asyncio.wait_for(errors.get(), 1.0)
        except TimeoutError:
            return False
        return str(error["error"]["condition"]) == "service-unavailable"
    finally:
        sender.del_event_handler("message_error", errors.put_nowait)


def test_list_changes_on_one_node_apply_on_the_other(shared: tuple[Path, int]) -> None:
    tmp, db = shared
    run_on_two_nodes(tmp, db, "privacy", lambda a, b: _scenario(db, a, b), "[modules.mod_privacy]")


async def _scenario(db: int, a: Any, b: Any) -> None:
    alice_a = await _client(a, "alice@localhost/a")
    alice_b = await _client(b, "alice@localhost/b")
    erin = await _client(b, "erin@localhost/e")  # enters at B, where alice/b is
    await eventually(lambda: len(_rows(db, "alice@localhost")) == 2)
    try:
        await _set_list(alice_a, "x", "erin@localhost")
        assert await asyncio.wait_for(alice_b.pushes.get(), 5) == "x"  # cast from A
        await alice_b.plugin["xep_0016"].activate("x")
        assert await _refused(erin, "alice@localhost/b")

        # Edited on A: B's session applies the new definition (erin allowed again).
        await _set_list(alice_a, "x", "frank@localhost")
        assert await asyncio.wait_for(alice_b.pushes.get(), 5) == "x"
        assert not await _refused(erin, "alice@localhost/b")
        assert (await alice_b.next_message())["body"] == "hi"

        # A default list set on A applies to B's session without an active list.
        await _set_list(alice_a, "y", "erin@localhost")
        await alice_a.plugin["xep_0016"].make_default("y")
        await alice_b.plugin["xep_0016"].deactivate()
        await eventually(lambda: _refused(erin, "alice@localhost/b"))
    finally:
        await disconnect(alice_a, alice_b, erin)
