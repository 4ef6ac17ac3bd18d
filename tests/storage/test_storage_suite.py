"""The behaviour every Storage backend must share; runs once per backend (conftest.py)."""

from __future__ import annotations

import asyncio
import time

import pytest

from suricate.core.module import open_module_store
from suricate.modules.mod_private.store import PrivateStore
from suricate.storage import OfflineMessage, RosterItem, StorageError
from suricate.storage.sql import SqlStorage

from .conftest import StorageFactory

S = "example.com"

# -- users ---------------------------------------------------------------------------------


async def test_create_and_get_user(storage: SqlStorage) -> None:
    before = time.time()
    assert await storage.create_user(S, "alice", None, "scram-record") is True
    user = await storage.get_user(S, "alice")
    assert user is not None
    assert (user.server, user.username, user.password, user.pass_details) == (
        S,
        "alice",
        None,
        "scram-record",
    )
    assert before - 1 <= user.created_at <= time.time() + 1
    assert isinstance(user.created_at, float)


async def test_create_existing_user_fails_and_keeps_credentials(storage: SqlStorage) -> None:
    assert await storage.create_user(S, "alice", "secret", None)
    assert await storage.create_user(S, "alice", "other", "x") is False
    user = await storage.get_user(S, "alice")
    assert user is not None and user.password == "secret" and user.pass_details is None


async def test_unknown_user(storage: SqlStorage) -> None:
    assert await storage.get_user(S, "nobody") is None
    assert await storage.user_exists(S, "nobody") is False
    assert await storage.set_password(S, "nobody", "x", None) is False
    assert await storage.remove_user(S, "nobody") is False


async def test_set_password(storage: SqlStorage) -> None:
    await storage.create_user(S, "alice", "old", None)
    assert await storage.set_password(S, "alice", None, "new-scram") is True
    user = await storage.get_user(S, "alice")
    assert user is not None and (user.password, user.pass_details) == (None, "new-scram")


async def test_users_are_per_server(storage: SqlStorage) -> None:
    await storage.create_user(S, "alice", "a", None)
    await storage.create_user("other.org", "alice", "b", None)
    assert await storage.user_exists("other.org", "alice")
    assert await storage.user_exists("third.net", "alice") is False
    assert await storage.count_users(S) == 1
    await storage.remove_user(S, "alice")
    assert await storage.user_exists("other.org", "alice")


async def test_list_and_count_users(storage: SqlStorage) -> None:
    # Byte/code-point order on both backends: upper case before lower, ASCII before the rest.
    names = ["bob", "alice", "Zed", "émile", "carol", "дмитрий", "李"]
    for name in names:
        assert await storage.create_user(S, name, None, "x")
    assert await storage.count_users(S) == len(names)
    assert await storage.count_users("empty.org") == 0
    assert await storage.list_users(S) == sorted(names)
    assert await storage.list_users(S, limit=2) == sorted(names)[:2]
    assert await storage.list_users(S, limit=3, offset=2) == sorted(names)[2:5]
    assert await storage.list_users(S, offset=5) == sorted(names)[5:]
    assert await storage.list_users(S, limit=0) == []
    assert await storage.list_users("empty.org") == []
    with pytest.raises(ValueError):
        await storage.list_users(S, limit=-1)


async def test_unicode_user(storage: SqlStorage) -> None:
    assert await storage.create_user("пример.рф", "юзер😀", "пароль😀", None)
    user = await storage.get_user("пример.рф", "юзер😀")
    assert user is not None and user.password == "пароль😀"
    assert await storage.list_users("пример.рф") == ["юзер😀"]


# -- remove_user cascades --------------------------------------------------------------------


async def _private(storage: SqlStorage) -> PrivateStore:
    store = await open_module_store(storage, "mod_private", PrivateStore)
    assert isinstance(store, PrivateStore)
    return store


