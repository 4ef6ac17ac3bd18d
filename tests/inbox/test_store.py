"""mod_inbox's and mod_smart_markers' stores, on SQLite and PostgreSQL (tests/storage
fixtures): the merged upsert of the message path, filters, pages, properties, the bin."""

from __future__ import annotations

from suricate.core.module import open_module_store
from suricate.modules.mod_inbox import merge
from suricate.modules.mod_inbox.store import Change, Filters, InboxStore
from suricate.modules.mod_smart_markers.store import Marker, SmartMarkersStore
from suricate.storage.sql import SqlStorage

S = "example.com"


def incoming(peer: str, msg_id: str, ts: int) -> Change:
    return Change(S, "alice", peer, f"<message id='{msg_id}'><body>{msg_id}</body></message>",
                  msg_id, ts, unread=1)


async def inbox_store(storage: SqlStorage) -> InboxStore:
    store = await open_module_store(storage, "mod_inbox", InboxStore)
    assert isinstance(store, InboxStore)
    return store


async def test_upserts_counts_and_markers(storage: SqlStorage) -> None:
    store = await inbox_store(storage)
    await store.apply([incoming("bob@x", "b1", 10), incoming("carol@x", "c1", 20)])
    await store.apply([incoming("bob@x", "b2", 30)])
    bob = await store.get(S, "alice", "bob@x")
    assert bob is not None and (bob.unread, bob.msg_id, bob.timestamp) == (2, "b2", 30)
    # A marker for an older message leaves the count; one for the last message resets it.
    await store.apply([Change(S, "alice", "bob@x", reset_if="b1")])
    assert (await store.get(S, "alice", "bob@x")).unread == 2  # type: ignore[union-attr]
    await store.apply([Change(S, "alice", "bob@x", reset_if="b2")])
    assert (await store.get(S, "alice", "bob@x")).unread == 0  # type: ignore[union-attr]
    # A marker for a conversation that does not exist creates nothing.
    await store.apply([Change(S, "alice", "zed@x", reset_if="z")])
    assert await store.get(S, "alice", "zed@x") is None
    # An own message resets the count, then the reply counts again, merged in one write.
    change = Change(S, "alice", "carol@x", "<message/>", "c2", 40, reset=True)
    merge(change, incoming("carol@x", "c3", 50))
    await store.apply([change])
    carol = await store.get(S, "alice", "carol@x")
    assert carol is not None and (carol.unread, carol.msg_id) == (1, "c3")
    totals = await store.totals(S, "alice", Filters())
    assert (totals.count, totals.unread_messages, totals.active_conversations) == (2, 1, 1)


async def test_a_marker_merged_with_a_newer_message(storage: SqlStorage) -> None:
    """A marker for the stored last message, merged with a newer message in one write: the
    stored count is reset, then the newer message counts (MySQL assigns the upsert's columns
    in order and a later one sees the new values: the count is assigned first)."""
    store = await inbox_store(storage)
    await store.apply([incoming("bob@x", "b1", 10), incoming("bob@x", "b2", 20)])
    pending = Change(S, "alice", "bob@x", reset_if="b2")
    merge(pending, incoming("bob@x", "b3", 30))
    await store.apply([pending])
    bob = await store.get(S, "alice", "bob@x")
    assert bob is not None and (bob.unread, bob.msg_id) == (1, "b3")


def in_room(msg_id: str, stanza_id: str, ts: int) -> Change:
    change = incoming("room@x", msg_id, ts)
    change.stanza_id = stanza_id
    return change


async def test_markers_name_the_id_or_the_stanza_id(storage: SqlStorage) -> None:
    """A marker resets the count when it names the stored last message by its id (MongooseIM
    6.4) or by its stanza-id (what group chat clients send, XEP-0333 1.0), also when merged
    with a newer message."""
    store = await inbox_store(storage)
    await store.apply([in_room("m1", "s1", 10)])
    await store.apply([in_room("m2", "s2", 20)])
    await store.apply([Change(S, "alice", "room@x", reset_if="s1")])
    assert (await store.get(S, "alice", "room@x")).unread == 2  # type: ignore[union-attr]
    await store.apply([Change(S, "alice", "room@x", reset_if="s2")])
    assert (await store.get(S, "alice", "room@x")).unread == 0  # type: ignore[union-attr]
    await store.apply([in_room("m3", "s3", 30)])
    pending = Change(S, "alice", "room@x", reset_if="s3")
    merge(pending, in_room("m4", "s4", 40))
    await store.apply([pending])
    room = await store.get(S, "alice", "room@x")
    assert room is not None and (room.unread, room.msg_id) == (1, "m4")


async def test_removal_then_what_came_after(storage: SqlStorage) -> None:
    """remove_on_kicked: the entry goes, pending changes with it; a message merged after the
    removal makes a new entry counting from zero."""
    store = await inbox_store(storage)
    await store.apply([incoming("room@x", "r1", 10), incoming("room@x", "r2", 20)])
    pending = incoming("room@x", "r3", 30)
    merge(pending, Change(S, "alice", "room@x", remove=True))
    await store.apply([pending])
    assert await store.get(S, "alice", "room@x") is None
    again = Change(S, "alice", "room@x", remove=True)
    merge(again, incoming("room@x", "r4", 40))
    await store.apply([again])
    room = await store.get(S, "alice", "room@x")
    assert room is not None and (room.unread, room.msg_id) == (1, "r4")


