"""mod_roster's storage: roster items (RFC 6121 §2.1.2), their groups and the roster version
(XEP-0237)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field

from suricate.storage.module_store import ModuleStore
from suricate.storage.sql import Row, SqlStorage
from suricate.storage.turn_batch import TurnBatch, padded

__all__ = ["ASK_STATES", "SUBSCRIPTION_STATES", "RosterItem", "RosterStore"]

# RFC 6121 §2.1.2.5: the four subscription states a roster item can be in.
SUBSCRIPTION_STATES: frozenset[str] = frozenset({"none", "to", "from", "both"})
# Pending requests: 'out' = we asked the contact (RFC 6121 §2.1.2.2 ask='subscribe'),
# 'in' = the contact asked us and we have not answered yet (not sent to clients, but the
# server must remember it, RFC 6121 §3.1.3), 'both' = each side asked the other.
ASK_STATES: frozenset[str] = frozenset({"none", "out", "in", "both"})


@dataclass(frozen=True, slots=True)
class RosterItem:
    jid: str  # bare JID of the contact
    name: str | None = None
    subscription: str = "none"
    ask: str = "none"
    groups: tuple[str, ...] = ()
    # RFC 6121 §3.4: the user pre-approved a subscription request from this contact.
    approved: bool = False
    # The status text that came with a pending inbound subscription request, so it can be
    # shown to the user when they come online (RFC 6121 §3.1.3).
    ask_message: str | None = None
    # A record kept only for that pending request of a contact the user has no item for
    # (§3.1.3): not part of the roster the user sees, until the user acts on it.
    hidden: bool = False
    # What a roster get writes for the item (``mod_roster.item_xml``), made at the first get
    # that writes it: items outlive a session (``RosterStore.get_roster`` keeps them), and
    # each login's get writes every one of them. Not part of the value.
    written: str | None = field(default=None, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Reject nonsense at construction rather than as an opaque database CHECK failure.
        if self.subscription not in SUBSCRIPTION_STATES:
            raise ValueError(f"invalid roster subscription {self.subscription!r}")
        if self.ask not in ASK_STATES:
            raise ValueError(f"invalid roster ask {self.ask!r}")


_ROSTER_SELECT = (
    "SELECT i.jid, i.name, i.subscription, i.ask, i.approved, i.ask_message, i.hidden, g.grp"
    " FROM roster_items i LEFT JOIN roster_groups g"
    " ON g.server = i.server AND g.username = i.username AND g.jid = i.jid"
    " WHERE i.server = ? AND i.username = ?"
)


# The whole roster (``RosterStore.get_roster``): sorted by JID only, which the items' primary
# key gives for free; ordering the groups by position too made SQLite sort every row in a
# temporary b-tree (a quarter of the read for 200 items). ``_whole_roster`` orders them.
_ROSTER_SELECT_ALL = (
    "SELECT i.jid, i.name, i.subscription, i.ask, i.approved, i.ask_message, i.hidden, g.grp,"
    " g.position"
    " FROM roster_items i LEFT JOIN roster_groups g"
    " ON g.server = i.server AND g.username = i.username AND g.jid = i.jid"
    " WHERE i.server = ? AND i.username = ? ORDER BY i.jid"
)

# At most this many items in the rosters ``RosterStore`` keeps between logins (the least
# recently read go first): ~25 MB at a few hundred bytes an item. An empty roster counts as
# one (its entry costs about what an item does).
CACHED_ITEMS = 100_000


def _weight(items: list[RosterItem]) -> int:
    """What a kept roster counts for against CACHED_ITEMS."""
    return len(items) or 1


# The batched read (``RosterStore.get_roster_item_batched``): the same columns and join, for
# several accounts' items about one contact, the username last so the fold can tell them apart.
_ROSTER_SELECT_MANY = (
    "SELECT i.jid, i.name, i.subscription, i.ask, i.approved, i.ask_message, i.hidden, g.grp,"
    " i.username"
    " FROM roster_items i LEFT JOIN roster_groups g"
    " ON g.server = i.server AND g.username = i.username AND g.jid = i.jid"
    " WHERE i.server = ? AND i.jid = ? AND i.username IN ({})"
    " ORDER BY i.username, g.position"
)
def _roster_items(rows: Iterable[Row]) -> list[RosterItem]:
    """Fold the one-row-per-group join (ordered by jid, position) into items.

    One joined statement instead of two queries: a single round trip, and one snapshot so
    a concurrent put cannot pair old items with new groups.
    """
    items: list[RosterItem] = []
    current: Row | None = None
    groups: list[str] = []
    for row in rows:
        if current is None or row[0] != current[0]:
            if current is not None:
                items.append(_roster_item(current, groups))
            current, groups = row, []
        if row[7] is not None:
            groups.append(row[7])
    if current is not None:
        items.append(_roster_item(current, groups))
    return items


def _whole_roster(rows: Iterable[Row]) -> list[RosterItem]:
    """``_roster_items`` for ``_ROSTER_SELECT_ALL``'s rows, whose groups come in no particular
    order within an item: ordered here by their position (the client's order)."""
    items: list[RosterItem] = []
    current: Row | None = None
    groups: list[tuple[int, str]] = []
    for row in rows:
        if current is None or row[0] != current[0]:
            if current is not None:
                items.append(_roster_item(current, _in_order(groups)))
            current, groups = row, []
        if row[7] is not None:
            groups.append((row[8], row[7]))
    if current is not None:
        items.append(_roster_item(current, _in_order(groups)))
    return items


def _in_order(groups: list[tuple[int, str]]) -> list[str]:
    if len(groups) > 1:
        groups.sort()
    return [group for _, group in groups]


# The slots of RosterItem, set directly by ``_roster_item``.
_SET = tuple(RosterItem.__dict__[name].__set__ for name in (
    "jid", "name", "subscription", "ask", "groups", "approved", "ask_message", "hidden",
    "written"))


# The states as one string each: the driver hands back a new string per row for them, kept
# on every item of every kept roster (~50 bytes each, twice an item).
_STATES = {state: state for state in (*SUBSCRIPTION_STATES, *ASK_STATES)}


def _roster_item(row: Row, groups: list[str]) -> RosterItem:
    """An item read back from the tables: made without the dataclass's ``__init__`` and
    its checks (the tables' CHECK constraints hold the same states), as a login reads every
    item of the roster (a third of the cost of reading 200 items)."""
    item = object.__new__(RosterItem)
    jid, name, subscription, ask, groups_, approved, ask_message, hidden, written = _SET
    jid(item, row[0])
    name(item, row[1])
    subscription(item, _STATES.get(row[2], row[2]))
    ask(item, _STATES.get(row[3], row[3]))
    groups_(item, tuple(groups))
    approved(item, bool(row[4]))  # SQLite hands back 0/1
    ask_message(item, row[5])
    hidden(item, bool(row[6]))
    written(item, None)
    return item


class RosterStore(ModuleStore):
    migrations = __package__
    # roster_groups before roster_items so the delete works even without FK cascades.
    user_tables = ("roster_groups", "roster_items", "roster_versions")

    def __init__(self, db: SqlStorage) -> None:
        super().__init__(db)
        # The items asked for in this event-loop turn, by (server, contact) and username.
        self._batch: TurnBatch[tuple[str, str], RosterItem | None] = TurnBatch(
            self._item_of, self._items_of, None, db.inline)
        # The rosters last read (``get_roster``), least recently read first, while the
        # database is one this process can tell the changes of (SQLite); see ``get_roster``.
        self._rosters: OrderedDict[tuple[str, str], list[RosterItem]] = OrderedDict()
        self._cached_items = 0
        self._stamp: Hashable | None = None
        self._watching = False
        self._writes = 0  # rows of the roster tables this process wrote, ever

    async def get_roster(self, server: str, user: str) -> list[RosterItem]:
        """All items, sorted by JID.

        Each login reads its account's whole roster (the session's copy, RFC 6121 §2.2's
        get and the presence broadcast are served from it). With SQLite the rosters read are
        kept, as ejabberd's mod_roster caches them, so an account logging in again (a phone
        reconnecting) does not read and build its items once more. A kept roster is dropped
        as soon as one of its rows is written by this process, whatever the statement
        (temporary triggers, ``watch_user_rows``: roster changes, the account's or domain's
        removal), and all of them are when another process commits anything to the file
        (``commit_stamp``: the CLI, an import, another worker). With a network database
        (other nodes write it unseen) nothing is kept."""
        key = (server, user)
        rosters = self._kept_rosters()
        if rosters is not None:
            kept = rosters.get(key)
            if kept is not None:
                rosters.move_to_end(key)
                return list(kept)  # the caller may change its list (roster_items handlers)
        writes = self._writes
        items = _whole_roster(await self.fetch(_ROSTER_SELECT_ALL, server, user))
        if rosters is not None and writes == self._writes and len(items) <= CACHED_ITEMS:
            # (no write of the roster tables since the read began: the items are current.
            # An empty roster is kept too, counted as one item: reading it cost a login
            # about as much as reading a short one, ~15 µs of SQLite and the storage layer)
            self._keep(key, items)
            return list(items)
        return items

    def _kept_rosters(self) -> OrderedDict[tuple[str, str], list[RosterItem]] | None:
        """The kept rosters, emptied first if another process committed meanwhile; None
        where nothing can be kept."""
        stamp = self.db.commit_stamp()
        if stamp is None:
            return None
        if not self._watching:
            self._watching = True
            self.db.watch_user_rows(("roster_items", "roster_groups"), self._rows_written)
        if stamp != self._stamp:
            self._stamp = stamp
            self._forget_all()
        return self._rosters

    def _keep(self, key: tuple[str, str], items: list[RosterItem]) -> None:
        rosters = self._rosters
        replaced = rosters.pop(key, None)  # (two reads of one roster that both waited)
        if replaced is not None:
            self._cached_items -= _weight(replaced)
        self._cached_items += _weight(items)
        rosters[key] = items
        while self._cached_items > CACHED_ITEMS:
            _, oldest = rosters.popitem(last=False)
            self._cached_items -= _weight(oldest)

    def _rows_written(self, server: str, user: str) -> None:
        self._writes += 1
        items = self._rosters.pop((server, user), None)
        if items is not None:
            self._cached_items -= _weight(items)

    def _forget_all(self) -> None:
        self._rosters.clear()
        self._cached_items = 0

    async def get_roster_item(self, server: str, user: str, jid: str) -> RosterItem | None:
        rows = await self.fetch(
            _ROSTER_SELECT + " AND i.jid = ? ORDER BY g.position", server, user, jid
        )
        items = _roster_items(rows)
        return items[0] if items else None

    async def get_roster_item_batched(self, server: str, user: str, jid: str
                                      ) -> RosterItem | None:
        """``get_roster_item``, answered together with the other calls of this event-loop
        turn: one query per (server, contact) for all of them.

        A login probes every contact the user is subscribed to (RFC 6121 §4.2.2) and each
        local contact without a session answers from its stored item (§4.3.2): 200 contacts,
        200 reads, all asked for in the same turn by the probe tasks. They are coalesced here
        into ``... AND i.jid = ? AND i.username IN (...)``. Nothing is kept after the batch is
        answered: the reads run one turn later than they were asked for, never earlier, so
        they see the state at the time of the call or a newer one, never an older one. A
        write to the roster (``put_roster_item``, ``delete_roster_item``) first answers the
        reads asked for before it, so those see the state before the write, as a read sent
        at once would have. A failing query reaches every caller of its batch.

        For read-only callers among many asking at once (``ModRoster.get_roster_item`` with
        ``batch=True``: mod_presence's probe answers). A read-modify-write under the account
        lock reads with ``get_roster_item``, so that a probe asked for while the subscription
        state is being changed is never answered from the state before it; and a caller
        asking alone gains nothing from waiting a turn (with SQLite it would suspend where
        the plain read does not).
        """
        return await self._batch.read((server, jid), user)

    async def _item_of(self, group: tuple[str, str], user: str) -> RosterItem | None:
        return await self.get_roster_item(group[0], user, group[1])

    async def _items_of(self, group: tuple[str, str], users: list[str]
                        ) -> dict[str, RosterItem | None]:
        """The item about the contact of each of ``users`` (at most BATCH_CHUNK), one query."""
        server, jid = group
        size = padded(len(users))
        args = users + [users[-1]] * (size - len(users))
        rows = await self.fetch(_ROSTER_SELECT_MANY.format(", ".join("?" * size)),
                                server, jid, *args)
        by_user: dict[str, list[Row]] = {}
        for row in rows:
            by_user.setdefault(row[8], []).append(row)
        found: dict[str, RosterItem | None] = {}
        for user, user_rows in by_user.items():
            items = _roster_items(user_rows)
            found[user] = items[0] if items else None
        return found

    async def put_roster_item(self, server: str, user: str, item: RosterItem) -> None:
        """Insert or replace the item (groups included)."""
        await self._batch.answer_pending()
        async with self.session(transaction=True) as ex:
            await ex.execute(
                "INSERT INTO roster_items"
                " (server, username, jid, name, subscription, ask, approved, ask_message,"
                " hidden) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (server, username, jid) DO UPDATE SET"
                " name = excluded.name, subscription = excluded.subscription,"
                " ask = excluded.ask, approved = excluded.approved,"
                " ask_message = excluded.ask_message, hidden = excluded.hidden",
                server,
                user,
                item.jid,
                item.name,
                item.subscription,
                item.ask,
                item.approved,
                item.ask_message,
                item.hidden,
            )
            # Replacing the groups wholesale is simpler than diffing and rosters are small.
            await ex.execute(
                "DELETE FROM roster_groups WHERE server = ? AND username = ? AND jid = ?",
                server,
                user,
                item.jid,
            )
            # Drop repeats, keep first-seen order (a client may list a group twice).
            groups = list(dict.fromkeys(item.groups))
            if groups:
                # `position` keeps the client's group order across a round trip.
                await ex.execute_many(
                    "INSERT INTO roster_groups (server, username, jid, position, grp)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [(server, user, item.jid, pos, grp) for pos, grp in enumerate(groups)],
                )

    async def delete_roster_item(self, server: str, user: str, jid: str) -> bool:
        await self._batch.answer_pending()
        # The groups go with the item through ON DELETE CASCADE.
        changed = await self.execute(
            "DELETE FROM roster_items WHERE server = ? AND username = ? AND jid = ?",
            server,
            user,
            jid,
        )
        return changed > 0

    async def get_roster_version(self, server: str, user: str) -> str | None:
        row = await self.fetch_one(
            "SELECT version FROM roster_versions WHERE server = ? AND username = ?",
            server,
            user,
        )
        return None if row is None else row[0]

    async def set_roster_version(self, server: str, user: str, version: str) -> None:
        await self.execute(
            "INSERT INTO roster_versions (server, username, version) VALUES (?, ?, ?)"
            " ON CONFLICT (server, username) DO UPDATE SET version = excluded.version",
            server,
            user,
            version,
        )
