"""``suricate serve --workers 2``: two nodes of the Redis design (the real Redis) sharing the
ports; real processes, real sockets, slixmpp clients placed on both workers (each client's
server-side socket is found in /proc to know which worker owns its session)."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from suricate.cluster.worker import with_own_ports
from suricate.config import parse_config
from suricate.core.server import Server
from suricate.jid import JID
from suricate.modules import MODULES
from tests.e2e.harness import Client, connect, disconnect, eventually, free_port, server_toml
from tests.e2e.tls_client import TestClient
from tests.proxy65.test_proxy65 import transfer

# A module-wide fixture (or a fixed resource): one xdist worker runs the whole file.
pytestmark = pytest.mark.xdist_group("workers")


SURICATE = [sys.executable, "-m", "suricate"]
LIMIT = '[access]\nmax_user_sessions = [{acl = "all", value = 2}]'
USERS = ("alice", "bob", "carol", "dave", "erin", "frank")


class Cluster:
    def __init__(self, proc: subprocess.Popen[str], c2s_port: int, tls_port: int,
                 banner: str, tmp: Path | None = None) -> None:
        self.proc = proc
        self.tmp = tmp  # its configuration and SQLite database
        self.c2s_port = c2s_port
        self.tls_port = tls_port
        self.banner = banner

    @property
    def workers(self) -> list[int]:
        pid = self.proc.pid
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        return [int(p) for p in text.split()]

    def owner(self, client: Client) -> int:
        """The pid of the worker holding the server side of ``client``'s connection."""
        port = client.transport.get_extra_info("sockname")[1]
        inode = None
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if int(local.split(":")[1], 16) == self.c2s_port \
                    and int(remote.split(":")[1], 16) == port:
                inode = fields[9]
        assert inode is not None, "no server socket for the client"
        for pid in self.workers:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                        return pid
                except OSError:
                    continue
        raise AssertionError("no worker owns the client's socket")

    async def connect_on(self, worker: int, jid: str, **kwargs: Any) -> Client:
        """A client whose session lives on worker number ``worker`` (the kernel picks the
        worker of a connection: try again until it is that one)."""
        for _ in range(40):
            client = await connect(self, jid, "pw", **kwargs)  # type: ignore[arg-type]
            if self.owner(client) == self.workers[worker]:
                return client
            await disconnect(client)
        raise AssertionError(f"could not place {jid} on worker {worker}")


async def _available(db: int, bare: str, *resources: str, available: bool = True) -> None:
    """Every node (worker) sees these resources of ``bare`` (their rows in Redis; with
    ``available``, after their initial presence): a stanza to them from another node goes
    to them, not to offline storage."""
    client = pytest.importorskip("redis").Redis(host="127.0.0.1", port=6379, db=db,
                                                decode_responses=True)

    def seen() -> bool:
        rows = {r: v.split("\t") for r, v in client.hgetall(f"suricate:sess:{bare}").items()}
        return all(r in rows and (not available or rows[r][2] == "1") for r in resources)
    await eventually(seen)


def _register(tmp: Path, toml: str) -> None:
    async def run() -> None:
        server = Server(parse_config(toml, tmp), tmp, {})
        await server.storage.open()
        for user in USERS:
            await server.auth.register(JID(user, "localhost"), "pw")
        await server.storage.close()
    asyncio.run(run())


def workers_toml(tmp: Path, c2s: int, tls: int, redis_db: int | None) -> str:
    level = os.environ.get("SURICATE_TEST_LOGLEVEL", "warning")
    general = f'loglevel = "{level}"'
    extra = LIMIT
    if redis_db is not None:
        general += '\nsm_backend = "redis"'
        extra += ("\n[outgoing_pools.redis.default.connection]\nhost = \"127.0.0.1\"\n"
                  f"port = 6379\ndatabase = {redis_db}\n")
    return server_toml(tmp, c2s, tls, extra=extra).replace('loglevel = "info"', general)


