"""The storage round trips of a login on PostgreSQL (docs/delivery.md, "A database a few
milliseconds away"): production databases are on another host, and every read the login
waits for, one after the other, is felt by each person opening their phone.
bench/login_remote_db.py measures the same login from a client, with the relay."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from suricate.core.server import Server
from suricate.modules.mod_roster.store import RosterItem
from tests.e2e.test_pgsql import pg_running
from tests.e2e.test_roster_presence import item, raw_session, register

pytestmark = pytest.mark.postgres

Statement = tuple[float, float, str]  # started, ended (perf_counter), the SQL


@pytest.fixture
async def pg_server(tmp_path: Path) -> AsyncIterator[Server]:
    async with pg_running(tmp_path) as srv:
        yield srv


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Statement]]:
    """Every statement asyncpg sends from now on, with when it started and ended."""
    sent: list[Statement] = []
    conn = asyncpg.connection.Connection
    for name in ("execute", "executemany", "fetch", "fetchrow", "fetchval"):
        method = getattr(conn, name)

        def counted(method: Any) -> Any:
            async def run(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return await method(self, query, *args, **kwargs)
                finally:
                    sent.append((started, time.perf_counter(), " ".join(query.split())))
            return run
        monkeypatch.setattr(conn, name, counted(method))
    yield sent


async def subscribed_both_ways(server: Server, user: str, *contacts: str) -> None:
    store = server.modules["mod_roster"].store
    for name in contacts:
        await store.put_roster_item("localhost", user, RosterItem(f"{name}@localhost",
                                                                  subscription="both"))
        await store.put_roster_item("localhost", name, RosterItem(f"{user}@localhost",
                                                                  subscription="both"))


async def test_a_new_session_reads_its_state_at_once(pg_server: Server) -> None:
    """The session_opened handlers (the roster, the blocklist, the vCard's photo hash) read
    storage at the same time (Hooks.run_together): the client's first stanzas after the bind
    (its roster get) wait for one round trip, not for three one after the other. Each read
    of alice's is held until all three were asked for (2 s at most)."""
    await register(pg_server, "alice", "bob")
    await subscribed_both_ways(pg_server, "alice", "bob")
    asked: list[str] = []
    everyone_asked = asyncio.Event()
    together: list[bool] = []

    def held(name: str, read: Any) -> Any:
        async def run(*args: Any) -> Any:
            if any("alice" in str(arg) for arg in args):
                asked.append(name)
                if len(asked) == 3:
                    everyone_asked.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(everyone_asked.wait(), 2)
                together.append(everyone_asked.is_set())
            return await read(*args)
        return run

    roster = pg_server.modules["mod_roster"].store
    blocking = pg_server.modules["mod_blocking"].store
    vcard = pg_server.modules["mod_vcard"]
    roster.get_roster = held("roster", roster.get_roster)
    blocking.get_blocklist = held("blocklist", blocking.get_blocklist)
    vcard.get_vcard = held("vcard", vcard.get_vcard)
    alice = await raw_session(pg_server, "alice", "alice-pw", "phone")
    await alice.send("<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>")
    await alice.expect(r"<iq[^>]*id=.r1.*?</iq>")
    assert sorted(asked) == ["blocklist", "roster", "vcard"]
    assert together == [True, True, True]
    await alice.close()


async def test_a_login_with_offline_contacts_reads_their_blocklists_together(
        pg_server: Server, statements: list[Statement]) -> None:
    """The initial presence goes to every subscriber and probes every contact (RFC 6121
    §4.2.2); each presence to an offline local account is checked against its blocklist
    (XEP-0191 §3.3). 40 reads for 20 offline contacts became 1: the presence, which reaches
    no session of theirs, needs none (the router drops it at once), and the probes' go
    together (BlockingStore.get_blocklist_batched). The probes' roster reads then go in one
    batch too (at 2 ms they were 5: the batch closed as the first blocklist reads came back,
    while the pool of 10 connections was taken by the blocklist reads)."""
    contacts = [f"c{n}" for n in range(20)]
    await register(pg_server, "alice", *contacts)
    await subscribed_both_ways(pg_server, "alice", *contacts)
    statements.clear()
    alice = await raw_session(pg_server, "alice", "alice-pw", "phone")
    await alice.send("<presence/>")
    await alice.expect(r"<presence[^>]*from=.alice@localhost/phone")
    await pg_server.drain(5)
    blocklists = [sql for _, _, sql in statements if "FROM blocklist" in sql]
    assert len(blocklists) == 2, blocklists  # + alice's own, at the bind
    probes = [sql for _, _, sql in statements if "FROM roster_items" in sql and " IN (" in sql]
    assert len(probes) == 1, probes
    await alice.close()


async def test_a_probe_to_an_offline_contact_who_blocked_the_user_goes_unanswered(
        pg_server: Server) -> None:
    """The batched blocklist reads answer each account with its own list: a contact who
    blocked the user drops the probe (XEP-0191 §3.3), and the user, who thinks she is
    subscribed, is not told otherwise; another contact, who does not have her as a
    subscriber either but blocked nobody, answers 'unsubscribed' (RFC 6121 §4.3.2), and her
    roster catches up (§3.2.3)."""
    await register(pg_server, "alice", "blocker", "stale", "friend")
    store = pg_server.modules["mod_roster"].store
    for name in ("blocker", "stale"):
        await store.put_roster_item("localhost", "alice", RosterItem(f"{name}@localhost",
                                                                     subscription="to"))
    await subscribed_both_ways(pg_server, "alice", "friend")
    await pg_server.modules["mod_blocking"].store.block("localhost", "blocker",
                                                         ["alice@localhost"])
    alice = await raw_session(pg_server, "alice", "alice-pw", "phone")
    await alice.send("<presence/>")
    await alice.expect(r"<presence[^>]*from=.alice@localhost/phone")
    await pg_server.drain(5)
    assert (await item(pg_server, "alice", "stale")).subscription == "none"
    assert (await item(pg_server, "alice", "blocker")).subscription == "to"
    assert (await item(pg_server, "alice", "friend")).subscription == "both"
    await alice.close()
