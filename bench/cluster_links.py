"""CPU per stanza of the node links alone (cluster/links.py), both ends in one process.

A sender writes ``--total`` chat-message items (``wire.STANZA``, as ``RedisNode`` writes them)
with ``send_now``, ``--per-turn`` of them per event-loop turn, to a receiving ``NodeLinks`` on
loopback that unpacks each; the figure is the process CPU time per item (sender, receiver and
acknowledgements together). Few items per turn is what a lightly loaded node sees: the cost
per turn (a write, a wake-up, a read) then dominates.

    python bench/cluster_links.py [--total 100000 --per-turn 1,5,50]
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

from suricate.cluster import wire  # noqa: E402
from suricate.cluster.links import COOKIE_SIZE, NodeLinks  # noqa: E402
from suricate.xml import ns  # noqa: E402
from suricate.xml.element import Element  # noqa: E402

BODY = "Hello! This is a benchmark message of a typical chat size."


async def measure(per_turn: int, total: int) -> float:
    received = [0]
    done = asyncio.Event()

    def on_items(items: list[tuple[Any, ...]]) -> None:
        for item in items:
            if item[0] != wire.STANZA:
                continue
            wire.unpack(item[3])
            received[0] += 1
        if received[0] == total:
            done.set()

    cookie = b"c" * COOKIE_SIZE
    receiver = NodeLinks(on_items, "127.0.0.1", 0)
    address = await receiver.start(cookie)
    sender = NodeLinks(lambda items: None, "127.0.0.1", 0)
    await sender.start(cookie)
    try:
        assert await sender.send("r", address, (wire.REPLACE, "warm-up"))
        stanzas = [Element("message", ns.CLIENT,
                           {"from": f"v{i}@localhost/bench", "to": f"u{i}@localhost/bench",
                            "type": "chat", "id": f"b{i}"},
                           [Element("body", ns.CLIENT, {}, [BODY])]) for i in range(100)]
        cpu0 = time.process_time()
        sent = 0
        while sent < total:
            for k in range(per_turn):
                el = stanzas[(sent + k) % 100]
                sender.send_now("r", (wire.STANZA, el.attrs["from"], el.attrs["to"],
                                      wire.pack(el), wire.TO_FULL))
            sent += per_turn
            await asyncio.sleep(0)
        await asyncio.wait_for(done.wait(), 120)
        return 1e6 * (time.process_time() - cpu0) / total
    finally:
        await sender.stop()
        await receiver.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--total", type=int, default=100_000)
    p.add_argument("--per-turn", default="1,5,50")
    a = p.parse_args()
    result = {f"cpu_us_per_item_{n}_per_turn": round(asyncio.run(measure(n, a.total)), 2)
              for n in (int(x) for x in a.per_turn.split(","))}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
