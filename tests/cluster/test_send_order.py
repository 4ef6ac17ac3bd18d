"""Sends to one account keep their order across nodes (RedisNode._in_order, RFC 6120 §10.1)
without giving up the fast path. A unit test: the Redis lookup and the link are stand-ins
whose timing the test controls (a slow lookup is what lets a later stanza overtake); the
real Redis and real links carry the groupchat order in test_muc_nodes.py."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from suricate.cluster import wire
from suricate.cluster.redis_sm import RedisNode, Row
from suricate.instrument import Instrumentation
from suricate.jid import JID
from suricate.xml import ns
from suricate.xml.element import Element

BOB = JID.parse("bob@localhost/phone")


class _Links:
    """Records the bodies written, in order; the first connect to a node takes a while."""

    def __init__(self) -> None:
        self.written: list[str] = []
        self.fast = 0

    def send_now(self, node: str, item: tuple[Any, ...]) -> bool:
        self.fast += 1
        self._record(item)
        return True

    def gone(self, node: str) -> bool:
        return False

    async def send(self, node: str, address: str, item: tuple[Any, ...]) -> bool:
        self._record(item)
        return True

    def _record(self, item: tuple[Any, ...]) -> None:
        # A message to a full JID travels as its bytes (no filter on this node), else packed.
        assert item[0] in (wire.STANZA, wire.XML)
        stanza = wire.parse(item[3]) if item[0] == wire.XML else wire.unpack(item[3])
        body = stanza.find_text("body")
        assert body is not None
        self.written.append(body)


class _Store:
    node = "here"

    def __init__(self) -> None:
        self.delays = [0.05]  # the round trip of each lookup in turn (then none)

    async def resources_listed(self, bares: list[JID]) -> tuple[list[dict[str, Row]], bool]:
        await asyncio.sleep(self.delays.pop(0) if self.delays else 0)
        return [{"phone": Row("there", 0, True)} for _ in bares], True


class _Router:
    def hold(self, routed: Any) -> None:
        """Router.route_held's collector: no client stream waits here."""


class _Hooks:
    version = 0  # never changes: no module is added

    def has(self, hook: str) -> bool:
        return False  # no module on this node


class _Server:
    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[Any]] = set()
        self.router = _Router()
        self.hooks = _Hooks()
        self.instrument = Instrumentation()

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task


def _node() -> tuple[RedisNode, _Links]:
    node = RedisNode.__new__(RedisNode)  # no Redis, no listener: the routing part only
    links = _Links()
    node.server = _Server()  # type: ignore[assignment]
    node.store = _Store()  # type: ignore[assignment]
    node.links = links  # type: ignore[assignment]
    node._where = {}
    node._refreshing = set()
    node._pending = {}
    node._lookups = []
    node._addresses = {"there": "127.0.0.1:1"}
    node._rebuilding_until = 0.0
    return node, links


def _message(body: str) -> Element:
    msg = Element("message", ns.CLIENT, {"type": "chat", "to": str(BOB)})
    msg.append(Element("body", ns.CLIENT, {}, [body]))
    return msg


async def test_fast_path_waits_for_a_send_in_flight() -> None:
    node, links = _node()
    frm = JID.parse("room@conference.localhost/alice")
    # 1 leaves on the slow path (its node unknown: a lookup); meanwhile another send made the
    # node known, so 2 could take the fast path and overtake 1 (it must not).
    node.to_full(frm, BOB, _message("1"))
    await asyncio.sleep(0.01)  # 1 is waiting for its lookup
    node._where[BOB] = ("there", time.monotonic() + 1)
    node.to_full(frm, BOB, _message("2"))
    node.to_full(frm, BOB, _message("3"))
    assert links.written == []  # nothing overtook the lookup
    await asyncio.gather(*node.server.tasks)  # type: ignore[attr-defined]
    assert links.written == ["1", "2", "3"]
    # 2 and 3 waited for 1, then went by the node it found, without a lookup of their own.
    assert links.fast == 2 and node._pending == {}
    # Nothing in flight any more: the fast path is back (written at once, no task).
    node.to_full(frm, BOB, _message("4"))
    assert links.written[-1] == "4" and links.fast == 3


async def test_bare_and_full_sends_to_one_account_keep_their_order() -> None:
    node, links = _node()
    frm = JID.parse("alice@localhost/pc")
    node.to_bare(frm, BOB.bare, _message("a"))  # a fan-out: a slow lookup first
    await asyncio.sleep(0.01)  # its lookup is on its way; the next one would answer at once
    node.to_full(frm, BOB, _message("b"))
    await asyncio.gather(*node.server.tasks)  # type: ignore[attr-defined]
    assert links.written == ["a", "b"]