async def _fill(storage: SqlStorage, user: str) -> None:
    await storage.put_roster_item(S, user, RosterItem("c@x.org", groups=("G",)))
    await storage.set_roster_version(S, user, "v1")
    await storage.store_offline(S, user, OfflineMessage(1.0, "c@x.org", f"{user}@{S}", "<m/>"))
    await storage.set_last(S, user, 100, "gone")
    await (await _private(storage)).set_private(S, user, "storage:bookmarks", "<storage/>")
    await storage.set_vcard(S, user, "<vCard/>")
    await storage.block(S, user, ["spam@x.org"])


async def _data(storage: SqlStorage, user: str) -> tuple[object, ...]:
    return (
        await storage.get_roster(S, user),
        await storage.get_roster_version(S, user),
        await storage.count_offline(S, user),
        await storage.get_last(S, user),
        await (await _private(storage)).get_private(S, user, "storage:bookmarks"),
        await storage.get_vcard(S, user),
        await storage.get_blocklist(S, user),
    )


async def test_remove_user_deletes_all_their_data(storage: SqlStorage) -> None:
    for user in ("alice", "bob"):
        await storage.create_user(S, user, None, "x")
        await _fill(storage, user)
    bob_before = await _data(storage, "bob")

    assert await storage.remove_user(S, "alice", PrivateStore.user_tables) is True

    assert await storage.get_user(S, "alice") is None
    assert await _data(storage, "alice") == ([], None, 0, None, None, None, [])
    assert await _data(storage, "bob") == bob_before
    # Nothing orphaned in the child table either.
    rows = await storage._fetch("SELECT COUNT(*) FROM roster_groups WHERE username = ?", "alice")
    assert rows[0][0] == 0


async def test_remove_user_without_account_row_still_clears_data(storage: SqlStorage) -> None:
    # Anonymous / external-auth users have data but no users row.
    await _fill(storage, "anon-1234")
    assert await storage.remove_user(S, "anon-1234", PrivateStore.user_tables) is False
    assert await _data(storage, "anon-1234") == ([], None, 0, None, None, None, [])


# -- roster ------------------------------------------------------------------------------------


async def test_roster_put_and_get(storage: SqlStorage) -> None:
    item = RosterItem(
        jid="juliet@example.com",
        name="Juliet",
        subscription="both",
        ask="none",
        groups=("Friends", "Capulets"),
        approved=False,
        ask_message=None,
    )
    await storage.put_roster_item(S, "romeo", item)
    assert await storage.get_roster_item(S, "romeo", "juliet@example.com") == item
    assert await storage.get_roster(S, "romeo") == [item]
    assert await storage.get_roster(S, "juliet") == []
    assert await storage.get_roster_item(S, "romeo", "nurse@example.com") is None


async def test_roster_defaults_and_pending_fields(storage: SqlStorage) -> None:
    bare = RosterItem("nurse@example.com")
    pending = RosterItem(
        "tybalt@example.com",
        subscription="none",
        ask="in",
        approved=True,
        ask_message="Let me in ✉",
    )
    await storage.put_roster_item(S, "romeo", bare)
    await storage.put_roster_item(S, "romeo", pending)
    got = await storage.get_roster_item(S, "romeo", "tybalt@example.com")
    assert got == pending and got is not None and got.approved is True
    assert await storage.get_roster_item(S, "romeo", "nurse@example.com") == bare


async def test_roster_upsert_replaces_everything(storage: SqlStorage) -> None:
    jid = "juliet@example.com"
    await storage.put_roster_item(S, "romeo", RosterItem(jid, "J", "to", "out", ("A", "B")))
    new = RosterItem(jid, None, "both", "none", ("C",), approved=True, ask_message="hi")
    await storage.put_roster_item(S, "romeo", new)
    assert await storage.get_roster(S, "romeo") == [new]
    emptied = RosterItem(jid, subscription="both")
    await storage.put_roster_item(S, "romeo", emptied)
    assert await storage.get_roster_item(S, "romeo", jid) == emptied


