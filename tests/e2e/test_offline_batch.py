"""A burst to an offline account is handled in batches (suricate/core/offline_batch.py): the
messages routed while one is on the offline path share its per-account reads and are written
in one INSERT. Order, quota, blocking and the senders' errors hold as for one message at a
time (docs/offline.md, "A burst")."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from suricate.core.server import Server
from suricate.jid import JID
from suricate.modules.mod_offline import parse_stored
from suricate.storage import pgsql
from suricate.storage.base import StorageError
from tests.e2e.harness import MODULES_TOML, RawClient, running_server
from tests.e2e.test_roster_presence import iq_reply, raw_session
from tests.latency_relay import postgresql_behind_relay
from tests.storage.conftest import pg_admin_or_skip

#: The archive and privacy lists too: each reads per account on the offline path.
MODULES = MODULES_TOML + "\n[modules.mod_privacy]\n[modules.mod_mam]\n[modules.mod_mam.pm]\n"
COUNT = 40


async def _burst(server: Server, sender: RawClient, to: str, count: int) -> str:
    """``count`` messages to ``to`` in one write (one read of the server: routed in one
    turn of its loop), then once the server answered a ping and finished its work; what
    ``sender`` got meanwhile."""
    await sender.send("".join(f"<message to='{to}' type='chat' id='m{n}'><body>m{n}</body>"
                              "</message>" for n in range(count))
                      + "<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
    got = await sender.expect(r"\A.*?" + iq_reply("p"))
    await server.drain(5)
    return got


async def _stored_bodies(server: Server, user: str) -> list[str | None]:
    kept = [parse_stored(m.packet) for m in
            await server.modules["mod_offline"].store.pop_offline("localhost", user)]
    return [m.find_text("body") if m is not None else None for m in kept]


async def _accounts(server: Server, *names: str) -> None:
    for name in names:
        await server.auth.register(JID.parse(f"{name}@localhost"), f"{name}-pw")


@pytest.fixture
async def slow_pg_server(tmp_path: Path) -> AsyncIterator[Server]:
    """The server on its own PostgreSQL database 2 ms away each way (skipped without
    PostgreSQL, except under CI=true)."""
    await pg_admin_or_skip("SELECT 1")
    async with postgresql_behind_relay(0.002) as pool, running_server(
            tmp_path, modules=MODULES, pool_toml=pool) as srv:
        yield srv


@pytest.mark.postgres
async def test_a_burst_reads_each_account_table_once_per_batch(
        slow_pg_server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """40 messages to an offline account, routed together: before, each one asked
    PostgreSQL for the account's existence, block list, privacy default, archive prefs and
    stored count, then wrote its row (6 statements a message, 240, ~20 ms each at 2 ms
    each way); now the batch asks each once and writes its rows in one INSERT."""
    server = slow_pg_server
    await _accounts(server, "alice", "bob")
    alice = await raw_session(server, "alice", "alice-pw", "desk")
    statements: Counter[str] = Counter()
    real_execute, real_fetch = pgsql._PgExecutor.execute, pgsql._PgExecutor.fetch

    async def execute(self: Any, sql: str, *args: Any) -> int:
        statements[sql.split(" VALUES")[0]] += 1
        return await real_execute(self, sql, *args)

    async def fetch(self: Any, sql: str, *args: Any) -> list[Any]:
        statements[sql] += 1
        return await real_fetch(self, sql, *args)

    monkeypatch.setattr(pgsql._PgExecutor, "execute", execute)
    monkeypatch.setattr(pgsql._PgExecutor, "fetch", fetch)
    try:
        await _burst(server, alice, "bob@localhost", COUNT)
    finally:
        monkeypatch.undo()
    per_account = {sql: n for sql, n in statements.items() if "offline_messages" in sql
                   or re.search(r"FROM (users|blocklist|privacy\w*|mam_prefs\w*) ", sql)}
    kinds = {re.sub(r"^(\w+).*?(FROM|INTO) (\w+).*", r"\1 \3", sql, flags=re.S)
             for sql in per_account}
    # What each message asked before (the archive's prefs: its table's name is its store's).
    assert {"SELECT users", "SELECT blocklist", "SELECT offline_messages",
            "INSERT offline_messages"} <= kinds, statements
    assert len(kinds) >= 6, statements  # privacy default and archive prefs too
    # A first batch (the message whose task started first, and what was routed with it)
    # and one of the rest: a couple of batches, not one per message.
    assert all(n <= 3 for n in per_account.values()), statements
    assert await _stored_bodies(server, "bob") == [f"m{n}" for n in range(COUNT)]
    await alice.close()


async def test_a_burst_over_the_quota_keeps_the_first_and_bounces_the_rest(
        tmp_path: Path) -> None:
    """The quota counts the batch's own messages: with room for 5, a burst of 12 routed
    together keeps the first 5 and answers the other 7 resource-constraint, each once."""
    extra = '[access]\nmax_user_offline_messages = [{acl = "all", value = 5}]\n'
    async with running_server(tmp_path, extra=extra, modules=MODULES) as server:
        await _accounts(server, "alice", "bob")
        alice = await raw_session(server, "alice", "alice-pw", "desk")
        errors = await _errors(server, alice, await _burst(server, alice, "bob@localhost", 12))
        assert errors == [(f"m{n}", "resource-constraint") for n in range(5, 12)]
        assert await _stored_bodies(server, "bob") == [f"m{n}" for n in range(5)]
        await alice.close()


async def test_a_burst_from_a_blocked_sender_is_dropped_and_others_kept(
        tmp_path: Path) -> None:
    """The block list read once for the batch still applies to each message: carol's
    burst to bob, who blocked her, is neither stored nor answered (XEP-0191 §3.3)."""
    async with running_server(tmp_path, modules=MODULES) as server:
        await _accounts(server, "alice", "bob", "carol")
        bob = await raw_session(server, "bob", "bob-pw", "phone")
        await bob.send("<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'>"
                       "<item jid='carol@localhost'/></block></iq>")
        await bob.expect(iq_reply("b"))
        await bob.close()
        await server.drain(5)
        carol = await raw_session(server, "carol", "carol-pw", "desk")
        alice = await raw_session(server, "alice", "alice-pw", "desk")
        got = await _burst(server, carol, "bob@localhost", 10)
        await _burst(server, alice, "bob@localhost", 10)
        assert await _errors(server, carol, got) == []
        assert await _stored_bodies(server, "bob") == [f"m{n}" for n in range(10)]
        await alice.close()
        await carol.close()


async def test_a_batch_whose_write_fails_answers_every_sender(tmp_path: Path) -> None:
    """The batch's one INSERT fails (the database went away): nothing is stored, and each
    message of it is answered internal-server-error, as one written alone would be."""
    async with running_server(tmp_path, modules=MODULES) as server:
        await _accounts(server, "alice", "bob")
        alice = await raw_session(server, "alice", "alice-pw", "desk")
        store = server.modules["mod_offline"].store
        real_store, real_many = store.store_offline, store.store_offline_many
        failed: list[int] = []

        async def down(server_: str, user: str, msgs: Any) -> None:
            failed.append(len(msgs) if isinstance(msgs, list) else 1)
            raise StorageError("database unavailable")

        store.store_offline = store.store_offline_many = down
        try:
            got = await _burst(server, alice, "bob@localhost", 10)
        finally:
            store.store_offline, store.store_offline_many = real_store, real_many
        assert max(failed) > 1  # a batch, not only messages written alone
        errors = await _errors(server, alice, got)
        assert sorted(errors) == sorted((f"m{n}", "internal-server-error") for n in range(10))
        assert await _stored_bodies(server, "bob") == []
        await alice.close()


async def _errors(server: Server, client: RawClient, got: str) -> list[tuple[str, str]]:
    """The (id, condition) of the message errors ``client`` got (``got``, and what came
    after it up to the answer to a ping sent once the server is idle), in order."""
    await server.drain(5)
    await client.send("<iq type='get' id='end'><ping xmlns='urn:xmpp:ping'/></iq>")
    got += await client.expect(r"\A.*?" + iq_reply("end"))
    errors = []
    for message in re.findall(r"<message\b[^>]*>.*?</message>", got, re.S):
        head = message[:message.index(">")]
        ident = re.search(r"\bid=['\"]([^'\"]*)", head)
        condition = re.search(
            r"<([a-z-]+) xmlns=['\"]urn:ietf:params:xml:ns:xmpp-stanzas['\"]", message)
        if re.search(r"\btype=['\"]error", head) and ident and condition:
            errors.append((ident.group(1), condition.group(1)))
    return errors
