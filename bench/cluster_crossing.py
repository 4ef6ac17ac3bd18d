"""CPU per crossed message of the crossing code alone, both nodes in one process (issue 14).

The sender's ``RedisNode.to_full`` with the recipient's node cached (the fast path), the link's
batch and frame, the receiver's ``_Incoming.data_received`` and ``RedisNode._received`` down to
a session's ``write_serialized`` (a stub that counts), then the acknowledgement back: what a
message to a full JID on another node costs in Python, without sockets, clients or the
generator. ``--batch`` messages per loop turn (per frame). The serialization (``wire.serialized``,
about 2.3 us here) is in the sender's figure: a local delivery does it as well.

    python bench/cluster_crossing.py [--batch 20 --messages 200000 --rounds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from suricate.cluster.links import NodeLinks, _Incoming, _Link  # noqa: E402
from suricate.cluster.redis_sm import RedisNode  # noqa: E402
from suricate.core.hooks import Hooks  # noqa: E402
from suricate.core.sessions import SessionTable  # noqa: E402
from suricate.instrument import Instrumentation  # noqa: E402
from suricate.jid import JID  # noqa: E402
from suricate.xml import ns  # noqa: E402
from suricate.xml.element import Element  # noqa: E402

BODY = "Hello! This is a benchmark message of a typical chat size."
USERS = 200


class _Writer:
    """The outgoing link's stream writer: keeps the frames."""

    def __init__(self) -> None:
        self.out: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def close(self) -> None:
        pass


class _Session:
    def __init__(self, jid: JID) -> None:
        self.jid = jid
        self.written = 0

    def write_serialized(self, data: bytes) -> bool:
        self.written += 1
        return True


class _Server:
    def __init__(self) -> None:
        self.hooks = Hooks()
        self.instrument = Instrumentation()
        self.sessions = SessionTable()

    def spawn(self, coro: Any) -> None:
        coro.close()  # the refresh ahead: the cached node never nears its expiry here


class _Transport:
    def is_closing(self) -> bool:
        return False

    def write(self, data: bytes) -> None:
        pass


async def measure(batch: int, messages: int, rounds: int) -> list[dict[str, float]]:
    sender = RedisNode.__new__(RedisNode)
    sender.server = _Server()  # type: ignore[assignment]
    sender._pending, sender._refreshing, sender._where = {}, set(), {}
    receiver = RedisNode.__new__(RedisNode)
    receiver.server = _Server()  # type: ignore[assignment]
    sender.links = NodeLinks(lambda items: None, "127.0.0.1", 0)
    writer = _Writer()
    link = _Link(None, writer)  # type: ignore[arg-type]
    sender.links._links["b"] = link
    incoming = _Incoming(NodeLinks(receiver._received, "127.0.0.1", 0))
    incoming.transport = _Transport()  # type: ignore[assignment]
    incoming.trusted = True
    senders = [JID.parse(f"u{i}@localhost/bench") for i in range(USERS)]
    receivers = [JID.parse(f"v{i}@localhost/bench") for i in range(USERS)]
    for jid in receivers:
        receiver.server.sessions.register(_Session(jid))  # type: ignore[arg-type]
        sender._where[jid] = ("b", time.monotonic() + 1e6)
    stanzas = [Element("message", ns.CLIENT,
                       {"to": str(receivers[i]), "type": "chat", "id": f"b{i}",
                        "from": str(senders[i])},
                       [Element("body", ns.CLIENT, {}, [BODY])]) for i in range(USERS)]
    acked = [0]
    results = []
    for _ in range(rounds):
        sending = receiving = 0.0
        done = 0
        while done < messages:
            t0 = time.process_time()
            for k in range(batch):
                j = (done + k) % USERS
                sender.to_full(senders[j], receivers[j], stanzas[j])
            link._flush()
            data = b"".join(writer.out)
            writer.out.clear()
            t1 = time.process_time()
            incoming.data_received(data)
            if incoming.ack_due is not None:  # the acknowledgement, without waiting for it
                incoming.ack_due.cancel()
                incoming.ack_due = None
            link.acked(incoming.handled, acked)
            sending += t1 - t0
            receiving += time.process_time() - t1
            done += batch
        results.append({"sender_us": round(1e6 * sending / done, 2),
                        "receiver_us": round(1e6 * receiving / done, 2),
                        "total_us": round(1e6 * (sending + receiving) / done, 2)})
    return results


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--messages", type=int, default=200_000)
    p.add_argument("--rounds", type=int, default=4)
    a = p.parse_args()
    print(json.dumps({"batch": a.batch,
                      "rounds": asyncio.run(measure(a.batch, a.messages, a.rounds))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