def start_cluster(tmp: Path, redis_db: int, workers: int = 2) -> Cluster:
    c2s, tls = free_port(), free_port()
    toml = workers_toml(tmp, c2s, tls, redis_db)
    config = tmp / "suricate.toml"
    config.write_text(toml)
    _register(tmp, toml)
    proc = subprocess.Popen([*SURICATE, "serve", "--config", str(config), "--workers",
                             str(workers)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    banner = proc.stdout.readline()
    assert "serving localhost" in banner, (banner, proc.stderr.read() if proc.poll() else "")
    return Cluster(proc, c2s, tls, banner, tmp)


def stop_cluster(cluster: Cluster) -> tuple[int, str, str]:
    cluster.proc.send_signal(signal.SIGTERM)
    out, err = cluster.proc.communicate(timeout=30)
    return cluster.proc.returncode, out, err


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, redis_db: int) -> Iterator[Cluster]:
    c = start_cluster(tmp_path_factory.mktemp("cluster"), redis_db)
    try:
        yield c
    finally:
        if c.proc.poll() is None:
            code, _, err = stop_cluster(c)
            assert code == 0, err


def test_two_workers_share_the_ports(cluster: Cluster) -> None:
    assert "with 2 workers" in cluster.banner
    assert len(cluster.workers) == 2
    listening = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == cluster.c2s_port:
            listening.add(fields[9])
    assert len(listening) == 2  # one SO_REUSEPORT socket per worker


async def test_messages_between_workers(cluster: Cluster, redis_db: int) -> None:
    alice = await cluster.connect_on(0, "alice@localhost/a", plugins=("xep_0199",))
    bob = await cluster.connect_on(1, "bob@localhost/b", plugins=("xep_0199",))
    assert cluster.owner(alice) != cluster.owner(bob)
    alice.send_presence()
    bob.send_presence()
    await _available(redis_db, "alice@localhost", "a")
    await _available(redis_db, "bob@localhost", "b")
    alice.send_message(mto="bob@localhost/b", mbody="to your full JID", mtype="chat")
    assert (await bob.next_message())["body"] == "to your full JID"
    bob.send_message(mto="alice@localhost", mbody="to your bare JID", mtype="chat")
    msg = await alice.next_message()
    assert msg["body"] == "to your bare JID" and msg["from"] == "bob@localhost/b"
    # an IQ to a full JID on the other worker, answered by that client (XEP-0199 ping)
    rtt = await alice.plugin["xep_0199"].ping("bob@localhost/b", timeout=5)
    assert rtt is not None and rtt < 5
    # a resource that does not exist: the chat message falls back to the bare JID
    alice.send_message(mto="bob@localhost/nowhere", mbody="fallback", mtype="chat")
    assert (await bob.next_message())["body"] == "fallback"
    await disconnect(alice, bob)


async def presence_from(client: Client, frm: str, type_: str) -> Any:
    while True:
        pres = await client.next_presence()
        if pres["from"].bare == frm and pres["type"] == type_:
            return pres


async def test_subscription_and_presence_between_workers(cluster: Cluster, redis_db: int) -> None:
    carol = await cluster.connect_on(0, "carol@localhost/c")
    dave = await cluster.connect_on(1, "dave@localhost/d")
    for client in (carol, dave):
        client.auto_authorize = None  # the test answers the requests itself
        client.auto_subscribe = False
        await client.get_roster()
        client.send_presence()
    # A request to a user with no available resource waits in the roster until the next
    # login (RFC 6121 §3.1.3): let each worker learn that the other's user is available.
    for client in (carol, dave):
        await _available(redis_db, str(client.boundjid.bare), client.boundjid.resource)
    # the subscription stanzas and the roster pushes cross the workers both ways
    for user, contact in ((carol, dave), (dave, carol)):
        user_jid, contact_jid = str(user.boundjid.bare), str(contact.boundjid.bare)
        user.send_presence(pto=contact_jid, ptype="subscribe")
        await presence_from(contact, user_jid, "subscribe")
        contact.send_presence(pto=user_jid, ptype="subscribed")
        await presence_from(user, contact_jid, "subscribed")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if carol.client_roster["dave@localhost"]["subscription"] == "both" and \
                dave.client_roster["carol@localhost"]["subscription"] == "both":
            break
        await asyncio.sleep(0.05)
    assert carol.client_roster["dave@localhost"]["subscription"] == "both"
    assert dave.client_roster["carol@localhost"]["subscription"] == "both"
    # broadcast presence reaches the contact on the other worker (roster caches in step)
    while not carol.presences.empty():
        carol.presences.get_nowait()
    dave.send_presence(pstatus="busy on worker 1", pshow="dnd")
    pres = await carol.next_presence()
    while pres["from"] != "dave@localhost/d" or pres["status"] != "busy on worker 1":
        pres = await carol.next_presence()
    assert pres["show"] == "dnd"
    # a second resource of carol on the other worker gets probes answered across workers
    carol2 = await cluster.connect_on(1, "carol@localhost/c2")
    carol2.send_presence()
    seen = set()
    while {"dave@localhost/d", "carol@localhost/c"} - seen:
        pres = await carol2.next_presence()
        if pres["type"] != "unavailable":
            seen.add(str(pres["from"]))
    # and going away is seen on the other worker
    await disconnect(dave)
    pres = await carol.next_presence(type_="unavailable")
    assert pres["from"] == "dave@localhost/d"
    await disconnect(carol, carol2)


async def test_resource_conflict_across_workers(cluster: Cluster) -> None:
    first = await cluster.connect_on(0, "erin@localhost/same")
    first.send_presence()
    gone = asyncio.get_running_loop().create_future()
    first.add_event_handler("disconnected", lambda _: gone.done() or gone.set_result(True))
    errors: list[Any] = []
    first.add_event_handler("stream_error", errors.append)
    second = await cluster.connect_on(1, "erin@localhost/same")
    await asyncio.wait_for(gone, 10)
    assert errors and errors[0]["condition"] == "conflict"
    # the JID now lives on worker 1, for both workers
    frank = await cluster.connect_on(0, "frank@localhost/f")
    frank.send_message(mto="erin@localhost/same", mbody="to the new one", mtype="chat")
    assert (await second.next_message())["body"] == "to the new one"
    await disconnect(second, frank)


async def test_session_limit_counts_every_worker(cluster: Cluster, redis_db: int) -> None:
    """max_user_sessions = 2 with one session on each worker: a third opens wherever it
    lands, and the oldest of the account's sessions ends (<conflict/>, as MongooseIM 6.4),
    whichever worker holds it."""
    one = await cluster.connect_on(0, "bob@localhost/one")
    await asyncio.sleep(1.1)  # uptime is counted in seconds: "one" is the older
    two = await cluster.connect_on(1, "bob@localhost/two")
    # both workers know both sessions
    await _available(redis_db, "bob@localhost", "one", "two", available=False)

    def third() -> str:
        client = TestClient(cluster.c2s_port)
        try:
            client.open_stream()
            client.starttls()
            token = base64.b64encode(b"\0bob\0pw").decode()
            client.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                        f"{token}</auth>")
            client.expect(r"<success")
            client.open_stream()
            client.send("<iq type='set' id='b3'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                        "<resource>three</resource></bind></iq>")
            return client.expect(r"<iq[^>]*id=\"b3\".*?</iq>").group(0)
        finally:
            client.close()

    assert 'type="result"' in await asyncio.to_thread(third)
    await eventually(lambda: not one.is_connected())
    assert two.is_connected()
    await disconnect(one, two)


async def test_offline_storage_and_delivery(cluster: Cluster) -> None:
    alice = await cluster.connect_on(0, "alice@localhost/a")
    alice.send_message(mto="frank@localhost", mbody="while you were away", mtype="chat")
    assert cluster.tmp is not None
    path = cluster.tmp / "suricate.db"

    def stored() -> bool:
        with sqlite3.connect(path) as db:
            return bool(db.execute("SELECT count(*) FROM offline_messages WHERE username = "
                                   "'frank'").fetchone()[0])
    await eventually(stored)  # before frank's session opens: not delivered live
    frank = await cluster.connect_on(1, "frank@localhost/f")
    frank.send_presence()
    msg = await frank.next_message()
    assert msg["body"] == "while you were away"
    assert "urn:xmpp:delay" in str(msg)  # XEP-0203 stamp of offline storage
    await disconnect(alice, frank)


async def test_sigterm_stops_every_worker(tmp_path: Path, redis_db: int) -> None:
    cluster = await asyncio.to_thread(start_cluster, tmp_path, redis_db)
    workers = cluster.workers
    alice = await cluster.connect_on(0, "alice@localhost/a")
    bob = await cluster.connect_on(1, "bob@localhost/b")
    errors: list[Any] = []
    alice.add_event_handler("stream_error", errors.append)
    bob.add_event_handler("stream_error", errors.append)
    code, out, err = await asyncio.to_thread(stop_cluster, cluster)
    assert code == 0, err
    assert "shutting down" in out
    assert "Traceback" not in err
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists()
    await eventually(lambda: len(errors) >= 2)  # read by the clients meanwhile
    assert sorted(e["condition"] for e in errors) == ["system-shutdown", "system-shutdown"]
    await disconnect(alice, bob)


def test_workers_without_redis_say_what_to_configure(tmp_path: Path) -> None:
    config = tmp_path / "suricate.toml"
    config.write_text(workers_toml(tmp_path, free_port(), free_port(), None))
    done = subprocess.run([*SURICATE, "serve", "--config", str(config), "--workers", "2"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert 'sm_backend = "redis"' in done.stderr
    assert "outgoing_pools.redis.default.connection" in done.stderr


def test_sighup_reloads_every_workers_certificate(tmp_path: Path, redis_db: int) -> None:
    """SIGHUP to the supervisor: each worker reads its TLS certificate again (a renewed
    certificate), and none of them dies of the signal."""
    from tests.robustness.test_security import _renew, _served_certificate

    cluster = start_cluster(tmp_path, redis_db)
    workers = cluster.workers
    new = _renew(tmp_path, tmp_path / "certs")
    cluster.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    # reuse_port spreads connections over the workers: many handshakes reach both
    while not all(_served_certificate(cluster.tls_port) == new for _ in range(10)):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert cluster.workers == workers and cluster.proc.poll() is None
    code, _, err = stop_cluster(cluster)
    assert code == 0, err


def test_supervisor_tells_systemd_when_every_worker_serves(tmp_path: Path, redis_db: int
                                                           ) -> None:
    """Under ``Type=notify`` (contrib/suricate.service) the supervisor, the unit's main
    process, says READY=1 once both workers accept connections and STOPPING=1 at SIGTERM;
    the workers say nothing (tests/ops/test_service_manager.py for one process)."""
    c2s, tls = free_port(), free_port()
    config = tmp_path / "suricate.toml"
    config.write_text(workers_toml(tmp_path, c2s, tls, redis_db))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(60)
    proc = subprocess.Popen([*SURICATE, "serve", "--config", str(config), "--workers", "2"],
                            env=dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify")),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready = sock.recv(4096).decode().split("\n")
        assert ready == ["READY=1", f"STATUS=serving localhost on c2s:{c2s}, c2s:{tls} with 2 "
                         "workers"], ready
        assert len(Cluster(proc, c2s, tls, "").workers) == 2
        with socket.create_connection(("127.0.0.1", c2s), timeout=5):
            pass
        proc.send_signal(signal.SIGTERM)
        assert sock.recv(4096).decode().split("\n")[0] == "STOPPING=1"
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        sock.setblocking(False)
        with pytest.raises(BlockingIOError):  # nothing from the workers
            sock.recv(4096)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()


def test_own_port_modules_take_port_plus_index() -> None:
    cfg = {"listen": {}, "modules": {"mod_proxy65": {"port": 7777}, "mod_ping": {}}}
    assert with_own_ports(cfg, 0, MODULES) is cfg
    assert with_own_ports(cfg, 2, MODULES)["modules"] == {"mod_proxy65": {"port": 7779},
                                                          "mod_ping": {}}
    assert cfg["modules"]["mod_proxy65"] == {"port": 7777}  # the supervisor's is untouched
    system_chosen = {"modules": {"mod_proxy65": {"port": 0}}}
    assert with_own_ports(system_chosen, 1, MODULES) is system_chosen


def _start_with_proxy(tmp: Path, redis_db: int, port: int) -> Cluster:
    c2s, tls = free_port(), free_port()
    toml = workers_toml(tmp, c2s, tls, redis_db) + (
        f'\n[modules.mod_proxy65]\nip = "127.0.0.1"\nport = {port}\n')
    config = tmp / "suricate.toml"
    config.write_text(toml)
    _register(tmp, toml)
    proc = subprocess.Popen([*SURICATE, "serve", "--config", str(config), "--workers", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    banner = proc.stdout.readline()
    assert "serving localhost" in banner, (banner, proc.stderr.read() if proc.poll() else "")
    return Cluster(proc, c2s, tls, banner, tmp)


async def test_each_worker_relays_file_transfers_on_its_own_port(tmp_path: Path,
                                                                 redis_db: int) -> None:
    """mod_proxy65 under --workers 2: worker i listens on port + i and announces it, so the
    two SOCKS5 connections of a bytestream and its activation all reach the worker of the
    requester's session (slixmpp's XEP-0065, alice on one worker and bob on the other, each
    requesting once)."""
    while True:  # two free ports in a row
        port = free_port()
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port + 1)) != 0:
                break
    cluster = await asyncio.to_thread(_start_with_proxy, tmp_path, redis_db, port)
    try:
        for own in (port, port + 1):
            with socket.create_connection(("127.0.0.1", own), timeout=5) as socks:
                socks.sendall(b"\x05\x01\x00")
                assert socks.recv(2) == b"\x05\x00"
        plugins = ("xep_0030", "xep_0065")
        alice = await cluster.connect_on(0, "alice@localhost/pc", plugins=plugins)
        bob = await cluster.connect_on(1, "bob@localhost/phone", plugins=plugins)
        try:
            used = {await transfer(alice, bob, 200_000), await transfer(bob, alice, 200_000)}
            assert used == {port, port + 1}
        finally:
            await disconnect(alice, bob)
    finally:
        code, _, err = await asyncio.to_thread(stop_cluster, cluster)
        assert code == 0, err
