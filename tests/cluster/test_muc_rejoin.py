"""MUC room claims when Redis or a node forgets them (mod_muc/placement.py ``_reclaim``): real
``suricate serve`` nodes, real slixmpp xep_0045 clients.

- A node SIGSTOPped past its heartbeat: a survivor reaps it and releases its claims, a join
  makes the survivor take the room; the paused node resumes, finds the claim taken and ends
  its copy: its occupants get 110 + 333 (XEP-0045 §15.6), the survivor keeps the claim.
- Redis restarted empty (a private ``redis-server``): the room's node claims it again once it
  joined again, and the room keeps working across nodes.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
from slixmpp import JID as SJID

from tests.cluster.test_bad_conditions import PrivateRedis, private_redis
from tests.cluster.test_muc_nodes import _groupchats, _left, _user
from tests.cluster.test_redis_nodes import Node, _sync, launch_node, stop_node
from tests.cluster.test_workers import LIMIT, _register
from tests.e2e.harness import MODULES_TOML, disconnect, eventually, free_port, server_toml
from tests.muc.conftest import create_room

pytestmark = pytest.mark.xdist_group("redis_nodes")
__all__ = ["private_redis"]  # the fixture, used here

ROOM = "team@conference.localhost"
CLAIM = f"suricate:muc:{ROOM}"


def _toml(tmp: Path, c2s: int, tls: int, db: int, port: int) -> str:
    extra = f"""
[outgoing_pools.redis.default.connection]
host = "127.0.0.1"
port = {port}
database = {db}
{LIMIT}
"""
    toml = server_toml(tmp, c2s, tls, extra=extra,
                       modules=MODULES_TOML + "\n[modules.mod_muc]\n")
    return toml.replace('loglevel = "info"', 'loglevel = "info"\nsm_backend = "redis"')


def _start(tmp: Path, db: int, tag: str, port: int = 6379) -> Node:
    c2s, tls = free_port(), free_port()
    return launch_node(tmp, db, tag, c2s, tls, _toml(tmp, c2s, tls, db, port), port)


def test_paused_node_room_taken_over_its_occupants_told_on_resume(
        tmp_path: Path, redis_db: int) -> None:
    db = redis_db
    _register(tmp_path, _toml(tmp_path, free_port(), free_port(), db, 6379))
    a, b = _start(tmp_path, db, "pa"), _start(tmp_path, db, "pb")
    try:
        asyncio.run(_paused(db, a, b))
    finally:
        for node in (a, b):
            if node.proc.poll() is None:
                node.proc.send_signal(signal.SIGCONT)
            stop_node(node)


async def _paused(db: int, a: Node, b: Node) -> None:
    r = _sync(db)
    alice, bob, carol = await _user(a, "alice"), await _user(b, "bob"), await _user(b, "carol")
    muc = "xep_0045"
    try:
        await create_room(alice, ROOM, "Alice", {})
        await bob.plugin[muc].join_muc_wait(SJID(ROOM), "Bob", timeout=5)
        assert r.get(CLAIM) == a.name

        a.proc.send_signal(signal.SIGSTOP)
        # Reaped by b, which releases its claims; a join then makes b take the room.
        await eventually(lambda: a.name not in r.hkeys("suricate:nodes"), timeout=10)
        await eventually(lambda: r.get(CLAIM) is None, timeout=5)
        await create_room(carol, ROOM, "Carol", {})  # a new room: a's was temporary
        assert r.get(CLAIM) == b.name

        a.proc.send_signal(signal.SIGCONT)
        # a joins again, finds the room taken, ends its copy: 110 + 333 to its occupants.
        assert {"110", "333"} <= await _left(bob, f"{ROOM}/Bob")
        assert {"110", "333"} <= await _left(alice, f"{ROOM}/Alice")
        await eventually(lambda: a.name in r.hkeys("suricate:nodes"), timeout=5)
        assert r.get(CLAIM) == b.name
        assert ROOM not in r.smembers(f"suricate:node:{a.name}:rooms")
        # Joining again reaches the room on b.
        await bob.plugin[muc].join_muc_wait(SJID(ROOM), "Bob", timeout=5)
        bob.send_message(mto=SJID(ROOM), mbody="on b", mtype="groupchat")
        assert [body for body, _ in await _groupchats(carol, 1)] == ["on b"]
    finally:
        await disconnect(alice, bob, carol)


def test_room_claimed_again_after_redis_restarts_empty(
        tmp_path: Path, private_redis: PrivateRedis) -> None:
    port = private_redis.port
    _register(tmp_path, _toml(tmp_path, free_port(), free_port(), 0, port))
    a, b = _start(tmp_path, 0, "ra", port), _start(tmp_path, 0, "rb", port)
    try:
        asyncio.run(_emptied(private_redis, a, b))
    finally:
        for node in (a, b):
            stop_node(node)


async def _emptied(redis: PrivateRedis, a: Node, b: Node) -> None:
    r = _sync(0, redis.port)
    alice, bob = await _user(a, "alice"), await _user(b, "bob")
    try:
        await create_room(alice, ROOM, "Alice", {})
        await bob.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Bob", timeout=5)
        assert r.get(CLAIM) == a.name

        redis.stop()
        await asyncio.sleep(1.0)
        redis.start()  # empty: no node, no session, no claim
        await eventually(lambda: r.get(CLAIM) == a.name, timeout=8)
        assert r.smembers(f"suricate:node:{a.name}:rooms") == {ROOM}
        bob.send_message(mto=SJID(ROOM), mbody="after", mtype="groupchat")
        for client in (alice, bob):
            assert [body for body, _ in await _groupchats(client, 1)] == ["after"]
    finally:
        await disconnect(alice, bob)
