"""Archive query latency: a page of 50 from a 100k-message archive (XEP-0313, mod_mam).

A Suricate server runs in this process on SQLite (or PostgreSQL with --pgsql, MariaDB/MySQL
with --mysql); the
archive of u0 is filled with --messages rows through the module's store (the async writer's
multi-row INSERT), then a raw client (plain TCP, PLAIN auth) sends MAM queries and times the
IQ round trip, 50 result messages included:

- forward pages from a random position (RSM <after/>), with count and first index;
- the same with enforce_simple_queries semantics (no count) is the --simple run;
- the last page (RSM <before/> empty), what a client opening a conversation asks;
- a page filtered by 'with' (one of 10 peers).

    .venv/bin/python bench/mam_query.py                      # SQLite, 100k messages
    .venv/bin/python bench/mam_query.py --simple
    .venv/bin/python bench/mam_query.py --pgsql               # PostgreSQL (127.0.0.1:5432)
    .venv/bin/python bench/mam_query.py --mysql               # MariaDB (127.0.0.1:3306, root)

On PostgreSQL and MariaDB the script creates the database suricate_mam_query and drops it at
the end.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from suricate.config import parse_config  # noqa: E402
from suricate.core.server import Server  # noqa: E402
from suricate.jid import JID  # noqa: E402
from suricate.modules import MODULES  # noqa: E402
from suricate.modules.mod_mam import IdGenerator, ModMam  # noqa: E402

RSM = "http://jabber.org/protocol/rsm"


def config(tmp: Path, port: int, pgsql: str | None, simple: bool,
           mysql: str | None = None) -> str:
    if pgsql:
        pool = (f'[outgoing_pools.rdbms.default.connection]\ndriver = "pgsql"\n'
                f'host = "127.0.0.1"\ndatabase = "{pgsql}"\nusername = "postgres"\n'
                'password = ""\n')
    elif mysql:
        pool = (f'[outgoing_pools.rdbms.default.connection]\ndriver = "mysql"\n'
                f'host = "127.0.0.1"\ndatabase = "{mysql}"\nusername = "root"\n'
                'password = ""\n')
    else:
        pool = (f'[outgoing_pools.rdbms.default.connection]\ndriver = "sqlite"\n'
                f'database = "{tmp / "bench.db"}"\n')
    return f"""