async def test_roster_groups_keep_order_and_drop_duplicates(storage: SqlStorage) -> None:
    await storage.put_roster_item(
        S, "romeo", RosterItem("a@x.org", groups=("Zeta", "alpha", "Zeta", "Ωmega"))
    )
    got = await storage.get_roster_item(S, "romeo", "a@x.org")
    assert got is not None and got.groups == ("Zeta", "alpha", "Ωmega")


async def test_roster_sorted_with_groups_attached_to_the_right_item(storage: SqlStorage) -> None:
    items = [
        RosterItem("c@x.org", groups=("G1",)),
        RosterItem("a@x.org", groups=("G2", "G3")),
        RosterItem("b@x.org"),
        RosterItem("d@x.org", groups=("G1", "G4")),
    ]
    for item in items:
        await storage.put_roster_item(S, "romeo", item)
    assert await storage.get_roster(S, "romeo") == sorted(items, key=lambda i: i.jid)


async def test_roster_delete(storage: SqlStorage) -> None:
    await storage.put_roster_item(S, "romeo", RosterItem("a@x.org", groups=("G",)))
    await storage.put_roster_item(S, "romeo", RosterItem("b@x.org"))
    assert await storage.delete_roster_item(S, "romeo", "a@x.org") is True
    assert await storage.delete_roster_item(S, "romeo", "a@x.org") is False
    assert [i.jid for i in await storage.get_roster(S, "romeo")] == ["b@x.org"]
    # The old groups went with the item (cascade), they do not come back.
    await storage.put_roster_item(S, "romeo", RosterItem("a@x.org"))
    got = await storage.get_roster_item(S, "romeo", "a@x.org")
    assert got is not None and got.groups == ()


async def test_roster_unicode(storage: SqlStorage) -> None:
    item = RosterItem("ромео@пример.рф", "Ромео 🌹", "from", "out", ("Семья", "家族"))
    await storage.put_roster_item(S, "джульетта", item)
    assert await storage.get_roster(S, "джульетта") == [item]


async def test_roster_item_rejects_unknown_states() -> None:
    with pytest.raises(ValueError):
        RosterItem("a@x.org", subscription="pending")
    with pytest.raises(ValueError):
        RosterItem("a@x.org", ask="subscribe")


async def test_roster_version(storage: SqlStorage) -> None:
    assert await storage.get_roster_version(S, "romeo") is None
    await storage.set_roster_version(S, "romeo", "1")
    await storage.set_roster_version(S, "romeo", "2")
    assert await storage.get_roster_version(S, "romeo") == "2"
    assert await storage.get_roster_version(S, "juliet") is None


# -- offline messages ---------------------------------------------------------------------------


def _msg(n: int, expire: float | None = None) -> OfflineMessage:
    return OfflineMessage(
        timestamp=1_700_000_000.123456 + n,
        from_jid=f"sender{n}@x.org/res",
        to_jid=f"alice@{S}",
        packet=f"<message to='alice@{S}'><body>n°{n} ✓</body></message>",
        expire=expire,
    )


async def test_offline_store_count_pop_in_arrival_order(storage: SqlStorage) -> None:
    # Timestamps deliberately out of order: arrival order, not the stamp, decides.
    msgs = [_msg(3), _msg(1), _msg(2), _msg(0, expire=4_000_000_000.5)]
    for msg in msgs:
        await storage.store_offline(S, "alice", msg)
    await storage.store_offline(S, "bob", _msg(9))
    assert await storage.count_offline(S, "alice") == 4
    assert await storage.pop_offline(S, "alice") == msgs
    assert await storage.count_offline(S, "alice") == 0
    assert await storage.pop_offline(S, "alice") == []
    assert await storage.count_offline(S, "bob") == 1


async def test_offline_pop_drops_expired(storage: SqlStorage) -> None:
    await storage.store_offline(S, "alice", _msg(1, expire=100.0))
    await storage.store_offline(S, "alice", _msg(2, expire=300.0))
    await storage.store_offline(S, "alice", _msg(3))
    assert await storage.pop_offline(S, "alice", now=200.0) == [_msg(2, 300.0), _msg(3)]
    assert await storage.count_offline(S, "alice") == 0


