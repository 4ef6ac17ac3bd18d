"""MUC Light fan-out of a Suricate started here, with and without the room archive (mod_mam's
muc section), measured from another process:

``--rooms`` rooms of ``--members`` members each, one sender per room keeping ``--inflight``
groupchat messages outstanding (it sends the next one when its own copy comes back, a member
gets every message of its room); the figures are copies delivered to members per second, the
room messages per second behind them and the server's CPU per delivered copy.

    .venv/bin/python bench/muc_light.py --rooms 4 --members 50 --seconds 5 [--archive]

Raw sockets and pre-built stanzas (bench/loadgen.py's client), STARTTLS, SCRAM-SHA-256.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    DEFAULT_MODULES,
    c2s_listener,
    cpu_seconds,
    free_port,
    suricate_config,
    wait_port,
)
from bench.core_figures import register, start_server  # noqa: E402
from bench.loadgen import Client, client_context, gather_bounded, login  # noqa: E402
from bench.muc import BODY, pin  # noqa: E402
from suricate.net.certs import ensure_self_signed  # noqa: E402

SERVICE = "muclight.localhost"
NS = "urn:xmpp:muclight:0"


def write_config(tmp: Path, port: int, archive: bool) -> Path:
    cert, _ = ensure_self_signed(tmp / "certs", ["localhost"])
    path = tmp / "bench.toml"
    extra = "[modules.mod_muc_light]\nmax_occupants = 1000\n"
    if archive:
        # Every message stored once per room, its stanza-id the archive id (XEP-0313).
        extra += "[modules.mod_mam]\n[modules.mod_mam.muc]\n"
    path.write_text(suricate_config(tmp / "bench.db", [
        c2s_listener(port, "backlog = 4096", 'tls.mode = "starttls"',
                     f'tls.certfile = "{cert.certfile}"', f'tls.keyfile = "{cert.keyfile}"',
                     'tls.verify_mode = "none"', "max_stanza_size = 65536"),
    ], loglevel="error", modules=list(DEFAULT_MODULES), extra=extra))
    return path


async def fan_out(a: argparse.Namespace, port: int, pid: int) -> dict[str, Any]:
    ctx = client_context()
    n = a.rooms * a.members
    clients = await gather_bounded(
        [login("127.0.0.1", port, f"u{i}", True, ctx) for i in range(n)], 50)
    await asyncio.sleep(0.5)
    for r in range(a.rooms):
        owner = r * a.members
        users = "".join(f"<user affiliation='member'>u{i}@localhost</user>"
                        for i in range(owner + 1, owner + a.members))
        clients[owner].send(
            f"<iq type='set' id='mk' to='bench{r}@{SERVICE}'><query xmlns='{NS}#create'>"
            f"<configuration/><occupants>{users}</occupants></query></iq>".encode())
        await clients[owner].expect((b"id=\"mk\"", b"id='mk'"))
    await asyncio.sleep(1.0)  # every member's creation notification arrives
    state = {"measuring": False, "running": True, "delivered": 0, "sent": 0}
    for r in range(a.rooms):
        members: list[Client] = clients[r * a.members:(r + 1) * a.members]
        sender = members[0]
        stanza = f"<message to='bench{r}@{SERVICE}' type='groupchat'>".encode() + BODY \
            + b"</message>"
        write = sender.transport.write

        def count(k: int) -> None:
            if state["measuring"]:
                state["delivered"] += k

        def echo(k: int, write: Any = write, stanza: bytes = stanza) -> None:
            count(k)
            if state["measuring"]:
                state["sent"] += k
            if state["running"]:
                write(stanza * k)

        for c in members:
            c.buf.clear()
            c.counting = True
            c.on_messages = count
        sender.on_messages = echo
        write(stanza * a.inflight)
    await asyncio.sleep(a.warmup)
    state["measuring"] = True
    t0, cpu0 = time.monotonic(), cpu_seconds(pid)
    await asyncio.sleep(a.seconds)
    state["measuring"] = False
    elapsed, cpu = time.monotonic() - t0, cpu_seconds(pid) - cpu0
    state["running"] = False
    await asyncio.sleep(0.5)
    lost = sum(c.lost for c in clients)
    for c in clients:
        c.transport.abort()
    return {"delivered_per_s": state["delivered"] / elapsed,
            "room_messages_per_s": state["sent"] / elapsed, "lost_connections": lost,
            "server_cpu_us_per_delivery": cpu / max(state["delivered"], 1) * 1e6,
            "server_cpu_share": cpu / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rooms", type=int, default=4)
    parser.add_argument("--members", type=int, default=50)
    parser.add_argument("--inflight", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--server-core", default="0", help="taskset core list of the server")
    parser.add_argument("--archive", action="store_true",
                        help="with mod_mam's muc section: rooms archived (XEP-0313)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        port = free_port()
        config = write_config(tmp, port, args.archive)
        register(config, args.rooms * args.members)
        proc, _ = start_server(config)
        try:
            pin(proc.pid, args.server_core)
            wait_port(port, 30)
            result = asyncio.run(fan_out(args, port, proc.pid))
        finally:
            proc.terminate()
            proc.wait(20)
    result["params"] = {"rooms": args.rooms, "members": args.members,
                        "inflight": args.inflight, "seconds": args.seconds,
                        "archive": args.archive}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
