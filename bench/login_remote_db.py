"""A phone's login with a 50-contact roster when PostgreSQL is a few milliseconds away.

Production databases are on another host: every round trip to storage on the login path is
felt by every person opening their phone. The server runs the embedded default's modules
(without ``mod_bosh``) on a PostgreSQL database of its own behind tests/latency_relay.py
(``--delay-ms`` each way, 0: no relay, PostgreSQL on loopback). ``alice`` has ``--contacts``
contacts, all subscribed both ways; the first half are logged in (slixmpp) and available,
the other half are offline, with a last activity (XEP-0012) stored. ``alice`` then logs in
``--count`` times with slixmpp as a phone does (STARTTLS, SCRAM, bind, XEP-0198 enable, roster
get right at bind, then carbons and the initial presence), and each login is timed from the
client: connect to bound session, the roster get's round trip, and the initial presence
until every online contact's presence has arrived. The SQL statements the server sends
during a login (from the connect until the server is idle again, logout excluded) are
counted by wrapping asyncpg's connection, and their durations summed (the time a login
holds pool connections); ``--statements`` lists those of the last login in order, with their
start (ms after the connect) and duration.

    PYTHONPATH=. .venv/bin/python bench/login_remote_db.py --delay-ms 2 --count 10 --statements
    PYTHONPATH=. .venv/bin/python bench/login_remote_db.py --delay-ms 0 --count 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import secrets
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg

from suricate.core.defaults import DEFAULT_MODULES
from suricate.core.server import Server
from suricate.jid import JID
from tests.e2e.harness import Client, connect, disconnect, running_server
from tests.latency_relay import postgresql_behind_relay
from tests.storage.conftest import PG_HOST, PG_PORT, pg_admin

MODULES = "\n".join(f"[modules.{m}]" for m in DEFAULT_MODULES if m != "mod_bosh")


class Statements:
    """Every statement asyncpg sends, with when it started and ended (perf_counter)."""

    def __init__(self) -> None:
        self.log: list[tuple[float, float, str]] = []
        self.on = False

    def install(self) -> None:
        conn = asyncpg.connection.Connection
        for name in ("execute", "executemany", "fetch", "fetchrow", "fetchval",
                     "copy_records_to_table"):
            setattr(conn, name, self._wrap(getattr(conn, name)))

    def _wrap(self, method: Any) -> Any:
        async def counted(conn: Any, query: str, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await method(conn, query, *args, **kwargs)
            finally:
                if self.on:
                    self.log.append((started, time.perf_counter(), " ".join(query.split())))
        return counted


@contextlib.asynccontextmanager
async def postgresql_on_loopback() -> AsyncIterator[str]:
    name = f"suricate_login_{secrets.token_hex(5)}"
    await pg_admin(f'CREATE DATABASE "{name}"')
    try:
        yield ("[outgoing_pools.rdbms.default.connection]\ndriver = \"pgsql\"\n"
               f'host = "{PG_HOST}"\nport = {PG_PORT}\ndatabase = "{name}"\n'
               'username = "postgres"\npassword = ""\n')
    finally:
        await pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def prepare(server: Server, contacts: int) -> list[Client]:
    """Register alice and her contacts, subscribed both ways; log the first half in."""
    names = [f"c{n}" for n in range(contacts)]
    for user in ("alice", *names):
        await server.auth.register(JID.parse(f"{user}@localhost"), "pw")
    roster = server.modules["mod_roster"]
    from suricate.modules.mod_roster.store import RosterItem
    for name in names:
        await roster.store.put_roster_item("localhost", "alice", RosterItem(
            f"{name}@localhost", subscription="both"))
        await roster.store.put_roster_item("localhost", name, RosterItem(
            "alice@localhost", subscription="both"))
    online = names[:contacts // 2]
    last = server.modules["mod_last"].store
    for name in names[contacts // 2:]:
        await last.set_last("localhost", name, int(time.time()) - 3600, "gone fishing")
    clients = []
    for name in online:
        client = await connect(server, f"{name}@localhost/phone", "pw")
        client.send_presence()
        clients.append(client)
    await server.drain(5)
    return clients


async def login(server: Server, online: int, marks: dict[str, float]
                ) -> tuple[float, float, float]:
    """One login of alice: (connect -> bound, roster get, presence -> all presences), ms;
    ``marks``: when each step ended (perf_counter)."""
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    roster_done: asyncio.Future[None] = loop.create_future()
    all_in: asyncio.Future[None] = loop.create_future()
    seen: set[str] = set()
    client = Client("alice@localhost/phone", "pw")
    for plugin in ("xep_0198", "xep_0280"):
        client.register_plugin(plugin)

    def bound(_: Any) -> None:
        marks["bound"] = time.perf_counter()
        # A phone asks for its roster as soon as it is bound (before XEP-0198's answer).
        future = client.get_roster()
        future.add_done_callback(lambda _: roster_done.set_result(None))

    def presence(stanza: Any) -> None:
        if stanza["type"] == "available" and stanza["from"].bare != "alice@localhost":
            seen.add(stanza["from"].bare)
            if len(seen) == online and not all_in.done():
                all_in.set_result(None)

    client.add_event_handler("session_bind", bound)
    client.add_event_handler("presence", presence)
    client.enable_direct_tls = False
    client.enable_starttls = True
    client.connect("127.0.0.1", server.c2s_port)  # type: ignore[attr-defined]
    await asyncio.wait_for(roster_done, 10)
    marks["roster"] = time.perf_counter()
    await asyncio.wait_for(client.session_started, 10)
    client.plugin["xep_0280"].enable()
    presence_at = marks["presence sent"] = time.perf_counter()
    client.send_presence()
    await asyncio.wait_for(all_in, 10)
    done = marks["all presences in"] = time.perf_counter()
    await server.drain(5)
    STATEMENTS.on = False
    await disconnect(client)
    await server.drain(5)
    return (1000 * (marks["bound"] - started), 1000 * (marks["roster"] - marks["bound"]),
            1000 * (done - presence_at))


STATEMENTS = Statements()


async def run(delay_ms: float, contacts: int, count: int, show: bool) -> None:
    STATEMENTS.install()
    with tempfile.TemporaryDirectory() as folder:
        pool = postgresql_behind_relay(delay_ms / 1000) if delay_ms else \
            postgresql_on_loopback()
        async with pool as pool_toml, running_server(Path(folder), modules=MODULES,
                                                     pool_toml=pool_toml) as server:
            others = await prepare(server, contacts)
            runs, counts, held = [], [], []
            for _ in range(count):
                STATEMENTS.log.clear()
                STATEMENTS.on = True
                origin = time.perf_counter()
                marks: dict[str, float] = {}
                runs.append(await login(server, len(others), marks))
                counts.append(len(STATEMENTS.log))
                held.append(1000 * sum(end - begun for begun, end, _ in STATEMENTS.log))
            await disconnect(*others)
    where = f"PostgreSQL {delay_ms:g} ms away (each way)" if delay_ms else \
        "PostgreSQL on loopback"
    print(f"{count} logins of an account with {contacts} contacts ({len(others)} online), "
          f"{where}; median [min-max] ms")
    for i, name in enumerate(("connect -> bound", "roster get", "presence -> all in")):
        values = [r[i] for r in runs]
        print(f"{name:>20}: {statistics.median(values):7.1f} "
              f"[{min(values):.1f}-{max(values):.1f}]")
    print(f"{'SQL statements':>20}: {statistics.median(counts):g} "
          f"[{min(counts)}-{max(counts)}]")
    print(f"{'pool time':>20}: {statistics.median(held):7.1f} "
          f"[{min(held):.1f}-{max(held):.1f}] (the statements' durations, summed)")
    if show:
        print("the last login, in ms from the connect: statements (start, duration) and "
              "what the client saw")
        lines = [(begun, f"{1000 * (ended - begun):6.1f}  {sql[:140]}")
                 for begun, ended, sql in STATEMENTS.log]
        lines += [(at, f"{'':6}  ** client: {name}") for name, at in marks.items()]
        for at, line in sorted(lines):
            print(f"{1000 * (at - origin):8.1f} {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--delay-ms", type=float, default=2.0,
                        help="PostgreSQL's distance each way (0: loopback, no relay)")
    parser.add_argument("--contacts", type=int, default=50)
    parser.add_argument("--count", type=int, default=10, help="logins")
    parser.add_argument("--statements", action="store_true",
                        help="list the statements of the last login")
    args = parser.parse_args()
    # slixmpp leaves a filter task of each closed client behind: not this benchmark's news.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    asyncio.run(run(args.delay_ms, args.contacts, args.count, args.statements))


if __name__ == "__main__":
    main()
