"""Cross-node stanza transport, measured alone: Redis pub/sub against a direct TCP connection
between two node processes (docs/cluster.md, "Transport by measurement").

A sender process hands N chat-message stanzas (``suricate.cluster.wire``: marshalled tuples,
what the nodes send) to a receiver process, which unpacks each into an ``Element``; the figure
is stanzas/s from the first send to the last stanza unpacked, and the CPU seconds each side
(and Redis) spent. Variants:

- ``pubsub``: one ``PUBLISH`` awaited per stanza, up to ``--inflight`` at once over the
  pool's connections (what ``RedisNode`` does: ``PUBLISH``'s answer says whether the node
  listens);
- ``pubsub-pipelined``: the stanzas of one loop turn published in one pipeline (the best
  pub/sub can do while still reading each ``PUBLISH`` answer);
- ``tcp``: length-prefixed frames (``wire.frame``) written on one connection, coalesced per
  loop turn by the transport, decoded with ``wire.Deframer``.

    python bench/cluster_transport.py --count 50000 [--redis-port 6379] [--cores 0,1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import marshal
import multiprocessing
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import cpu_seconds, free_port  # noqa: E402
from suricate.cluster import wire  # noqa: E402
from suricate.xml.element import Element  # noqa: E402

CHANNEL = "suricate-bench:to:receiver"


def stanza(i: int) -> Element:
    return Element("message", "jabber:client",
                   {"from": f"user{i % 500}@localhost/res", "to": f"user{i % 500 + 1}@localhost/res",
                    "type": "chat", "id": f"m{i}"},
                   [Element("body", "jabber:client", {}, ["a message of ordinary length, " * 3])])


def _pin(core: int | None) -> None:
    if core is not None:
        os.sched_setaffinity(0, {core})


# -- receiver ------------------------------------------------------------------------------
def receiver(variant: str, count: int, port: int, redis_port: int, core: int | None,
             ready: Any, out: Any) -> None:
    _pin(core)
    asyncio.run(_receive(variant, count, port, redis_port, ready, out))


async def _receive(variant: str, count: int, port: int, redis_port: int, ready: Any,
                   out: Any) -> None:
    got = 0
    done = asyncio.get_running_loop().create_future()
    cpu0 = cpu_seconds(os.getpid())

    def one(item: tuple[Any, ...]) -> None:
        nonlocal got
        wire.unpack(item[3])
        got += 1
        if got == count and not done.done():
            done.set_result(time.time())

    if variant == "tcp":
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            deframer = wire.Deframer()
            while data := await reader.read(1 << 16):
                for item in deframer.feed(data):
                    one(item)
        server = await asyncio.start_server(serve, "127.0.0.1", port)
        ready.set()
        end = await done
        server.close()
    else:
        from redis.asyncio import Redis
        client = Redis(port=redis_port)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(CHANNEL)
        ready.set()

        async def listen() -> None:
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    one(marshal.loads(message["data"]))
        task = asyncio.create_task(listen())
        end = await done
        task.cancel()
        await client.aclose()
    out.send((end, cpu_seconds(os.getpid()) - cpu0))


# -- sender ------------------------------------------------------------------------------
async def _send(variant: str, count: int, redis_port: int, inflight: int) -> float:
    items = [(wire.STANZA, "a@localhost/r", "b@localhost/r", wire.pack(stanza(i)))
             for i in range(count)]
    start = time.time()
    from redis.asyncio import BlockingConnectionPool, Redis
    # As RedisNode: the pool's 10 connections, a command waits for a free one.
    client = Redis(connection_pool=BlockingConnectionPool(port=redis_port, max_connections=10))
    if variant == "pubsub":
        sem = asyncio.Semaphore(inflight)

        async def publish(item: tuple[Any, ...]) -> None:
            async with sem:
                await client.publish(CHANNEL, marshal.dumps(item))
        await asyncio.gather(*(publish(item) for item in items))
    else:
        for base in range(0, count, inflight):
            async with client.pipeline(transaction=False) as pipe:
                for item in items[base:base + inflight]:
                    pipe.publish(CHANNEL, marshal.dumps(item))
                await pipe.execute()
    await client.aclose()
    return start


def sender(variant: str, count: int, port: int, redis_port: int, inflight: int,
           core: int | None, out: Any) -> None:
    _pin(core)
    asyncio.run(_send_and_report(variant, count, port, redis_port, inflight, out,
                                 cpu_seconds(os.getpid())))


async def _send_and_report(variant: str, count: int, port: int, redis_port: int,
                           inflight: int, out: Any, cpu0: float) -> float:
    if variant == "tcp":
        items = [(wire.STANZA, "a@localhost/r", "b@localhost/r", wire.pack(stanza(i)))
                 for i in range(count)]
        start = time.time()
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        for i, item in enumerate(items):
            writer.write(wire.frame(*item))
            if i % 256 == 255:
                await writer.drain()
        await writer.drain()
        out.send((start, cpu_seconds(os.getpid()) - cpu0))
        await asyncio.sleep(60)  # the connection stays open until the parent ends us
        return start
    start = await _send(variant, count, redis_port, inflight)
    out.send((start, cpu_seconds(os.getpid()) - cpu0))
    return start


def redis_cpu(redis_port: int) -> float:
    import redis
    info = redis.Redis(port=redis_port).info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def measure(variant: str, count: int, redis_port: int, inflight: int,
            cores: list[int | None]) -> dict[str, Any]:
    ctx = multiprocessing.get_context("fork")
    port = free_port()
    ready = ctx.Event()
    r_out, r_in = ctx.Pipe(duplex=False)
    s_out, s_in = ctx.Pipe(duplex=False)
    recv = ctx.Process(target=receiver, args=(variant, count, port, redis_port, cores[1],
                                              ready, r_in))
    recv.start()
    ready.wait(10)
    redis0 = redis_cpu(redis_port)
    send = ctx.Process(target=sender, args=(variant, count, port, redis_port, inflight,
                                            cores[0], s_in))
    send.start()
    start, send_cpu = s_out.recv()
    end, recv_cpu = r_out.recv()
    send.terminate()
    recv.join(10)
    send.join(10)
    seconds = end - start
    return {"variant": variant, "count": count, "seconds": round(seconds, 3),
            "stanzas_per_s": round(count / seconds),
            "sender_cpu_s": round(send_cpu, 2), "receiver_cpu_s": round(recv_cpu, 2),
            "redis_cpu_s": round(redis_cpu(redis_port) - redis0, 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=50000)
    p.add_argument("--inflight", type=int, default=200)
    p.add_argument("--redis-port", type=int, default=6379)
    p.add_argument("--cores", default="", help="sender,receiver cores (e.g. 0,1)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--variants", default="pubsub,pubsub-pipelined,tcp")
    a = p.parse_args()
    cores: list[int | None] = [int(c) for c in a.cores.split(",")] if a.cores else [None, None]
    for _ in range(a.rounds):
        for variant in a.variants.split(","):
            print(json.dumps(measure(variant, a.count, a.redis_port, a.inflight, cores)),
                  flush=True)


if __name__ == "__main__":
    main()
