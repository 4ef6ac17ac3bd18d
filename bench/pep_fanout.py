"""PEP notification fan-out, side by side: one account publishes to a PEP node that N contacts
(mutual presence subscription, '+notify' in their entity capabilities) are interested in; how
many publishes, and so notifications, per second does each server deliver?

    .venv/bin/python bench/pep_fanout.py [--servers suricate,prosody,ejabberd]
        [--contacts 200] [--publishes 100] [--server-cores 0] [--gen-cores 1]

Each server is bench/run.py's own subprocess (own config and data under --workdir, one core
with taskset), with PEP turned on: Suricate mod_caps + mod_pubsub (SQLite), Prosody mod_pep,
ejabberd mod_caps + mod_pubsub (pep plugin). Rosters are made through the protocol
(loadgen.py make_roster) so every server gets the same ones. Clients log in over plain TCP
(TLS would measure the generator's encryption more than the fan-out) and answer the servers'
disco#info queries for their caps. The publisher waits for each publish's result before the
next (a client's pace; --inflight N keeps N publishes in flight); the clock stops when every contact has received every notification.

--service: the same fan-out through a XEP-0060 service node instead of PEP: the owner creates
node 'bench' at pubsub.localhost (Suricate mod_pubsub, ejabberd mod_pubsub's flat plugin,
Prosody's pubsub component) and N accounts subscribe to it (no roster, no caps).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import DEFAULT_MODULES, c2s_listener, cpu_seconds, suricate_config  # noqa: E402
from bench.loadgen import Client, gather_bounded, login  # noqa: E402
from bench.run import (  # noqa: E402
    ITERATIONS,
    LOADGEN,
    PY,
    SERVERS,
    Ejabberd,
    Prosody,
    ServerSpec,
    Suricate,
    log,
)

NODE = "http://jabber.org/protocol/tune"
CAPS_NODE = "https://suricate.example/bench"
FEATURES = ("http://jabber.org/protocol/caps", "http://jabber.org/protocol/disco#info",
            f"{NODE}+notify")
OWNER = "r0"
SERVICE = "pubsub.localhost"


def disco_info(node: str | None = None) -> str:
    identity = "<identity category='client' type='bot' name='bench'/>"
    features = "".join(f"<feature var='{f}'/>" for f in FEATURES)
    attr = f" node='{node}'" if node else ""
    return (f"<query xmlns='http://jabber.org/protocol/disco#info'{attr}>{identity}{features}"
            "</query>")


def caps_ver() -> str:
    from suricate.modules.mod_caps import caps_hash
    from suricate.xml.parser import parse_fragment
    return caps_hash(parse_fragment(disco_info())[0], "sha-1")


# -- servers with PEP ---------------------------------------------------------------------------

class SuricatePep(Suricate):
    def write_config(self, cert: Path, key: Path) -> None:
        listener = c2s_listener(self.port, "backlog = 4096", "max_stanza_size = 262144",
                                host=self.addr)
        self.config_path().write_text(suricate_config(
            self.workdir / "suricate.db", [listener], loglevel="error",
            auth=['sasl_mechanisms = ["scram_sha256", "plain"]', 'password.hash = ["sha256"]',
                  f"password.scram_iterations = {ITERATIONS}"],
            modules=(*DEFAULT_MODULES, "mod_caps", "mod_pubsub")))


class ProsodyPep(Prosody):
    def write_config(self, cert: Path, key: Path) -> None:
        super().write_config(cert, key)
        path = self.workdir / "prosody.cfg.lua"
        # Prosody's pubsub component lets only admins create nodes: the owner is one.
        path.write_text(f'admins = {{ "{OWNER}@localhost" }}\n'
                        + path.read_text().replace('"offline" }', '"offline", "pep" }')
                        + f'\nComponent "{SERVICE}" "pubsub"\n')


class EjabberdPep(Ejabberd):
    def write_config(self, cert: Path, key: Path) -> None:
        super().write_config(cert, key)
        path = self.workdir / "ejabberd.yml"
        path.write_text(path.read_text().replace(
            "  mod_offline: {}\n",
            "  mod_offline: {}\n  mod_caps: {}\n  mod_pubsub:\n    plugins: [flat, pep]\n"))


PEP_SERVERS: dict[str, type[ServerSpec]] = {"suricate": SuricatePep, "prosody": ProsodyPep,
                                            "ejabberd": EjabberdPep}


# -- the clients ---------------------------------------------------------------------------------

class Contact(Client):
    """Counts notifications and answers disco#info queries about its caps (XEP-0115 §6.2)."""

    __slots__ = ()

    def data_received(self, data: bytes) -> None:
        if self.counting and b"disco#info" in data:
            for iq in re.findall(rb"<iq[^>]*>\s*<query[^>]*disco#info[^>]*>", data):
                if b"'get'" not in iq and b'"get"' not in iq:
                    continue
                iq_id = re.search(rb"id=['\"]([^'\"]+)", iq)
                frm = re.search(rb"from=['\"]([^'\"]+)", iq)
                node = re.search(rb"node=['\"]([^'\"]+)", iq)
                if iq_id and frm:
                    self.send(f"<iq type='result' id='{iq_id[1].decode()}' "
                              f"to='{frm[1].decode()}'>"
                              f"{disco_info(node[1].decode() if node else None)}</iq>".encode())
        super().data_received(data)


async def contact_login(host: str, port: int, name: str) -> Contact:
    c = await login(host, port, name, False, None, presence=False)  # type: ignore[arg-type]
    contact = Contact()
    contact.transport = c.transport
    c.transport.set_protocol(contact)
    contact.counting = True
    contact.on_messages = lambda n: None
    return contact


