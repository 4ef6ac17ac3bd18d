"""XEP-0198 resumption latency on a cluster (``sm_backend = "redis"``, two nodes, a private
``redis-server``, one shared SQLite file; docs/cluster.md "Stream management across nodes").

``--sessions`` clients log in on node 1 (STARTTLS, SCRAM-SHA-256, bind), enable resumable
stream management and get ``--unacked`` messages they never acknowledge; each then loses its
connection (abort) and resumes, one after the other, three times:

- **same node**: on node 1, which holds the session (the in-process path);
- **other live node**: on node 2, which asks node 1 to hand the session over;
- **dead node**: node 2 is SIGKILLed (0.5 s after the last resumption, so its Redis copy is
  written) and each client resumes on node 1 from the copy.

What is timed: from the client's ``<resume/>`` to the server's ``<resumed/>`` followed by
the ``--unacked`` messages sent again (authentication before it is not counted).

Also the cost of ``copy_to_redis`` per stanza, in-process: the stream's hot path
(``MirroredSM`` against the plain counters: a stanza sent, an acknowledgement every 10) and
one batch written to the private Redis (1000 sessions x 10 new stanzas each).

    python bench/cluster_sm.py [--sessions 50 --unacked 5 --workdir /tmp/x --cores 0,1]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cluster import Node, start_redis  # noqa: E402
from bench.common import free_port  # noqa: E402
from bench.loadgen import (
    PASSWORD,
    Client,
    _between,
    _scram_final,
    client_context,
    header,  # noqa: E402
)
from bench.run import account_names  # noqa: E402
from suricate.net.certs import ensure_self_signed  # noqa: E402

SM = "urn:xmpp:sm:3"


class SmNode(Node):
    MODULES = "[modules.mod_stream_management]\n"


async def authenticated(port: int, user: str) -> Client:
    """STARTTLS and SCRAM-SHA-256, up to the features after authentication."""
    loop = asyncio.get_running_loop()
    transport, c = await loop.create_connection(Client, "127.0.0.1", port)
    c.send(header())
    await c.expect(b"</stream:features>")
    c.send(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    await c.expect(b"<proceed")
    c.transport = await loop.start_tls(transport, c, client_context(),
                                       server_hostname="localhost")
    c.buf.clear()
    c.send(header())
    await c.expect(b"</stream:features>")
    first_bare = f"n={user},r={secrets.token_urlsafe(18)}"
    c.send(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>"
           + base64.b64encode(b"n,," + first_bare.encode()) + b"</auth>")
    data = await c.expect(b"</challenge>")
    server_first = base64.b64decode(_between(data, b"<challenge", b"</challenge>"))
    final, _ = _scram_final(first_bare, server_first, PASSWORD)
    c.send(b"<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" + base64.b64encode(final)
           + b"</response>")
    await c.expect(b"</success>")
    c.send(header())
    await c.expect(b"</stream:features>")
    return c


async def enable(port: int, user: str, unacked: int) -> str:
    """A bound session with resumable SM holding ``unacked`` messages; its SM id."""
    c = await authenticated(port, user)
    c.send(b"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
           b"<resource>phone</resource></bind></iq>")
    await c.expect(b"</iq>")
    c.send(f"<enable xmlns='{SM}' resume='true'/>".encode())
    data = await c.expect((b"/>", b"</enabled>"))
    found = re.search(rb"<enabled [^>]*id=[\"']([^\"']+)", data + bytes(c.buf))
    if found is None:
        raise RuntimeError(f"no <enabled/>: {data!r}")
    for i in range(unacked):
        c.send(f"<message to='{user}@localhost/phone' type='chat'><body>m{i}</body>"
               "</message>".encode())
    for _ in range(unacked):
        await c.expect(b"</message>")
    c.transport.abort()
    return found.group(1).decode()


async def resume(port: int, user: str, sm_id: str, unacked: int) -> float:
    """Seconds from <resume/> to <resumed/> and the ``unacked`` messages; the client then
    loses its connection again (the session waits for the next resumption)."""
    c = await authenticated(port, user)
    t0 = time.perf_counter()
    c.send(f"<resume xmlns='{SM}' previd='{sm_id}' h='0'/>".encode())
    await c.expect((b"<resumed",))
    for _ in range(unacked):
        await c.expect(b"</message>")
    elapsed = time.perf_counter() - t0
    c.transport.abort()
    return elapsed


def summary(samples: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples)
    return {"n": len(ms), "p50_ms": round(statistics.median(ms), 2),
            "p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 2), "max_ms": round(ms[-1], 2)}


async def scenario(nodes: list[SmNode], a: argparse.Namespace) -> dict[str, Any]:
    users = [f"u{i}" for i in range(a.sessions)]
    ids = [await enable(nodes[0].port, u, a.unacked) for u in users]
    await asyncio.sleep(0.3)  # every connection loss noticed
    result: dict[str, Any] = {}
    for label, port in (("same_node", nodes[0].port), ("other_live_node", nodes[1].port)):
        result[label] = summary([await resume(port, u, i, a.unacked)
                                 for u, i in zip(users, ids, strict=True)])
        await asyncio.sleep(0.3)
    await asyncio.sleep(0.5)  # the last batch of the Redis copy is written
    assert nodes[1].proc is not None
    nodes[1].proc.send_signal(signal.SIGKILL)
    nodes[1].proc.wait(10)
    result["dead_node_from_copy"] = summary([await resume(nodes[0].port, u, i, a.unacked)
                                             for u, i in zip(users, ids, strict=True)])
    return result


class _Session:
    """What a batch reads of a c2s."""

    def __init__(self, jid: Any, sm: Any) -> None:
        self.jid = jid
        self.presence = None
        self.priority = 0
        self.module_state = {"mod_stream_management": sm}


def copy_cost(redis_port: int) -> dict[str, float]:
    from redis.asyncio import Redis

    from suricate.jid import JID
    from suricate.modules.mod_stream_management.mirror import Mirror, MirroredSM
    from suricate.protocol.sm import StreamManagement
    from suricate.xml.element import Element

    stanza = Element("message", "jabber:client", {"to": "u1@localhost/phone", "type": "chat",
                                                  "from": "u2@localhost/desk", "id": "abc"})
    stanza.add("body").text = "Hello! This is a benchmark message of a typical chat size."
    count = 200_000

    def hot(sm: StreamManagement) -> float:
        t0 = time.perf_counter()
        for i in range(1, count + 1):
            sm.stanza_out(stanza)
            sm.stanza_in()
            if i % 10 == 0:
                sm.ack(sm.h_out)
        return (time.perf_counter() - t0) / count * 1e9

    async def batch(acknowledged: bool) -> float:
        """CPU seconds of this process for one batch of 1000 sessions that each sent 10
        stanzas since the last one: left unacknowledged (a client away, or slow to
        acknowledge: they are copied) or acknowledged before the batch (only the counters
        are written)."""
        redis = Redis(port=redis_port)
        sessions: dict[str, Any] = {}
        mirror = Mirror(redis, "bench", "bench:", True, sessions.get)
        for i in range(1000):
            sm = mirror.new_sm(f"id{i}", None, None)
            sessions[f"id{i}"] = _Session(JID("u", "localhost", f"r{i}"), sm)
        await mirror.flush()  # the records exist
        best = float("inf")
        for _ in range(3):
            for session in sessions.values():
                sm = session.module_state["mod_stream_management"]
                for _ in range(10):
                    sm.stanza_out(stanza)
                if acknowledged:
                    sm.ack(sm.h_out)
            c0 = time.process_time()
            await mirror.flush()
            best = min(best, time.process_time() - c0)
        await redis.flushdb()
        await redis.aclose()
        return best

    dirty: set[str] = set()
    plain = min(hot(StreamManagement("x", True, None, None)) for _ in range(3))
    mirrored = min(hot(MirroredSM("x", True, None, None, dirty, asyncio.Event()))
                   for _ in range(3))
    return {"hot_path_plain_ns": round(plain), "hot_path_mirrored_ns": round(mirrored),
            "batch_cpu_us_per_unacked_stanza": round(asyncio.run(batch(False)) / 10_000 * 1e6,
                                                     2),
            "batch_cpu_us_per_acked_session": round(asyncio.run(batch(True)) / 1000 * 1e6, 2)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sessions", type=int, default=50)
    p.add_argument("--unacked", type=int, default=5)
    p.add_argument("--workdir", type=Path, default=None,
                   help="where the nodes' files go (default: a new temporary directory)")
    p.add_argument("--cores", default="0,1", help="the two nodes' cores")
    a = p.parse_args()
    workdir = a.workdir or Path(tempfile.mkdtemp(prefix="suricate-cluster-sm-"))
    workdir.mkdir(parents=True, exist_ok=True)
    certkey = ensure_self_signed(workdir / "certs", ["localhost"])[0]
    cert, key = Path(certkey.certfile), Path(certkey.keyfile)
    all_cores = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))
    redis, redis_port = start_redis(workdir, all_cores)
    nodes = [SmNode(f"node{i + 1}", "127.0.0.1", free_port(), workdir, core,
                    extra={"redis_port": redis_port})
             for i, core in enumerate(a.cores.split(","))]
    try:
        for node in nodes:
            node.write_config(cert, key)
        nodes[0].provision(account_names(a.sessions, 0))
        for node in nodes:
            node.start()
        time.sleep(1.0)  # both joined and see each other
        result = asyncio.run(scenario(nodes, a))
        result["copy_to_redis"] = copy_cost(redis_port)
    finally:
        for node in nodes:
            node.stop()
        redis.send_signal(signal.SIGTERM)
        redis.wait(10)
        if a.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps({"sessions": a.sessions, "unacked": a.unacked, **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
