"""Every feature module's store (suricate/modules/mod_*/store.py), on every backend
(conftest.py): its queries, its migrations recorded in `module_schema_version`, the upgrade of
a database created when the core schema held every table, and account removal erasing the
rows of every module."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from importlib import resources

import pytest

from suricate.core.module import open_module_store
from suricate.modules.mod_blocking.store import BlockingStore
from suricate.modules.mod_fast_auth_token.store import FastToken, FastTokenStore
from suricate.modules.mod_last.store import LastStore
from suricate.modules.mod_offline.store import OfflineMessage, OfflineStore
from suricate.modules.mod_private.store import PrivateStore
from suricate.modules.mod_roster import store as roster_store
from suricate.modules.mod_roster.store import RosterItem, RosterStore
from suricate.modules.mod_vcard.search import RdbmsDirectory
from suricate.modules.mod_vcard.store import VcardStore
from suricate.storage import StorageError, turn_batch
from suricate.storage.module_store import ModuleStore, module_versions
from suricate.storage.sql import Row, SqlStorage

from .conftest import StorageFactory

S = "example.com"

MODULE_STORES: dict[str, type[ModuleStore]] = {
    "mod_roster": RosterStore,
    "mod_offline": OfflineStore,
    "mod_last": LastStore,
    "mod_private": PrivateStore,
    "mod_vcard": VcardStore,
    "mod_blocking": BlockingStore,
    "mod_fast_auth_token": FastTokenStore,
}

# The migrations each module has (mod_roster 0002, 0003: the `hidden` column; mod_vcard 0002:
# the XEP-0055 directory; mod_blocking 0002: XEP-0377 reports).
VERSIONS: dict[str, list[int]] = {name: [1] for name in MODULE_STORES} | {
    "mod_roster": [1, 2, 3], "mod_vcard": [1, 2], "mod_blocking": [1, 2]}

# Every table the feature modules own: none of them is created by the core schema any more.
FEATURE_TABLES = ("roster_items", "roster_groups", "roster_versions", "offline_messages",
                  "last_activity", "private_storage", "vcards", "blocklist", "fast_auth_token")


@dataclass
class Stores:
    roster: RosterStore
    offline: OfflineStore
    last: LastStore
    private: PrivateStore
    vcard: VcardStore
    blocking: BlockingStore
    fast: FastTokenStore

    def all(self) -> list[ModuleStore]:
        return [self.roster, self.offline, self.last, self.private, self.vcard, self.blocking,
                self.fast]

    def user_tables(self) -> tuple[str, ...]:
        """What Server.module_user_tables gives with all these modules enabled."""
        return tuple(t for store in self.all() for t in store.user_tables)


async def open_stores(db: SqlStorage) -> Stores:
    """What the server does at start for each enabled module (migrations, then the store)."""
    opened = [await open_module_store(db, name, cls) for name, cls in MODULE_STORES.items()]
    return Stores(*opened)  # type: ignore[arg-type]


def stores_of(opened: dict[str, ModuleStore]) -> Stores:
    """The Stores of a server's `module_stores` (every module of MODULE_STORES enabled)."""
    return Stores(*(opened[name] for name in MODULE_STORES))  # type: ignore[arg-type]


def unmigrated_stores(db: SqlStorage) -> Stores:
    """The stores over tables that exist already, without running any module migration."""
    return Stores(*(cls(db) for cls in MODULE_STORES.values()))  # type: ignore[arg-type]


@pytest.fixture
async def ms(storage: SqlStorage) -> Stores:
    return await open_stores(storage)


async def _table_exists(db: SqlStorage, table: str) -> bool:
    try:
        await db._fetch(f"SELECT COUNT(*) FROM {table}")
    except StorageError:
        return False
    return True


# -- module migrations ----------------------------------------------------------------------------


async def test_fresh_database_gets_feature_tables_only_from_their_modules(
    storage: SqlStorage,
) -> None:
    # The core schema alone: accounts and domains, none of the modules' tables.
    assert await _table_exists(storage, "users")
    for table in FEATURE_TABLES:
        assert not await _table_exists(storage, table), table
    await open_module_store(storage, "mod_vcard", VcardStore)
    assert await _table_exists(storage, "vcards")
    assert not await _table_exists(storage, "roster_items")  # mod_roster is not enabled
    await open_stores(storage)
    for table in (*FEATURE_TABLES, "spam_report"):
        assert await _table_exists(storage, table), table


async def test_module_migrations_recorded_per_module(storage: SqlStorage, ms: Stores) -> None:
    for name in MODULE_STORES:
        assert await module_versions(storage, name) == VERSIONS[name], name
    # Opening again (a restart) applies nothing twice.
    await open_stores(storage)
    rows = await storage._fetch("SELECT module, COUNT(*) FROM module_schema_version GROUP BY module")
    assert dict((row[0], int(row[1])) for row in rows) == {
        name: len(versions) for name, versions in VERSIONS.items()}


async def test_concurrent_first_open_applies_module_migrations_once(
    make_storage: StorageFactory,
) -> None:
    # Server and CLI starting together on an empty database, each opening every module.
    first, second = make_storage(), make_storage()
    await asyncio.gather(first.open(), second.open())
    await asyncio.gather(open_stores(first), open_stores(second))
    rows = await first._fetch("SELECT module, version FROM module_schema_version")
    assert sorted((row[0], row[1]) for row in rows) == sorted(
        (name, version) for name, versions in VERSIONS.items() for version in versions)


async def test_newer_module_schema_refused(storage: SqlStorage, ms: Stores) -> None:
    await storage._execute(
        "INSERT INTO module_schema_version (module, version, name, applied_at)"
        " VALUES (?, ?, ?, ?)", "mod_roster", 99, "from_the_future", 0.0)
    with pytest.raises(StorageError, match="mod_roster.*newer"):
        await open_module_store(storage, "mod_roster", RosterStore)


# -- upgrade from the schema where the core held every table --------------------------------------


