"""What an operator expects of the accounts of a cluster (``sm_backend = "redis"``), two real
``suricate serve`` nodes and slixmpp clients: ``registration_timeout`` (one in-band
registration per address per period, XEP-0077) holds for the whole cluster, not per node;
XEP-0133's last login time says "online now" for an account online on another node."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.adhoc.test_adhoc import PLUGINS, run_admin
from tests.cluster.test_redis_nodes import Node, _sync
from tests.cluster.test_sm_nodes import SM_MODULES, _two_nodes
from tests.cluster.test_workers import LIMIT
from tests.e2e.harness import connect, disconnect, eventually
from tests.e2e.test_register import register_in_band

pytestmark = [
    pytest.mark.xdist_group("redis_nodes"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

ADHOC = (
    SM_MODULES
    + """
[modules.mod_adhoc]
access_admin = "adhoc_admins"
"""
)
# alice is the XEP-0133 admin (one [access] table: the session limit and the rule)
LIMITS = (
    LIMIT + '\nadhoc_admins = [{acl = "admins", value = "allow"}]\n'
    '[acl]\nadmins = [{user = "alice"}]\n'
)


@pytest.fixture
def two_nodes(tmp_path: Path, redis_db: int) -> Any:
    yield from _two_nodes(tmp_path, redis_db, ADHOC, LIMITS)


def test_registration_timeout_holds_across_nodes(two_nodes: tuple[Node, Node, int]) -> None:
    """registration_timeout (600 s here): the second account from 127.0.0.1 waits, on
    whichever node the load balancer sends it to (before: each node kept its own table, so
    N nodes let N accounts through). Its slot is a Redis key with that time to live."""
    a, b, db = two_nodes

    async def run() -> None:
        outcome, first = await register_in_band(a, "one@localhost/pc", "pw-one")  # type: ignore[arg-type]
        assert outcome == "registered"
        outcome, second = await register_in_band(b, "two@localhost/pc", "pw-two")  # type: ignore[arg-type]
        assert outcome == "resource-constraint"
        ttl = _sync(db).ttl("suricate:reg:127.0.0.1")
        assert 0 < ttl <= 600, ttl
        await disconnect(first, second)

    asyncio.run(run())


def test_last_login_of_an_account_online_on_another_node(two_nodes: tuple[Node, Node, int]) -> None:
    """XEP-0133 §4.19 (get-user-lastlogin) asked of node A about bob, online on node B only:
    "online now" (before: A looked at its own sessions and answered from mod_last's record,
    "never")."""
    a, b, _ = two_nodes

    async def run() -> None:
        bob = await connect(b, "bob@localhost/desk", "pw")  # type: ignore[arg-type]
        alice = await connect(a, "alice@localhost/r", "pw", plugins=PLUGINS)  # type: ignore[arg-type]
        try:

            async def lastlogin() -> str:
                done = await run_admin(alice, "get-user-lastlogin", accountjid="bob@localhost")
                return str(done["command"]["form"].get_values()["lastlogin"])

            await eventually(
                lambda: "desk" in _sync(two_nodes[2]).hkeys("suricate:sess:bob@localhost")
            )
            assert await lastlogin() == "online now"
        finally:
            await disconnect(alice, bob)

    asyncio.run(run())
