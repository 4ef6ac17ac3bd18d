"""XEP-0191 blocking across Redis nodes (``sm_backend = "redis"``): two real ``suricate
serve`` processes sharing the real Redis and one SQLite file, real slixmpp clients (xep_0191).
What is proven: a block made by the account's session on node A reaches its session on node B
(the push of §3.3, and B's cached list: a stanza from the blocked JID entering at B is refused
there, one from the account to it is answered <blocked/>); an "unblock all" (§3.5) made on B
reaches A likewise."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from slixmpp.exceptions import IqError

from tests.cluster.test_redis_nodes import _rows, run_on_two_nodes, shared
from tests.e2e.harness import connect, disconnect, eventually

pytestmark = pytest.mark.xdist_group("redis_nodes")
__all__ = ["shared"]  # the module fixture of test_redis_nodes, used here

PLUGINS = ("xep_0191", "xep_0199")


async def _client(node: Any, jid: str) -> Any:
    client: Any = await connect(node, jid, "pw", plugins=PLUGINS)
    client.pushes = asyncio.Queue()
    client.add_event_handler("blocked", lambda iq: client.pushes.put_nowait(("block", iq)))
    client.add_event_handler("unblocked", lambda iq: client.pushes.put_nowait(("unblock", iq)))
    client.send_presence()
    return client


async def _push(client: Any) -> tuple[str, set[str]]:
    action, iq = await asyncio.wait_for(client.pushes.get(), 5)
    return action, {str(item["jid"]) for item in iq[action]["items"]}


async def _ping(frm: Any, to: str) -> str:
    """An IQ get from ``frm`` to ``to``: "result" or the error condition."""
    try:
        await frm.plugin["xep_0199"].send_ping(to, timeout=5)
    except IqError as err:
        return str(err.iq["error"]["condition"])
    return "result"


async def _quiet(client: Any, seconds: float = 1.0) -> bool:
    """Nothing reaches ``client`` for ``seconds``."""
    try:
        await client.next_message(timeout=seconds)
    except TimeoutError:
        return True
    return False


def test_block_on_one_node_applies_on_the_other(shared: tuple[Path, int]) -> None:
    tmp, db = shared
    run_on_two_nodes(tmp, db, "block", lambda a, b: _scenario(db, a, b))


async def _scenario(db: int, a: Any, b: Any) -> None:
    alice_a = await _client(a, "alice@localhost/a")
    alice_b = await _client(b, "alice@localhost/b")
    erin = await _client(b, "erin@localhost/e")  # enters at B, where alice/b is
    await eventually(lambda: len(_rows(db, "alice@localhost")) == 2)
    await eventually(lambda: len(_rows(db, "erin@localhost")) == 1)
    try:
        # Both resources asked for the list: both get the pushes (§3.3).
        for client in (alice_a, alice_b):
            assert await client.plugin["xep_0191"].get_blocked_jids() == set()
        assert await _ping(erin, "alice@localhost/b") == "result"

        await alice_a.plugin["xep_0191"].block(["erin@localhost"])
        assert await _push(alice_a) == ("block", {"erin@localhost"})
        assert await _push(alice_b) == ("block", {"erin@localhost"})  # from node A

        # Entering at B, to the session on B: refused by B's copy of the list.
        erin.send_message(mto="alice@localhost/b", mbody="hi b", mtype="chat")
        erin.send_message(mto="alice@localhost", mbody="hi bare", mtype="chat")
        assert await _ping(erin, "alice@localhost/b") == "service-unavailable"
        assert await _ping(erin, "alice@localhost/a") == "service-unavailable"
        assert await _quiet(alice_b, 0.5) and await _quiet(alice_a, 0.5)
        # From the account's session on B to the blocked JID: <blocked/> (§3.3).
        alice_b.send_message(mto="erin@localhost/e", mbody="to erin", mtype="chat")
        error = await alice_b.next_message()
        assert error["type"] == "error" and error["error"]["condition"] == "not-acceptable"
        assert error.xml.find(".//{urn:xmpp:blocking:errors}blocked") is not None
        assert await _quiet(erin, 0.5)

        # "Unblock all" made on B (§3.5) reaches A.
        unblock_all = alice_b.make_iq_set()
        unblock_all.enable("unblock")  # no items (slixmpp's unblock([]) sends no element)
        await unblock_all.send()
        assert await _push(alice_b) == ("unblock", set())
        assert await _push(alice_a) == ("unblock", set())
        assert await _ping(erin, "alice@localhost/a") == "result"
        erin.send_message(mto="alice@localhost/a", mbody="again", mtype="chat")
        assert (await alice_a.next_message())["body"] == "again"
    finally:
        await disconnect(alice_a, alice_b, erin)
