"""CPU per crossing message of the receiving node's path alone: link frames in, the sessions'
sockets written (cluster/links.py ``_Incoming``, ``RedisNode._received``,
``Delivery.write_serialized``, ``net/connection.py``), everything in one process.

A sender ``NodeLinks`` writes ``--total`` ``wire.XML`` items (what a node without filters
writes for a chat message to a full JID), ``--per-turn`` of them per loop turn, round-robin to
``--sessions`` plain sessions of the receiving side: real ``Connection`` objects on loopback
sockets whose other ends a reader drains (as the clients would). The figure is the process CPU
per item (sender, receiver, acknowledgements and the draining readers together: the same in
both arms). ``--turn-later`` emulates the write path before 2026-12-05 (each connection's
flush one loop turn later, from a callback each) for an A/B on one tree.

    python bench/cluster_receive.py [--total 50000 --per-turn 1,5,50 --sessions 100 --rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from suricate.cluster import wire  # noqa: E402
from suricate.cluster.links import COOKIE_SIZE, NodeLinks  # noqa: E402
from suricate.cluster.redis_sm import RedisNode  # noqa: E402
from suricate.core.c2s.delivery import Delivery  # noqa: E402
from suricate.net.connection import Connection  # noqa: E402
from suricate.protocol.c2s import C2SState  # noqa: E402

BODY = b"<body>Hello! This is a benchmark message of a typical chat size.</body>"


class _Drain(asyncio.Protocol):
    """The client end: counts the messages it reads."""

    def __init__(self, counter: list[int], total: int, done: asyncio.Event) -> None:
        self.counter, self.total, self.done = counter, total, done
        self.tail = b""

    def data_received(self, data: bytes) -> None:
        chunk = self.tail + data
        self.counter[0] += chunk.count(b"</message>")
        self.tail = chunk[-9:]
        if self.counter[0] >= self.total:
            self.done.set()



def plain_session(conn: Connection) -> Any:
    """What ``Delivery.write_serialized`` reads of a session: established, no XEP-0198
    counting, no filter, no instrumentation (also tests/cluster/test_crossing.py's)."""
    session = SimpleNamespace(
        fsm=SimpleNamespace(state=C2SState.SESSION_ESTABLISHED), _closing=False,
        module_state={}, conn=conn,
        server=SimpleNamespace(instrument=SimpleNamespace(enabled=False),
                               hooks=SimpleNamespace(has=lambda hook: False)))
    session.write_serialized = functools.partial(Delivery.write_serialized, session)
    return session

async def measure(per_turn: int, total: int, nsessions: int) -> float:
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    got = [0]
    sessions: dict[str, Any] = {}
    server_conns: list[Connection] = []
    accepted: asyncio.Queue[Connection] = asyncio.Queue()

    def accept() -> Connection:
        conn = Connection(lambda c: None)  # type: ignore[arg-type,return-value]
        loop.call_soon(accepted.put_nowait, conn)
        return conn

    server = await loop.create_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    clients = []
    for i in range(nsessions):
        transport, _ = await loop.create_connection(
            lambda: _Drain(got, total, done), "127.0.0.1", port)
        clients.append(transport)
        conn = await accepted.get()
        server_conns.append(conn)
        sessions[f"u{i}@localhost/bench"] = plain_session(conn)
    node = SimpleNamespace(
        server=SimpleNamespace(sessions=SimpleNamespace(local=lambda jid: sessions.get(str(jid)))),
        _plain=lambda: True, _received_item=lambda item: None)
    cookie = b"c" * COOKIE_SIZE
    receiver = NodeLinks(functools.partial(RedisNode._received, node), "127.0.0.1", 0)
    address = await receiver.start(cookie)
    sender = NodeLinks(lambda items: None, "127.0.0.1", 0)
    await sender.start(cookie)
    try:
        assert await sender.send("r", address, (wire.REPLACE, "nobody@localhost/x"))
        items = [(wire.XML, "v@localhost/bench", f"u{i}@localhost/bench",
                  f"<message from='v@localhost/bench' to='u{i}@localhost/bench' type='chat' "
                  f"id='b{i}'>".encode() + BODY + b"</message>") for i in range(nsessions)]
        cpu0 = time.process_time()
        sent = 0
        while sent < total:
            for k in range(per_turn):
                sender.send_now("r", items[(sent + k) % nsessions])
            sent += per_turn
            await asyncio.sleep(0)
        await asyncio.wait_for(done.wait(), 120)
        return 1e6 * (time.process_time() - cpu0) / total
    finally:
        await sender.stop()
        await receiver.stop()
        for t in clients:
            t.close()
        server.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--total", type=int, default=50_000)
    p.add_argument("--per-turn", default="1,5,50")
    p.add_argument("--sessions", type=int, default=100)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--turn-later", action="store_true",
                   help="the write path before: a flush callback per connection, a turn later")
    a = p.parse_args()
    if a.turn_later:
        Connection.write_deferred = Connection.write  # type: ignore[method-assign]
        Connection.flush_pending = lambda self: None  # type: ignore[method-assign]
    result = {}
    for n in (int(x) for x in a.per_turn.split(",")):
        runs = [asyncio.run(measure(n, a.total, a.sessions)) for _ in range(a.rounds)]
        result[f"cpu_us_per_item_{n}_per_turn"] = [round(r, 2) for r in runs]
        result[f"median_{n}"] = round(statistics.median(runs), 2)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
