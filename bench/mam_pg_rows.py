"""PostgreSQL's own cost per archive row: CPU of the server backend that runs the COPY.

Rows like the ones mod_mam archives (a chat message of ~300 bytes, 200 archives, each
message in its sender's and its recipient's archive, ids growing as the IdGenerator makes
them) are written with ``COPY ... FROM STDIN`` (binary, asyncpg's
``copy_records_to_table``, as ``suricate/storage/pgsql.py`` does) in batches of --batch
rows, into a scratch schema holding the table as the given migrations make it. Printed per
migration set: the backend's CPU per row (µs, from /proc/<backend pid>/stat: user and
system time), the WAL bytes per row (``pg_current_wal_lsn`` before and after) and the
table's size with its indexes per row.

    .venv/bin/python bench/mam_pg_rows.py --rows 100000 --rounds 3

The backend must run on this machine (its /proc entry is read). The scratch schema is
dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = ROOT / "suricate/modules/mod_mam/migrations/pgsql"
MESSAGE = ("<message xmlns='jabber:client' from='u{a}@localhost/res' to='u{b}@localhost' "
           "type='chat' id='{i}'><body>{i} the quick brown fox jumps over the lazy dog"
           "</body><stanza-id xmlns='urn:xmpp:sid:0' by='u{b}@localhost' id='{i}'/></message>")
COLUMNS = ["server", "username", "id", "remote_bare_jid", "remote_resource", "direction",
           "from_jid", "origin_id", "search_body", "message"]
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (proc(5))


def rows_of(start: int, count: int, users: int) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    base = 1_700_000_000_000_000
    for n in range(start, start + count, 2):
        a, b = n % users, (n * 7 + 1) % users
        xml = MESSAGE.format(a=a, b=b, i=n)
        mam_id = (base + n) << 8
        rows.append(("localhost", f"u{a}", mam_id, f"u{b}@localhost", "res", "O",
                     f"u{a}@localhost/res", str(n), None, xml))
        rows.append(("localhost", f"u{b}", mam_id + 1, f"u{a}@localhost", "res", "I",
                     f"u{a}@localhost/res", str(n), None, xml))
    return rows


async def one(dsn: str, files: list[Path], rows: int, batch: int, users: int,
              schema: str) -> tuple[float, float, float]:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}")
        await conn.execute(f"SET search_path TO {schema}")
        for f in files:
            await conn.execute(f.read_text())
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        # Made before the clock starts: the generator's work is not the backend's.
        batches = [rows_of(i, batch, users) for i in range(0, rows, batch)]
        written = sum(len(b) for b in batches)
        lsn0 = await conn.fetchval("SELECT pg_current_wal_lsn()::text")
        cpu0 = cpu_seconds(pid)
        for b in batches:
            await conn.copy_records_to_table("mam_message", records=b, columns=COLUMNS,
                                             schema_name=schema)
        cpu1 = cpu_seconds(pid)
        wal = await conn.fetchval(f"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{lsn0}')")
        size = await conn.fetchval(f"SELECT pg_total_relation_size('{schema}.mam_message')")
        return ((cpu1 - cpu0) * 1e6 / written, float(wal) / written, float(size) / written)
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--batch", type=int, default=2048)
    p.add_argument("--users", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--upto", default="",
                   help="comma-separated migration names to compare, each meaning 'the "
                        "migrations up to and including this one' (default: all of them)")
    args = p.parse_args()
    every = sorted(MIGRATIONS.glob("*.sql"))
    sets = [every] if not args.upto else [
        [f for f in every if f.name <= name] for name in args.upto.split(",")]
    for r in range(args.rounds):
        for files in sets:
            cpu, wal, size = asyncio.run(one(args.dsn, files, args.rows, args.batch,
                                             args.users, "mam_pg_rows_bench"))
            print(f"round {r + 1} up to {files[-1].name}: backend CPU {cpu:.2f} us/row, "
                  f"WAL {wal:.0f} B/row, table+indexes {size:.0f} B/row", flush=True)


if __name__ == "__main__":
    sys.exit(main())