async def test_remove_expired_offline(storage: SqlStorage) -> None:
    await storage.store_offline(S, "alice", _msg(1, expire=100.0))
    await storage.store_offline(S, "bob", _msg(2, expire=150.0))
    await storage.store_offline(S, "alice", _msg(3, expire=500.0))
    await storage.store_offline(S, "alice", _msg(4))
    assert await storage.remove_expired_offline(200.0) == 2
    assert await storage.remove_expired_offline(200.0) == 0
    assert await storage.count_offline(S, "bob") == 0
    assert await storage.pop_offline(S, "alice", now=0.0) == [_msg(3, 500.0), _msg(4)]


async def test_offline_concurrent_pops_deliver_each_message_once(
    storage: SqlStorage, make_storage: StorageFactory
) -> None:
    # A second storage on the same database plays another process (or node) popping at
    # the same moment; with pgsql the pops really run in parallel on pooled connections.
    other = make_storage()
    await other.open()
    msgs = [_msg(n) for n in range(60)]
    for msg in msgs:
        await storage.store_offline(S, "alice", msg)
    results = await asyncio.gather(
        *(s.pop_offline(S, "alice") for s in (storage, other, storage, other, storage))
    )
    delivered = [m for batch in results for m in batch]
    assert sorted(delivered, key=lambda m: m.timestamp) == msgs  # none lost, none twice
    for batch in results:
        assert batch == sorted(batch, key=lambda m: m.timestamp)  # each batch in order
    assert await storage.count_offline(S, "alice") == 0


async def test_offline_store_while_popping_loses_nothing(storage: SqlStorage) -> None:
    delivered: list[OfflineMessage] = []

    async def producer() -> None:
        for n in range(40):
            await storage.store_offline(S, "alice", _msg(n))
            await asyncio.sleep(0)

    async def consumer() -> None:
        for _ in range(40):
            delivered.extend(await storage.pop_offline(S, "alice"))
            await asyncio.sleep(0)

    await asyncio.gather(producer(), consumer())
    delivered.extend(await storage.pop_offline(S, "alice"))
    assert delivered == [_msg(n) for n in range(40)]


# -- last activity, private XML, vCard -----------------------------------------------------------


async def test_last_activity(storage: SqlStorage) -> None:
    assert await storage.get_last(S, "alice") is None
    await storage.set_last(S, "alice", 1_700_000_000, "Gone fishing")
    await storage.set_last(S, "alice", 2**40, "Partie à la pêche 🎣")
    assert await storage.get_last(S, "alice") == (2**40, "Partie à la pêche 🎣")
    await storage.set_last(S, "alice", 5, "")
    assert await storage.get_last(S, "alice") == (5, "")


async def test_private_storage(storage: SqlStorage) -> None:
    private = await _private(storage)
    assert await private.get_private(S, "alice", "storage:bookmarks") is None
    await private.set_private(
        S, "alice", "storage:bookmarks", "<storage xmlns='storage:bookmarks'/>"
    )
    await private.set_private(
        S, "alice", "storage:rosternotes", "<storage xmlns='storage:rosternotes'/>"
    )
    xml = "<storage xmlns='storage:bookmarks'><conference name='Café ☕'/></storage>"
    await private.set_private(S, "alice", "storage:bookmarks", xml)
    assert await private.get_private(S, "alice", "storage:bookmarks") == xml
    assert await private.get_private(S, "alice", "storage:rosternotes") == (
        "<storage xmlns='storage:rosternotes'/>"
    )
    assert await private.get_private(S, "bob", "storage:bookmarks") is None


