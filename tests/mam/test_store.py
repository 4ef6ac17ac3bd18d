"""mod_mam's store and async writer, on SQLite and PostgreSQL (tests/storage fixtures)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from suricate.core.module import open_module_store
from suricate.modules.mod_mam import IdGenerator, sqlite_writer
from suricate.modules.mod_mam.query import Query
from suricate.modules.mod_mam.store import MamStore, Prefs, Row
from suricate.modules.mod_mam.writer import AsyncWriter
from suricate.storage.sql import SqlStorage

S = "example.com"


def row(mam_id: int, user: str = "alice", peer: str = "bob@example.com",
        body: str = "hi") -> Row:
    return (mam_id, S, user, peer, "r", "O", f"{user}@{S}/a", f"o{mam_id}", body,
            f"<message to='{peer}'><body>{body}</body></message>")


async def mam_store(storage: SqlStorage) -> MamStore:
    store = await open_module_store(storage, "mod_mam", MamStore)
    assert isinstance(store, MamStore)
    return store


async def test_paging_and_counts(storage: SqlStorage) -> None:
    store = await mam_store(storage)
    ids = IdGenerator(3)
    rows = [row(ids.next(), body=f"m{i}") for i in range(25)]
    await store.insert_many(rows)
    all_ids = [r[0] for r in rows]
    assert all_ids == sorted(all_ids) and all(i & 0xFF == 3 for i in all_ids)
    page = await store.lookup(S, "alice", Query(), 10, simple=False)
    assert [m.id for m in page.messages] == all_ids[:10]
    assert (page.count, page.first_index, page.complete) == (25, 0, False)
    page = await store.lookup(S, "alice", Query(after=all_ids[19]), 10, simple=False)
    assert [m.id for m in page.messages] == all_ids[20:]
    assert (page.first_index, page.complete) == (20, True)
    page = await store.lookup(S, "alice", Query(last_page=True), 10, simple=False)
    assert [m.id for m in page.messages] == all_ids[15:]
    assert page.first_index == 15 and not page.complete
    page = await store.lookup(S, "alice", Query(before=all_ids[5]), 10, simple=False)
    assert [m.id for m in page.messages] == all_ids[:5] and page.complete
    page = await store.lookup(S, "alice", Query(index=12), 5, simple=True)
    assert [m.id for m in page.messages] == all_ids[12:17] and page.count is None
    # #extended filters and full text search
    page = await store.lookup(S, "alice", Query(ids=[all_ids[3], all_ids[7]]), 10, False)
    assert [m.id for m in page.messages] == [all_ids[3], all_ids[7]]
    page = await store.lookup(S, "alice", Query(full_text="M2"), 50, False)
    assert page.count == 6  # m2, m20..m24
    assert await store.lookup(S, "bob", Query(), 10, False) == \
        type(page)([], True, 0, None)
    assert await store.bounds(S, "alice") == (all_ids[0], all_ids[-1])
    # <max>0</max>: no messages; the page is complete only when nothing matches, also in a
    # simple query, which has no count to say that there is more (XEP-0313 §4.3).
    for simple in (True, False):
        assert not (await store.lookup(S, "alice", Query(max=0), 0, simple)).complete
        page = await store.lookup(S, "alice", Query(max=0, after=all_ids[-1]), 0, simple)
        assert page.complete and page.messages == []
        assert (await store.lookup(S, "bob", Query(max=0), 0, simple)).complete


async def test_full_text_search_whatever_the_body_spacing(storage: SqlStorage) -> None:
    # The archive keeps the body in lower case with its whitespace as written
    # (normalize_body); a search looks for each word on its own, in any order and case.
    from suricate.modules.mod_mam.query import normalize_body

    store = await mam_store(storage)
    ids = IdGenerator(1)
    bodies = ["Tea\n\nat  FIVE ", "\tcoffee at six", "teatime"]
    await store.insert_many([row(ids.next(), body=normalize_body(b)) for b in bodies])

    async def found(text: str) -> int | None:
        return (await store.lookup(S, "alice", Query(full_text=text), 50, False)).count

    assert await found("five TEA") == 1
    assert await found("  COFFEE\n") == 1
    assert await found("tea") == 2  # a word inside a word is found, as before
    assert await found("at") == 3
    assert await found("tea five six") == 0


async def test_full_text_search_ignores_punctuation_around_words(storage: SqlStorage) -> None:
    # What a user types in a search box: "tonight?" finds "...tonight. Bring the wine";
    # the punctuation inside a word stays, and a word of punctuation only is searched as is.
    from suricate.modules.mod_mam.query import normalize_body, search_words

    store = await mam_store(storage)
    ids = IdGenerator(1)
    bodies = ["Are you coming TONIGHT. Bring the wine!", "I don't know...", "C++ or e-mail?"]
    await store.insert_many([row(ids.next(), body=normalize_body(b)) for b in bodies])

    async def found(text: str) -> int | None:
        return (await store.lookup(S, "alice", Query(full_text=text), 50, False)).count

    assert search_words("«Tonight?» (wine), ... c++") == ["tonight", "wine", "...", "c++"]
    assert await found("tonight? (wine),") == 1
    assert await found("\"don't\"") == 1
    assert await found("...") == 1
    assert await found("c++, e-mail!") == 1
    assert await found("dont") == 0  # punctuation inside a word is kept


async def test_prefs_and_removal(storage: SqlStorage) -> None:
    store = await mam_store(storage)
    assert await store.get_prefs(S, "alice") is None
    await store.set_prefs(S, "alice", Prefs("roster", ["a@x"], ["b@x", "c@x"]))
    await store.set_prefs(S, "alice", Prefs("never", ["a@x"], ["b@x"]))
    assert await store.get_prefs(S, "alice") == Prefs("never", ["a@x"], ["b@x"])
    await store.insert_many([row(1000), row(2000, user="bob")])
    # Removing an account erases its module tables (ModuleStore.user_tables).
    await storage.remove_user(S, "alice", store.user_tables)
    assert await store.get_prefs(S, "alice") is None
    assert await store.bounds(S, "alice") is None
    assert await store.bounds(S, "bob") == (2000, 2000)


async def test_writer_batches_orders_and_drains(storage: SqlStorage) -> None:
    store = await mam_store(storage)
    inserts: list[int] = []
    real_insert = store.insert_many

    async def counting(rows: Any) -> None:
        inserts.append(len(rows))
        await real_insert(rows)

    store.insert_many = counting  # type: ignore[method-assign]
    tasks: set[asyncio.Task[Any]] = set()

    def spawn(coro: Any) -> None:
        tasks.add(asyncio.get_running_loop().create_task(coro))

    async def no_retract(_: Any) -> None:
        return None

    writer = AsyncWriter(store, batch_size=10, flush_interval_ms=60_000,
                         spawn=spawn, retract=no_retract)
    ids = IdGenerator()
    for _ in range(10):
        writer.add(row(ids.next()))
    await asyncio.gather(*tasks)
    for _ in range(5):
        writer.add(row(ids.next()))
    await asyncio.sleep(0.01)
    # A full batch went at once, as one multi-row INSERT; 5 rows wait for the interval.
    assert inserts == [10] and writer.pending() == 5
    await writer.flush_archive(S, "alice")  # what a query does first
    assert inserts == [10, 5]
    writer.add(row(ids.next()))
    await writer.stop()  # server stop: the pending batch is written
    page = await store.lookup(S, "alice", Query(), 50, simple=False)
    assert page.count == 16
    assert [m.id for m in page.messages] == sorted(m.id for m in page.messages)


async def test_retried_batch_keeps_what_is_there(storage: SqlStorage,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A flush whose commit's reply was lost is retried with the same rows (and more that
    arrived meanwhile): the rows already there stay as they are, the new ones are added. On
    PostgreSQL this is the fallback from COPY to INSERT ... ON CONFLICT DO NOTHING; on SQLite
    the writes go through the archive's writer thread, in transactions of at most 128 rows
    here."""
    monkeypatch.setattr(sqlite_writer, "MAX_TRANSACTION", 128)
    store = await mam_store(storage)
    fallbacks: list[int] = []
    chunks = store._insert_chunks

    async def counting(rows: Any) -> None:
        fallbacks.append(len(rows))
        await chunks(rows)

    store._insert_chunks = counting  # type: ignore[method-assign]
    ids = IdGenerator()
    first = [row(ids.next(), body=f"m{i}") for i in range(300)]
    await store.insert_many(first)
    # the fast path: COPY, or the writer thread's executemany; MySQL has only the multi-row
    # INSERT ... (ON DUPLICATE KEY), which keeps what is there by itself
    assert fallbacks == ([300] if storage.dialect == "mysql" else [])
    changed = (first[0][:9] + ("<message><body>changed</body></message>",),)
    later = [row(ids.next(), body="late")]
    await store.insert_many([*changed, *first[1:], *later])
    assert fallbacks == {"pgsql": [301], "mysql": [300, 301]}.get(storage.dialect, [])
    page = await store.lookup(S, "alice", Query(), 1, simple=False)
    assert page.count == 301
    assert page.messages[0].message == first[0][9]
    await store.close_writer()
    await store.close_writer()  # closing twice (a module stopped twice) is harmless


