"""mod_cache_users: the segmented cache, and ``Server.user_exists`` through it in a running
server driven by a real client (an offline account's messages)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from suricate.config import ConfigError
from suricate.config.loader import parse_config
from suricate.jid import JID
from suricate.modules.mod_cache_users import SegmentedCache
from tests.e2e.harness import MODULES_TOML, connect, disconnect, eventually, running_server


def test_fifo_entries_leave_with_their_table() -> None:
    cache = SegmentedCache(3, lru=False)
    cache.add("a@x")
    cache.rotate()
    cache.rotate()
    assert "a@x" in cache  # in the last of three tables
    cache.rotate()
    assert "a@x" not in cache and len(cache) == 0


def test_lru_entries_in_use_stay() -> None:
    cache = SegmentedCache(2, lru=True)
    cache.add("a@x")
    cache.add("b@x")
    cache.rotate()
    assert "a@x" in cache  # found in the older table: moved to the newest
    cache.rotate()
    assert "a@x" in cache and "b@x" not in cache
    cache.discard("a@x")
    assert "a@x" not in cache


def test_options_checked_with_their_path(tmp_path: Path) -> None:
    base = '[general]\nhosts = ["localhost"]\ndefault_server_domain = "localhost"\n'
    cfg = parse_config(base + "[modules.mod_cache_users]\n", tmp_path)
    assert cfg["modules"]["mod_cache_users"] == {
        "strategy": "fifo", "time_to_live": 480, "number_of_segments": 3}
    cfg = parse_config(base + '[modules.mod_cache_users]\ntime_to_live = "infinity"\n',
                       tmp_path)
    assert cfg["modules"]["mod_cache_users"]["time_to_live"] is None
    for bad, path in (('strategy = "random"', "modules.mod_cache_users.strategy"),
                      ("number_of_segments = 0", "modules.mod_cache_users.number_of_segments"),
                      ("time_to_live = 0", "modules.mod_cache_users.time_to_live")):
        with pytest.raises(ConfigError) as err:
            parse_config(base + f"[modules.mod_cache_users]\n{bad}\n", tmp_path)
        assert path in str(err.value)


async def test_an_offline_account_is_looked_up_once_and_forgotten_when_removed(
        tmp_path: Path) -> None:
    async with running_server(tmp_path,
                              modules=MODULES_TOML + "\n[modules.mod_cache_users]\n") as server:
        for user in ("alice", "bob"):
            await server.auth.register(JID.parse(f"{user}@localhost"), "pw")
        asked: list[JID] = []
        lookup = server.auth.user_exists

        async def counting(jid: JID) -> bool:
            asked.append(jid)
            return await lookup(jid)

        server.auth.user_exists = counting  # type: ignore[method-assign]
        offline: Any = server.modules["mod_offline"]
        alice = await connect(server, "alice@localhost/a", "pw")
        for n in range(3):
            alice.send_message(mto="bob@localhost", mbody=f"while away {n}", mtype="chat")

        async def stored() -> bool:
            return await offline.store.count_offline("localhost", "bob") == 3

        await eventually(stored)
        # RFC 6121 §8.5.1: each message needs "does bob exist?"; the backend answered once.
        assert [str(j) for j in asked].count("bob@localhost") == 1
        # Removed: forgotten at once, so the next message is refused, not stored for nobody.
        await server.auth.remove(JID.parse("bob@localhost"))
        alice.send_message(mto="bob@localhost", mbody="after removal", mtype="chat")
        error = await alice.next_message()
        assert error["type"] == "error" and error["error"]["condition"] == "service-unavailable"
        await disconnect(alice)


async def test_a_removal_is_forgotten_on_the_other_nodes(tmp_path: Path) -> None:
    # Unit level (the cluster's transport is tested in tests/cluster): the removing node asks
    # every other node, a node that does not answer is skipped, and the operation is served.
    from suricate.core.cluster import NodeUnreachable
    from suricate.modules.mod_cache_users import FORGET_OP

    class Backend:
        node = "n1"
        asked: list[tuple[str, str, tuple[Any, ...]]] = []

        async def nodes(self) -> list[str]:
            return ["n1", "n2", "n3"]

        async def ask(self, node: str, op: str, args: tuple[Any, ...]) -> Any:
            self.asked.append((node, op, args))
            if node == "n3":
                raise NodeUnreachable(node)
            return True

    async with running_server(tmp_path,
                              modules=MODULES_TOML + "\n[modules.mod_cache_users]\n") as server:
        module: Any = server.modules["mod_cache_users"]
        module.cache.add("bob@localhost")
        server.cluster.backend = Backend()  # type: ignore[assignment]
        try:
            await module.removed(None, JID.parse("bob@localhost/r"))
        finally:
            server.cluster.backend = None
        assert "bob@localhost" not in module.cache
        assert Backend.asked == [("n2", FORGET_OP, ("bob@localhost",)),
                                 ("n3", FORGET_OP, ("bob@localhost",))]
        module.cache.add("carol@localhost")
        assert await server.cluster.answers[FORGET_OP]("carol@localhost") is True
        assert "carol@localhost" not in module.cache
