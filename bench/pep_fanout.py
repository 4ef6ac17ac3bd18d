"""PEP notification fan-out: one account publishes to a node that N contacts (mutual presence
subscription, '+notify' in their entity capabilities) are interested in; how many publishes,
and so notifications, per second does the server deliver?

    .venv/bin/python bench/pep_fanout.py [--contacts 200] [--publishes 200] [--server-cores 0]

The server runs in its own process (pinned to one core when asked, as in DESIGN §6) with
mod_caps and mod_pubsub over SQLite, on a plain c2s listener (TLS would measure the client's
encryption more than the fan-out). The publisher waits for each publish's result before the
next (a client's pace); the clock stops when every contact has received every notification.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import c2s_listener, cpu_seconds, free_port, suricate_config  # noqa: E402
from bench.loadgen import PASSWORD, Client, gather_bounded, login  # noqa: E402

NODE = "http://jabber.org/protocol/tune"
CAPS_NODE = "https://suricate.example/bench"
FEATURES = ("http://jabber.org/protocol/caps", "http://jabber.org/protocol/disco#info",
            f"{NODE}+notify")


def disco_info() -> str:
    identity = "<identity category='client' type='bot' name='bench'/>"
    features = "".join(f"<feature var='{f}'/>" for f in FEATURES)
    return f"<query xmlns='http://jabber.org/protocol/disco#info'>{identity}{features}</query>"


def caps_ver() -> str:
    from suricate.modules.mod_caps import caps_hash
    from suricate.xml.parser import parse_fragment
    return caps_hash(parse_fragment(disco_info())[0], "sha-1")


def run_server(tmp: str, port: int, contacts: int, ready: Any, cores: str | None) -> None:
    if cores:
        os.sched_setaffinity(0, {int(c) for c in cores.split(",")})
    from suricate.config import parse_config
    from suricate.core.server import Server
    from suricate.jid import JID
    from suricate.modules import MODULES
    from suricate.storage.base import RosterItem

    async def main() -> None:
        listener = c2s_listener(port, "backlog = 4096", "max_stanza_size = 65536")
        toml = suricate_config(Path(tmp) / "bench.db", [listener],
                               auth=["password.scram_iterations = 4096"],
                               modules=("mod_presence", "mod_roster", "mod_disco", "mod_caps",
                                        "mod_pubsub"))
        server = Server(parse_config(toml, Path(tmp)), Path(tmp), MODULES)
        await server.start()
        await server.auth.register(JID("owner", "localhost", None), PASSWORD)
        for i in range(contacts):
            name = f"contact{i}"
            await server.auth.register(JID(name, "localhost", None), PASSWORD)
            await server.storage.put_roster_item(
                "localhost", "owner", RosterItem(f"{name}@localhost", subscription="both"))
            await server.storage.put_roster_item(
                "localhost", name, RosterItem("owner@localhost", subscription="both"))
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


def presence(ver: str) -> bytes:
    return (f"<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' "
            f"node='{CAPS_NODE}' ver='{ver}'/></presence>").encode()


async def first_contact_caps(c: Client, ver: str) -> None:
    """The first contact answers the server's disco#info query (XEP-0115 §6.2): the hash is
    then cached and the other contacts' presence is recognised at once."""
    c.send(presence(ver))
    data = await c.expect(b"disco#info")
    iq_id = re.findall(rb"<iq[^>]*id=['\"]([^'\"]+)['\"]", data)[-1].decode()
    query = disco_info().replace("<query ", f"<query node='{CAPS_NODE}#{ver}' ", 1)
    c.send(f"<iq type='result' id='{iq_id}' to='localhost'>{query}</iq>".encode())


async def bench(port: int, contacts: int, publishes: int, server_pid: int) -> dict[str, Any]:
    ver = caps_ver()
    ctx = None
    clients: list[Client] = await gather_bounded(
        [login("127.0.0.1", port, f"contact{i}", False, ctx, presence=False)  # type: ignore[arg-type]
         for i in range(contacts)], 50)
    await first_contact_caps(clients[0], ver)
    await asyncio.sleep(0.5)
    for c in clients[1:]:
        c.send(presence(ver))
    owner = await login("127.0.0.1", port, "owner", False, ctx, presence=True)  # type: ignore[arg-type]
    await asyncio.sleep(1.0)  # every contact's caps recognised
    received = [0]
    done = asyncio.get_running_loop().create_future()
    expected = contacts * publishes

    def counted(n: int) -> None:
        received[0] += n
        if received[0] >= expected and not done.done():
            done.set_result(None)

    for c in clients:
        c.buf.clear()
        c.counting = True
        c.on_messages = counted
    cpu0 = cpu_seconds(server_pid)
    start = time.perf_counter()
    for i in range(publishes):
        owner.send(f"<iq type='set' id='p{i}'><pubsub xmlns='http://jabber.org/protocol/pubsub'>"
                   f"<publish node='{NODE}'><item id='current'><tune xmlns='{NODE}'>"
                   f"<title>song {i}</title></tune></item></publish></pubsub></iq>".encode())
        await owner.expect(f'id="p{i}"'.encode())
    await asyncio.wait_for(done, 120)
    elapsed = time.perf_counter() - start
    cpu = cpu_seconds(server_pid) - cpu0
    return {"contacts": contacts, "publishes": publishes, "seconds": round(elapsed, 3),
            "publishes_per_s": round(publishes / elapsed, 1),
            "notifications_per_s": round(expected / elapsed),
            "server_cpu_share": round(cpu / elapsed, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=200)
    parser.add_argument("--publishes", type=int, default=200)
    parser.add_argument("--server-cores", default=None)
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        ready = mp.get_context("spawn").Event()
        proc = mp.get_context("spawn").Process(
            target=run_server, args=(tmp, port, args.contacts, ready, args.server_cores),
            daemon=True)
        proc.start()
        try:
            if not ready.wait(120):
                raise SystemExit("server did not start")
            assert proc.pid is not None
            result = asyncio.run(bench(port, args.contacts, args.publishes, proc.pid))
            print(json.dumps(result))
        finally:
            proc.terminate()
            proc.join(10)


if __name__ == "__main__":
    main()