async def _create_old_schema(db: SqlStorage) -> None:
    """What Suricate did before modules owned their tables: core migrations 0001-0003 (kept
    verbatim in tests/storage/old_schema/) creating every feature's tables."""
    from suricate.storage.sql import _SCHEMA_VERSION_DDL

    folder = resources.files("tests.storage").joinpath("old_schema", db.dialect)
    scripts = sorted(folder.iterdir(), key=lambda entry: entry.name)
    assert [s.name[:4] for s in scripts] == ["0001", "0002", "0003"]
    await db._connect()
    async with db._session(transaction=True) as ex:
        await ex.script(_SCHEMA_VERSION_DDL)
        for entry in scripts:
            await ex.script(entry.read_text(encoding="utf-8"))
            await ex.execute(
                "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                int(entry.name[:4]), entry.name[5:-4], 0.0)


# Not on MySQL: its support came after modules owned their tables, so no old MySQL schema
# ever existed to upgrade from.
@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("pgsql", marks=pytest.mark.postgres)], indirect=True)
async def test_upgrade_from_old_schema_keeps_data(make_storage: StorageFactory) -> None:
    old = make_storage()
    await _create_old_schema(old)
    for table in FEATURE_TABLES:
        assert await _table_exists(old, table), table
    await old.create_user(S, "alice", None, "x")
    for user in ("alice", "bob"):
        await _fill(unmigrated_stores(old), user, old_roster=old)
    # mod_roster 0002: a record the old rule hid (a contact's request, no name, no group)
    # is marked hidden; one with a name was shown and stays so.
    for jid, name in (("stranger@x.org", None), ("carol@x.org", "Carol")):
        await old._execute("INSERT INTO roster_items (server, username, jid, name, subscription,"
                           " ask) VALUES (?, ?, ?, ?, 'none', 'in')", S, "alice", jid, name)
    before = {user: (await _data(unmigrated_stores(old), user, roster=False))
              for user in ("alice", "bob")}
    assert before["alice"] != EMPTY[1:]
    await old.close()

    new = make_storage()
    await new.open()  # core versions 1-3 are recorded: nothing to apply
    assert await new.schema_versions() == [1, 2, 3]
    ms = await open_stores(new)  # each module's 0001 finds its tables (IF NOT EXISTS)
    for name in MODULE_STORES:
        assert await module_versions(new, name) == VERSIONS[name], name
    for user in ("alice", "bob"):
        assert await _data(ms, user, roster=False) == before[user]
    assert await ms.roster.get_roster(S, "bob") == [RosterItem("c@x.org", groups=("G",))]
    assert await ms.roster.get_roster(S, "alice") == [
        RosterItem("c@x.org", groups=("G",)),
        RosterItem("carol@x.org", name="Carol", ask="in"),
        RosterItem("stranger@x.org", ask="in", hidden=True)]
    # Still writable, and account removal reaches the old tables through the modules.
    await ms.offline.store_offline(S, "alice", OfflineMessage(2.0, "d@x.org", "alice@x", "<m/>"))
    assert await ms.offline.count_offline(S, "alice") == 2
    assert await new.remove_user(S, "alice", ms.user_tables()) is True
    assert await _data(ms, "alice") == EMPTY
    assert await _data(ms, "bob", roster=False) == before["bob"]


async def test_domain_removal_erases_module_rows(storage: SqlStorage, ms: Stores) -> None:
    assert await storage.insert_domain(S, "dynamic")
    await storage.create_user(S, "alice", None, "x")
    await _fill(ms, "alice")
    await ms.vcard.set_vcard("other.org", "alice", "<vCard/>")
    assert await storage.delete_domain(S, ms.user_tables()) is True
    assert await _data(ms, "alice") == EMPTY
    assert await storage.get_user(S, "alice") is None
    assert await ms.vcard.get_vcard("other.org", "alice") == "<vCard/>"


# -- account removal erases every module's rows --------------------------------------------------


async def _fill(ms: Stores, user: str, domain: str = S, old_roster: SqlStorage | None = None
                ) -> None:
    """A row in every table of every module for user@domain. ``old_roster``: a database with
    the roster tables of mod_roster's first version and the vCards of mod_vcard's, written in
    SQL (the stores write the tables of the last version)."""
    if old_roster is None:
        await ms.roster.put_roster_item(domain, user, RosterItem("c@x.org", groups=("G",)))
    else:
        await old_roster._execute("INSERT INTO roster_items (server, username, jid)"
                                  " VALUES (?, ?, ?)", domain, user, "c@x.org")
        await old_roster._execute("INSERT INTO roster_groups (server, username, jid, position,"
                                  " grp) VALUES (?, ?, ?, 0, 'G')", domain, user, "c@x.org")
    await ms.roster.set_roster_version(domain, user, "v1")
    await ms.offline.store_offline(domain, user,
                                   OfflineMessage(1.0, "c@x.org", f"{user}@{domain}", "<m/>"))
    await ms.last.set_last(domain, user, 100, "gone")
    await ms.private.set_private(domain, user, "storage:bookmarks", "<storage/>")
    if old_roster is None:
        await ms.vcard.set_vcard(domain, user, "<vCard/>")
    else:  # mod_vcard's first version: no directory table yet
        await old_roster._execute("INSERT INTO vcards (server, username, vcard)"
                                  " VALUES (?, ?, ?)", domain, user, "<vCard/>")
    await ms.blocking.block(domain, user, ["spam@x.org"])
    await ms.fast.store_fast_token(domain, user, "phone",
                                   FastToken("s", 2000.0, "HT-SHA-256-NONE"))


async def _data(ms: Stores, user: str, domain: str = S, roster: bool = True
                ) -> tuple[object, ...]:
    """Every module's data of user@domain; without the roster items when not ``roster``."""
    items: tuple[object, ...] = (await ms.roster.get_roster(domain, user),) if roster else ()
    return (
        *items,
        await ms.roster.get_roster_version(domain, user),
        await ms.offline.count_offline(domain, user),
        await ms.last.get_last(domain, user),
        await ms.private.get_private(domain, user, "storage:bookmarks"),
        await ms.vcard.get_vcard(domain, user),
        await ms.blocking.get_blocklist(domain, user),
        await ms.fast.list_fast_tokens(domain, user),
    )