[general]
hosts = ["localhost"]
default_server_domain = "localhost"
loglevel = "error"
[[listen.c2s]]
port = {port}
ip_address = "127.0.0.1"
[auth]
methods = ["rdbms"]
password.scram_iterations = 4096
{pool}
[modules.mod_mam]
enforce_simple_queries = {str(simple).lower()}
[modules.mod_mam.pm]
"""


async def fill(mam: ModMam, count: int) -> list[int]:
    ids = IdGenerator()
    rows = []
    for i in range(count):
        peer = f"p{i % 10}@localhost"
        mam_id = ids.next()
        rows.append((mam_id, "localhost", "u0", peer, "r", "O" if i % 2 else "I",
                     "u0@localhost/r", f"o{i}", None,
                     f"<message to='{peer}' from='u0@localhost/r' type='chat' id='o{i}'>"
                     f"<body>Hello! This is archived message number {i}.</body></message>"))
    for start in range(0, count, 5000):
        await mam.store.insert_many(rows[start:start + 5000])
    return [r[0] for r in rows]


class Raw:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.buf = reader, writer, b""

    async def expect(self, pattern: bytes) -> bytes:
        regex = re.compile(pattern, re.S)
        while True:
            m = regex.search(self.buf)
            if m:
                self.buf = self.buf[m.end():]
                return m.group(0)
            self.buf += await self.reader.read(1 << 20)

    def send(self, data: str) -> None:
        self.writer.write(data.encode())


async def login(port: int) -> Raw:
    raw = Raw(*await asyncio.open_connection("127.0.0.1", port))
    header = ("<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' "
              "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")
    raw.send(header)
    await raw.expect(rb"</stream:features>")
    token = base64.b64encode(b"\0u0\0pw").decode()
    raw.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
    await raw.expect(rb"<success[^>]*?(/>|>.*?</success>)")
    raw.send(header)
    await raw.expect(rb"</stream:features>")
    raw.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
             "<resource>r</resource></bind></iq>")
    await raw.expect(rb"<iq[^>]*id=.b.*?</iq>")
    return raw


async def timed(raw: Raw, queries: list[str]) -> list[float]:
    out = []
    for n, body in enumerate(queries):
        t0 = time.perf_counter()
        raw.send(f"<iq type='set' id='q{n}'><query xmlns='urn:xmpp:mam:2'>{body}</query></iq>")
        fin = await raw.expect(rb"<iq[^>]*id=.q%d.*?</iq>" % n)
        out.append((time.perf_counter() - t0) * 1000)
        assert b"<fin" in fin, fin
    return out


def summary(name: str, ms: list[float]) -> str:
    ms = sorted(ms)
    return (f"| {name} | {statistics.median(ms):.2f} | {ms[int(len(ms) * 0.99) - 1]:.2f} "
            f"| {len(ms)} |")


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=100_000)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--simple", action="store_true", help="enforce_simple_queries = true")
    p.add_argument("--pgsql", action="store_const", const="suricate_mam_query",
                   help="PostgreSQL on 127.0.0.1 (user postgres), own database")
    p.add_argument("--mysql", action="store_const", const="suricate_mam_query",
                   help="MariaDB/MySQL on 127.0.0.1 (user root), own database")
    a = p.parse_args()
    if a.pgsql:
        await _pg_admin(f"DROP DATABASE IF EXISTS {a.pgsql} WITH (FORCE)")
        await _pg_admin(f"CREATE DATABASE {a.pgsql}")
    if a.mysql:
        await _my_admin(f"DROP DATABASE IF EXISTS {a.mysql}")
        await _my_admin(f"CREATE DATABASE {a.mysql} CHARACTER SET utf8mb4")
    try:
        await _run(a)
    finally:
        if a.pgsql:
            await _pg_admin(f"DROP DATABASE IF EXISTS {a.pgsql} WITH (FORCE)")
        if a.mysql:
            await _my_admin(f"DROP DATABASE IF EXISTS {a.mysql}")


async def _my_admin(sql: str) -> None:
    import asyncmy
    conn = await asyncmy.connect(host="127.0.0.1", user="root", password="", autocommit=True)
    try:
        async with conn.cursor() as cur:
            await cur.execute(sql)
    finally:
        await conn.ensure_closed()


async def _pg_admin(sql: str) -> None:
    import asyncpg
    conn = await asyncpg.connect(host="127.0.0.1", user="postgres", database="postgres")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _run(a: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = Server(parse_config(config(tmp, port, a.pgsql, a.simple, a.mysql), tmp), tmp, MODULES)
        await server.start()
        try:
            await server.auth.register(JID.parse("u0@localhost"), "pw")
            mam = server.modules["mod_mam"]
            assert isinstance(mam, ModMam)
            t0 = time.perf_counter()
            ids = await fill(mam, a.messages)
            fill_s = time.perf_counter() - t0
            if a.pgsql:  # what autovacuum does after a bulk load: statistics, visibility map
                await mam.store.execute("VACUUM ANALYZE mam_message")
            if a.mysql:  # fresh index statistics after the bulk load, as for PostgreSQL
                await mam.store.fetch("ANALYZE TABLE mam_message")
            raw = await login(port)
            rng = random.Random(1)
            rsm = f"<set xmlns='{RSM}'><max>50</max>{{}}</set>"
            after = [rsm.format(f"<after>{rng.choice(ids[:-60])}</after>")
                     for _ in range(a.queries)]
            last = [rsm.format("<before/>")] * a.queries
            form = ("<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'>"
                    "<value>urn:xmpp:mam:2</value></field><field var='with'><value>"
                    "p{}@localhost</value></field></x>")
            with_ = [form.format(rng.randrange(10)) + rsm.format("<before/>")
                     for _ in range(a.queries)]
            await timed(raw, after[:20])  # warm-up
            rows = [summary("page of 50 after a random id", await timed(raw, after)),
                    summary("last page of 50 (before empty)", await timed(raw, last)),
                    summary("last page of 50 with one peer (form 'with')",
                            await timed(raw, with_))]
            backend = "PostgreSQL" if a.pgsql else "MariaDB/MySQL" if a.mysql else "SQLite"
            print(f"{a.messages} messages in u0's archive on {backend} (filled in "
                  f"{fill_s:.1f} s, {a.messages / fill_s:.0f} rows/s through insert_many); "
                  f"enforce_simple_queries = {str(a.simple).lower()}\n")
            print("| query | p50 ms | p99 ms | queries |\n|---|---|---|---|")
            print("\n".join(rows))
            raw.writer.close()
        finally:
            await server.stop()


if __name__ == "__main__":
    asyncio.run(main())