async def test_a_null_where_the_schema_forbids_it_fails_the_batch(storage: SqlStorage) -> None:
    """SQLite's writer thread inserts with INSERT OR IGNORE (no statement journal), which
    would skip a row with a NULL in a NOT NULL column without a word: the batch fails
    instead, as it does with the other backends' statements, and nothing of it is written
    (the async writer keeps it for the next flush)."""
    store = await mam_store(storage)
    ids = IdGenerator()
    good = row(ids.next())
    bad = (ids.next(), S, "alice", "bob@example.com", "r", "O", None, None, None, "<m/>")
    with pytest.raises(Exception, match="(?i)null"):
        await store.insert_many([good, bad])  # type: ignore[list-item]
    page = await store.lookup(S, "alice", Query(), 50, simple=False)
    assert page.count == 0
    # origin_id and search_body may be NULL: such rows are written.
    await store.insert_many([good, bad[:6] + ("alice@example.com/a",) + bad[7:]])
    page = await store.lookup(S, "alice", Query(), 50, simple=False)
    assert page.count == 2
    await store.close_writer()


async def test_domain_rows_erased_in_batches(storage: SqlStorage) -> None:
    """delete_domain_limit: a removed domain's archive goes in transactions of at most that
    many rows, on every backend (SQLite and PostgreSQL by (key) IN (... LIMIT), MySQL by
    DELETE ... LIMIT); another domain's rows stay."""
    store = await mam_store(storage)
    rows = [row(i) for i in range(1, 24)] + [row(i, user="bob") for i in range(100, 104)]
    other = (500, "other.example", "alice", "bob@x", "r", "O", "alice@other.example/a", "o",
             "b", "<message/>")
    await store.insert_many([*rows, other])
    await store.set_prefs(S, "alice", Prefs("never", [], []))
    assert await store.delete_domain_batches(S) == 0  # no limit: the domain's transaction
    store.limit_domain_deletes(10)
    store.limit_domain_deletes(None)  # an instance without a limit keeps the smaller one
    assert store.domain_delete_limit == 10
    assert await store.delete_domain_batches(S) == 27 + 1
    assert await store.bounds(S, "alice") is None and await store.bounds(S, "bob") is None
    assert await store.get_prefs(S, "alice") is None
    assert await store.bounds("other.example", "alice") == (500, 500)