EMPTY = ([], None, 0, None, None, None, [], [])


async def test_remove_user_deletes_all_their_data(storage: SqlStorage, ms: Stores) -> None:
    for user in ("alice", "bob"):
        await storage.create_user(S, user, None, "x")
        await _fill(ms, user)
    bob_before = await _data(ms, "bob")
    assert bob_before != EMPTY

    assert await storage.remove_user(S, "alice", ms.user_tables()) is True

    assert await storage.get_user(S, "alice") is None
    assert await _data(ms, "alice") == EMPTY
    assert await _data(ms, "bob") == bob_before
    # Nothing orphaned in the child table either.
    rows = await storage._fetch("SELECT COUNT(*) FROM roster_groups WHERE username = ?", "alice")
    assert rows[0][0] == 0


async def test_remove_user_without_account_row_still_clears_data(
    storage: SqlStorage, ms: Stores
) -> None:
    # Anonymous / external-auth users have data but no users row.
    await _fill(ms, "anon-1234")
    assert await storage.remove_user(S, "anon-1234", ms.user_tables()) is False
    assert await _data(ms, "anon-1234") == EMPTY


# -- roster ------------------------------------------------------------------------------------


async def test_roster_put_and_get(storage: SqlStorage, ms: Stores) -> None:
    item = RosterItem(
        jid="juliet@example.com",
        name="Juliet",
        subscription="both",
        ask="none",
        groups=("Friends", "Capulets"),
        approved=False,
        ask_message=None,
    )
    await ms.roster.put_roster_item(S, "romeo", item)
    assert await ms.roster.get_roster_item(S, "romeo", "juliet@example.com") == item
    assert await ms.roster.get_roster(S, "romeo") == [item]
    assert await ms.roster.get_roster(S, "juliet") == []
    assert await ms.roster.get_roster_item(S, "romeo", "nurse@example.com") is None


async def test_roster_defaults_and_pending_fields(storage: SqlStorage, ms: Stores) -> None:
    bare = RosterItem("nurse@example.com")
    pending = RosterItem(
        "tybalt@example.com",
        subscription="none",
        ask="in",
        approved=True,
        ask_message="Let me in ✉",
    )
    await ms.roster.put_roster_item(S, "romeo", bare)
    await ms.roster.put_roster_item(S, "romeo", pending)
    got = await ms.roster.get_roster_item(S, "romeo", "tybalt@example.com")
    assert got == pending and got is not None and got.approved is True
    assert await ms.roster.get_roster_item(S, "romeo", "nurse@example.com") == bare


async def test_roster_upsert_replaces_everything(storage: SqlStorage, ms: Stores) -> None:
    jid = "juliet@example.com"
    await ms.roster.put_roster_item(S, "romeo", RosterItem(jid, "J", "to", "out", ("A", "B")))
    new = RosterItem(jid, None, "both", "none", ("C",), approved=True, ask_message="hi")
    await ms.roster.put_roster_item(S, "romeo", new)
    assert await ms.roster.get_roster(S, "romeo") == [new]
    emptied = RosterItem(jid, subscription="both")
    await ms.roster.put_roster_item(S, "romeo", emptied)
    assert await ms.roster.get_roster_item(S, "romeo", jid) == emptied


async def test_roster_groups_keep_order_and_drop_duplicates(
    storage: SqlStorage, ms: Stores
) -> None:
    await ms.roster.put_roster_item(
        S, "romeo", RosterItem("a@x.org", groups=("Zeta", "alpha", "Zeta", "Ωmega"))
    )
    got = await ms.roster.get_roster_item(S, "romeo", "a@x.org")
    assert got is not None and got.groups == ("Zeta", "alpha", "Ωmega")


async def test_roster_sorted_with_groups_attached_to_the_right_item(
    storage: SqlStorage, ms: Stores
) -> None:
    items = [
        RosterItem("c@x.org", groups=("G1",)),
        RosterItem("a@x.org", groups=("G2", "G3")),
        RosterItem("b@x.org"),
        RosterItem("d@x.org", groups=("G1", "G4")),
    ]
    for item in items:
        await ms.roster.put_roster_item(S, "romeo", item)
    assert await ms.roster.get_roster(S, "romeo") == sorted(items, key=lambda i: i.jid)


async def test_roster_whole_read_keeps_the_group_order(storage: SqlStorage, ms: Stores) -> None:
    # The whole roster is read without ordering the groups in SQL: put in order afterwards.
    await ms.roster.put_roster_item(
        S, "romeo", RosterItem("a@x.org", groups=("Zeta", "alpha", "Zeta", "Ωmega", "m")))
    await ms.roster.put_roster_item(S, "romeo", RosterItem("b@x.org", groups=("b", "a")))
    assert [item.groups for item in await ms.roster.get_roster(S, "romeo")] == [
        ("Zeta", "alpha", "Ωmega", "m"), ("b", "a")]


