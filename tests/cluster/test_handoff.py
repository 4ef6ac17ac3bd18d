"""A node SIGKILLed while messages to its users are in flight: none is silently lost.

Alice (node A) sends a burst of chat messages to bob's full JID on node B, and B is killed
while they cross. Every message must then be accounted for: received by bob before B died,
stored offline and delivered when bob logs in again on A, or bounced to alice with an error
(RFC 6121 §8). What makes it hold: A keeps what it wrote to B until B acknowledges it, and
routes again by §8 what B did not acknowledge when B's link ends (cluster/links.py).
Duplicates are allowed (at least once: B may have delivered a message whose acknowledgement
never left it)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from slixmpp.exceptions import IqError

from tests.cluster.test_redis_nodes import Node, _toml, start_node, stop_node
from tests.cluster.test_workers import _available, _register
from tests.e2e.harness import connect, disconnect, free_port

pytestmark = pytest.mark.xdist_group("redis_nodes")

BURST = 200
# mod_offline's quota may be lower: past it, messages come back to alice as errors, which
# counts as accounted for (§8.5.2.2.1).


def _on_two_nodes(tmp: Path, db: int, tag: str,
                  scenario: Callable[[Node, Node, int], Awaitable[None]]) -> tuple[Node, Node]:
    """Run ``scenario`` on two fresh nodes, stopped afterwards (their logs stay)."""
    _register(tmp, _toml(tmp, free_port(), free_port(), db))
    a, b = (start_node(tmp, db, f"{tag}{i}") for i in range(2))
    try:
        asyncio.run(scenario(a, b, db))
    finally:
        stop_node(a)
        stop_node(b)
    return a, b


def test_sigkill_with_messages_in_flight_loses_none(tmp_path: Path, redis_db: int) -> None:
    a, _ = _on_two_nodes(tmp_path, redis_db, "handoff", _scenario)
    # What A handed back is in its log: the test went through the acknowledgement path.
    assert "cluster_link_unacked" in a.log.read_text(), a.log.read_text()


async def _scenario(a: Node, b: Node, db: int) -> None:
    alice = await connect(a, "alice@localhost/phone", "pw")  # type: ignore[arg-type]
    bob = await connect(b, "bob@localhost/desk", "pw")  # type: ignore[arg-type]
    alice.send_presence()
    bob.send_presence()
    await _available(db, "bob@localhost", "desk")
    live: set[str] = set()
    bob.add_event_handler("message", lambda m: m["type"] == "chat" and live.add(m["id"]))
    bounced: set[str] = set()
    alice.add_event_handler("message", lambda m: m["type"] == "error" and bounced.add(m["id"]))
    ids = [f"h{i}" for i in range(BURST)]

    def send(part: list[str]) -> None:
        for mid in part:
            msg = alice.make_message(mto="bob@localhost/desk", mbody=mid, mtype="chat")
            msg["id"] = mid
            msg.send()

    # The first half while B runs: delivered live.
    send(ids[:BURST // 2])
    for _ in range(300):
        if len(live) == BURST // 2:
            break
        await asyncio.sleep(0.05)
    assert len(live) == BURST // 2
    # The second half while B is stopped: A writes them on the link (B's kernel takes them
    # into its socket buffer) and B never reads them: then B is killed with them unread,
    # which is what a crash in the middle of traffic does to the frames in flight.
    b.proc.send_signal(signal.SIGSTOP)
    send(ids[BURST // 2:])
    # An IQ in the same flight: answered with an error by A (§8.5.3.2: no such session).
    ping = alice.make_iq_get(queryxmlns="urn:xmpp:ping", ito="bob@localhost/desk")
    answer = asyncio.ensure_future(ping.send(timeout=20))
    # A answers alice's ping to the server after routing what she sent before it (one
    # stream, in order): the burst is then on the link (written at the end of that turn).
    await alice.make_iq_get(queryxmlns="urn:xmpp:ping", ito="localhost").send(timeout=20)
    await asyncio.sleep(0.2)
    b.proc.send_signal(signal.SIGKILL)
    b.proc.wait(10)
    seen_live = set(live)
    with pytest.raises(IqError) as error:
        await answer
    assert error.value.condition == "service-unavailable"
    with contextlib.suppress(Exception):
        await asyncio.wait_for(bob.disconnect(), 1)

    # Bob logs in on A: what A routed again by §8 waits in his offline storage.
    await asyncio.sleep(1.0)  # the re-routing (a Redis lookup, offline writes) settles
    bob = await connect(a, "bob@localhost/desk", "pw")  # type: ignore[arg-type]
    offline: set[str] = set()
    bob.add_event_handler("message", lambda m: m["type"] == "chat" and offline.add(m["id"]))
    bob.send_presence()
    missing: set[str] = set(ids)
    for _ in range(100):
        missing = set(ids) - seen_live - offline - bounced
        if not missing:
            break
        await asyncio.sleep(0.1)
    assert not missing, (f"lost {len(missing)} of {BURST}: live {len(seen_live)}, offline "
                         f"{len(offline)}, bounced {len(bounced)}")
    await disconnect(alice, bob)


def test_bare_jid_copies_to_a_killed_node_are_stored_once(tmp_path: Path, redis_db: int) -> None:
    """Bob's two resources are both on B; alice (A) writes to his bare JID, so A sends a copy
    to each (RFC 6121 §8.5.2.1.1). B dies with the copies unread: A, the one node responsible
    for the fallback, routes each message to the bare JID once, so bob finds each message in
    his offline storage exactly once (not once per copy)."""
    _on_two_nodes(tmp_path, redis_db, "fanout", _fan_out)


async def _fan_out(a: Node, b: Node, db: int) -> None:
    alice = await connect(a, "alice@localhost/phone", "pw")  # type: ignore[arg-type]
    desk = await connect(b, "bob@localhost/desk", "pw")  # type: ignore[arg-type]
    laptop = await connect(b, "bob@localhost/laptop", "pw")  # type: ignore[arg-type]
    for client in (alice, desk, laptop):
        client.send_presence()
    await _available(db, "bob@localhost", "desk", "laptop")
    ids = [f"f{i}" for i in range(20)]
    b.proc.send_signal(signal.SIGSTOP)
    for mid in ids:
        msg = alice.make_message(mto="bob@localhost", mbody=mid, mtype="chat")
        msg["id"] = mid
        msg.send()
    # A answers this ping after routing what alice sent before it: the copies are on the link.
    await alice.make_iq_get(queryxmlns="urn:xmpp:ping", ito="localhost").send(timeout=20)
    await asyncio.sleep(0.5)
    b.proc.send_signal(signal.SIGKILL)
    b.proc.wait(10)
    for client in (desk, laptop):
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(), 1)
    await asyncio.sleep(1.0)
    bob = await connect(a, "bob@localhost/desk", "pw")  # type: ignore[arg-type]
    got: list[str] = []
    bob.add_event_handler("message", lambda m: m["type"] == "chat" and got.append(m["id"]))
    bob.send_presence()
    for _ in range(50):
        if len(got) >= len(ids):
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)  # a second copy, if any, would arrive meanwhile
    assert sorted(got) == sorted(ids), got
    await disconnect(alice, bob)