async def test_rows_found_for_a_retraction_by_stanza_id(storage: SqlStorage) -> None:
    """MongooseIM's retraction by stanza-id (urn:esl:message-retract-by-stanza-id:0): the
    sender's row by its archive id, only in its conversation and direction and older than
    the retraction; then the recipient's copy of it, paired by sender's full JID and
    origin-id, and by rank among those when the origin-id repeats."""
    store = await mam_store(storage)
    alice, bob = f"alice@{S}", f"bob@{S}"

    def sent(mam_id: int, origin: str | None, to: str = bob) -> Row:
        return (mam_id, S, "alice", to, "", "O", f"{alice}/a", origin, "x",
                f"<message id='{origin}'><body>x</body></message>")

    def received(mam_id: int, origin: str | None, frm: str = f"{alice}/a",
                 peer: str = alice) -> Row:
        return (mam_id, S, "bob", peer, frm.partition("/")[2], "I", frm, origin, "x",
                f"<message id='{origin}'><body>x</body></message>")

    await store.insert_many([
        sent(1000, "m1"), received(1001, "m1"),
        # On the offline path the copies get their ids after the sender's next messages.
        sent(2000, "m2"), sent(2100, "m1"), received(2200, "m2"), received(2300, "m1"),
        sent(4000, None), received(4001, None),
        received(5000, "b1", f"{bob}/b", bob),  # (bob's own archive holds no such row)
        sent(6000, "m6", to=f"carol@{S}"),
        received(7000, "m7", f"carol@{S}/c", f"carol@{S}"),
        received(8000, "m2", f"{alice}/other"),  # same origin-id, another resource of alice
    ])
    found = await store.find_by_stanza_id(S, "alice", bob, 2000, "O", 9000)
    assert found is not None
    assert (found.id, found.origin_id, found.from_jid) == (2000, "m2", f"{alice}/a")
    assert "<body>x</body>" in found.message
    # Another conversation, the other direction, a newer message, an unknown id, another
    # archive's id: nothing.
    assert await store.find_by_stanza_id(S, "alice", f"carol@{S}", 2000, "O", 9000) is None
    assert await store.find_by_stanza_id(S, "alice", bob, 2000, "I", 9000) is None
    assert await store.find_by_stanza_id(S, "alice", bob, 2000, "O", 2000) is None
    assert await store.find_by_stanza_id(S, "alice", bob, 2500, "O", 9000) is None
    assert await store.find_by_stanza_id(S, "alice", bob, 2200, "O", 9000) is None
    assert await store.find_by_stanza_id(S, "bob", alice, 2200, "I", 9000) is not None
    assert await store.find_by_stanza_id(S, "bob", alice, 2000, "I", 9000) is None
    no_origin = await store.find_by_stanza_id(S, "alice", bob, 4000, "O", 9000)
    assert no_origin is not None and no_origin.origin_id is None
    # The rank of a sent message among those with its full JID and origin-id, and the
    # recipient's copy of that rank.
    ranks = [await store.count_sent_before(S, "alice", bob, f"{alice}/a", origin, mam_id)
             for origin, mam_id in (("m1", 1000), ("m1", 2100), ("m2", 2000))]
    assert ranks == [0, 1, 0]
    assert await store.count_sent_before(S, "alice", f"carol@{S}", f"{alice}/a", "m1",
                                         2100) == 0
    copies = [await store.find_received_copy(S, "bob", alice, f"{alice}/a", origin, rank,
                                             9000)
              for origin, rank in (("m1", 0), ("m1", 1), ("m2", 0))]
    assert [c[0] if c else None for c in copies] == [1001, 2300, 2200]
    copy = await store.find_received_copy(S, "bob", alice, f"{alice}/other", "m2", 0, 9000)
    assert copy is not None and copy[0] == 8000
    # Not older than the retraction, no such rank, another sender: nothing.
    assert await store.find_received_copy(S, "bob", alice, f"{alice}/a", "m2", 0,
                                          2200) is None
    assert await store.find_received_copy(S, "bob", alice, f"{alice}/a", "m1", 2,
                                          9000) is None
    assert await store.find_received_copy(S, "bob", f"carol@{S}", f"{alice}/a", "m7", 0,
                                          9000) is None
    assert await store.find_received_copy(S, "alice", bob, f"{bob}/b", "b1", 0, 9000) is None
    await store.close_writer()