async def test_roster_read_again_from_what_was_kept_while_nothing_changed(
    storage: SqlStorage, ms: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With SQLite the rosters read are kept (a login reads its whole roster): an account's
    next login reads nothing, until one of its rows is written, by whatever statement."""
    items = [RosterItem("a@x.org", "A", "both", groups=("G",)), RosterItem("b@x.org")]
    for item in items:
        await ms.roster.put_roster_item(S, "romeo", item)
    sent = _count_fetches(monkeypatch, ms.roster)
    first = await ms.roster.get_roster(S, "romeo")
    assert first == items
    first.clear()  # the caller's list: what is kept stays whole
    assert await ms.roster.get_roster(S, "romeo") == items
    assert await ms.roster.get_roster(S, "juliet") == []
    assert await ms.roster.get_roster(S, "juliet") == []
    # An empty roster is kept too (most accounts' at their first logins).
    assert len(sent) == (2 if storage.dialect == "sqlite" else 4)
    # The store's own writes, another account's untouched.
    changed = RosterItem("a@x.org", "A2", "both", groups=("G", "H"))
    await ms.roster.put_roster_item(S, "romeo", changed)
    await ms.roster.put_roster_item(S, "juliet", RosterItem("c@x.org"))
    assert await ms.roster.get_roster(S, "romeo") == [changed, items[1]]
    assert await ms.roster.get_roster(S, "juliet") == [RosterItem("c@x.org")]
    await ms.roster.delete_roster_item(S, "romeo", "b@x.org")
    assert await ms.roster.get_roster(S, "romeo") == [changed]
    # Statements the store does not make: a group row alone, the account's removal.
    await storage._execute("DELETE FROM roster_groups WHERE username = ? AND grp = ?",
                           "romeo", "H")
    assert await ms.roster.get_roster(S, "romeo") == [RosterItem("a@x.org", "A2", "both",
                                                                 groups=("G",))]
    await storage.create_user(S, "romeo", None, "x")
    assert await storage.remove_user(S, "romeo", ms.user_tables()) is True
    assert await ms.roster.get_roster(S, "romeo") == []


async def test_roster_kept_reads_see_other_processes_commits(
    make_storage: StorageFactory,
) -> None:
    """Another process writing the SQLite file (the CLI, another worker) empties what was
    kept: its commits change the file's data_version."""
    mine = make_storage()
    await mine.open()
    store = (await open_stores(mine)).roster
    await store.put_roster_item(S, "romeo", RosterItem("a@x.org"))
    assert await store.get_roster(S, "romeo") == [RosterItem("a@x.org")]
    assert await store.get_roster(S, "juliet") == []  # kept empty
    other = make_storage()
    await other.open()
    await (await open_stores(other)).roster.put_roster_item(S, "romeo", RosterItem("b@x.org"))
    assert await store.get_roster(S, "romeo") == [RosterItem("a@x.org"), RosterItem("b@x.org")]
    await (await open_stores(other)).roster.put_roster_item(S, "juliet", RosterItem("c@x.org"))
    assert await store.get_roster(S, "juliet") == [RosterItem("c@x.org")]
    # A connection opened again (temporary triggers go with the old one) still tells.
    await mine.close()
    await mine.open()
    assert await store.get_roster(S, "romeo") == [RosterItem("a@x.org"), RosterItem("b@x.org")]
    await store.delete_roster_item(S, "romeo", "a@x.org")
    assert await store.get_roster(S, "romeo") == [RosterItem("b@x.org")]


async def test_roster_kept_reads_are_bounded(
    storage: SqlStorage, ms: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(roster_store, "CACHED_ITEMS", 4)
    for user in ("u0", "u1", "u2"):
        await ms.roster.put_roster_item(S, user, RosterItem("a@x.org"))
        await ms.roster.put_roster_item(S, user, RosterItem("b@x.org"))
    sent = _count_fetches(monkeypatch, ms.roster)
    for user in ("u0", "u1", "u0", "u2", "u1", "u2"):
        assert len(await ms.roster.get_roster(S, user)) == 2
    # Two rosters of two items fit: u2 pushes out u1 (u0 was read since), u1 then u0.
    assert len(sent) == (4 if storage.dialect == "sqlite" else 6)
    assert ms.roster._cached_items <= 4


async def test_roster_delete(storage: SqlStorage, ms: Stores) -> None:
    await ms.roster.put_roster_item(S, "romeo", RosterItem("a@x.org", groups=("G",)))
    await ms.roster.put_roster_item(S, "romeo", RosterItem("b@x.org"))
    assert await ms.roster.delete_roster_item(S, "romeo", "a@x.org") is True
    assert await ms.roster.delete_roster_item(S, "romeo", "a@x.org") is False
    assert [i.jid for i in await ms.roster.get_roster(S, "romeo")] == ["b@x.org"]
    # The old groups went with the item (cascade), they do not come back.
    await ms.roster.put_roster_item(S, "romeo", RosterItem("a@x.org"))
    got = await ms.roster.get_roster_item(S, "romeo", "a@x.org")
    assert got is not None and got.groups == ()


async def test_roster_unicode(storage: SqlStorage, ms: Stores) -> None:
    item = RosterItem("ромео@пример.рф", "Ромео 🌹", "from", "out", ("Семья", "家族"))
    await ms.roster.put_roster_item(S, "джульетта", item)
    assert await ms.roster.get_roster(S, "джульетта") == [item]


async def test_roster_item_rejects_unknown_states() -> None:
    with pytest.raises(ValueError):
        RosterItem("a@x.org", subscription="pending")
    with pytest.raises(ValueError):
        RosterItem("a@x.org", ask="subscribe")


async def test_roster_version(storage: SqlStorage, ms: Stores) -> None:
    assert await ms.roster.get_roster_version(S, "romeo") is None
    await ms.roster.set_roster_version(S, "romeo", "1")
    await ms.roster.set_roster_version(S, "romeo", "2")
    assert await ms.roster.get_roster_version(S, "romeo") == "2"
    assert await ms.roster.get_roster_version(S, "juliet") is None


# -- roster: batched reads (the probes of a login, RFC 6121 §4.2.2 / §4.3.2) -----------------

_CONTACT = "r0@example.com"


def _count_fetches(monkeypatch: pytest.MonkeyPatch, store: RosterStore) -> list[str]:
    """The statements the store sends from now on."""
    sent: list[str] = []
    fetch = store.fetch

    async def counting(sql: str, *args: object) -> list[Row]:
        sent.append(sql)
        return await fetch(sql, *args)

    monkeypatch.setattr(store, "fetch", counting)
    return sent


async def test_roster_batched_reads_of_one_turn_are_one_query(
    storage: SqlStorage, ms: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = {
        "u0": RosterItem(_CONTACT, subscription="from"),
        "u1": RosterItem(_CONTACT, "R", "both", groups=("Zeta", "alpha")),
        "u2": RosterItem(_CONTACT, subscription="none", ask="in", ask_message="hi"),
        "u3": RosterItem(_CONTACT, groups=("G",), approved=True),
    }
    for user, item in stored.items():
        await ms.roster.put_roster_item(S, user, item)
        # Another item of the same account, and another account's item with groups: neither
        # may leak into the answers.
        await ms.roster.put_roster_item(S, user, RosterItem("other@example.com", groups=("X",)))
    await ms.roster.put_roster_item(S, "u9", RosterItem("other@example.com", groups=("Y",)))
    users = ["u0", "u1", "u2", "u3", "u4", "u9", "u1"]  # u4, u9: no item; u1 asked twice
    sent = _count_fetches(monkeypatch, ms.roster)
    got = await asyncio.gather(
        *(ms.roster.get_roster_item_batched(S, user, _CONTACT) for user in users),
        ms.roster.get_roster_item_batched(S, "u1", "other@example.com"),  # a group of one
    )
    assert got == [stored.get(user) for user in users] + [
        RosterItem("other@example.com", groups=("X",))]
    assert len(sent) == 2  # one per (server, contact), however many accounts ask
    # The same answers as the plain read's.
    plain = [await ms.roster.get_roster_item(S, user, _CONTACT) for user in users]
    assert got[:-1] == plain


async def test_roster_batched_reads_in_chunks(
    storage: SqlStorage, ms: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(turn_batch, "BATCH_CHUNK", 4)
    users = [f"u{n}" for n in range(10)]
    for user in users[::2]:
        await ms.roster.put_roster_item(S, user, RosterItem(_CONTACT, groups=(user,)))
    sent = _count_fetches(monkeypatch, ms.roster)
    got = await asyncio.gather(
        *(ms.roster.get_roster_item_batched(S, user, _CONTACT) for user in users))
    assert got == [RosterItem(_CONTACT, groups=(u,)) if n % 2 == 0 else None
                   for n, u in enumerate(users)]
    assert len(sent) == 3  # 4 + 4 + 2


async def test_roster_batched_read_failure_reaches_every_caller(
    storage: SqlStorage, ms: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def failing(sql: str, *args: object) -> list[Row]:
        raise StorageError("database gone")

    monkeypatch.setattr(ms.roster, "fetch", failing)
    got = await asyncio.gather(
        *(ms.roster.get_roster_item_batched(S, f"u{n}", _CONTACT) for n in range(3)),
        ms.roster.get_roster_item_batched(S, "u0", "other@example.com"),
        return_exceptions=True)
    assert all(isinstance(r, StorageError) and str(r) == "database gone" for r in got)
    monkeypatch.undo()
    # Nothing stays behind: the next turn's reads work.
    assert await ms.roster.get_roster_item_batched(S, "u0", _CONTACT) is None


async def test_roster_batched_read_before_a_write_sees_the_state_before_it(
    storage: SqlStorage, ms: Stores
) -> None:
    old = RosterItem(_CONTACT, subscription="from")
    await ms.roster.put_roster_item(S, "u0", old)
    reader = asyncio.create_task(ms.roster.get_roster_item_batched(S, "u0", _CONTACT))
    await asyncio.sleep(0)  # the read is asked for, its batch not yet sent
    # As if the read had gone out at once: it is answered before the write...
    await ms.roster.put_roster_item(S, "u0", RosterItem(_CONTACT, subscription="none"))
    assert await reader == old
    # ...and a read asked for after the write sees it.
    reader = asyncio.create_task(ms.roster.get_roster_item_batched(S, "u0", _CONTACT))
    await asyncio.sleep(0)
    await ms.roster.delete_roster_item(S, "u0", _CONTACT)
    assert await reader == RosterItem(_CONTACT, subscription="none")
    assert await ms.roster.get_roster_item_batched(S, "u0", _CONTACT) is None


async def test_roster_batched_read_of_a_cancelled_caller(
    storage: SqlStorage, ms: Stores
) -> None:
    item = RosterItem(_CONTACT, subscription="both")
    await ms.roster.put_roster_item(S, "u0", item)
    gone = asyncio.create_task(ms.roster.get_roster_item_batched(S, "u0", _CONTACT))
    kept = asyncio.create_task(ms.roster.get_roster_item_batched(S, "u0", _CONTACT))
    await asyncio.sleep(0)
    gone.cancel()
    assert await kept == item
    assert gone.cancelled()


# -- offline messages ---------------------------------------------------------------------------


def _msg(n: int, expire: float | None = None) -> OfflineMessage:
    return OfflineMessage(
        timestamp=1_700_000_000.123456 + n,
        from_jid=f"sender{n}@x.org/res",
        to_jid=f"alice@{S}",
        packet=f"<message to='alice@{S}'><body>n°{n} ✓</body></message>",
        expire=expire,
    )


async def test_offline_store_count_pop_in_arrival_order(storage: SqlStorage, ms: Stores) -> None:
    # Timestamps deliberately out of order: arrival order, not the stamp, decides.
    msgs = [_msg(3), _msg(1), _msg(2), _msg(0, expire=4_000_000_000.5)]
    for msg in msgs:
        await ms.offline.store_offline(S, "alice", msg)
    await ms.offline.store_offline(S, "bob", _msg(9))
    assert await ms.offline.count_offline(S, "alice") == 4
    assert await ms.offline.pop_offline(S, "alice") == msgs
    assert await ms.offline.count_offline(S, "alice") == 0
    assert await ms.offline.pop_offline(S, "alice") == []
    assert await ms.offline.count_offline(S, "bob") == 1


async def test_offline_store_many_keeps_order_over_several_statements(
        storage: SqlStorage, ms: Stores) -> None:
    """A batch of the router (suricate/core/offline_batch.py) in one INSERT, and one longer
    than an INSERT takes (``_ROWS_PER_INSERT``) in several, in one transaction: popped in
    the batch's order, after what was there, expiry kept."""
    await ms.offline.store_offline(S, "alice", _msg(1000))
    batch = [_msg(n, expire=4_000_000_000.5 if n % 3 else None) for n in range(250, 0, -1)]
    await ms.offline.store_offline_many(S, "alice", batch[:2])
    await ms.offline.store_offline_many(S, "alice", batch[2:])
    await ms.offline.store_offline_many(S, "bob", [_msg(7)])
    assert await ms.offline.count_offline(S, "alice") == 251
    assert await ms.offline.pop_offline(S, "alice") == [_msg(1000), *batch]
    assert await ms.offline.pop_offline(S, "bob") == [_msg(7)]


async def test_offline_pop_drops_expired(storage: SqlStorage, ms: Stores) -> None:
    await ms.offline.store_offline(S, "alice", _msg(1, expire=100.0))
    await ms.offline.store_offline(S, "alice", _msg(2, expire=300.0))
    await ms.offline.store_offline(S, "alice", _msg(3))
    assert await ms.offline.pop_offline(S, "alice", now=200.0) == [_msg(2, 300.0), _msg(3)]
    assert await ms.offline.count_offline(S, "alice") == 0


async def test_offline_remove_from_sender(storage: SqlStorage, ms: Stores) -> None:
    # The spammer's messages from any resource go, a look-alike's stay ('_' is no wildcard).
    for frm, to in (("spam_bot@x.org/a", "alice"), ("spam_bot@x.org", "bob"),
                    ("spam_bot@x.org/b", "bob"), ("spamXbot@x.org/a", "alice"),
                    ("spam_bot@x.org.evil/a", "alice")):
        await ms.offline.store_offline(S, to, OfflineMessage(1.0, frm, f"{to}@{S}", "<m/>"))
    assert await ms.offline.remove_from_sender("spam_bot@x.org") == 3
    assert [m.from_jid for m in await ms.offline.pop_offline(S, "alice")] == [
        "spamXbot@x.org/a", "spam_bot@x.org.evil/a"]
    assert await ms.offline.count_offline(S, "bob") == 0


async def test_spam_reports_newest_first_by_domain_and_reported(storage: SqlStorage,
                                                                ms: Stores) -> None:
    add = ms.blocking.add_report
    await add(S, "alice", "spam_bot@x.org", "urn:xmpp:reporting:spam", "ads ✓", ["1", "2"],
              ["<message/>"], ["report-origin"], 1000.5)
    await add(S, "bob", "spam_bot@x.org/phone", "urn:xmpp:reporting:abuse", None, [], [], [],
              1001.0)
    await add("other.test", "carol", "spamXbot@x.org", "urn:xmpp:reporting:spam", None, [],
              [], [], 1002.0)
    mine = await ms.blocking.list_reports(domain=S)
    assert [(r.reporter, r.reported) for r in mine] == [
        (f"bob@{S}", "spam_bot@x.org/phone"), (f"alice@{S}", "spam_bot@x.org")]
    first = mine[1]
    assert (first.reason, first.text, first.stanza_ids, first.messages, first.processing,
            first.created_at) == ("urn:xmpp:reporting:spam", "ads ✓", ["1", "2"],
                                  ["<message/>"], ["report-origin"], 1000.5)
    about = await ms.blocking.list_reports(reported="spam_bot@x.org")
    assert [r.reporter for r in about] == [f"bob@{S}", f"alice@{S}"]
    assert len(await ms.blocking.list_reports(limit=1)) == 1


async def test_remove_expired_offline(storage: SqlStorage, ms: Stores) -> None:
    await ms.offline.store_offline(S, "alice", _msg(1, expire=100.0))
    await ms.offline.store_offline(S, "bob", _msg(2, expire=150.0))
    await ms.offline.store_offline(S, "alice", _msg(3, expire=500.0))
    await ms.offline.store_offline(S, "alice", _msg(4))
    await ms.offline.store_offline("other.test", "carol", _msg(5, expire=100.0))
    # one domain's (the GraphQL mutation's domain argument), then everyone's
    assert await ms.offline.remove_expired_offline(200.0, S) == 2
    assert await ms.offline.count_offline("other.test", "carol") == 1
    assert await ms.offline.remove_expired_offline(200.0) == 1
    assert await ms.offline.remove_expired_offline(200.0) == 0
    assert await ms.offline.count_offline(S, "bob") == 0
    assert await ms.offline.pop_offline(S, "alice", now=0.0) == [_msg(3, 500.0), _msg(4)]


async def test_offline_concurrent_pops_deliver_each_message_once(
    ms: Stores, make_storage: StorageFactory
) -> None:
    # A second storage on the same database plays another process (or node) popping at
    # the same moment; with pgsql the pops really run in parallel on pooled connections.
    other_db = make_storage()
    await other_db.open()
    other = await open_module_store(other_db, "mod_offline", OfflineStore)
    msgs = [_msg(n) for n in range(60)]
    for msg in msgs:
        await ms.offline.store_offline(S, "alice", msg)
    results = await asyncio.gather(
        *(s.pop_offline(S, "alice") for s in (ms.offline, other, ms.offline, other, ms.offline))
    )
    delivered = [m for batch in results for m in batch]
    assert sorted(delivered, key=lambda m: m.timestamp) == msgs  # none lost, none twice
    for batch in results:
        assert batch == sorted(batch, key=lambda m: m.timestamp)  # each batch in order
    assert await ms.offline.count_offline(S, "alice") == 0


async def test_offline_store_while_popping_loses_nothing(storage: SqlStorage, ms: Stores) -> None:
    delivered: list[OfflineMessage] = []

    async def producer() -> None:
        for n in range(40):
            await ms.offline.store_offline(S, "alice", _msg(n))
            await asyncio.sleep(0)

    async def consumer() -> None:
        for _ in range(40):
            delivered.extend(await ms.offline.pop_offline(S, "alice"))
            await asyncio.sleep(0)

    await asyncio.gather(producer(), consumer())
    delivered.extend(await ms.offline.pop_offline(S, "alice"))
    assert delivered == [_msg(n) for n in range(40)]


# -- last activity, private XML, vCard -----------------------------------------------------------


async def test_last_activity(storage: SqlStorage, ms: Stores) -> None:
    assert await ms.last.get_last(S, "alice") is None
    await ms.last.set_last(S, "alice", 1_700_000_000, "Gone fishing")
    await ms.last.set_last(S, "alice", 2**40, "Partie à la pêche 🎣")
    assert await ms.last.get_last(S, "alice") == (2**40, "Partie à la pêche 🎣")
    await ms.last.set_last(S, "alice", 5, "")
    assert await ms.last.get_last(S, "alice") == (5, "")


async def test_private_storage(storage: SqlStorage, ms: Stores) -> None:
    private = ms.private
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


async def test_vcard(storage: SqlStorage, ms: Stores) -> None:
    assert await ms.vcard.get_vcard(S, "alice") is None
    await ms.vcard.set_vcard(S, "alice", "<vCard xmlns='vcard-temp'/>")
    xml = "<vCard xmlns='vcard-temp'><FN>Алиса 🐇</FN></vCard>"
    await ms.vcard.set_vcard(S, "alice", xml)
    assert await ms.vcard.get_vcard(S, "alice") == xml
    assert await ms.vcard.get_vcard(S, "bob") is None


# -- blocking -------------------------------------------------------------------------------------


async def test_block_returns_only_new_jids(storage: SqlStorage, ms: Stores) -> None:
    assert await ms.blocking.get_blocklist(S, "alice") == []
    assert await ms.blocking.block(S, "alice", ["z@x.org", "a@x.org", "z@x.org"]) == [
        "z@x.org",
        "a@x.org",
    ]
    assert await ms.blocking.block(S, "alice", ["a@x.org", "m@x.org"]) == ["m@x.org"]
    assert await ms.blocking.block(S, "alice", []) == []
    assert await ms.blocking.get_blocklist(S, "alice") == ["a@x.org", "m@x.org", "z@x.org"]
    assert await ms.blocking.get_blocklist(S, "bob") == []


async def test_unblock_returns_only_removed_jids(storage: SqlStorage, ms: Stores) -> None:
    await ms.blocking.block(S, "alice", ["a@x.org", "b@x.org", "x.org"])
    assert await ms.blocking.unblock(S, "alice", ["b@x.org", "nope@x.org", "b@x.org"]) == ["b@x.org"]
    assert await ms.blocking.get_blocklist(S, "alice") == ["a@x.org", "x.org"]


async def test_unblock_all(storage: SqlStorage, ms: Stores) -> None:
    await ms.blocking.block(S, "alice", ["z@x.org", "спам@пример.рф", "a@x.org/res"])
    await ms.blocking.block(S, "bob", ["a@x.org"])
    assert await ms.blocking.unblock_all(S, "alice") == sorted(
        ["z@x.org", "спам@пример.рф", "a@x.org/res"]
    )
    assert await ms.blocking.get_blocklist(S, "alice") == []
    assert await ms.blocking.unblock_all(S, "alice") == []
    assert await ms.blocking.get_blocklist(S, "bob") == ["a@x.org"]


async def test_blocklist_batched_reads_of_one_turn_are_one_query(
    storage: SqlStorage, ms: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probes of a login read the blocklists of its offline contacts: one statement for
    all of them where reads suspend (PostgreSQL, MySQL); SQLite keeps its inline reads."""
    await ms.blocking.block(S, "u0", ["z@x.org", "a@x.org"])
    await ms.blocking.block(S, "u2", ["x.org"])
    await ms.blocking.block("other.example", "u1", ["m@x.org"])  # another domain's u1
    users = ["u0", "u1", "u2", "u3", "u0"]  # u1, u3: nothing blocked here; u0 asked twice
    sent: list[str] = []
    fetch = ms.blocking.fetch

    async def counting(sql: str, *args: object) -> list[Row]:
        sent.append(sql)
        return await fetch(sql, *args)

    monkeypatch.setattr(ms.blocking, "fetch", counting)
    got = await asyncio.gather(
        *(ms.blocking.get_blocklist_batched(S, user) for user in users),
        ms.blocking.get_blocklist_batched("other.example", "u1"))
    assert got == [["a@x.org", "z@x.org"], [], ["x.org"], [], ["a@x.org", "z@x.org"],
                   ["m@x.org"]]
    # One per domain (the other domain's account alone: the plain read).
    assert len(sent) == (6 if storage.inline else 2)
    assert got[:-1] == [await ms.blocking.get_blocklist(S, user) for user in users]


async def test_blocklist_batched_read_before_a_change_sees_the_list_before_it(
    storage: SqlStorage, ms: Stores
) -> None:
    await ms.blocking.block(S, "u0", ["a@x.org"])
    for change, after in ((ms.blocking.block(S, "u0", ["b@x.org"]), ["a@x.org", "b@x.org"]),
                          (ms.blocking.unblock(S, "u0", ["a@x.org"]), ["b@x.org"]),
                          (ms.blocking.unblock_all(S, "u0"), [])):
        before = await ms.blocking.get_blocklist(S, "u0")
        reader = asyncio.create_task(ms.blocking.get_blocklist_batched(S, "u0"))
        await asyncio.sleep(0)  # asked for, its batch not sent yet (a network database)
        await change
        assert await reader == before
        assert await ms.blocking.get_blocklist_batched(S, "u0") == after


async def test_blocklist_batched_read_failure_reaches_every_caller(
    storage: SqlStorage, ms: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def failing(sql: str, *args: object) -> list[Row]:
        raise StorageError("database gone")

    monkeypatch.setattr(ms.blocking, "fetch", failing)
    got = await asyncio.gather(
        *(ms.blocking.get_blocklist_batched(S, f"u{n}") for n in range(3)),
        return_exceptions=True)
    assert all(isinstance(r, StorageError) and str(r) == "database gone" for r in got)
    monkeypatch.undo()
    assert await ms.blocking.get_blocklist_batched(S, "u0") == []


# -- FAST tokens (XEP-0484) ------------------------------------------------------------------


async def test_fast_token_slots_rotation_and_replay_counter(
    storage: SqlStorage, ms: Stores
) -> None:
    assert await ms.fast.get_fast_tokens(S, "alice", "agent-1") is None
    first = FastToken("seed-1", 2000.0, "HT-SHA-256-NONE")
    await ms.fast.store_fast_token(S, "alice", "agent-1", first)
    slots = await ms.fast.get_fast_tokens(S, "alice", "agent-1")
    assert slots is not None and slots.current is None and slots.new == first
    # Using the new token moves it to 'current' (XEP-0484 §5) with the counter seen.
    assert await ms.fast.use_fast_token(S, "alice", "agent-1", "new", "seed-1", 5)
    slots = await ms.fast.get_fast_tokens(S, "alice", "agent-1")
    assert slots is not None and slots.new is None
    assert slots.current == FastToken("seed-1", 2000.0, "HT-SHA-256-NONE", 5)
    # The same or a lower counter again is a replay; a higher one is fine; none is fine.
    assert not await ms.fast.use_fast_token(S, "alice", "agent-1", "current", "seed-1", 5)
    assert not await ms.fast.use_fast_token(S, "alice", "agent-1", "current", "seed-1", 4)
    assert await ms.fast.use_fast_token(S, "alice", "agent-1", "current", "seed-1", 6)
    assert await ms.fast.use_fast_token(S, "alice", "agent-1", "current", "seed-1", None)
    slots = await ms.fast.get_fast_tokens(S, "alice", "agent-1")
    assert slots is not None and slots.current is not None and slots.current.count == 6
    # A rotated token waits in 'new' while 'current' keeps working.
    await ms.fast.store_fast_token(S, "alice", "agent-1", FastToken("seed-2", 3000.0, "HT-SHA-256-NONE"))
    assert await ms.fast.use_fast_token(S, "alice", "agent-1", "current", "seed-1", 7)
    assert not await ms.fast.use_fast_token(S, "alice", "agent-1", "new", "seed-x", None)
    assert await ms.fast.use_fast_token(S, "alice", "agent-1", "new", "seed-2", None)
    slots = await ms.fast.get_fast_tokens(S, "alice", "agent-1")
    assert slots is not None and slots.current is not None and slots.current.seed == "seed-2"
    assert not await ms.fast.use_fast_token(S, "alice", "agent-1", "current", "seed-1", 8)
    with pytest.raises(ValueError):
        await ms.fast.use_fast_token(S, "alice", "agent-1", "old", "seed-2", None)


async def test_fast_tokens_per_agent_removed_with_invalidation_and_account(
    storage: SqlStorage, ms: Stores
) -> None:
    await storage.create_user(S, "alice", None, "x")
    token = FastToken("s", 2000.0, "HT-SHA-256-NONE")
    await ms.fast.store_fast_token(S, "alice", "phone", token)
    await ms.fast.store_fast_token(S, "alice", "laptop", token)
    await ms.fast.store_fast_token(S, "bob", "phone", token)
    await ms.fast.remove_fast_tokens(S, "alice", "phone")
    assert await ms.fast.get_fast_tokens(S, "alice", "phone") is None
    assert await ms.fast.get_fast_tokens(S, "alice", "laptop") is not None
    await storage.remove_user(S, "alice", ms.user_tables())
    assert await ms.fast.get_fast_tokens(S, "alice", "laptop") is None
    assert await ms.fast.get_fast_tokens(S, "bob", "phone") is not None


# -- mod_vcard's user directory (XEP-0055, rdbms backend) -----------------------------------------


def _card(fn: str, given: str = "", email: str = "") -> str:
    return (f"<vCard xmlns='vcard-temp'><FN>{fn}</FN><N><GIVEN>{given}</GIVEN></N>"
            f"<EMAIL><INTERNET/><USERID>{email}</USERID></EMAIL></vCard>")


async def test_vcard_directory_search(storage: SqlStorage, ms: Stores) -> None:
    await ms.vcard.set_vcard(S, "alice", _card("Alice Liddell", "Alice", "Alice@Example.com"))
    await ms.vcard.set_vcard(S, "alicia", _card("Alicia 100%_Sure", "Alicia"))
    await ms.vcard.set_vcard(S, "bob", _card("Bob", "Bob"))
    await ms.vcard.set_vcard("other.org", "alina", _card("Alina", "Alina"))
    directory = RdbmsDirectory(ms.vcard)

    async def jids(fields: list[tuple[str, str]], limit: int | None = None) -> list[str]:
        return [item.username for item in await directory.search(S, fields, limit)]

    assert await jids([("first", "ALI*")]) == ["alice", "alicia"]  # this domain only
    assert await jids([("first", "ali*")], limit=1) == ["alice"]
    assert await jids([("email", "alice@example.com")]) == ["alice"]
    assert await jids([("fn", "*100%_sure")]) == ["alicia"]  # % and _ as themselves
    assert await jids([("fn", "alicia 1_0%")]) == []
    assert await jids([("fn", "*")]) == ["alice", "alicia", "bob"]
    assert await jids([("user", "bob"), ("first", "bob")]) == ["bob"]
    assert await jids([("user", ""), ("unknown", "x")]) == []
    (item,) = await directory.search(S, [("user", "alice")], None)
    assert dict(item.fields)["fn"] == "Alice Liddell"
    assert dict(item.fields)["email"] == "Alice@Example.com"
    # Values are kept to 191 characters (MySQL's key limit), lower-cased ones too, however
    # much longer lower-casing makes them ("İ" is two characters lower-cased).
    await ms.vcard.set_vcard(S, "ilse", _card("İ" * 300))
    assert await jids([("fn", "İİ*")]) == ["ilse"]
    # Account removal takes the directory row with the vCard.
    await storage.create_user(S, "alice", None, "x")
    assert await storage.remove_user(S, "alice", ms.user_tables()) is True
    assert await jids([("first", "ali*")]) == ["alicia"]


async def test_vcards_stored_before_the_directory_are_indexed(storage: SqlStorage,
                                                              ms: Stores) -> None:
    # A vCard written before mod_vcard's migration 2 has no directory row.
    await storage._execute("INSERT INTO vcards (server, username, vcard) VALUES (?, ?, ?)",
                           S, "alice", _card("Alice"))
    directory = RdbmsDirectory(ms.vcard)
    assert await directory.search(S, [("fn", "alice")], None) == []
    assert await ms.vcard.index_unindexed() == 1
    assert [i.username for i in await directory.search(S, [("fn", "alice")], None)] == ["alice"]
    assert await ms.vcard.index_unindexed() == 0
