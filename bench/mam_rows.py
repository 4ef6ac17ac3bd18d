"""The SQLite archive writer's cost per row: CPU of the writer thread and bytes it writes.

Rows like the ones mod_mam archives (a chat message of ~300 bytes, 200 archives, each
message in its sender's and its recipient's archive) are written through the module's
``SqliteWriterThread`` in batches of --batch rows, into a fresh file with the module's
schema. Printed per batch size: the writer thread's CPU per row (µs, its own thread CPU
clock) and the bytes it wrote per row (the process' ``wchar`` from /proc/self/io: WAL,
statement journals and checkpoints).

    .venv/bin/python bench/mam_rows.py --batch 240,2048,4096 --rows 40000
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from suricate.modules.mod_mam import IdGenerator  # noqa: E402
from suricate.modules.mod_mam import store as mam_store  # noqa: E402
from suricate.modules.mod_mam.sqlite_writer import SqliteWriterThread  # noqa: E402

SCHEMA = ROOT / "suricate/modules/mod_mam/migrations/sqlite/0001_mam.sql"
MESSAGE = ("<message xmlns='jabber:client' from='u{a}@localhost/res' to='u{b}@localhost' "
           "type='chat' id='{i}'><body>{i} the quick brown fox jumps over the lazy dog"
           "</body><stanza-id xmlns='urn:xmpp:sid:0' by='u{b}@localhost' id='{i}'/></message>")


def wchar() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return 0


def rows(count: int, users: int) -> list[mam_store.Row]:
    ids = IdGenerator()
    out: list[mam_store.Row] = []
    for i in range(count // 2):
        a, b = i % users, (i + 1) % users
        xml = MESSAGE.format(a=a, b=b, i=i)
        out.append((ids.next(), "localhost", f"u{a}", f"u{b}@localhost", "", "O",
                    f"u{a}@localhost/res", str(i), f"{i} the quick brown fox", xml))
        out.append((ids.next(), "localhost", f"u{b}", f"u{a}@localhost", "res", "I",
                    f"u{a}@localhost/res", str(i), f"{i} the quick brown fox", xml))
    return out


async def measure(batch: int, count: int, users: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "mam.db")
        import sqlite3
        conn = sqlite3.connect(path)
        conn.executescript(SCHEMA.read_text())
        conn.close()
        # (the statements of the code under test; _INSERTS before they had their own)
        inserts = getattr(mam_store, "WRITER_INSERTS", None) or mam_store._INSERTS
        writer = SqliteWriterThread(path, inserts)
        data = rows(count, users)
        clock: list[float] = []

        def thread_clock() -> None:
            clock.append(time.thread_time())

        loop = asyncio.get_running_loop()
        # Warm up: the connection opened and the first pages of the indexes in place.
        await writer.write(data[:batch])
        await loop.run_in_executor(writer._pool, thread_clock)
        written = wchar()
        for first in range(batch, len(data), batch):
            await writer.write(data[first:first + batch])
        await loop.run_in_executor(writer._pool, thread_clock)
        written = wchar() - written
        await writer.close()
        n = len(data) - batch
        return (clock[1] - clock[0]) / n * 1e6, written / n


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", default="240,2048,4096")
    parser.add_argument("--rows", type=int, default=40000)
    parser.add_argument("--users", type=int, default=200)
    args = parser.parse_args()
    print("| rows per batch | writer CPU µs per row | bytes written per row |")
    print("|---|---|---|")
    for batch in (int(b) for b in args.batch.split(",")):
        cpu, written = await measure(batch, args.rows + batch, args.users)
        print(f"| {batch} | {cpu:.1f} | {written:.0f} |")


if __name__ == "__main__":
    asyncio.run(main())
