"""The archive's SQLite writes, in a thread of their own with a connection of their own.

The storage's shared connection runs every statement on the event loop thread (see
``suricate/storage/sqlite.py``: for short queries that is cheaper than a thread hop). A flush
of the archive is not short: hundreds of rows, three B-trees each (the table and its two
indexes). Here it runs on a dedicated thread, through its own connection to the same file:

- the sqlite3 module releases the GIL inside the SQLite library (``sqlite3_step``), so the
  event loop keeps routing messages while the B-trees are updated;
- rows that arrive meanwhile wait in the writer's lane and go in the next transaction (group
  commit): under load a transaction holds more rows, and each page it dirties (an index leaf
  of an archive) is written to the WAL once for more of them;
- multi-row INSERTs of a few fixed sizes (prepared once, cached by the connection), their
  parameters flattened in C: each statement binds and steps hundreds of rows, so the GIL is
  handed between the threads once per statement, not once per row as ``executemany`` would
  (on a server pinned to one core every hand-over is a context switch);
- a page cache big enough for the index leaves every active archive appends to.

Both connections use WAL, so the loop's readers (archive queries) never wait for this writer;
the two writers (this one and the loop's, for retractions and account removal) take SQLite's
write lock in turn, each waiting up to ``busy_timeout``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import chain
from operator import itemgetter
from typing import Any

#: The page cache of the writer's connection, in KiB (SQLite's negative cache_size): room for
#: the index leaves that tens of thousands of active archives append to.
CACHE_KIB = 65536
#: Pages in the WAL before this connection checkpoints it (4 KiB pages: 40 MiB).
WAL_PAGES = 10000
#: Rows per transaction at most. Group commit lets a batch grow under load; the write lock
#: it holds would make the event loop's own writes (offline messages, rosters) wait for all
#: of it, so a big batch is committed in several transactions. Twice the async writer's
#: smallest lane (``BATCH_FLOOR`` in ``writer.py``): a full batch plus what group commit
#: gathered during the previous write go in one transaction (bench/mam_rows.py: the cost
#: per row falls with the rows per transaction, see docs/mam.md).
MAX_TRANSACTION = 4096


class SqliteWriterThread:
    """One thread, one connection: ``write`` commits rows in one transaction, off the loop."""

    def __init__(self, path: str, inserts: Mapping[int, str], *,
                 not_null: Sequence[int] = (), busy_timeout_ms: int = 5000) -> None:
        """``inserts``: rows per statement -> the INSERT of that many rows (with 1), which
        may be INSERT OR IGNORE: ``not_null`` (positions in a row of NOT NULL columns) are
        then checked here, since OR IGNORE would skip such a row without a word."""
        self.path = path
        self._not_null = itemgetter(*not_null) if len(not_null) > 1 else None
        self.sizes = sorted(inserts, reverse=True)
        self.inserts = dict(inserts)
        self.busy_timeout_ms = busy_timeout_ms
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mam-sqlite")
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        conn = self._conn
        if conn is None:
            # Opened in the writer thread, used only there (check_same_thread holds).
            conn = sqlite3.connect(self.path, isolation_level=None,
                                   timeout=self.busy_timeout_ms / 1000)
            conn.execute("PRAGMA journal_mode = WAL")
            # Safe with WAL (no corruption; a power cut may lose the last commits, which the
            # async writer already allows for: at most one flush interval).
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            # Checkpoint (copy the WAL back into the database file) every WAL_PAGES pages
            # rather than SQLite's 1000: the index leaves every flush rewrites are copied
            # back once per checkpoint, not once per version, which a bigger WAL makes rarer.
            conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_PAGES}")
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            self._conn = conn
        return conn

    def _write(self, rows: Sequence[Sequence[Any]]) -> None:
        not_null = self._not_null
        # One C-level pass (itemgetter, chain, ``in``): a fraction of a µs per row.
        if not_null is not None and None in chain.from_iterable(map(not_null, rows)):
            raise sqlite3.IntegrityError("NOT NULL constraint failed: mam_message")
        conn = self._connection()
        for first in range(0, len(rows), MAX_TRANSACTION):
            self._transaction(conn, rows[first:first + MAX_TRANSACTION])

    def _transaction(self, conn: sqlite3.Connection, rows: Sequence[Sequence[Any]]) -> None:
        # IMMEDIATE: take the write lock up front (see storage/sqlite.py _session).
        conn.execute("BEGIN IMMEDIATE")
        try:
            start, inserts = 0, self.inserts
            for size in self.sizes:
                sql = inserts[size]
                while len(rows) - start >= size:
                    conn.execute(sql, list(chain.from_iterable(rows[start:start + size])))
                    start += size
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    async def write(self, rows: Sequence[Sequence[Any]]) -> None:
        """``rows`` in transactions of at most ``MAX_TRANSACTION`` rows, all committed when
        this returns. Should one fail, those before it stay: the async writer retries the
        whole batch, and rows already there are kept as they are (ON CONFLICT DO NOTHING)."""
        await asyncio.get_running_loop().run_in_executor(self._pool, self._write, rows)

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._pool, self._close)
        self._pool.shutdown(wait=True)
