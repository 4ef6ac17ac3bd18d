"""``suricate import-mongooseim``: read a MongooseIM 6.4 RDBMS database (PostgreSQL or
MySQL/MariaDB, the schema of its ``priv/pg.sql`` / ``priv/mysql.sql``) and write its data
through Suricate's stores, as ``suricate import`` does for XEP-0227 files.

Read, table by table (a table that is missing is named in a warning and its kind skipped):
``users`` (``pass_details`` SCRAM records are MongooseIM's ``==MULTI_SCRAM==`` form, which
Suricate keeps as they are: the same passwords log in), ``rosterusers``/``rostergroups``,
``vcard``, ``private_storage``, ``last``, ``offline_message``, ``mam_message`` (with
``mam_server_user``; the message column in the external term format, compressed or not, or
XML text), ``muc_rooms``/``muc_room_aff``, PEP and PubSub (``pubsub_*``,
:mod:`suricate.cli.mongooseim_pubsub`), ``inbox`` and ``smart_markers``
(:mod:`suricate.cli.mongooseim_inbox`), ``event_pusher_push_subscription`` and
``muc_light_blocking``.

The stores share no transaction: accounts are written last, so a run cut short leaves no
account that logs in without its data; every write is an upsert or checks what is there, so
a second run changes nothing.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import unquote, urlsplit

from suricate.cli.eterm import ETermError, message_element
from suricate.cli.xep0227 import CLIENT, Progress, Summary
from suricate.jid import JID, InvalidJID
from suricate.sasl.passwords import make_scram_record, parse_scram_record, verify_password
from suricate.xml import ns
from suricate.xml.parser import XMLStreamError, parse_fragment

__all__ = ["MimSummary", "SourceError", "import_database", "open_source"]

#: rosterusers.subscription and .ask, as MongooseIM's mod_roster_rdbms writes them.
SUBSCRIPTION = {"B": "both", "T": "to", "F": "from", "N": "none"}
ASK = {"S": "out", "O": "out", "I": "in", "B": "both", "U": "none", "N": "none"}
#: muc_room_aff.aff (mod_muc_rdbms).
MUC_AFF = {1: "owner", 2: "member", 3: "admin", 4: "outcast"}
#: privacy_list_data.t (mod_privacy_rdbms); "n" is the fall-through item.
PRIVACY_TYPE = {"j": "jid", "g": "group", "s": "subscription"}
#: mam_config.behaviour.
MAM_BEHAVIOUR = {"A": "always", "N": "never", "R": "roster"}
MAM_BATCH = 256
MAM_PAGE = 5000  # rows read from the source at a time
#: MongooseIM's db_jid_format values for the one-to-one archive (its default: mini).
MAM_JID_FORMATS = ("mam_jid_mini", "mam_jid_rfc", "mam_jid_rfc_trust")
#: Tables with data that this version leaves behind, and why (docs/moving-in.md).
NOT_IMPORTED = {
    "auth_token": "token sequence numbers: clients log in with their password once",
    "fast_auth_token": "FAST tokens: clients log in with their password once",
}
#: muc_light_blocking.what (mod_muc_light_db_rdbms).
BLOCKING_WHAT = {1: "room", 2: "user"}
PUBLISH_OPTIONS = "http://jabber.org/protocol/pubsub#publish-options"


class SourceError(Exception):
    """The source database cannot be used at all (bad DSN, unreachable, refused)."""


@dataclass
class MimSummary(Summary):
    warnings: list[str] = field(default_factory=list)

    def report(self, out: TextIO) -> None:
        for w in self.warnings:
            print(f"warning: {w}", file=out)
        super().report(out)


class Source:
    """The MongooseIM database, read only."""

    dialect = ""

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Rows of ``sql``, whose ``?`` placeholders take ``args``."""
        raise NotImplementedError

    async def tables(self) -> set[str]:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class _PgSource(Source):
    dialect = "pgsql"

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        if args:
            n = iter(range(1, len(args) + 1))
            sql = "".join(f"${next(n)}" if c == "?" else c for c in sql)
        return [tuple(r) for r in await self.conn.fetch(sql, *args)]

    async def tables(self) -> set[str]:
        rows = await self.conn.fetch(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = ANY(current_schemas(false))")
        return {r[0] for r in rows}

    async def close(self) -> None:
        await self.conn.close()


class _MySource(Source):
    dialect = "mysql"

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        async with self.conn.cursor() as cur:
            # The driver formats with % only when given arguments (none of ours has a %).
            await cur.execute(sql.replace("?", "%s"), args) if args else \
                await cur.execute(sql)
            return [tuple(r) for r in await cur.fetchall()]

    async def tables(self) -> set[str]:
        return {r[0] for r in await self.fetch("SHOW TABLES")}

    async def close(self) -> None:
        await self.conn.ensure_closed()


async def open_source(dsn: str) -> Source:
    """Connect to ``postgresql://user[:password]@host[:port]/db`` or ``mysql://...``."""
    parts = urlsplit(dsn)
    scheme = parts.scheme.lower()
    where = f"{parts.hostname or 'localhost'}:{parts.port or ''}{parts.path}".replace(":/", "/")
    if scheme in ("postgresql", "postgres"):
        import asyncpg
        try:
            return _PgSource(await asyncpg.connect(dsn, timeout=10))
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise SourceError(f"cannot connect to PostgreSQL at {where}: {exc}") from None
    if scheme in ("mysql", "mariadb"):
        import asyncmy
        from asyncmy import errors as my_errors
        try:
            conn = await asyncmy.connect(
                host=parts.hostname or "localhost", port=parts.port or 3306,
                user=unquote(parts.username or "root"),
                password=unquote(parts.password or ""),
                database=unquote(parts.path.lstrip("/")), connect_timeout=10,
                charset="utf8mb4", autocommit=True)
        except (OSError, TimeoutError, my_errors.Error) as exc:
            raise SourceError(f"cannot connect to MySQL at {where}: {exc}") from None
        return _MySource(conn)
    # The URL without its user and password (a typo'd scheme must not print a password).
    raise SourceError(f"--from {parts.scheme}://{where}: expected a postgresql:// or"
                      " mysql:// URL")


class _Run:
    def __init__(self, server: Any, source: Source, summary: MimSummary,
                 progress: bool, mam_jid_format: str) -> None:
        self.server, self.src, self.summary, self.progress = server, source, summary, progress
        self.mini = mam_jid_format == "mam_jid_mini"
        self.stores = server.module_stores
        self.tables: set[str] = set()

    def missing(self, what: str, *tables: str) -> bool:
        absent = [t for t in tables if t not in self.tables]
        if absent:
            self.summary.warnings.append(
                f"{what}: no table {', '.join(absent)} in the source database; not imported")
        return bool(absent)

    def module_opts(self, module: str) -> dict[str, Any]:
        """The module's options in this configuration, defaults filled in."""
        return dict((self.server.cfg.get("modules") or {}).get(module) or {})

    def store(self, module: str, what: str, count: int) -> Any:
        store = self.stores.get(module)
        if store is None and count:
            self.summary.skipped[f"{what}: {module} not configured"] += count
        return store

    def account(self, server: str, user: str) -> tuple[str, str] | None:
        """(domain, local) normalized, or None (counted) when not served here."""
        try:
            jid = JID(user, server, None)
        except (InvalidJID, ValueError):
            self.summary.skipped["rows with an invalid JID"] += 1
            return None
        if not self.server.is_local_domain(jid.domain):
            self.summary.skipped[f"rows of host {server}: not in general.hosts"] += 1
            return None
        assert jid.local is not None
        return jid.domain, jid.local

    async def rows(self, what: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        try:
            return await self.src.fetch(sql, *args)
        except Exception as exc:  # noqa: BLE001 - a driver's error for a column missing...
            self.summary.errors.append(f"{what}: cannot read the source ({exc})")
            return []

    async def pages(self, what: str, table: str, keys: tuple[str, ...], columns: str
                    ) -> AsyncIterator[list[tuple[Any, ...]]]:
        """``table`` a page at a time in the order of its key ``keys`` (keyset paging:
        ``columns`` starts with ``keys``), so that a big table is never held at once."""
        after: tuple[Any, ...] | None = None
        while True:
            where, args = "", []
            if after is not None:
                # (k1 > a1) OR (k1 = a1 AND k2 > a2) OR ...: the rows after the last one.
                terms = []
                for i, key in enumerate(keys):
                    terms.append("(" + " AND ".join(
                        [*(f"{k} = ?" for k in keys[:i]), f"{key} > ?"]) + ")")
                    args += [*after[:i], after[i]]
                where = f" WHERE {' OR '.join(terms)}"
            page = await self.rows(what, f"SELECT {columns} FROM {table}{where}"
                                   f" ORDER BY {', '.join(keys)} LIMIT {MAM_PAGE}", *args)
            if page:
                yield page
            if len(page) < MAM_PAGE:
                return
            after = page[-1][:len(keys)]

    # -- the kinds, in the order they are written -------------------------------------------
    async def rosters(self) -> None:
        if self.missing("rosters", "rosterusers"):
            return
        rows = await self.rows("rosters", "SELECT server, username, jid, nick, subscription,"
                               " ask, askmessage FROM rosterusers")
        groups: dict[tuple[str, str, str], list[str]] = defaultdict(list)
        if "rostergroups" in self.tables:
            for server, user, jid, grp in await self.rows(
                    "roster groups", "SELECT server, username, jid, grp FROM rostergroups"):
                groups[(server, user, jid)].append(grp)
        store = self.store("mod_roster", "roster items", len(rows))
        if store is None:
            return
        from suricate.modules.mod_roster.store import RosterItem
        for server, user, jid, nick, sub, ask, askmessage in rows:
            acc = self.account(server, user)
            if acc is None:
                continue
            try:
                item = RosterItem(
                    jid=str(JID.parse(jid).bare), name=nick or None,
                    subscription=SUBSCRIPTION.get((sub or "N").strip(), "none"),
                    ask=ASK.get((ask or "N").strip(), "none"),
                    groups=tuple(sorted(set(groups.get((server, user, jid), ())))),
                    ask_message=askmessage or None,
                    # MongooseIM shows no item that only holds a pending inbound request.
                    hidden=(sub or "N").strip() == "N" and (ask or "N").strip() == "I")
            except (InvalidJID, ValueError):
                self.summary.skipped["invalid roster items"] += 1
                continue
            await store.put_roster_item(*acc, item)
            self.summary.imported["roster items"] += 1

    async def simple(self) -> None:
        """vCards, private XML, last activity: one upsert per row."""
        kinds = (
            ("vCards", "vcard", "mod_vcard", "SELECT server, username, vcard FROM vcard"),
            ("private XML items", "private_storage", "mod_private",
             "SELECT server, username, namespace, data FROM private_storage"),
            ("last activity records", "last", "mod_last",
             "SELECT server, username, seconds, state FROM last"),
        )
        for what, table, module, sql in kinds:
            if self.missing(what, table):
                continue
            rows = await self.rows(what, sql)
            store = self.store(module, what, len(rows))
            if store is None:
                continue
            for server, user, *values in rows:
                acc = self.account(server, user)
                if acc is None:
                    continue
                if module in ("mod_vcard", "mod_private"):
                    # Parsed with the stream's restrictions and written as Suricate writes
                    # it: what a module reads back is well-formed.
                    xml = _one_element(values[-1])
                    if xml is None:
                        self.summary.skipped[f"{what} that are not one XML element"] += 1
                        continue
                    if module == "mod_vcard":
                        await store.set_vcard(*acc, xml)
                    else:
                        await store.set_private(*acc, values[0], xml)
                else:
                    await store.set_last(*acc, int(values[0]), values[1] or "")
                self.summary.imported[what] += 1

    async def offline(self) -> None:
        if self.missing("offline messages", "offline_message"):
            return
        rows = await self.rows("offline messages", "SELECT server, username, timestamp,"
                               " expire, from_jid, packet FROM offline_message ORDER BY id")
        store = self.store("mod_offline", "offline messages", len(rows))
        if store is None:
            return
        from suricate.modules.mod_offline.store import OfflineMessage
        present: dict[tuple[str, str], set[str]] = {}
        for server, user, stamp, expire, from_jid, packet in rows:
            acc = self.account(server, user)
            if acc is None:
                continue
            try:
                elements = parse_fragment(packet, CLIENT)
            except XMLStreamError:
                elements = []
            if len(elements) != 1:
                self.summary.skipped["offline messages that are not one XML stanza"] += 1
                continue
            xml = elements[0].serialize(CLIENT)
            if acc not in present:
                rs = await store.fetch("SELECT packet FROM offline_messages"
                                       " WHERE server = ? AND username = ?", *acc)
                present[acc] = {r[0] for r in rs}
            if xml in present[acc]:
                self.summary.skipped["offline messages already present"] += 1
                continue
            msg = OfflineMessage(_seconds(stamp), from_jid,
                                 elements[0].get("to") or f"{acc[1]}@{acc[0]}", xml,
                                 None if expire is None else _seconds(expire))
            await store.store_offline(*acc, msg)
            present[acc].add(xml)
            self.summary.imported["offline messages"] += 1

    async def privacy(self) -> None:
        """Privacy lists (XEP-0016); MongooseIM keeps the XEP-0191 blocklist as the list
        named ``blocking``, which goes to mod_blocking."""
        if self.missing("privacy lists and blocklists", "privacy_list", "privacy_list_data"):
            return
        lists = await self.rows("privacy lists", "SELECT id, server, username, name"
                                " FROM privacy_list")
        items: dict[Any, list[tuple[Any, ...]]] = defaultdict(list)
        for row in await self.rows(
                "privacy list items", "SELECT id, t, value, action, ord, match_all, match_iq,"
                " match_message, match_presence_in, match_presence_out FROM privacy_list_data"):
            items[row[0]].append(row[1:])
        defaults: set[tuple[str, str, str]] = set()
        if "privacy_default_list" in self.tables:
            defaults = {(r[0], r[1], r[2]) for r in await self.rows(
                "default privacy lists",
                "SELECT server, username, name FROM privacy_default_list")}
        blocking_lists = [r for r in lists if r[3] == "blocking"]
        other_lists = [r for r in lists if r[3] != "blocking"]
        blocking = self.store("mod_blocking", "blocklists", len(blocking_lists))
        privacy = self.store("mod_privacy", "privacy lists", len(other_lists))
        from suricate.modules.mod_privacy.store import (
            IQ,
            MESSAGE,
            PRESENCE_IN,
            PRESENCE_OUT,
            PrivacyItem,
        )
        for list_id, server, user, name in lists:
            store = blocking if name == "blocking" else privacy
            acc = self.account(server, user) if store is not None else None
            if acc is None:
                continue
            rows = sorted(items.get(list_id, ()), key=lambda r: int(r[3]))
            if name == "blocking":
                jids = [str(v) for t, v, *_ in rows if str(t).strip() == "j" and v]
                added = await store.block(*acc, jids)
                if added:
                    self.summary.imported["blocked JIDs"] += len(added)
                if len(added) < len(jids):
                    self.summary.skipped["blocked JIDs already present"] += len(jids) - len(added)
                continue
            converted: list[PrivacyItem] = []
            for t, value, action, order, m_all, m_iq, m_msg, m_pin, m_pout in rows:
                stanzas = 0 if _true(m_all) else (
                    (MESSAGE if _true(m_msg) else 0) | (IQ if _true(m_iq) else 0)
                    | (PRESENCE_IN if _true(m_pin) else 0)
                    | (PRESENCE_OUT if _true(m_pout) else 0))
                kind = PRIVACY_TYPE.get(str(t).strip())
                converted.append(PrivacyItem(
                    int(order), "allow" if str(action).strip() == "a" else "deny", kind,
                    value if kind else None, stanzas))
            await store.set_list(*acc, name, converted)
            if (server, user, name) in defaults:
                await store.set_default(*acc, name)
            self.summary.imported["privacy lists"] += 1

    async def archive(self) -> None:
        if self.missing("message archive (MAM)", "mam_message", "mam_server_user"):
            return
        owners = {uid: (server, user) for uid, server, user in await self.rows(
            "MAM users", "SELECT id, server, user_name FROM mam_server_user")}
        counted = await self.rows("message archive (MAM)", "SELECT COUNT(*) FROM mam_message")
        total = int(counted[0][0]) if counted else 0
        store = self.store("mod_mam", "archived messages", total)
        if store is None or not total:
            return
        mam_opts = (self.server.cfg.get("modules") or {}).get("mod_mam") or {}
        if mam_opts.get("pm") is None:
            self.summary.warnings.append(
                "archived messages: imported, but [modules.mod_mam.pm] is not configured:"
                " users cannot query them until it is")
        from suricate.modules.mod_mam.query import normalize_body
        batch: list[tuple[Any, ...]] = []
        bar = Progress(total, self.progress)
        async for (mam_id, uid, from_jid, peer, resource, direction, message,
                   origin_id) in self._archive_rows():
            bar.step()
            owner = owners.get(uid)
            if owner is None:
                self.summary.skipped["archived messages of an unknown user_id"] += 1
                continue
            acc = self.account(*owner)
            if acc is None:
                continue
            try:
                el = message_element(bytes(message))
                if self.mini:
                    from_jid = expand_mini_jid(owner[1], owner[0], from_jid)
                    peer = expand_mini_jid(owner[1], owner[0], peer)
                from_jid, peer = str(JID.parse(from_jid)), str(JID.parse(peer).bare)
            except ETermError as exc:
                self.summary.skipped[f"archived messages not decoded ({exc})"] += 1
                continue
            except (InvalidJID, ValueError):
                self.summary.skipped["archived messages with an unreadable JID (is"
                                     " --mam-jid-format right?)"] += 1
                continue
            body = el.find("body")
            text = body.text if body is not None else None
            direction = str(direction).strip()
            batch.append((int(mam_id), acc[0], acc[1], peer, resource or "",
                          "O" if direction == "O" else "I", from_jid, origin_id or None,
                          normalize_body(text) if text else None, el.serialize(CLIENT)))
            if len(batch) >= MAM_BATCH:
                await self._write_archive(store, batch)
        if batch:
            await self._write_archive(store, batch)

    async def muc_light(self) -> None:
        """MUC Light rooms: version, configuration (typed by this server's config_schema),
        owners and members."""
        if "muc_light_rooms" not in self.tables:
            return
        rooms = await self.rows("MUC Light rooms", "SELECT id, luser, lserver, version"
                                " FROM muc_light_rooms")
        store = self.store("mod_muc_light", "MUC Light rooms", len(rooms))
        if store is None or not rooms:
            return
        configs: dict[Any, list[tuple[str, str]]] = defaultdict(list)
        if "muc_light_config" in self.tables:
            for room_id, opt, val in await self.rows(
                    "MUC Light configuration", "SELECT room_id, opt, val FROM muc_light_config"):
                configs[room_id].append((str(opt), str(val)))
        members: dict[Any, dict[str, str]] = defaultdict(dict)
        if not self.missing("MUC Light occupants", "muc_light_occupants"):
            for room_id, luser, lserver, aff in await self.rows(
                    "MUC Light occupants", "SELECT room_id, luser, lserver, aff"
                    " FROM muc_light_occupants"):
                members[room_id][f"{luser}@{lserver}"] = "owner" if int(aff) == 1 \
                    else "member"
        from suricate.modules.mod_muc_light.config import ConfigSchema, ConfigValueError
        from suricate.modules.mod_muc_light.store import Room
        opts = (self.server.cfg.get("modules") or {}).get("mod_muc_light") or {}
        schema = ConfigSchema(opts.get("config_schema") or [])
        for room_id, room, service, version in rooms:
            config = schema.defaults()
            try:
                for key, text in configs.get(room_id, ()):
                    field = schema.by_key.get(key)
                    config[key] = field.parse(text) if field is not None else text
            except ConfigValueError as exc:
                self.summary.skipped[f"MUC Light rooms with a bad configuration ({exc})"] += 1
                continue
            if await store.create_room(service, room, Room(str(version), config,
                                                           members.get(room_id, {}))):
                self.summary.imported["MUC Light rooms"] += 1
            else:
                self.summary.skipped["MUC Light rooms already present"] += 1

    async def muc_archive(self) -> None:
        """Room archives: mam_muc_message, its room and sender ids in mam_server_user."""
        if "mam_muc_message" not in self.tables:
            return
        if self.missing("MUC room archives", "mam_server_user"):
            return
        counted = await self.rows("MUC room archives", "SELECT COUNT(*) FROM mam_muc_message")
        total = int(counted[0][0]) if counted else 0
        if not total:
            return
        mam_opts = (self.server.cfg.get("modules") or {}).get("mod_mam") or {}
        if mam_opts.get("muc") is None:
            self.summary.skipped["MUC room archives: [modules.mod_mam.muc] not configured"] \
                += total
            return
        from suricate.modules.mod_mam.muc.store import MucArchiveStore
        from suricate.modules.mod_mam.query import normalize_body
        store = await self.server.open_module_store("mod_mam_muc", MucArchiveStore)
        ids = {uid: (server, user) for uid, server, user in await self.rows(
            "MAM users", "SELECT id, server, user_name FROM mam_server_user")}
        bar = Progress(total, self.progress)
        batch: list[tuple[Any, ...]] = []
        after: tuple[int, int] | None = None
        while True:
            where = "" if after is None else (
                f" WHERE room_id > {after[0]} OR (room_id = {after[0]} AND id > {after[1]})")
            page = await self.rows(
                "MUC room archives", "SELECT id, room_id, sender_id, nick_name, message,"
                f" origin_id FROM mam_muc_message{where} ORDER BY room_id, id"
                f" LIMIT {MAM_PAGE}")
            for mam_id, room_id, sender_id, nick, message, origin_id in page:
                bar.step()
                room, sender = ids.get(room_id), ids.get(sender_id)
                if room is None or sender is None:
                    self.summary.skipped["room archive rows of an unknown room or sender"] += 1
                    continue
                try:
                    el = message_element(bytes(message))
                    sender_jid = str(JID(sender[1] or None, sender[0], None))
                except ETermError as exc:
                    self.summary.skipped[f"room archive rows not decoded ({exc})"] += 1
                    continue
                except (InvalidJID, ValueError):
                    self.summary.skipped["room archive rows with an invalid sender"] += 1
                    continue
                # As the occupants got it (what Suricate keeps): from the occupant JID.
                el.attrs.pop("to", None)
                el.attrs["from"] = f"{room[1]}@{room[0]}/{nick}" if nick else \
                    f"{room[1]}@{room[0]}"
                body = el.find("body")
                text = body.text if body is not None else None
                batch.append((int(mam_id), room[0], room[1], sender_jid, nick or "", "G",
                              sender_jid, origin_id or None,
                              normalize_body(text) if text else None, el.serialize(CLIENT)))
            if batch:
                await self._write_room_archive(store, batch)
            if len(page) < MAM_PAGE:
                return
            after = (int(page[-1][1]), int(page[-1][0]))

    async def _write_room_archive(self, store: Any, batch: list[tuple[Any, ...]]) -> None:
        """Room archive ids are one key here as in MongooseIM's node-unique ids: a row whose
        id is there already is this message (same room) or, should two rooms share it, kept
        out and counted."""
        held = {int(r[0]): (r[1], r[2]) for r in await store.fetch(
            "SELECT id, server, room FROM mam_muc_message"
            f" WHERE id IN ({', '.join('?' * len(batch))})", *[row[0] for row in batch])}
        out = []
        for row in batch:
            where = held.get(row[0])
            if where == (row[1], row[2]):
                self.summary.skipped["room archive messages already present"] += 1
            elif where is not None:
                self.summary.skipped["room archive messages whose id another room holds"] += 1
            else:
                held[row[0]] = (row[1], row[2])
                out.append(row)
        if out:
            await store.insert_many(out)
            self.summary.imported["room archive messages"] += len(out)
        batch.clear()

    async def archive_prefs(self) -> None:
        """XEP-0441 preferences: mam_config's default ('' remote_jid) and always/never."""
        if "mam_config" not in self.tables or "mam_server_user" not in self.tables:
            return
        owners = {uid: (server, user) for uid, server, user in await self.rows(
            "MAM users", "SELECT id, server, user_name FROM mam_server_user")}
        rows = await self.rows("MAM preferences", "SELECT user_id, remote_jid, behaviour"
                               " FROM mam_config")
        store = self.store("mod_mam", "MAM preferences", len(rows))
        if store is None:
            return
        from suricate.modules.mod_mam.store import Prefs
        prefs: dict[tuple[str, str], Prefs] = {}
        for uid, remote, behaviour in rows:
            owner = owners.get(uid)
            acc = self.account(*owner) if owner is not None else None
            if acc is None:
                continue
            p = prefs.setdefault(acc, Prefs("always", [], []))
            mode = MAM_BEHAVIOUR.get(str(behaviour).strip(), "always")
            if not remote:
                p.default = mode
            elif mode == "always":
                p.always.append(remote)
            elif mode == "never":
                p.never.append(remote)
        for acc, p in prefs.items():
            p.always.sort()
            p.never.sort()
            await store.set_prefs(*acc, p)
            self.summary.imported["MAM preferences"] += 1

    async def pubsub(self) -> None:
        from suricate.cli.mongooseim_pubsub import import_pubsub
        await import_pubsub(self)

    async def inbox(self) -> None:
        from suricate.cli.mongooseim_inbox import import_inbox
        await import_inbox(self)

    async def smart_markers(self) -> None:
        from suricate.cli.mongooseim_inbox import import_smart_markers
        await import_smart_markers(self)

    async def push(self) -> None:
        """XEP-0357 registrations: ``owner_jid`` (bare), ``pubsub_jid`` (the app server),
        ``node``, and ``form``, the publish-options as a JSON object of field -> value that
        6.4 sends with every notification (mod_event_pusher_push_rdbms)."""
        what = "push registrations (XEP-0357)"
        if self.missing(what, "event_pusher_push_subscription"):
            return
        rows = await self.rows(what, "SELECT owner_jid, node, pubsub_jid, form"
                               " FROM event_pusher_push_subscription")
        store = self.store("mod_event_pusher", what, len(rows))
        if store is None:
            return
        if rows and "push" not in self.module_opts("mod_event_pusher"):
            self.summary.warnings.append(
                f"{what}: imported, but [modules.mod_event_pusher.push] is not configured:"
                " no notification is sent until it is")
        from suricate.modules.mod_event_pusher.store import PushRegistration
        from suricate.xml.element import Element
        held: dict[tuple[str, str], set[tuple[str, str]]] = {}
        for owner, node, service, form in rows:
            try:
                jid = JID.parse(str(owner))
                app = str(JID.parse(str(service)))
                fields = json.loads(form) if isinstance(form, (str, bytes)) else form
                if not isinstance(fields, dict) or not node:
                    raise ValueError("form is not a JSON object")
            except (InvalidJID, ValueError):
                self.summary.skipped[f"{what} unreadable"] += 1
                continue
            acc = self.account(jid.domain, jid.local or "")
            if acc is None:
                continue
            if acc not in held:
                held[acc] = {(r.service, r.node) for r in await store.registrations(*acc)}
            if (app, str(node)) in held[acc]:
                self.summary.skipped[f"{what} already present"] += 1
                continue
            # The form as a client sends it in <enable/> (XEP-0357 §5), what the push
            # backend keeps and hands on as <publish-options/>.
            x = Element("x", ns.DATA_FORMS, {"type": "submit"})
            x.add("field", attrs={"var": "FORM_TYPE"}).add("value", text=PUBLISH_OPTIONS)
            for var, value in sorted(fields.items()):
                if var == "FORM_TYPE":
                    continue
                field = x.add("field", attrs={"var": str(var)})
                for v in value if isinstance(value, list) else [value]:
                    field.add("value", text=str(v))
            await store.enable(*acc, PushRegistration(app, str(node),
                                                      x.serialize() if fields else ""))
            held[acc].add((app, str(node)))
            self.summary.imported[what] += 1

    async def muc_light_blocking(self) -> None:
        """MUC Light blocking lists: ``what`` 1 a room, 2 a user, ``who`` its bare JID; one
        list per account for the host's MUC Light service (``modules.mod_muc_light.host``)."""
        what = "MUC Light blocking items"
        if "muc_light_blocking" not in self.tables:
            return
        rows = await self.rows(what, "SELECT lserver, luser, what, who FROM muc_light_blocking")
        store = self.store("mod_muc_light", what, len(rows))
        if store is None:
            return
        host = self.module_opts("mod_muc_light")["host"]
        held: dict[tuple[str, str], set[tuple[str, str]]] = {}
        for server, user, kind, who in rows:
            acc = self.account(server, user)
            if acc is None:
                continue
            name = BLOCKING_WHAT.get(int(kind))
            try:
                target = str(JID.parse(str(who)).bare)
            except (InvalidJID, ValueError):
                name = None
            if name is None:
                self.summary.skipped[f"{what} unreadable"] += 1
                continue
            member, service = f"{acc[1]}@{acc[0]}", host.replace("@HOST@", acc[0])
            if acc not in held:
                held[acc] = set(await store.get_blocking(member, service))
            if (name, target) in held[acc]:
                self.summary.skipped[f"{what} already present"] += 1
                continue
            await store.set_blocking(member, service, [(name, "deny", target)])
            held[acc].add((name, target))
            self.summary.imported[what] += 1

    async def not_imported(self) -> None:
        """Tables with rows this version does not import: counted, with the reason."""
        for table, why in NOT_IMPORTED.items():
            if table in self.tables:
                n = (await self.rows(table, f"SELECT COUNT(*) FROM {table}"))[0][0]
                if n:
                    self.summary.skipped[f"{table} rows: {why}"] += int(n)

    async def _archive_rows(self) -> AsyncIterator[tuple[Any, ...]]:
        """mam_message in (user_id, id) order, a page at a time (keyset paging on the
        primary key): an archive of millions of rows is never held in memory at once."""
        after: tuple[int, int] | None = None
        while True:
            where = "" if after is None else (
                f" WHERE user_id > {after[0]} OR (user_id = {after[0]} AND id > {after[1]})")
            page = await self.rows(
                "message archive (MAM)", "SELECT id, user_id, from_jid, remote_bare_jid,"
                " remote_resource, direction, message, origin_id FROM mam_message"
                f"{where} ORDER BY user_id, id LIMIT {MAM_PAGE}")
            for row in page:
                yield row
            if len(page) < MAM_PAGE:
                return
            after = (int(page[-1][1]), int(page[-1][0]))

    async def _write_archive(self, store: Any, batch: list[tuple[Any, ...]]) -> None:
        """Write ``batch`` keeping MongooseIM's ids (the same ``microseconds << 8 | node``
        scheme as Suricate's). MongooseIM keys ids by account; SQLite and MySQL here key them
        alone, so the copy of a message that another account's row already holds the id of
        (``same_mam_id_for_peers``, or two nodes) moves to another node byte of the same
        microsecond: its time and its place among the account's messages stay."""
        shared = store.dialect != "pgsql"
        held: dict[int, list[tuple[str, str, str]]] = defaultdict(list)
        for r in await store.fetch("SELECT id, server, username, message FROM mam_message"
                                   f" WHERE id IN ({', '.join('?' * len(batch))})",
                                   *[row[0] for row in batch]):
            held[int(r[0])].append((r[1], r[2], r[3]))
        out: list[tuple[Any, ...]] = []
        for row in batch:
            mam_id, server, user, xml = row[0], row[1], row[2], row[9]
            chosen: int | None = None
            present = False
            for k in range(256):
                cand = (mam_id & ~0xFF) | ((mam_id + k) & 0xFF)
                if k and cand not in held:
                    for r in await store.fetch("SELECT server, username, message FROM"
                                               " mam_message WHERE id = ?", cand):
                        held[cand].append((r[0], r[1], r[2]))
                mine = [h for h in held.get(cand, ()) if (h[0], h[1]) == (server, user)]
                if mine and (k == 0 or any(h[2] == xml for h in mine)):
                    present = True
                    break
                if not mine and (not shared or not held.get(cand)):
                    chosen = cand
                    break
            if present:
                self.summary.skipped["archived messages already present"] += 1
                continue
            if chosen is None:
                self.summary.skipped["archived messages: no free id in their microsecond"] += 1
                continue
            if chosen != mam_id:
                self.summary.imported["archived messages given another id (shared id)"] += 1
            held[chosen].append((server, user, xml))
            out.append((chosen, *row[1:]))
        if out:
            await store.insert_many(out)
            self.summary.imported["archived messages"] += len(out)
        batch.clear()

    async def muc(self) -> None:
        if self.missing("MUC rooms", "muc_rooms"):
            return
        rooms = await self.rows("MUC rooms", "SELECT id, muc_host, room_name, options"
                                " FROM muc_rooms")
        store = self.store("mod_muc", "MUC rooms", len(rooms))
        if store is None:
            return
        affs: dict[Any, dict[str, tuple[str, str]]] = defaultdict(dict)
        if not self.missing("MUC affiliations", "muc_room_aff"):
            for room_id, luser, lserver, resource, aff in await self.rows(
                    "MUC affiliations", "SELECT room_id, luser, lserver, resource, aff"
                    " FROM muc_room_aff"):
                name = MUC_AFF.get(int(aff))
                try:
                    jid = str(JID(luser or None, lserver, resource or None))
                except (InvalidJID, ValueError):
                    name = None
                if name is None:
                    self.summary.skipped["MUC affiliations unreadable"] += 1
                    continue
                affs[room_id][jid] = (name, "")
        if "muc_registered" in self.tables:
            n = len(await self.rows("MUC nicks", "SELECT nick FROM muc_registered"))
            if n:
                self.summary.skipped["registered MUC nicks: MongooseIM registers them per"
                                     " service, Suricate per room"] += n
        from suricate.modules.mod_muc.config import RoomConfig
        for room_id, muc_host, room, options in rooms:
            try:
                opts = json.loads(options) if isinstance(options, (str, bytes)) else options
                if not isinstance(opts, dict):
                    raise ValueError("not an object")
                subject = str(opts.get("subject") or "")
                author = str(opts.get("subject_author") or "")
                config = RoomConfig.from_options(
                    {k: v for k, v in opts.items() if k not in ("subject", "subject_author")}
                ).to_dict()
            except (TypeError, ValueError) as exc:
                self.summary.skipped[f"MUC rooms with unreadable options ({exc})"] += 1
                continue
            old = await store.load_room(muc_host, room)
            if old is not None:
                kept = {k: v for k, v in old.config.items() if k != "_secret"}
                if (kept, old.subject, old.subject_author, old.affiliations) == (
                        config, subject, author, affs.get(room_id, {})):
                    self.summary.skipped["MUC rooms already present (unchanged)"] += 1
                    continue
                if old.config.get("_secret") is not None:
                    config["_secret"] = old.config["_secret"]
            await store.store_room(muc_host, room, config, subject, author,
                                   affs.get(room_id, {}), old.nicks if old else None,
                                   old.vcard if old else None)
            self.summary.imported["MUC rooms"] += 1

    async def users(self) -> None:
        if self.missing("accounts", "users"):
            return
        auth = self.server.auth
        storage = self.server.storage
        for server, user, password, details in await self.rows(
                "accounts", "SELECT server, username, password, pass_details FROM users"):
            acc = self.account(server, user)
            if acc is None:
                continue
            plain: str | None = None
            record: str | None = None
            if details:
                try:
                    parse_scram_record(details)
                except ValueError:
                    self.summary.skipped["accounts with unreadable pass_details"] += 1
                    continue
                record = details
            elif password:
                if auth.password_format == "plain":
                    plain = password
                else:
                    record = make_scram_record(password, auth.hashes, auth.scram_iterations)
            else:
                self.summary.skipped["accounts without credentials"] += 1
                continue
            existing = await storage.get_user(*acc)
            if existing is None:
                await storage.create_user(*acc, plain, record)
                self.summary.imported["accounts"] += 1
            elif (existing.password, existing.pass_details) == (plain, details or record) or (
                    not details and password
                    and verify_password(existing.password, existing.pass_details, password)):
                self.summary.skipped["accounts already present (unchanged)"] += 1
            else:
                await storage.set_password(*acc, plain, record)
                self.summary.imported["accounts (credentials updated)"] += 1


def expand_mini_jid(user: str, server: str, enc: str) -> str:
    """A JID as MongooseIM's ``mam_jid_mini`` writes it (the default ``db_jid_format`` of
    one-to-one archives): shortened against the archive owner ``user@server``."""
    if enc == "":
        return f"{user}@{server}"
    if enc.startswith("/"):
        return f"{user}@{server}{enc}" if user else f"{server}{enc}"
    cut = min((i for i in (enc.find("@"), enc.find("/"), enc.find(":")) if i >= 0),
              default=-1)
    if cut < 0:
        return f"{enc}@{server}"  # a user of the same server
    if enc.startswith(":/"):
        return f"{server}{enc[1:]}"
    if enc == ":":
        return server
    head, sep, tail = enc[:cut], enc[cut], enc[cut + 1:]
    if sep == ":":
        return f"{tail}@{head}" if tail else head  # server:user, or server:
    if sep == "@":
        if tail.startswith("/"):
            return f"{head}{tail}"  # server@/resource
        luser, _, res = tail.partition("/")
        return f"{luser}@{head}/{res}"  # server@user/resource
    return f"{head}@{server}/{tail}"  # user/resource, same server


def _one_element(text: Any) -> str | None:
    try:
        elements = parse_fragment(str(text))
    except XMLStreamError:
        return None
    return elements[0].serialize() if len(elements) == 1 else None


def _true(value: Any) -> bool:
    """A boolean column: PostgreSQL's boolean, MySQL's tinyint (or a 'y'/'n' char)."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "t", "true", "y")
    return bool(value)


def _seconds(value: Any) -> float:
    """MongooseIM's offline timestamps are microseconds since the epoch."""
    v = float(value)
    return v / 1_000_000 if v > 1e11 else v


async def import_database(server: Any, source: Source, summary: MimSummary,
                          progress: bool = False, mam_jid_format: str = "mam_jid_mini",
                          kinds: Sequence[str] = ("rosters", "simple", "privacy", "offline",
                                                  "archive", "archive_prefs", "muc",
                                                  "muc_light", "muc_archive", "pubsub",
                                                  "inbox", "smart_markers", "push",
                                                  "muc_light_blocking", "not_imported",
                                                  "users")) -> None:
    run = _Run(server, source, summary, progress, mam_jid_format)
    run.tables = await source.tables()
    if "users" not in run.tables and "mam_message" not in run.tables:
        summary.errors.append("the source database has neither a users nor a mam_message"
                              " table: is it MongooseIM's?")
        return
    for kind in kinds:
        await getattr(run, kind)()
