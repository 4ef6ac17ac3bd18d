"""The SQL both relational backends share: queries, row mapping, migrations.

SQLite and PostgreSQL agree on everything we need (`INSERT ... ON CONFLICT`, `RETURNING`,
`COUNT(*)`, `LEFT JOIN`), so the queries live here once, written with `?` placeholders.
A backend only supplies an `Executor` (how a statement runs and how `?` is spelt) and a
session (a connection, optionally inside a transaction). That keeps the two backends
from drifting apart and lets one test suite cover both.
"""

from __future__ import annotations

import re
import time
from abc import abstractmethod
from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from importlib import resources
from typing import Any, ClassVar, Protocol

from .base import (
    DomainRecord,
    FastToken,
    FastTokenSlots,
    OfflineMessage,
    RosterItem,
    Storage,
    StorageError,
    UserRecord,
)

__all__ = ["Executor", "Migration", "SqlStorage", "load_migrations"]

Row = Sequence[Any]


class Executor(Protocol):
    """One connection, as seen by the shared queries."""

    async def execute(self, sql: str, *args: Any) -> int:
        """Run one statement; return the number of rows it changed."""
        ...

    async def execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...

    async def script(self, sql: str) -> None:
        """Run several `;`-separated statements without parameters (migrations)."""
        ...


# -- migrations --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


def load_migrations(dialect: str) -> list[Migration]:
    """The numbered scripts of `migrations/<dialect>/`, in order.

    Numbers must be unique, so a duplicated file is caught here, at start-up. A gap is
    allowed: features are developed side by side and their migrations may land in either
    order (0003 before 0002); each is applied once, whenever it appears, because the runner
    looks at what is recorded, not at the highest number.
    """
    folder = resources.files("suricate.storage").joinpath("migrations", dialect)
    if not folder.is_dir():
        raise StorageError(f"no migrations for storage dialect {dialect!r}")
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match is None:
            continue
        found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions) or (versions and versions[0] < 1):
        raise StorageError(f"{dialect} migrations must have distinct numbers >= 1, "
                           f"found {versions}")
    return found


# Created outside the numbered migrations: it is what records them. Valid in both dialects.
_SCHEMA_VERSION_DDL = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
)

# Every table keyed by (server, username) holds account data that remove_user must erase.
# roster_groups goes before roster_items so the delete works even without FK cascades.
_USER_DATA_TABLES: tuple[str, ...] = (
    "roster_groups",
    "roster_items",
    "roster_versions",
    "offline_messages",
    "last_activity",
    "vcards",
    "blocklist",
    "fast_auth_token",
)