async def test_vcard(storage: SqlStorage) -> None:
    assert await storage.get_vcard(S, "alice") is None
    await storage.set_vcard(S, "alice", "<vCard xmlns='vcard-temp'/>")
    xml = "<vCard xmlns='vcard-temp'><FN>Алиса 🐇</FN></vCard>"
    await storage.set_vcard(S, "alice", xml)
    assert await storage.get_vcard(S, "alice") == xml
    assert await storage.get_vcard(S, "bob") is None


# -- blocking -------------------------------------------------------------------------------------


async def test_block_returns_only_new_jids(storage: SqlStorage) -> None:
    assert await storage.get_blocklist(S, "alice") == []
    assert await storage.block(S, "alice", ["z@x.org", "a@x.org", "z@x.org"]) == [
        "z@x.org",
        "a@x.org",
    ]
    assert await storage.block(S, "alice", ["a@x.org", "m@x.org"]) == ["m@x.org"]
    assert await storage.block(S, "alice", []) == []
    assert await storage.get_blocklist(S, "alice") == ["a@x.org", "m@x.org", "z@x.org"]
    assert await storage.get_blocklist(S, "bob") == []


async def test_unblock_returns_only_removed_jids(storage: SqlStorage) -> None:
    await storage.block(S, "alice", ["a@x.org", "b@x.org", "x.org"])
    assert await storage.unblock(S, "alice", ["b@x.org", "nope@x.org", "b@x.org"]) == ["b@x.org"]
    assert await storage.get_blocklist(S, "alice") == ["a@x.org", "x.org"]


async def test_unblock_all(storage: SqlStorage) -> None:
    await storage.block(S, "alice", ["z@x.org", "спам@пример.рф", "a@x.org/res"])
    await storage.block(S, "bob", ["a@x.org"])
    assert await storage.unblock_all(S, "alice") == sorted(
        ["z@x.org", "спам@пример.рф", "a@x.org/res"]
    )
    assert await storage.get_blocklist(S, "alice") == []
    assert await storage.unblock_all(S, "alice") == []
    assert await storage.get_blocklist(S, "bob") == ["a@x.org"]


# -- transactions, migrations, life cycle ----------------------------------------------------------


async def test_failed_transaction_rolls_back(storage: SqlStorage) -> None:
    with pytest.raises(RuntimeError):
        async with storage._session(transaction=True) as ex:
            await ex.execute(
                "INSERT INTO vcards (server, username, vcard) VALUES (?, ?, ?)", S, "a", "<v/>"
            )
            raise RuntimeError("boom")
    assert await storage.get_vcard(S, "a") is None
    # The connection is usable afterwards (no transaction left open).
    await storage.set_vcard(S, "a", "<v/>")
    assert await storage.get_vcard(S, "a") == "<v/>"


async def test_database_error_becomes_storage_error(storage: SqlStorage) -> None:
    with pytest.raises(StorageError):
        await storage._execute("INSERT INTO roster_items (server) VALUES (?)", S)
    with pytest.raises(StorageError):
        await storage._execute(
            "INSERT INTO roster_items (server, username, jid, subscription) VALUES (?, ?, ?, ?)",
            S,
            "a",
            "b@x.org",
            "bogus",
        )


async def test_migrations_recorded(storage: SqlStorage) -> None:
    from suricate.storage.sql import load_migrations

    expected = [m.version for m in load_migrations(storage.dialect)]
    assert expected and await storage.schema_versions() == expected


async def test_reopen_is_idempotent_and_keeps_data(
    storage: SqlStorage, make_storage: StorageFactory
) -> None:
    versions = await storage.schema_versions()
    await storage.create_user(S, "alice", None, "x")
    await storage.close()
    await storage.close()  # twice is harmless

    again = make_storage()
    await again.open()
    await again.open()  # already open: nothing happens
    assert await again.schema_versions() == versions
    assert await again.user_exists(S, "alice")
    rows = await again._fetch("SELECT COUNT(*) FROM schema_version")
    assert rows[0][0] == len(versions)


async def test_concurrent_first_open_migrates_once(make_storage: StorageFactory) -> None:
    # Server and CLI starting together on an empty database.
    first, second = make_storage(), make_storage()
    await asyncio.gather(first.open(), second.open())
    assert await first.schema_versions() == await second.schema_versions()