async def test_ids_start_above_the_largest_written(storage: SqlStorage) -> None:
    """The id generator starts above the largest id written (``max_id``), so a clock set
    back never puts new messages before old ones. PostgreSQL keys the archive by account
    (migration 0002) and keeps that id in ``mam_id_ceiling``: it is raised by every batch,
    never lowered by a batch of older ids (another node's, or one retried), and outlives
    the rows."""
    store = await mam_store(storage)
    assert await store.max_id() == 0
    await store.insert_many([row(7 << 8), row(9 << 8, user="bob"), row(8 << 8)])
    assert await store.max_id() == 9 << 8
    await store.insert_many([row(5 << 8, user="carol")])
    assert await store.max_id() == 9 << 8
    await store.remove_archive(S, "bob")
    if storage.dialect == "pgsql":
        assert await store.max_id() == 9 << 8
    await store.close_writer()


async def test_pgsql_key_migration_keeps_the_largest_id(storage: SqlStorage) -> None:
    """Migration 0002 on PostgreSQL, run on a version-1 archive with rows: the ceiling
    starts at their largest id, the key becomes (server, username, id), the rows stay."""
    if storage.dialect != "pgsql":
        pytest.skip("the key migration is PostgreSQL's")
    from importlib import resources

    store = await mam_store(storage)
    await store.insert_many([row(3 << 8), row(11 << 8, user="bob"), row(4 << 8)])
    async with store.session(transaction=True) as ex:  # back to version 1's shape
        await ex.script(
            "DROP TABLE mam_id_ceiling;"
            " ALTER TABLE mam_message DROP CONSTRAINT mam_message_pkey,"
            " ADD CONSTRAINT mam_message_pkey PRIMARY KEY (id);"
            " CREATE INDEX i_mam_message_user ON mam_message (server, username, id)")
        await ex.script(resources.files("suricate.modules.mod_mam").joinpath(
            "migrations/pgsql/0002_mam_account_key.sql").read_text())
    assert await store.max_id() == 11 << 8
    key = await store.fetch_one(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conname = 'mam_message_pkey'")
    assert key is not None and key[0] == "PRIMARY KEY (server, username, id)"
    assert (await store.lookup(S, "alice", Query(), 10, False)).count == 2