async def test_filters_pages_boxes_and_bin(storage: SqlStorage) -> None:
    store = await inbox_store(storage)
    await store.apply([incoming(f"p{i}@x", f"m{i}", 100 + i) for i in range(6)])
    desc = await store.query(S, "alice", Filters(), None)
    assert [e.remote for e in desc] == [f"p{i}@x" for i in range(5, -1, -1)]
    page1 = await store.query(S, "alice", Filters(), 2)
    page2 = await store.query(S, "alice", Filters(after=page1[-1].timestamp), 2)
    assert [e.remote for e in page2] == ["p3@x", "p2@x"]
    back = await store.query(S, "alice", Filters(before=page2[0].timestamp), 2)
    assert [e.remote for e in back] == [e.remote for e in page1]
    # XEP-0059 §2.5: the last page, in the query's order.
    last = await store.query(S, "alice", Filters(last_page=True), 2)
    assert [e.remote for e in last] == ["p1@x", "p0@x"]
    last = await store.query(S, "alice", Filters(last_page=True, order_desc=False), 2)
    assert [e.remote for e in last] == ["p4@x", "p5@x"]
    asc = await store.query(S, "alice", Filters(order_desc=False, start=102, end=104), None)
    assert [e.remote for e in asc] == ["p2@x", "p3@x", "p4@x"]
    assert await store.set_properties(S, "alice", "p0@x", box="archive", muted_until=None,
                                      read=True)
    assert not await store.set_properties(S, "alice", "nobody@x", box="archive",
                                          muted_until=None, read=None)
    assert [e.remote for e in await store.query(S, "alice", Filters(box="archive"), None)] \
        == ["p0@x"]
    unread = await store.query(S, "alice", Filters(hidden_read=True), None)
    assert "p0@x" not in [e.remote for e in unread] and len(unread) == 5
    # read=false makes a read conversation unread (1), and leaves an unread one as it is.
    await store.set_properties(S, "alice", "p0@x", box=None, muted_until=None, read=False)
    await store.set_properties(S, "alice", "p1@x", box=None, muted_until=None, read=False)
    assert (await store.get(S, "alice", "p0@x")).unread == 1  # type: ignore[union-attr]
    # The bin: out of "all", emptied by age; a new message brings an entry back.
    for peer in ("p1@x", "p2@x"):
        await store.set_properties(S, "alice", peer, box="bin", muted_until=None, read=None)
    assert len(await store.query(S, "alice", Filters(), None)) == 4
    await store.apply([incoming("p2@x", "again", 200)])
    assert (await store.get(S, "alice", "p2@x")).box == "inbox"  # type: ignore[union-attr]
    assert await store.empty_user_bin(S, "alice", 101) == 0  # p1's entry is at 101
    assert await store.empty_user_bin(S, "alice", None) == 1
    await store.remove_inbox(S, "alice")
    assert await store.query(S, "alice", Filters(), None) == []


async def test_smart_markers(storage: SqlStorage) -> None:
    store = await open_module_store(storage, "mod_smart_markers", SmartMarkersStore)
    assert isinstance(store, SmartMarkersStore)
    await store.save([Marker(S, "alice", f"bob@{S}", "", "received", "m1", 10)])
    await store.save([Marker(S, "alice", f"bob@{S}", "", "displayed", "m2", 20),
                      Marker(S, "alice", f"bob@{S}", "t1", "displayed", "m0", 15),
                      Marker(S, "bob", f"alice@{S}", "", "displayed", "m3", 30),
                      Marker(S, "carol", "room@muc.x", "", "displayed", "r1", 40),
                      Marker(S, "alice", "room@muc.x", "", "displayed", "r2", 50)])
    found = await store.conversation(S, "alice", f"bob@{S}", "", None, room=False,
                                     own_only=False)
    # One marker per type (MongooseIM 6.4's key): the received m1 stays beside the displayed.
    assert [(m.username, m.type, m.msg_id) for m in found] == [
        ("alice", "received", "m1"), ("alice", "displayed", "m2"), ("bob", "displayed", "m3")]
    await store.save([Marker(S, "alice", f"bob@{S}", "", "displayed", "m4", 35)])
    found = await store.conversation(S, "alice", f"bob@{S}", "", 20, room=False,
                                     own_only=True)
    assert [m.msg_id for m in found] == ["m4"]  # from `after` on (inclusive), main thread
    found = await store.conversation(S, "alice", f"bob@{S}", "t1", 15, room=False,
                                     own_only=True)
    assert [m.msg_id for m in found] == ["m0"]
    room = await store.conversation(S, "alice", "room@muc.x", "", None, room=True,
                                    own_only=False)
    assert [m.username for m in room] == ["carol", "alice"]
    await store.remove_user(S, "alice")
    assert await store.of_user(S, "alice") == []
    assert len(await store.of_user(S, "bob")) == 1


async def test_domain_rows_erased_in_batches(storage: SqlStorage) -> None:
    """delete_domain_limit: a removed domain's entries go in transactions of at most that
    many rows; another domain's stay."""
    store = await inbox_store(storage)
    await store.apply([incoming(f"peer{i}@x", f"m{i}", i) for i in range(7)])
    await store.apply([Change("other.example", "alice", "bob@x", "<message/>", "o1", 1,
                              unread=1)])
    store.limit_domain_deletes(3)
    assert await store.delete_domain_batches(S) == 7
    assert (await store.totals(S, "alice", Filters())).count == 0
    assert (await store.totals("other.example", "alice", Filters())).count == 1
