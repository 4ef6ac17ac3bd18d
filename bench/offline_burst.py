"""How long a burst of messages to an offline account takes to be stored.

One account's messages on the offline path are stored one after the other (docs/offline.md),
so this is bounded by the storage's round trips, not by CPU: with PostgreSQL a few
milliseconds away each one counts. Run with ``SURICATE_TEST_SLOW_PG_MS=2`` to put the
server's PostgreSQL behind tests/latency_relay.py (docs/delivery.md, "A database a few
milliseconds away"); without it the server is on SQLite.

    SURICATE_TEST_SLOW_PG_MS=2 PYTHONPATH=. .venv/bin/python bench/offline_burst.py --count 100
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import slixmpp

from suricate.jid import JID
from tests.e2e.harness import connect, disconnect, running_server

BOB = slixmpp.JID("bob@localhost")


async def burst(count: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        async with running_server(Path(folder)) as server:
            for user in ("alice", "bob"):
                await server.auth.register(JID.parse(f"{user}@localhost"), "pw")
            alice = await connect(server, "alice@localhost/a", "pw")
            store = server.modules["mod_offline"].store
            started = time.perf_counter()
            for n in range(count):
                alice.send_message(mto=BOB, mbody=f"m{n}", mtype="chat")
            while await store.count_offline("localhost", "bob") < count:
                await asyncio.sleep(0.02)
            took = time.perf_counter() - started
            await disconnect(alice)
            return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--count", type=int, default=100, help="messages in the burst")
    args = parser.parse_args()
    took = asyncio.run(burst(args.count))
    print(f"{args.count} messages to an offline account stored in {took:.2f} s "
          f"({took / args.count * 1000:.1f} ms each)")


if __name__ == "__main__":
    main()
