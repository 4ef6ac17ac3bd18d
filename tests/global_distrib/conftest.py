"""Two data centres of one node each (``suricate serve`` processes), one XMPP domain
(``localhost``), mod_global_distrib between them over TLS (a throw-away CA), on the real Redis
at 127.0.0.1:6379: a database for each data centre's own session table
(``sm_backend = "redis"``) and one for the global mapping, each claimed for this run and
emptied before and after. Both data centres share one SQLite file (accounts, rosters, offline
messages), as MongooseIM's data centres share their relational database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import (
    MODULES_TOML,
    auth_toml,
    c2s_listener_toml,
    free_port,
    sqlite_pool_toml,
)
from tests.s2s.pki import CertificateAuthority, Issued

redis = pytest.importorskip("redis")

SURICATE = [sys.executable, "-m", "suricate"]
CLAIM = "suricate-test-claim"
USERS = ("alice", "bob", "carol")


def _redis_or_skip() -> None:
    client = redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis 127.0.0.1:6379 is required under CI=true: {exc}")
        pytest.skip(f"no Redis on 127.0.0.1:6379 ({exc})")


@pytest.fixture(scope="module")
def redis_dbs() -> Iterator[tuple[int, int, int]]:
    """Three empty Redis databases (A's sessions, B's sessions, the global mapping), claimed
    as tests/cluster claims one, so that runs on the same machine never share one."""
    _redis_or_skip()
    token = uuid.uuid4().hex
    claimed: list[int] = []
    for db in range(15, 0, -1):
        client = redis.Redis(host="127.0.0.1", port=6379, db=db)
        if client.set(CLAIM, token, nx=True, ex=900):
            if client.dbsize() == 1:
                claimed.append(db)
                if len(claimed) == 3:
                    break
            else:
                client.delete(CLAIM)
    try:
        if len(claimed) < 3:
            pytest.skip("fewer than three empty Redis databases among 1..15")
        yield claimed[0], claimed[1], claimed[2]
    finally:
        for db in claimed:
            redis.Redis(host="127.0.0.1", port=6379, db=db).flushdb()


def flush(db: int) -> None:
    client = redis.Redis(host="127.0.0.1", port=6379, db=db)
    client.flushdb()
    client.set(CLAIM, "held", ex=900)


@dataclass
class DC:
    """One data centre: its process and its client port (``connect`` reads ``c2s_port``)."""

    name: str
    local_host: str
    proc: subprocess.Popen[str]
    c2s_port: int
    log: Path
    config: Path

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.communicate()


@dataclass
class World:
    tmp: Path
    ca: CertificateAuthority
    sessions_db: dict[str, int]
    global_db: int

    def issued(self, domain: str) -> Issued:
        """One certificate per domain for the whole run (a restarted data centre reads the
        files it read before)."""
        path = self.tmp / "pki" / f"{domain}.crt"
        if path.exists():
            return Issued(str(path), str(path.with_suffix(".key")))
        return self.ca.issue(domain)

    def toml(self, name: str, c2s: int, modules_extra: str = "", gd_extra: str = "") -> str:
        local_host = f"{name}.localhost"
        issued = self.issued(local_host)
        default = self.issued("localhost")
        level = os.environ.get("SURICATE_TEST_LOGLEVEL", "info")
        return f"""
[general]
hosts = ["localhost", "{local_host}"]
default_server_domain = "localhost"
loglevel = "{level}"
sm_backend = "redis"

{c2s_listener_toml(c2s, default.certfile, default.keyfile)}
{auth_toml()}
{sqlite_pool_toml(self.tmp / 'suricate.db')}

[outgoing_pools.redis.default.connection]
host = "127.0.0.1"
port = 6379
database = {self.sessions_db[name]}

[outgoing_pools.redis.global_distrib.connection]
host = "127.0.0.1"
port = 6379
database = {self.global_db}

{MODULES_TOML}
{modules_extra}

[modules.mod_global_distrib]
global_host = "localhost"
local_host = "{local_host}"
hosts_refresh_interval = 200
redis.refresh_after = 2
connections.endpoints = [{{host = "127.0.0.1", port = 0}}]
connections.tls.certfile = "{issued.certfile}"
connections.tls.keyfile = "{issued.keyfile}"
connections.tls.cacertfile = "{self.ca.certfile}"
{gd_extra}
"""

    def start(self, name: str, modules_extra: str = "", gd_extra: str = "") -> DC:
        c2s = free_port()
        config = self.tmp / f"{name}.toml"
        config.write_text(self.toml(name, c2s, modules_extra, gd_extra))
        log = self.tmp / f"{name}.log"
        proc = subprocess.Popen([*SURICATE, "serve", "--config", str(config)],
                                stdout=subprocess.PIPE, stderr=log.open("w"), text=True)
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        assert " serving " in banner, (banner, log.read_text())
        return DC(name, f"{name}.localhost", proc, c2s, log, config)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory,
          redis_dbs: tuple[int, int, int]) -> World:
    tmp = tmp_path_factory.mktemp("global_distrib")
    a, b, g = redis_dbs
    world = World(tmp, CertificateAuthority(tmp / "pki"), {"dc1": a, "dc2": b}, g)
    _register(world)
    return world


def _register(world: World) -> None:
    import asyncio

    from suricate.config import parse_config
    from suricate.core.server import Server
    from suricate.jid import JID

    toml = world.toml("dc1", free_port())

    async def run() -> None:
        server = Server(parse_config(toml, world.tmp), world.tmp, {})
        await server.storage.open()
        for user in USERS:
            await server.auth.register(JID(user, "localhost"), "pw")
        await server.storage.close()
    asyncio.run(run())


def global_redis(world: World) -> Any:
    return redis.Redis(host="127.0.0.1", port=6379, db=world.global_db, decode_responses=True)