async def subscribed(host: str, port: int, name: str) -> Contact:
    """A contact subscribed to the service node (--service)."""
    c = await login(host, port, name, False, None, presence=True)  # type: ignore[arg-type]
    c.send(f"<iq type='set' id='s-{name}' to='{SERVICE}'><pubsub xmlns='"
           f"http://jabber.org/protocol/pubsub'><subscribe node='bench' jid='{name}@localhost'/>"
           "</pubsub></iq>".encode())
    await c.expect((f"id='s-{name}'".encode(), f'id="s-{name}"'.encode()))
    contact = Contact()
    contact.transport = c.transport
    c.transport.set_protocol(contact)
    contact.counting = True
    contact.on_messages = lambda n: None
    return contact


async def fanout(host: str, port: int, contacts: int, publishes: int, inflight: int,
                 server_pid: int, service: bool = False) -> dict[str, Any]:
    ver = caps_ver()
    presence = (f"<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' "
                f"node='{CAPS_NODE}' ver='{ver}'/></presence>").encode()
    owner = await login(host, port, OWNER, False, None, presence=True)  # type: ignore[arg-type]
    to, node = f"{OWNER}@localhost", NODE
    if service:
        to, node = SERVICE, "bench"
        owner.send(f"<iq type='set' id='create' to='{SERVICE}'><pubsub xmlns='"
                   "http://jabber.org/protocol/pubsub'><create node='bench'/></pubsub></iq>"
                   .encode())
        await owner.expect((b"id='create'", b'id="create"'))
        clients: list[Contact] = await gather_bounded(
            [subscribed(host, port, f"c{i}") for i in range(contacts)], 50)
    else:
        clients = await gather_bounded(
            [contact_login(host, port, f"c{i}") for i in range(contacts)], 50)
        clients[0].send(presence)
        await asyncio.sleep(1.0)  # its caps get asked for once, then cached by hash
        for c in clients[1:]:
            c.send(presence)
        await asyncio.sleep(3.0)  # every contact's caps recognised
    received = [0]
    expected = contacts * publishes
    done = asyncio.get_running_loop().create_future()

    def counted(n: int) -> None:
        received[0] += n
        if received[0] >= expected and not done.done():
            done.set_result(None)

    for c in clients:
        c.on_messages = counted
    owner.buf.clear()
    cpu0 = cpu_seconds(server_pid)
    start = time.perf_counter()
    for first in range(0, publishes, inflight):
        # A window of `inflight` publishes, then the result of the last one.
        last = min(first + inflight, publishes) - 1
        for i in range(first, last + 1):
            owner.send(f"<iq type='set' id='p{i}' to='{to}'><pubsub "
                       f"xmlns='http://jabber.org/protocol/pubsub'><publish node='{node}'>"
                       f"<item id='current'><tune xmlns='{NODE}'><title>song {i}</title>"
                       "</tune></item></publish></pubsub></iq>".encode())
        await owner.expect((f"id='p{last}'".encode(), f'id="p{last}"'.encode()))
    with contextlib.suppress(TimeoutError):  # then reported as fewer than expected
        await asyncio.wait_for(done, 60)
    elapsed = time.perf_counter() - start
    cpu = cpu_seconds(server_pid) - cpu0
    for conn in [owner, *clients]:
        conn.transport.close()
    return {"service" if service else "pep": True, "contacts": contacts, "publishes": publishes, "inflight": inflight, "seconds": round(elapsed, 3),
            "notifications": received[0], "expected": expected,
            "publishes_per_s": round(publishes / elapsed, 1),
            "notifications_per_s": round(received[0] / elapsed),
            "server_cpu_share": round(cpu / elapsed, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", default="suricate,prosody,ejabberd")
    parser.add_argument("--contacts", type=int, default=200)
    parser.add_argument("--publishes", type=int, default=100)
    parser.add_argument("--inflight", type=int, default=1,
                        help="publishes sent before waiting for a result (1: a client's pace)")
    parser.add_argument("--server-cores", default="0")
    parser.add_argument("--gen-cores", default="1")
    parser.add_argument("--port", type=int, default=5232)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/suricate-pep-bench"))
    parser.add_argument("--service", action="store_true",
                        help="subscribers of a node at pubsub.localhost instead of PEP contacts")
    a = parser.parse_args()
    from suricate.net.certs import ensure_self_signed
    if a.workdir.exists():
        shutil.rmtree(a.workdir)  # fresh rosters and nodes every run
    a.workdir.mkdir(parents=True)
    cert = ensure_self_signed(a.workdir / "certs", ["localhost"])[0]
    names = [OWNER] + [f"c{i}" for i in range(a.contacts)]
    os.sched_setaffinity(0, {int(c) for c in a.gen_cores.split(",")})
    results = {}
    for name in a.servers.split(","):
        addr = SERVERS[name][1]
        workdir = a.workdir / name
        workdir.mkdir()
        spec = PEP_SERVERS[name](name, addr, a.port, workdir, a.server_cores)
        spec.write_config(Path(cert.certfile), Path(cert.keyfile))  # type: ignore[attr-defined]
        log(f"{name}: provisioning {len(names)} accounts")
        spec.provision(names)
        spec.start()
        try:
            time.sleep(1.0)
            if not a.service:
                subprocess.run([PY, str(LOADGEN), "make_roster", "--host", addr, "--port",
                                str(a.port), "--user", OWNER, "--count", str(a.contacts),
                                "--settle", "1"], check=True, capture_output=True, timeout=300)
            result = asyncio.run(fanout(addr, a.port, a.contacts, a.publishes, a.inflight,
                                        spec.pid, a.service))
            result["version"] = spec.version()
            results[name] = result
            log(f"{name}: {json.dumps(result)}")
        finally:
            spec.stop()
    print(json.dumps(results, indent=1))
    print(f"\nload average: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