async def test_newer_schema_refused(storage: SqlStorage, make_storage: StorageFactory) -> None:
    await storage._execute(
        "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
        999,
        "from_the_future",
        0.0,
    )
    newer = make_storage()
    with pytest.raises(StorageError, match="newer"):
        await newer.open()


async def test_closed_storage_raises_storage_error(storage: SqlStorage) -> None:
    await storage.close()
    with pytest.raises(StorageError):
        await storage.get_user(S, "alice")


# -- FAST tokens (XEP-0484) ------------------------------------------------------------------


async def test_fast_token_slots_rotation_and_replay_counter(storage: SqlStorage) -> None:
    from suricate.storage.base import FastToken

    assert await storage.get_fast_tokens(S, "alice", "agent-1") is None
    first = FastToken("seed-1", 2000.0, "HT-SHA-256-NONE")
    await storage.store_fast_token(S, "alice", "agent-1", first)
    slots = await storage.get_fast_tokens(S, "alice", "agent-1")
    assert slots is not None and slots.current is None and slots.new == first
    # Using the new token moves it to 'current' (XEP-0484 §5) with the counter seen.
    assert await storage.use_fast_token(S, "alice", "agent-1", "new", "seed-1", 5)
    slots = await storage.get_fast_tokens(S, "alice", "agent-1")
    assert slots is not None and slots.new is None
    assert slots.current == FastToken("seed-1", 2000.0, "HT-SHA-256-NONE", 5)
    # The same or a lower counter again is a replay; a higher one is fine; none is fine.
    assert not await storage.use_fast_token(S, "alice", "agent-1", "current", "seed-1", 5)
    assert not await storage.use_fast_token(S, "alice", "agent-1", "current", "seed-1", 4)
    assert await storage.use_fast_token(S, "alice", "agent-1", "current", "seed-1", 6)
    assert await storage.use_fast_token(S, "alice", "agent-1", "current", "seed-1", None)
    slots = await storage.get_fast_tokens(S, "alice", "agent-1")
    assert slots is not None and slots.current is not None and slots.current.count == 6
    # A rotated token waits in 'new' while 'current' keeps working.
    await storage.store_fast_token(S, "alice", "agent-1", FastToken("seed-2", 3000.0, "HT-SHA-256-NONE"))
    assert await storage.use_fast_token(S, "alice", "agent-1", "current", "seed-1", 7)
    assert not await storage.use_fast_token(S, "alice", "agent-1", "new", "seed-x", None)
    assert await storage.use_fast_token(S, "alice", "agent-1", "new", "seed-2", None)
    slots = await storage.get_fast_tokens(S, "alice", "agent-1")
    assert slots is not None and slots.current is not None and slots.current.seed == "seed-2"
    assert not await storage.use_fast_token(S, "alice", "agent-1", "current", "seed-1", 8)
    with pytest.raises(ValueError):
        await storage.use_fast_token(S, "alice", "agent-1", "old", "seed-2", None)


async def test_fast_tokens_per_agent_removed_with_invalidation_and_account(
    storage: SqlStorage,
) -> None:
    from suricate.storage.base import FastToken

    await storage.create_user(S, "alice", None, "x")
    token = FastToken("s", 2000.0, "HT-SHA-256-NONE")
    await storage.store_fast_token(S, "alice", "phone", token)
    await storage.store_fast_token(S, "alice", "laptop", token)
    await storage.store_fast_token(S, "bob", "phone", token)
    await storage.remove_fast_tokens(S, "alice", "phone")
    assert await storage.get_fast_tokens(S, "alice", "phone") is None
    assert await storage.get_fast_tokens(S, "alice", "laptop") is not None
    await storage.remove_user(S, "alice")
    assert await storage.get_fast_tokens(S, "alice", "laptop") is None
    assert await storage.get_fast_tokens(S, "bob", "phone") is not None