_ROSTER_SELECT = (
    "SELECT i.jid, i.name, i.subscription, i.ask, i.approved, i.ask_message, g.grp"
    " FROM roster_items i LEFT JOIN roster_groups g"
    " ON g.server = i.server AND g.username = i.username AND g.jid = i.jid"
    " WHERE i.server = ? AND i.username = ?"
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
        if row[6] is not None:
            groups.append(row[6])
    if current is not None:
        items.append(_roster_item(current, groups))
    return items


def _roster_item(row: Row, groups: list[str]) -> RosterItem:
    return RosterItem(
        jid=row[0],
        name=row[1],
        subscription=row[2],
        ask=row[3],
        groups=tuple(groups),
        approved=bool(row[4]),  # SQLite hands back 0/1
        ask_message=row[5],
    )


def _unique(values: Iterable[str]) -> list[str]:
    """Drop repeats, keep first-seen order (a client may list a JID or group twice)."""
    return list(dict.fromkeys(values))


class SqlStorage(Storage):
    """`Storage` over any SQL database reachable through an `Executor`."""

    dialect: ClassVar[str]
    # What `LIMIT ?` takes to mean "no limit": SQLite rejects NULL, PostgreSQL rejects -1.
    _NO_LIMIT: ClassVar[int | None]

    # -- what a backend provides ------------------------------------------------------------

    @abstractmethod
    async def _connect(self) -> None: ...

    @abstractmethod
    async def _disconnect(self) -> None: ...

    @abstractmethod
    def _session(self, *, transaction: bool = False) -> AbstractAsyncContextManager[Executor]:
        """A connection; with `transaction`, everything done on it commits or none of it.

        Backend errors leave it translated to StorageError / StorageUnavailable.
        """

    async def _lock_migrations(self, ex: Executor) -> None:  # noqa: B027 - optional hook
        """Serialize concurrent migrators (server and CLI starting together).

        Called first thing inside the migration transaction. SQLite needs nothing: its
        transactions start with BEGIN IMMEDIATE and so already exclude other writers.
        """

    # -- life cycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        await self._connect()
        try:
            await self._migrate()
        except BaseException:
            await self._disconnect()
            raise

    async def close(self) -> None:
        await self._disconnect()

    async def _migrate(self) -> None:
        migrations = load_migrations(self.dialect)
        async with self._session(transaction=True) as ex:
            await self._lock_migrations(ex)
            await ex.script(_SCHEMA_VERSION_DDL)
        # One transaction per migration: a failure leaves the database at the last good
        # version, and the applied set is re-read under the lock so that two processes
        # opening at once do not apply the same script twice.
        for migration in migrations:
            async with self._session(transaction=True) as ex:
                await self._lock_migrations(ex)
                applied = {row[0] for row in await ex.fetch("SELECT version FROM schema_version")}
                known = migrations[-1].version
                if applied and max(applied) > known:
                    # A newer Suricate upgraded this database; running older code against
                    # a schema it does not know risks silent data loss.
                    raise StorageError(
                        f"database schema version {max(applied)} is newer than this "
                        f"Suricate supports ({known})"
                    )
                if migration.version in applied:
                    continue
                await ex.script(migration.sql)
                await ex.execute(
                    "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                    migration.version,
                    migration.name,
                    time.time(),
                )

    async def schema_versions(self) -> list[int]:
        rows = await self._fetch("SELECT version FROM schema_version ORDER BY version")
        return [row[0] for row in rows]

    # -- helpers ------------------------------------------------------------------------------

    async def _execute(self, sql: str, *args: Any) -> int:
        async with self._session() as ex:
            return await ex.execute(sql, *args)

    async def _fetch(self, sql: str, *args: Any) -> list[Row]:
        async with self._session() as ex:
            return await ex.fetch(sql, *args)

    async def _fetch_one(self, sql: str, *args: Any) -> Row | None:
        rows = await self._fetch(sql, *args)
        return rows[0] if rows else None

    # -- users --------------------------------------------------------------------------------

    async def create_user(
        self, server: str, username: str, password: str | None, pass_details: str | None
    ) -> bool:
        # ON CONFLICT DO NOTHING rather than check-then-insert: atomic against a concurrent
        # registration of the same name, and no integrity error to translate.
        changed = await self._execute(
            "INSERT INTO users (server, username, password, pass_details, created_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (server, username) DO NOTHING",
            server,
            username,
            password,
            pass_details,
            time.time(),
        )
        return changed == 1

    async def get_user(self, server: str, username: str) -> UserRecord | None:
        row = await self._fetch_one(
            "SELECT password, pass_details, created_at FROM users"
            " WHERE server = ? AND username = ?",
            server,
            username,
        )
        if row is None:
            return None
        return UserRecord(server, username, row[0], row[1], float(row[2]))

    async def set_password(
        self, server: str, username: str, password: str | None, pass_details: str | None
    ) -> bool:
        changed = await self._execute(
            "UPDATE users SET password = ?, pass_details = ? WHERE server = ? AND username = ?",
            password,
            pass_details,
            server,
            username,
        )
        return changed > 0

    async def remove_user(self, server: str, username: str,
                          module_tables: Sequence[str] = ()) -> bool:
        async with self._session(transaction=True) as ex:
            # Modules' tables (ModuleStore.user_tables) go in the same transaction: an account
            # is removed with all of its data or not at all.
            for table in (*module_tables, *_USER_DATA_TABLES):
                await ex.execute(
                    f"DELETE FROM {table} WHERE server = ? AND username = ?", server, username
                )
            changed = await ex.execute(
                "DELETE FROM users WHERE server = ? AND username = ?", server, username
            )
        return changed > 0

    async def list_users(self, server: str, limit: int | None = None, offset: int = 0) -> list[str]:
        if (limit is not None and limit < 0) or offset < 0:
            raise ValueError("limit and offset must not be negative")
        rows = await self._fetch(
            "SELECT username FROM users WHERE server = ? ORDER BY username LIMIT ? OFFSET ?",
            server,
            self._NO_LIMIT if limit is None else limit,
            offset,
        )
        return [row[0] for row in rows]

    async def count_users(self, server: str) -> int:
        row = await self._fetch_one("SELECT COUNT(*) FROM users WHERE server = ?", server)
        return int(row[0]) if row else 0

    async def user_exists(self, server: str, username: str) -> bool:
        row = await self._fetch_one(
            "SELECT 1 FROM users WHERE server = ? AND username = ?", server, username
        )
        return row is not None

    # -- roster -------------------------------------------------------------------------------

    async def get_roster(self, server: str, user: str) -> list[RosterItem]:
        rows = await self._fetch(_ROSTER_SELECT + " ORDER BY i.jid, g.position", server, user)
        return _roster_items(rows)

    async def get_roster_item(self, server: str, user: str, jid: str) -> RosterItem | None:
        rows = await self._fetch(
            _ROSTER_SELECT + " AND i.jid = ? ORDER BY g.position", server, user, jid
        )
        items = _roster_items(rows)
        return items[0] if items else None

    async def put_roster_item(self, server: str, user: str, item: RosterItem) -> None:
        async with self._session(transaction=True) as ex:
            await ex.execute(
                "INSERT INTO roster_items"
                " (server, username, jid, name, subscription, ask, approved, ask_message)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (server, username, jid) DO UPDATE SET"
                " name = excluded.name, subscription = excluded.subscription,"
                " ask = excluded.ask, approved = excluded.approved,"
                " ask_message = excluded.ask_message",
                server,
                user,
                item.jid,
                item.name,
                item.subscription,
                item.ask,
                item.approved,
                item.ask_message,
            )
            # Replacing the groups wholesale is simpler than diffing and rosters are small.
            await ex.execute(
                "DELETE FROM roster_groups WHERE server = ? AND username = ? AND jid = ?",
                server,
                user,
                item.jid,
            )
            groups = _unique(item.groups)
            if groups:
                # `position` keeps the client's group order across a round trip.
                await ex.execute_many(
                    "INSERT INTO roster_groups (server, username, jid, position, grp)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [(server, user, item.jid, pos, grp) for pos, grp in enumerate(groups)],
                )

    async def delete_roster_item(self, server: str, user: str, jid: str) -> bool:
        # The groups go with the item through ON DELETE CASCADE.
        changed = await self._execute(
            "DELETE FROM roster_items WHERE server = ? AND username = ? AND jid = ?",
            server,
            user,
            jid,
        )
        return changed > 0

    async def get_roster_version(self, server: str, user: str) -> str | None:
        row = await self._fetch_one(
            "SELECT version FROM roster_versions WHERE server = ? AND username = ?",
            server,
            user,
        )
        return None if row is None else row[0]

    async def set_roster_version(self, server: str, user: str, version: str) -> None:
        await self._execute(
            "INSERT INTO roster_versions (server, username, version) VALUES (?, ?, ?)"
            " ON CONFLICT (server, username) DO UPDATE SET version = excluded.version",
            server,
            user,
            version,
        )

    # -- offline messages ----------------------------------------------------------------------

    async def store_offline(self, server: str, user: str, msg: OfflineMessage) -> None:
        await self._execute(
            "INSERT INTO offline_messages"
            " (server, username, stamp, expire, from_jid, to_jid, packet)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            server,
            user,
            float(msg.timestamp),
            None if msg.expire is None else float(msg.expire),
            msg.from_jid,
            msg.to_jid,
            msg.packet,
        )

    async def count_offline(self, server: str, user: str) -> int:
        row = await self._fetch_one(
            "SELECT COUNT(*) FROM offline_messages WHERE server = ? AND username = ?",
            server,
            user,
        )
        return int(row[0]) if row else 0

    async def pop_offline(
        self, server: str, user: str, now: float | None = None
    ) -> list[OfflineMessage]:
        # One DELETE ... RETURNING is the fetch and the delete at once: two sessions popping
        # together each get a disjoint set (PostgreSQL row locks, SQLite's writer lock),
        # so a message is never delivered twice, and nothing arrives between a SELECT and a
        # DELETE to be lost. RETURNING has no ORDER BY, hence the sort on the serial id.
        rows = await self._fetch(
            "DELETE FROM offline_messages WHERE server = ? AND username = ?"
            " RETURNING id, stamp, expire, from_jid, to_jid, packet",
            server,
            user,
        )
        rows = sorted(rows, key=lambda row: row[0])
        cutoff = time.time() if now is None else now
        return [
            OfflineMessage(float(row[1]), row[3], row[4], row[5], _float_or_none(row[2]))
            for row in rows
            if row[2] is None or row[2] >= cutoff
        ]

    async def remove_expired_offline(self, now: float) -> int:
        return await self._execute(
            "DELETE FROM offline_messages WHERE expire IS NOT NULL AND expire < ?", float(now)
        )

    # -- last activity -------------------------------------------------------------------------

    async def set_last(self, server: str, user: str, timestamp: int, status: str) -> None:
        await self._execute(
            "INSERT INTO last_activity (server, username, seconds, status) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (server, username) DO UPDATE SET"
            " seconds = excluded.seconds, status = excluded.status",
            server,
            user,
            int(timestamp),
            status,
        )

    async def get_last(self, server: str, user: str) -> tuple[int, str] | None:
        row = await self._fetch_one(
            "SELECT seconds, status FROM last_activity WHERE server = ? AND username = ?",
            server,
            user,
        )
        return None if row is None else (int(row[0]), row[1])

    # -- vCard ---------------------------------------------------------------------------------

    async def set_vcard(self, server: str, user: str, xml: str) -> None:
        await self._execute(
            "INSERT INTO vcards (server, username, vcard) VALUES (?, ?, ?)"
            " ON CONFLICT (server, username) DO UPDATE SET vcard = excluded.vcard",
            server,
            user,
            xml,
        )

    async def get_vcard(self, server: str, user: str) -> str | None:
        row = await self._fetch_one(
            "SELECT vcard FROM vcards WHERE server = ? AND username = ?", server, user
        )
        return None if row is None else row[0]

    # -- blocking ------------------------------------------------------------------------------

    async def get_blocklist(self, server: str, user: str) -> list[str]:
        rows = await self._fetch(
            "SELECT jid FROM blocklist WHERE server = ? AND username = ? ORDER BY jid",
            server,
            user,
        )
        return [row[0] for row in rows]

    async def block(self, server: str, user: str, jids: Sequence[str]) -> list[str]:
        # XEP-0191 §3.3: the server pushes only the JIDs that changed, so report those.
        added: list[str] = []
        async with self._session(transaction=True) as ex:
            for jid in _unique(jids):
                if await ex.execute(
                    "INSERT INTO blocklist (server, username, jid) VALUES (?, ?, ?)"
                    " ON CONFLICT (server, username, jid) DO NOTHING",
                    server,
                    user,
                    jid,
                ):
                    added.append(jid)
        return added

    async def unblock(self, server: str, user: str, jids: Sequence[str]) -> list[str]:
        removed: list[str] = []
        async with self._session(transaction=True) as ex:
            for jid in _unique(jids):
                if await ex.execute(
                    "DELETE FROM blocklist WHERE server = ? AND username = ? AND jid = ?",
                    server,
                    user,
                    jid,
                ):
                    removed.append(jid)
        return removed

    async def unblock_all(self, server: str, user: str) -> list[str]:
        rows = await self._fetch(
            "DELETE FROM blocklist WHERE server = ? AND username = ? RETURNING jid",
            server,
            user,
        )
        return sorted(row[0] for row in rows)


    # -- dynamic domains and domain admins ---------------------------------------------------

    async def list_domains(self) -> list[DomainRecord]:
        rows = await self._fetch(
            "SELECT domain, host_type, enabled FROM domain_settings ORDER BY domain"
        )
        return [DomainRecord(row[0], row[1], bool(row[2])) for row in rows]

    async def insert_domain(self, domain: str, host_type: str) -> bool:
        changed = await self._execute(
            "INSERT INTO domain_settings (domain, host_type, enabled, created_at)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (domain) DO NOTHING",
            domain,
            host_type,
            True,
            time.time(),
        )
        return changed == 1

    async def delete_domain(self, domain: str) -> bool:
        async with self._session(transaction=True) as ex:
            for table in _USER_DATA_TABLES:
                await ex.execute(f"DELETE FROM {table} WHERE server = ?", domain)
            await ex.execute("DELETE FROM users WHERE server = ?", domain)
            await ex.execute("DELETE FROM domain_admins WHERE domain = ?", domain)
            changed = await ex.execute("DELETE FROM domain_settings WHERE domain = ?", domain)
        return changed > 0

    async def set_domain_enabled(self, domain: str, enabled: bool) -> bool:
        changed = await self._execute(
            "UPDATE domain_settings SET enabled = ? WHERE domain = ?", enabled, domain
        )
        return changed > 0

    async def set_domain_admin(self, domain: str, pass_details: str) -> None:
        await self._execute(
            "INSERT INTO domain_admins (domain, pass_details) VALUES (?, ?)"
            " ON CONFLICT (domain) DO UPDATE SET pass_details = excluded.pass_details",
            domain,
            pass_details,
        )

    async def get_domain_admin(self, domain: str) -> str | None:
        row = await self._fetch_one(
            "SELECT pass_details FROM domain_admins WHERE domain = ?", domain
        )
        return None if row is None else str(row[0])

    async def delete_domain_admin(self, domain: str) -> bool:
        return await self._execute("DELETE FROM domain_admins WHERE domain = ?", domain) > 0

    # -- administration queries --------------------------------------------------------------

    async def list_fast_tokens(self, server: str, user: str) -> list[tuple[str, FastToken]]:
        rows = await self._fetch(
            "SELECT user_agent_id, current_seed, current_expire, current_mech, current_count,"
            " new_seed, new_expire, new_mech, new_count FROM fast_auth_token"
            " WHERE server = ? AND username = ? ORDER BY user_agent_id",
            server,
            user,
        )
        found: list[tuple[str, FastToken]] = []
        for row in rows:
            for cols in (row[1:5], row[5:9]):
                token = _fast_token(cols)
                if token is not None:
                    found.append((row[0], token))
        return found

    async def revoke_fast_tokens(self, server: str, user: str) -> int:
        return await self._execute(
            "DELETE FROM fast_auth_token WHERE server = ? AND username = ?", server, user
        )

    async def count_active_users(self, server: str, since: int) -> int:
        row = await self._fetch_one(
            "SELECT COUNT(*) FROM last_activity WHERE server = ? AND seconds >= ?",
            server,
            int(since),
        )
        return int(row[0]) if row else 0

    async def remove_old_offline(self, server: str, before: float) -> int:
        return await self._execute(
            "DELETE FROM offline_messages WHERE server = ? AND stamp < ?", server, float(before)
        )


    # -- FAST tokens (XEP-0484) ---------------------------------------------------------------

    async def get_fast_tokens(self, server: str, user: str, agent_id: str
                              ) -> FastTokenSlots | None:
        row = await self._fetch_one(
            "SELECT current_seed, current_expire, current_mech, current_count,"
            " new_seed, new_expire, new_mech, new_count FROM fast_auth_token"
            " WHERE server = ? AND username = ? AND user_agent_id = ?",
            server,
            user,
            agent_id,
        )
        if row is None:
            return None
        return FastTokenSlots(_fast_token(row[0:4]), _fast_token(row[4:8]))

    async def store_fast_token(self, server: str, user: str, agent_id: str,
                               token: FastToken) -> None:
        await self._execute(
            "INSERT INTO fast_auth_token (server, username, user_agent_id,"
            " new_seed, new_expire, new_mech, new_count) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (server, username, user_agent_id) DO UPDATE SET"
            " new_seed = excluded.new_seed, new_expire = excluded.new_expire,"
            " new_mech = excluded.new_mech, new_count = excluded.new_count",
            server,
            user,
            agent_id,
            token.seed,
            float(token.expire),
            token.mechanism,
            token.count,
        )

    async def use_fast_token(self, server: str, user: str, agent_id: str, slot: str,
                             seed: str, count: int | None) -> bool:
        # One conditional UPDATE is the check and the write: two logins racing with the
        # same counter (a replayed 0-RTT flight) cannot both see the old value.
        if slot not in ("new", "current"):
            raise ValueError(f"no FAST token slot {slot!r}")
        where = (f" WHERE server = ? AND username = ? AND user_agent_id = ? AND {slot}_seed = ?"
                 f" AND (CAST(? AS BIGINT) IS NULL OR {slot}_count IS NULL"
                 f" OR {slot}_count < ?)")
        if slot == "new":
            sql = ("UPDATE fast_auth_token SET current_seed = new_seed,"
                   " current_expire = new_expire, current_mech = new_mech,"
                   " current_count = COALESCE(?, new_count), new_seed = NULL,"
                   " new_expire = NULL, new_mech = NULL, new_count = NULL" + where)
        else:
            sql = ("UPDATE fast_auth_token SET current_count = COALESCE(?, current_count)"
                   + where)
        changed = await self._execute(sql, count, server, user, agent_id, seed, count, count)
        return changed > 0

    async def remove_fast_tokens(self, server: str, user: str, agent_id: str) -> None:
        await self._execute(
            "DELETE FROM fast_auth_token WHERE server = ? AND username = ? AND user_agent_id = ?",
            server,
            user,
            agent_id,
        )


def _fast_token(cols: Sequence[Any]) -> FastToken | None:
    seed, expire, mech, count = cols
    if seed is None:
        return None
    return FastToken(seed, float(expire), mech, None if count is None else int(count))


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)
