"""MUC figures of a running Suricate (mod_muc), measured from another process:

- fan-out: ``--rooms`` rooms of ``--occupants`` occupants each, one sender per room keeping
  ``--inflight`` groupchat messages outstanding (it sends the next one when the room's copy
  of its own comes back); the figure is messages delivered to occupants per second, and the
  room messages per second behind it;
- hibernation: RSS of ``--idle-rooms`` empty persistent rooms in memory, then after they
  hibernated (``hibernate_timeout``) — state dropped, rebuilt from storage on demand.

    .venv/bin/python bench/muc.py --rooms 4 --occupants 50 --seconds 5 --idle-rooms 1000

Raw sockets and pre-built stanzas (bench/loadgen.py's client), STARTTLS, SCRAM-SHA-256.

With ``--host``/``--port`` it only drives the fan-out against a running server whose
accounts u0, u1, ... (password "pw") exist and whose MUC service is conference.localhost,
and prints one JSON object: how bench/run.py measures Suricate, Prosody and ejabberd side
by side (``--only muc``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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
    rss_kib,
    suricate_config,
    wait_port,
)
from bench.core_figures import register, start_server  # noqa: E402
from bench.loadgen import Client, client_context, gather_bounded, login  # noqa: E402
from suricate.net.certs import ensure_self_signed  # noqa: E402

SERVICE = "conference.localhost"
MUC = "http://jabber.org/protocol/muc"
BODY = b"<body>Hello room! This is a benchmark message of a typical chat size.</body>"


def write_config(tmp: Path, port: int, hibernate_ms: int | None,
                 archive: bool = False) -> Path:
    cert, _ = ensure_self_signed(tmp / "certs", ["localhost"])
    path = tmp / "bench.toml"
    modules = [m for m in DEFAULT_MODULES if m != "mod_muc"]
    timeout = '"infinity"' if hibernate_ms is None else hibernate_ms
    extra = f"[modules.mod_muc]\nhibernate_timeout = {timeout}\nmax_users = 1000\n" \
            "default_room.max_users = 1000\n"
    if archive:
        # Room archives (XEP-0313 on room JIDs): every groupchat message stored once per room.
        extra += "[modules.mod_mam]\n[modules.mod_mam.muc]\n"
    path.write_text(suricate_config(tmp / "bench.db", [
        c2s_listener(port, "backlog = 4096", 'tls.mode = "starttls"',
                     f'tls.certfile = "{cert.certfile}"', f'tls.keyfile = "{cert.keyfile}"',
                     'tls.verify_mode = "none"', "max_stanza_size = 65536"),
    ], loglevel="error", modules=modules, extra=extra))
    return path


def join(room: str, nick: str) -> bytes:
    return (f"<presence to='{room}@{SERVICE}/{nick}'><x xmlns='{MUC}'>"
            "<history maxstanzas='0'/></x></presence>").encode()


def unlock(room: str, persistent: bool = False) -> bytes:
    fields = ("<field var='muc#roomconfig_persistentroom'><value>1</value></field>"
              if persistent else "")
    return (f"<iq type='set' id='cfg' to='{room}@{SERVICE}'>"
            f"<query xmlns='{MUC}#owner'><x xmlns='jabber:x:data' type='submit'>{fields}"
            "</x></query></iq>").encode()


async def create(c: Client, room: str, persistent: bool = False) -> None:
    c.send(join(room, "owner"))
    await c.expect(b"</message>")  # §7.2.16: the subject ends the join
    c.send(unlock(room, persistent))
    await c.expect((b"id=\"cfg\"", b"id='cfg'"))


async def fan_out(a: argparse.Namespace, port: int) -> dict[str, Any]:
    ctx = client_context()
    n = a.rooms * a.occupants
    clients = await gather_bounded(
        [login(a.host, port, f"u{i}", True, ctx) for i in range(n)], 50)
    for r in range(a.rooms):
        owner = clients[r * a.occupants]
        await create(owner, f"bench{r}")

    async def enter(r: int, k: int) -> None:
        c = clients[r * a.occupants + k]
        c.send(join(f"bench{r}", f"n{k}"))
        await c.expect(b"</message>")

    await gather_bounded([enter(r, k) for r in range(a.rooms) for k in range(1, a.occupants)],
                         50)
    await asyncio.sleep(0.5)  # the last presences settle
    state = {"measuring": False, "running": True, "delivered": 0, "sent": 0}
    for r in range(a.rooms):
        members = clients[r * a.occupants:(r + 1) * a.occupants]
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
    t0 = time.monotonic()
    cpu0 = cpu_seconds(a.server_pid) if a.server_pid else 0.0
    await asyncio.sleep(a.seconds)
    state["measuring"] = False
    elapsed = time.monotonic() - t0
    cpu = cpu_seconds(a.server_pid) - cpu0 if a.server_pid else 0.0
    state["running"] = False
    await asyncio.sleep(0.5)
    lost = sum(c.lost for c in clients)
    for c in clients:
        c.transport.abort()
    result = {"delivered_per_s": state["delivered"] / elapsed,
              "room_messages_per_s": state["sent"] / elapsed, "lost_connections": lost}
    if a.server_pid and state["delivered"]:
        # The server's CPU over the measured window per copy delivered: steadier than the
        # rate on a shared machine, where a server may get only part of its core.
        result["server_cpu_us_per_delivery"] = cpu / state["delivered"] * 1e6
        result["server_cpu_share"] = cpu / elapsed
    return result


async def idle_rooms(a: argparse.Namespace, port: int, pid: int) -> float:
    """RSS growth per empty persistent room, ``a.idle_rooms`` of them, 3 s after the last."""
    ctx = client_context()
    c = await login("127.0.0.1", port, "u0", True, ctx)
    await asyncio.sleep(1.0)
    before = rss_kib(pid)
    for r in range(a.idle_rooms):
        await create(c, f"idle{r}", persistent=True)
        c.send(f"<presence type='unavailable' to='idle{r}@{SERVICE}/owner'/>".encode())
    await asyncio.sleep(3.0)
    after = rss_kib(pid)
    c.transport.abort()
    return (after - before) / a.idle_rooms


def idle_rooms_run(a: argparse.Namespace, tmp: Path, hibernate_ms: int | None) -> float:
    """A fresh server (its own database) holding ``a.idle_rooms`` idle persistent rooms."""
    port = free_port()
    sub = tmp / f"idle-{hibernate_ms}"
    sub.mkdir()
    config = write_config(sub, port, hibernate_ms)
    register(config, 1)
    proc, _ = start_server(config)
    try:
        pin(proc.pid, a.server_core)
        wait_port(port, 30)
        return asyncio.run(idle_rooms(a, port, proc.pid))
    finally:
        proc.terminate()
        proc.wait(20)


def pin(pid: int, cores: str) -> None:
    if cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(pid, {int(c) for c in cores.split(",")})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rooms", type=int, default=4)
    parser.add_argument("--occupants", type=int, default=50)
    parser.add_argument("--inflight", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--idle-rooms", type=int, default=1000)
    parser.add_argument("--hibernate-ms", type=int, default=0,
                        help="hibernate_timeout of the hibernating run (0: at once)")
    parser.add_argument("--server-core", default="0", help="taskset core list of the server")
    parser.add_argument("--server-pid", type=int, default=0,
                        help="pid of the running server, to report its CPU per delivered copy")
    parser.add_argument("--archive", action="store_true",
                        help="with mod_mam's muc section: rooms archived (XEP-0313)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0,
                        help="drive a running server instead of starting one")
    args = parser.parse_args()
    if args.port:
        try:
            import uvloop
            uvloop.install()
        except ImportError:
            pass
        print(json.dumps(asyncio.run(fan_out(args, args.port))), flush=True)
        return
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        port = free_port()
        config = write_config(tmp, port, None, archive=args.archive)
        register(config, args.rooms * args.occupants)
        proc, _ = start_server(config)
        result: dict[str, Any] = {}
        try:
            pin(proc.pid, args.server_core)
            wait_port(port, 30)
            args.server_pid = proc.pid
            result["fan_out"] = asyncio.run(fan_out(args, port))
        finally:
            proc.terminate()
            proc.wait(20)
        if args.idle_rooms:
            result["idle_persistent_rooms"] = {
                "rooms": args.idle_rooms,
                "kib_per_room_kept_in_memory": idle_rooms_run(args, tmp, None),
                "kib_per_room_hibernated": idle_rooms_run(args, tmp, args.hibernate_ms)}
    result["params"] = {"rooms": args.rooms, "occupants": args.occupants,
                        "inflight": args.inflight, "seconds": args.seconds,
                        "archive": args.archive}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
