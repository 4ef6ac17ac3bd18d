"""Side-by-side benchmark: Suricate vs Prosody 0.12 vs ejabberd 23.01 on loopback.

Each server runs as our own subprocess (own config and data directory under --workdir, never
the system service), pinned to one core with ``taskset``; the load generator
(bench/loadgen.py) runs in its own process pinned to the other core. Every server gets the
same accounts (SCRAM-SHA-256, 4096 iterations), the same certificate (EC P-256), its own
loopback address, and no rate limits.

    .venv/bin/python bench/run.py                          # all three, full sizes, prints table
    .venv/bin/python bench/run.py --write docs/performance.md
    .venv/bin/python bench/run.py --servers suricate --smoke   # what the CI smoke test runs

Measured, per server: start-up to accepting connections; SCRAM-SHA-256 logins/s over STARTTLS;
RSS per idle logged-in connection (plain and STARTTLS); one-to-one messages/s with p50/p99
latency at 5 pairs x 1 in flight and 100 pairs x 20 in flight (plain and STARTTLS); the full
login of an account with a 200-contact roster; over XMPP over WebSocket (RFC 7395, ``websocket``:
each server's own WebSocket endpoint, ws:// and wss:// on loopback), messages/s at 100 pairs x
20 in flight and RSS per idle connection; over BOSH (XEP-0124/0206, ``bosh``: each server's
mod_bosh at /http-bind, plain HTTP), messages/s at 50 pairs x 5 in flight with each session
holding one request and sending on a second (hold 1, wait 60, as Converse.js does), latency,
the generator's CPU, and RSS per idle session with its request held. Each figure is the median
of --repeat runs.
With messages, the server's CPU per message over the measured window (all its threads and
child processes): the steadier figure on a shared machine.

Archiving servers for the side-by-side MAM figures (docs/mam.md): ``suricate_mam`` (SQLite),
``suricate_mam_pg`` (PostgreSQL), ``prosody_mam`` (Prosody's mod_mam on internal storage),
``ejabberd_mam`` (ejabberd's mod_mam on mnesia), e.g.
``--servers suricate,suricate_mam,suricate_mam_pg,prosody_mam,ejabberd_mam --only messages``.

Memory as people connect (docs/performance.md): ``suricate_default`` runs the embedded
default's modules with a 50-contact roster per account, and ``--only rss_real`` holds
connections that log in as Conversations does (``loadgen.py hold --realistic``), e.g.
``--servers suricate_default --only rss,rss_real --users 2000 --repeat 1``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import platform
import re
import resource
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    DEFAULT_MODULES,
    byte_compile,
    c2s_listener,
    cpu_seconds,
    rss_kib,
    suricate_config,
    wait_port,
)

PY = sys.executable
LOADGEN = ROOT / "bench" / "loadgen.py"
ITERATIONS = 4096
SALT = b"suricate-bench-salt"  # one salt for all accounts: the generator caches SaltedPassword
PASSWORD = "pw"
ROSTER_OWNER = "r0"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def scram_keys(hash_name: str = "sha256") -> tuple[bytes, bytes]:
    salted = hashlib.pbkdf2_hmac(hash_name, PASSWORD.encode(), SALT, ITERATIONS)
    client_key = hmac.digest(salted, b"Client Key", hash_name)
    stored = hashlib.new(hash_name, client_key).digest()
    server = hmac.digest(salted, b"Server Key", hash_name)
    return stored, server


def account_names(users: int, contacts: int) -> list[str]:
    return [f"u{i}" for i in range(users)] + [f"c{i}" for i in range(contacts)] + [ROSTER_OWNER]


# -- servers -------------------------------------------------------------------------------------

@dataclass
class ServerSpec:
    name: str
    addr: str
    port: int
    workdir: Path
    cores: str
    proc: subprocess.Popen[bytes] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: The XMPP-over-WebSocket endpoint (RFC 7395), served (ws:// on ws_port, wss:// on
    #: wss_port) only while the websocket figures run: an HTTP listener costs start-up (aiohttp
    #: for Suricate) that the other figures must not carry.
    websocket: bool = False
    ws_path = "/ws-xmpp"
    #: XMPP over BOSH (XEP-0124/0206), plain HTTP on bosh_port, only while the bosh figures run
    bosh: bool = False
    bosh_path = "/http-bind"

    @property
    def bosh_port(self) -> int:
        return self.port + 3

    @property
    def ws_port(self) -> int:
        return self.port + 1  # every server has a loopback address of its own

    @property
    def wss_port(self) -> int:
        return self.port + 2

    def version(self) -> str:
        raise NotImplementedError

    def provision(self, names: list[str]) -> None:
        raise NotImplementedError

    def write_config(self, cert: Path, key: Path) -> None:
        raise NotImplementedError

    def command(self) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    def start(self) -> float:
        """Start the server; return seconds from spawn to accepting connections."""
        cmd, env = self.command()
        full_env = dict(os.environ)
        full_env.update(env)
        t0 = time.monotonic()
        self.proc = subprocess.Popen(["taskset", "-c", self.cores, *cmd], cwd=self.workdir,
                                     env=full_env, stdout=self.logfile(), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        return wait_port(self.port, 60, host=self.addr, proc=self.proc) - t0

    def logfile(self) -> Any:
        return open(self.workdir / "server.out", "ab")  # noqa: SIM115

    def stop(self) -> None:
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


class Suricate(ServerSpec):
    MODULES = ""  # extra [modules.*] tables

    def version(self) -> str:
        from suricate import __version__
        return f"Suricate {__version__} (Python {platform.python_version()})"

    def config_path(self) -> Path:
        return self.workdir / "suricate.toml"

    def write_config(self, cert: Path, key: Path) -> None:
        listener = c2s_listener(
            self.port, "backlog = 4096", "max_stanza_size = 262144", 'tls.mode = "starttls"',
            f'tls.certfile = "{cert}"', f'tls.keyfile = "{key}"', 'tls.verify_mode = "none"',
            host=self.addr)
        listeners = [listener]
        if self.websocket:
            for port, tls in ((self.ws_port, ""), (self.wss_port, f'tls.certfile = "{cert}"\n'
                                                   f'tls.keyfile = "{key}"\n')):
                listeners.append(
                    f'[[listen.http]]\nport = {port}\nip_address = "{self.addr}"\n{tls}'
                    'transport.max_connections = "infinity"\n'
                    f'[[listen.http.handlers.mod_websockets]]\nhost = "_"\n'
                    f'path = "{self.ws_path}"\nmax_stanza_size = 262144\n')
        if self.bosh:
            listeners.append(
                f'[[listen.http]]\nport = {self.bosh_port}\nip_address = "{self.addr}"\n'
                'transport.max_connections = "infinity"\n'
                f'[[listen.http.handlers.mod_bosh]]\nhost = "_"\npath = "{self.bosh_path}"\n')
        self.config_path().write_text(suricate_config(
            self.workdir / "suricate.db", listeners, loglevel="error", extra=self.MODULES,
            modules=(*DEFAULT_MODULES, "mod_muc", *(("mod_bosh",) if self.bosh else ())),
            auth=['sasl_mechanisms = ["scram_sha256", "plain"]', 'password.hash = ["sha256"]',
                  f"password.scram_iterations = {ITERATIONS}"]))
        if self.extra.get("workers"):
            # Workers are nodes of the Redis design (docs/cluster.md): the local Redis.
            path = self.config_path()
            path.write_text(path.read_text().replace(
                'loglevel = "error"', 'loglevel = "error"\nsm_backend = "redis"')
                + "\n[outgoing_pools.redis.default.connection]\n"
                f"database = {self.extra.get('redis_db', 0)}\n")

    def provision(self, names: list[str]) -> None:
        code = (
            "import asyncio\nfrom pathlib import Path\n"
            "from suricate.config import load_config\nfrom suricate.core.server import Server\n"
            "async def main():\n"
            f"    cfg = load_config(Path({str(self.config_path())!r}))\n"
            f"    s = Server(cfg, Path({str(self.workdir)!r}), {{}})\n"
            "    await s.storage.open()\n    await s.storage.close()\n"
            "asyncio.run(main())\n")
        subprocess.run([PY, "-c", code], cwd=ROOT, check=True)
        stored, server = scram_keys()
        b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
        record = (f"==MULTI_SCRAM==,{ITERATIONS},==SHA256=={b64(SALT)}|{b64(stored)}|"
                  f"{b64(server)}")
        db = sqlite3.connect(self.workdir / "suricate.db")
        with db:
            db.executemany(
                "INSERT OR REPLACE INTO users (server, username, password, pass_details, "
                "created_at) VALUES ('localhost', ?, NULL, ?, ?)",
                [(n, record, time.time()) for n in names])
        db.close()

    def command(self) -> tuple[list[str], dict[str, str]]:
        workers = self.extra.get("workers")
        extra = ["--workers", str(workers)] if workers else []
        return [PY, "-m", "suricate", "serve", "--config", str(self.config_path()), *extra], \
            {"PYTHONPATH": str(ROOT)}


class Prosody(ServerSpec):
    def version(self) -> str:
        out = subprocess.run(["prosodyctl", "about"], capture_output=True, text=True,
                             timeout=20).stdout
        m = re.search(r"Prosody ([\d.]+)", out)
        lua = re.search(r"(Lua [\d.]+)", out)
        return f"Prosody {m.group(1) if m else '?'} ({lua.group(1) if lua else 'Lua'})"

    def write_config(self, cert: Path, key: Path) -> None:
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        (self.workdir / "prosody.cfg.lua").write_text(f"""
pidfile = "{self.workdir}/prosody.pid"
data_path = "{self.workdir}/data"
log = {{ error = "{self.workdir}/prosody.log" }}
interfaces = {{ "{self.addr}" }}
c2s_ports = {{ {self.port} }}
c2s_interfaces = {{ "{self.addr}" }}
s2s_ports = {{ }}
component_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
network_backend = "epoll"
run_as_root = true  -- our own subprocess in a throwaway directory
-- Nagle off (asyncio and ejabberd set TCP_NODELAY; without it a login waits on delayed ACKs)
network_settings = {{ nagle = false; tcp_backlog = 4096; }}
authentication = "internal_hashed"
password_hash = "SHA-256"
default_iteration_count = {ITERATIONS}
c2s_require_encryption = false
allow_registration = false
storage = "internal"
modules_enabled = {{ "roster", "saslauth", "tls", "disco", "ping", "offline" }}
ssl = {{ certificate = "{cert}"; key = "{key}"; }}
VirtualHost "localhost"
Component "conference.localhost" "muc"
""")
        if self.websocket:
            # mod_websocket on Prosody's HTTP server, plain and TLS; loopback counts as secure
            # (consider_websocket_secure: what a TLS-ending proxy in front would make it)
            path = self.workdir / "prosody.cfg.lua"
            path.write_text(path.read_text().replace(
                "http_ports = { }\nhttps_ports = { }",
                f'http_ports = {{ {self.ws_port} }}\nhttp_interfaces = {{ "{self.addr}" }}\n'
                f'https_ports = {{ {self.wss_port} }}\nhttps_interfaces = {{ "{self.addr}" }}\n'
                f'https_ssl = {{ certificate = "{cert}"; key = "{key}"; }}\n'
                "consider_websocket_secure = true\ncross_domain_websocket = true").replace(
                'modules_enabled = { "roster"', 'modules_enabled = { "websocket", "roster"'))
        if self.bosh:
            # mod_bosh at /http-bind on Prosody's HTTP server; loopback counts as secure
            # (consider_bosh_secure: what a TLS-ending proxy in front would make it)
            path = self.workdir / "prosody.cfg.lua"
            path.write_text(path.read_text().replace(
                "http_ports = { }",
                f'http_ports = {{ {self.bosh_port} }}\nhttp_interfaces = {{ "{self.addr}" }}\n'
                "consider_bosh_secure = true\ncross_domain_bosh = true").replace(
                'modules_enabled = { "roster"', 'modules_enabled = { "bosh", "roster"'))

    def provision(self, names: list[str]) -> None:
        stored, server = scram_keys()
        accounts = self.workdir / "data" / "localhost" / "accounts"
        accounts.mkdir(parents=True, exist_ok=True)
        body = ("return {\n"
                f"\t[\"iteration_count\"] = {ITERATIONS};\n"
                f"\t[\"salt\"] = \"{SALT.decode()}\";\n"
                f"\t[\"server_key\"] = \"{server.hex()}\";\n"
                f"\t[\"stored_key\"] = \"{stored.hex()}\";\n"
                "};\n")
        for n in names:
            (accounts / f"{n}.dat").write_text(body)

    ws_path = "/xmpp-websocket"  # mod_websocket's

    def command(self) -> tuple[list[str], dict[str, str]]:
        return ["prosody", "--config", str(self.workdir / "prosody.cfg.lua"), "-F"], {}


class Ejabberd(ServerSpec):
    def version(self) -> str:
        lib = sorted(Path("/usr/lib/x86_64-linux-gnu").glob("ejabberd-*"))
        otp = subprocess.run(["erl", "-noshell", "-eval",
                              "io:format(\"~s\", [erlang:system_info(otp_release)]), halt()."],
                             capture_output=True, text=True, timeout=30).stdout.strip()
        ver = lib[0].name.split("-", 1)[1] if lib else "?"
        return f"ejabberd {ver} (Erlang/OTP {otp})"

    def write_config(self, cert: Path, key: Path) -> None:
        pem = self.workdir / "cert.pem"
        pem.write_text(cert.read_text() + key.read_text())
        (self.workdir / "spool").mkdir(parents=True, exist_ok=True)
        # No shaper, no c2s_shaper, a huge max_fsm_queue, backlog raised from 5: the defaults
        # rate-limit clients, which is not what this benchmark is about.
        (self.workdir / "ejabberd.yml").write_text(f"""
hosts: [localhost]
loglevel: error
certfiles: ["{pem}"]
listen:
  - port: {self.port}
    ip: "{self.addr}"
    module: ejabberd_c2s
    starttls: true
    backlog: 4096
    max_stanza_size: 262144
    max_fsm_queue: 1000000
{self._ws_listeners()}{self._bosh_listener()}auth_method: internal
auth_password_format: scram
auth_scram_hash: sha256
max_fsm_queue: 1000000
shaper: {{}}
shaper_rules: {{}}
acl: {{}}
access_rules:
  c2s: {{allow: all}}
modules:
  mod_roster: {{}}
  mod_disco: {{}}
  mod_ping: {{}}
  mod_offline: {{}}
  mod_muc: {{host: "conference.localhost", access_create: all, max_users: 1000}}
""" + ("  mod_bosh: {}\n" if self.bosh else ""))

    ws_path = "/ws"

    def _ws_listeners(self) -> str:
        """ejabberd_http with /ws -> ejabberd_http_ws (ws:// and wss://) when asked for."""
        if not self.websocket:
            return ""
        return "".join(f"""  - port: {port}
    ip: "{self.addr}"
    module: ejabberd_http
    tls: {tls}
    backlog: 4096
    request_handlers:
      {self.ws_path}: ejabberd_http_ws
""" for port, tls in ((self.ws_port, "false"), (self.wss_port, "true")))

    def _bosh_listener(self) -> str:
        """ejabberd_http with /http-bind -> mod_bosh (plain HTTP) when asked for."""
        if not self.bosh:
            return ""
        return f"""  - port: {self.bosh_port}
    ip: "{self.addr}"
    module: ejabberd_http
    tls: false
    backlog: 4096
    request_handlers:
      {self.bosh_path}: mod_bosh
"""

    def command(self) -> tuple[list[str], dict[str, str]]:
        # Not ejabberdctl: run as root it re-executes through `su ejabberd`, which resets the
        # open-file limit to 1024. The same erl command line, run directly, keeps ours.
        return ["erl", "-noinput", "+K", "true", "+P", "1000000", "-sname", self.sname(),
                "-mnesia", "dir", f'"{self.workdir / "spool"}"', "-s", "ejabberd",
                *self.extra.get("eval", [])], self._env()

    def sname(self) -> str:
        # The node name is tied to the mnesia directory (its schema names the node), and two
        # benchmarks on one machine (two work directories) must not share it: one name per
        # work directory, "ejbench" kept for a directory provisioned under that name.
        if (self.workdir / "accounts.done").exists() and not (self.workdir / "sname").exists():
            return "ejbench"
        name = "ejbench_" + hashlib.sha1(str(self.workdir).encode()).hexdigest()[:8]
        (self.workdir / "sname").write_text(name)
        return name

    def _env(self) -> dict[str, str]:
        return {"ERL_LIBS": "/usr/lib/x86_64-linux-gnu",
                "EJABBERD_CONFIG_PATH": str(self.workdir / "ejabberd.yml"),
                "EJABBERD_LOG_PATH": str(self.workdir / "ejabberd.log"),
                "ERL_MAX_PORTS": "65536", "ERL_INETRC": "/etc/ejabberd/inetrc",
                "HOME": str(self.workdir), "ERL_CRASH_DUMP": str(self.workdir / "crash.dump")}

    def provision(self, names: list[str]) -> None:
        # ejabberd_auth:try_register/3 through the running node (same hashing as ejabberdctl
        # register), in one -eval, then a clean stop.
        users = ",".join(f'<<"{n}">>' for n in names)
        code = (f"[ejabberd_auth:try_register(U, <<\"localhost\">>, <<\"{PASSWORD}\">>) "
                f"|| U <- [{users}]], init:stop().")
        script = self.workdir / "provision.erl-eval"
        script.write_text(code)
        self.extra["eval"] = ["-eval", code]
        try:
            self.start()
            assert self.proc is not None
            self.proc.wait(600)
        finally:
            self.extra.pop("eval", None)
            self.stop()


class SuricateMam(Suricate):
    """Suricate archiving every message (mod_mam, XEP-0313, default async writer)."""

    MODULES = "[modules.mod_mam]\n[modules.mod_mam.pm]\n"


class SuricateMamPg(SuricateMam):
    """The same on PostgreSQL (127.0.0.1:5432, user postgres, database suricate_bench_mam)."""

    DB = "suricate_bench_mam"

    def write_config(self, cert: Path, key: Path) -> None:
        super().write_config(cert, key)
        path = self.config_path()
        sqlite = f'driver = "sqlite"\ndatabase = "{self.workdir / "suricate.db"}"'
        path.write_text(path.read_text().replace(
            sqlite, f'driver = "pgsql"\nhost = "127.0.0.1"\ndatabase = "{self.DB}"\n'
            'username = "postgres"\npassword = ""'))

    def provision(self, names: list[str]) -> None:
        stored, server = scram_keys()
        b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
        record = (f"==MULTI_SCRAM==,{ITERATIONS},==SHA256=={b64(SALT)}|{b64(stored)}|"
                  f"{b64(server)}")
        code = (
            "import asyncio, time, asyncpg\nfrom pathlib import Path\n"
            "from suricate.config import load_config\nfrom suricate.core.server import Server\n"
            "async def main():\n"
            "    c = await asyncpg.connect(host='127.0.0.1', user='postgres', database='postgres')\n"
            f"    await c.execute('DROP DATABASE IF EXISTS {self.DB} WITH (FORCE)')\n"
            f"    await c.execute('CREATE DATABASE {self.DB}')\n    await c.close()\n"
            f"    cfg = load_config(Path({str(self.config_path())!r}))\n"
            f"    s = Server(cfg, Path({str(self.workdir)!r}), {{}})\n"
            "    await s.storage.open()\n    await s.storage.close()\n"
            f"    c = await asyncpg.connect(host='127.0.0.1', user='postgres', database='{self.DB}')\n"
            "    await c.executemany('INSERT INTO users (server, username, password, pass_details,"
            " created_at) VALUES ($1, $2, NULL, $3, $4)',"
            f" [('localhost', n, {record!r}, time.time()) for n in {names!r}])\n"
            "    await c.close()\n"
            "asyncio.run(main())\n")
        subprocess.run([PY, "-c", code], cwd=ROOT, check=True)


class SuricateInbox(Suricate):
    """Suricate keeping every account's inbox (mod_inbox, one upsert per conversation per
    tick) and chat markers (mod_smart_markers)."""

    MODULES = "[modules.mod_inbox]\n[modules.mod_smart_markers]\n"


class SuricateDefault(Suricate):
    """Suricate with the module set of the embedded default (suricate/core/defaults.py: SM,
    carbons, CSI, caps + PEP, MUC, MAM, blocking, SASL2/Bind2/FAST ...), without its HTTP
    listeners and upload; each account u<i> has a roster of REAL_CONTACTS contacts with
    subscription both: half of them other u accounts (online once the 'hold --realistic'
    connections are up), half c accounts that never log in. For ``--only rss_real``."""

    REAL_CONTACTS = 50

    def write_config(self, cert: Path, key: Path) -> None:
        from suricate.core.defaults import DEFAULT_MODULES as EMBEDDED
        plain = tuple(m for m in EMBEDDED if m not in ("mod_pubsub", "mod_http_upload"))
        self.MODULES = ('[modules.mod_pubsub]\nmax_items_node = 1000\n'
                        'ignore_pep_from_offline = false\n'
                        '[modules.mod_mam]\n[modules.mod_mam.pm]\n[modules.mod_mam.muc]\n')
        super().write_config(cert, key)
        path = self.config_path()
        text = path.read_text()
        head, _, _ = text.partition("[modules.mod_presence]")
        path.write_text(head + "\n".join(f"[modules.{m}]" for m in plain) + "\n")

    def provision(self, names: list[str]) -> None:
        super().provision(names)
        self.start()  # the modules' tables (mod_roster's) are made when the server starts
        self.stop()
        users = [n for n in names if n.startswith("u")]
        offline = [n for n in names if n.startswith("c")] or ["nobody"]
        half = self.REAL_CONTACTS // 2
        rows = []
        for i, u in enumerate(users):
            # symmetric: u<i> and u<i+k> (k = 1..half/2 either way) have each other
            near = {users[(i + k) % len(users)] for k in range(-half // 2, half - half // 2 + 1)
                    if k and len(users) > 1} - {u}
            far = {offline[(i + k) % len(offline)] for k in range(half)}
            rows += [("localhost", u, f"{c}@localhost", c, "both") for c in sorted(near | far)]
        db = sqlite3.connect(self.workdir / "suricate.db")
        with db:
            db.execute("DELETE FROM roster_items")
            db.executemany("INSERT INTO roster_items (server, username, jid, name, "
                           "subscription) VALUES (?, ?, ?, ?, ?)", rows)
        db.close()


class ProsodyMam(Prosody):
    """Prosody 0.12 archiving every message with the mod_mam it ships. Its archive is on
    Prosody's ``internal`` storage (one append-only file per account): the sql storage needs
    LuaDBI (lua-dbi-sqlite3), which Debian's prosody package does not pull in and which is
    not installed here. The per-account quota (1000 items by default, then a rewrite of the
    file to truncate it) is raised so that it never triggers during a run, and nothing
    expires."""

    def write_config(self, cert: Path, key: Path) -> None:
        super().write_config(cert, key)
        path = self.workdir / "prosody.cfg.lua"
        text = path.read_text().replace('"offline" }', '"offline", "mam" }')
        text = text.replace('VirtualHost "localhost"',
                            'default_archive_policy = true\n'
                            'archive_expires_after = "never"\n'
                            'storage_archive_item_limit = 100000000\n'
                            'VirtualHost "localhost"')
        path.write_text(text)


class EjabberdMam(Ejabberd):
    """ejabberd archiving every message: mod_mam with ``default: always`` on its default
    storage (mnesia, ejabberd's own database, as the sql storage needs a configured SQL
    server)."""

    def write_config(self, cert: Path, key: Path) -> None:
        super().write_config(cert, key)
        path = self.workdir / "ejabberd.yml"
        path.write_text(path.read_text().replace(
            "  mod_offline: {}\n",
            "  mod_offline: {}\n  mod_mam: {default: always, db_type: mnesia}\n"))

    def sname(self) -> str:
        # The node name is tied to the mnesia directory (its schema names the node), and two
        # benchmarks on one machine must not share it: one name per work directory.
        return "ejbench_" + hashlib.sha1(str(self.workdir).encode()).hexdigest()[:8]


SERVERS = {"suricate": (Suricate, "127.0.0.2"), "prosody": (Prosody, "127.0.0.3"),
           "ejabberd": (Ejabberd, "127.0.0.4"), "suricate_mam": (SuricateMam, "127.0.0.5"),
           "suricate_mam_pg": (SuricateMamPg, "127.0.0.6"),
           "suricate_inbox": (SuricateInbox, "127.0.0.7"),
           "prosody_mam": (ProsodyMam, "127.0.0.8"),
           "ejabberd_mam": (EjabberdMam, "127.0.0.9"),
           "suricate_default": (SuricateDefault, "127.0.0.10")}


# -- the generator ------------------------------------------------------------------------------

def loadgen(spec: ServerSpec, gen_cores: str, scenario: str, *args: str,
            timeout: float = 600) -> dict[str, Any]:
    cmd = ["taskset", "-c", gen_cores, PY, str(LOADGEN), scenario, "--host", spec.addr,
           "--port", str(spec.port), *args]  # a later --port in args wins (argparse)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                         stdin=subprocess.DEVNULL)
    if out.returncode != 0:
        raise RuntimeError(f"loadgen {scenario} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_rss(spec: ServerSpec, gen_cores: str, count: int, tls: bool,
                parallel: int, settle: float, realistic: bool = False,
                ws: bool = False, bosh: bool = False) -> float:
    port = spec.port
    extra = ["--realistic"] if realistic else []
    if ws or bosh:
        if ws:
            port = spec.wss_port if tls else spec.ws_port
            extra = ["--ws", spec.ws_path]
        else:
            port, extra = spec.bosh_port, ["--bosh", spec.bosh_path]
        # A first HTTP request before 'before': what a server loads for its first HTTP client
        # (Suricate imports aiohttp then, 13 MiB) is not a cost per connection.
        loadgen(spec, gen_cores, "hold", "--port", str(port), "--count", "1", "--settle", "0",
                "--max-hold", "30", *extra, *(["--tls"] if tls else []))
        time.sleep(settle)
    before = rss_kib(spec.pid)
    cmd = ["taskset", "-c", gen_cores, PY, str(LOADGEN), "hold", "--host", spec.addr,
           "--port", str(port), "--count", str(count), "--parallel", str(parallel),
           "--settle", str(settle), "--max-hold", "300"] + (["--tls"] if tls else []) + extra
    gen = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert gen.stdout is not None and gen.stdin is not None
        line = gen.stdout.readline()
        if not line:
            raise RuntimeError("hold generator died")
        held = json.loads(line)["held"]
        after = rss_kib(spec.pid)
        gen.stdin.write("close\n")
        gen.stdin.flush()
        gen.wait(120)
    finally:
        if gen.poll() is None:
            gen.kill()
            gen.wait(10)
    return (after - before) / held


@dataclass
class Sizes:
    users: int = 5000
    contacts: int = 200
    startups: int = 5
    repeat: int = 3
    seconds: float = 5.0
    warmup: float = 1.0
    login_users: int = 200
    parallel_logins: int = 50
    roster_logins: int = 10
    big_pairs: int = 100
    big_inflight: int = 20
    # BOSH: fewer pairs (each session is two HTTP requests out at a time, and the generator
    # is aiohttp's client, which costs more per message than the raw protocols)
    bosh_pairs: int = 50
    bosh_inflight: int = 5
    # seconds between start-up (or logins) and a measurement; long enough for idle connections
    # to reach their steady state (Suricate hibernates idle parsers after two 2 s sweeps)
    settle: float = 5.0


SMOKE = Sizes(users=20, contacts=5, startups=1, repeat=1, seconds=0.5, warmup=0.2,
              login_users=10, parallel_logins=4, roster_logins=2, big_pairs=4, big_inflight=2,
              bosh_pairs=2, bosh_inflight=2, settle=0.2)


def server_cpu_during(spec: ServerSpec, fn: Any) -> tuple[Any, float]:
    c0, t0 = cpu_seconds(spec.pid), time.monotonic()
    result = fn()
    return result, (cpu_seconds(spec.pid) - c0) / (time.monotonic() - t0)


def restart(spec: ServerSpec, sizes: Sizes) -> None:
    """A fresh server for each group of measurements: what an earlier group left behind
    (allocator pools, a grown heap, lingering sessions) must not weigh on the next."""
    spec.stop()
    time.sleep(0.3)
    spec.start()
    time.sleep(sizes.settle)


def bench_server(spec: ServerSpec, sizes: Sizes, gen_cores: str,
                 only: set[str] | None) -> dict[str, Any]:
    r: dict[str, Any] = {"version": spec.version()}

    def want(k: str) -> bool:
        return only is None or k in only

    if want("startup"):
        times = []
        for _ in range(sizes.startups):
            times.append(spec.start())
            spec.stop()
            time.sleep(0.3)
        r["startup_s"] = statistics.median(times)
        r["startup_all"] = times
        log(f"{spec.name}: start-up {times}")
    spec.start()
    time.sleep(sizes.settle / 2)
    try:
        if want("roster") and sizes.contacts:
            marker = spec.workdir / "roster.done"
            if not marker.exists():
                loadgen(spec, gen_cores, "make_roster", "--user", ROSTER_OWNER,
                        "--count", str(sizes.contacts), "--settle", str(sizes.settle))
                marker.write_text("ok")
            res = loadgen(spec, gen_cores, "roster", "--tls", "--user", ROSTER_OWNER,
                          "--count", str(sizes.roster_logins))
            r["roster_login_ms"] = res["roster_login_ms"]
            r["roster_items"] = res["items"]
            log(f"{spec.name}: roster {res}")
        if want("logins"):
            restart(spec, sizes)
            runs = []
            for _ in range(sizes.repeat):
                res, cpu = server_cpu_during(spec, lambda: loadgen(
                    spec, gen_cores, "logins", "--tls", "--users", str(sizes.login_users),
                    "--parallel", str(sizes.parallel_logins), "--seconds", str(sizes.seconds),
                    "--warmup", str(sizes.warmup), "--server-pid", str(spec.pid)))
                res["server_cpu"] = cpu
                runs.append(res)
                log(f"{spec.name}: logins {res}")
            r["logins_per_s"] = statistics.median(x["logins_per_s"] for x in runs)
            r["logins_gen_cpu"] = max(x["gen_cpu"] for x in runs)
            if all("server_cpu_ms_per_login" in x for x in runs):
                r["login_cpu_ms"] = statistics.median(x["server_cpu_ms_per_login"] for x in runs)
            r["logins_runs"] = runs
        for tls in (False, True):
            tag = "tls" if tls else "plain"
            for pairs, inflight in ((5, 1), (sizes.big_pairs, sizes.big_inflight)):
                key = f"msg_{pairs}x{inflight}_{tag}"
                if not want("messages"):
                    continue
                restart(spec, sizes)
                r[key] = message_figures(spec, sizes, gen_cores, key, [
                    "--pairs", str(pairs), "--inflight", str(inflight),
                    *(["--tls"] if tls else [])])
        if want("websocket"):
            websocket_figures(spec, sizes, gen_cores, r)
        if want("bosh"):
            bosh_figures(spec, sizes, gen_cores, r)
        if want("muc"):
            # bench/muc.py: groupchat fan-out, one sender per room (DESIGN §7 "Rooms").
            restart(spec, sizes)
            rooms, occupants = (2, 5) if sizes.users < 200 else (4, 50)
            runs = []
            for _ in range(sizes.repeat):
                cmd = ["taskset", "-c", gen_cores, PY, str(ROOT / "bench" / "muc.py"),
                       "--host", spec.addr, "--port", str(spec.port), "--rooms", str(rooms),
                       "--occupants", str(occupants), "--seconds", str(sizes.seconds),
                       "--warmup", str(sizes.warmup), "--server-pid", str(spec.pid)]
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
                if out.returncode != 0:
                    raise RuntimeError(f"bench/muc.py failed: {out.stderr[-2000:]}")
                runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
                log(f"{spec.name}: muc {runs[-1]}")
            r["muc_delivered_per_s"] = statistics.median(x["delivered_per_s"] for x in runs)
            r["muc_runs"] = runs
            if all("server_cpu_us_per_delivery" in x for x in runs):
                r["muc_cpu_us"] = statistics.median(
                    x["server_cpu_us_per_delivery"] for x in runs)
        if want("rss"):
            for tls in (False, True):
                key = "rss_tls_kib" if tls else "rss_plain_kib"
                # A fresh server for each: allocators (Erlang's, Lua's, pymalloc) keep what
                # the previous connections freed, which would hide the next ones' cost.
                restart(spec, sizes)
                r[key] = measure_rss(spec, gen_cores, sizes.users, tls, 100, sizes.settle)
                log(f"{spec.name}: {key} {r[key]:.1f}")
        if only is not None and "rss_real" in only:
            # Connections that log in as Conversations does (loadgen realistic_login), over
            # STARTTLS: a fresh server, as above. Only when asked for: the login needs the
            # modules of suricate_default (SM, carbons, PEP, MAM ...).
            restart(spec, sizes)
            r["rss_real_kib"] = measure_rss(spec, gen_cores, sizes.users, True, 100,
                                            sizes.settle, realistic=True)
            log(f"{spec.name}: rss_real_kib {r['rss_real_kib']:.1f}")
    finally:
        spec.stop()
    return r


def message_figures(spec: ServerSpec, sizes: Sizes, gen_cores: str, key: str,
                    args: list[str]) -> dict[str, Any]:
    """``sizes.repeat`` runs of ``loadgen.py messages`` with ``args`` (shape, transport)
    against the running server: the medians, the generator's highest CPU, every run."""
    args = [*args, "--settle", str(sizes.settle), "--seconds", str(sizes.seconds),
            "--warmup", str(sizes.warmup), "--server-pid", str(spec.pid)]
    runs = []
    for _ in range(sizes.repeat):
        res, cpu = server_cpu_during(spec, lambda: loadgen(spec, gen_cores, "messages", *args))
        res["server_cpu"] = cpu
        runs.append(res)
        log(f"{spec.name}: {key} {res}")
    fig: dict[str, Any] = {k: statistics.median(x[k] for x in runs)
                           for k in ("msgs_per_s", "p50_ms", "p99_ms")}
    if all("server_cpu_us_per_msg" in x for x in runs):
        fig["cpu_us"] = statistics.median(x["server_cpu_us_per_msg"] for x in runs)
    fig["gen_cpu"] = max(x["gen_cpu"] for x in runs)
    fig["server_cpu"] = statistics.median(x["server_cpu"] for x in runs)
    fig["runs"] = runs
    return fig


def websocket_figures(spec: ServerSpec, sizes: Sizes, gen_cores: str, r: dict[str, Any]) -> None:
    """XMPP over WebSocket (RFC 7395) through each server's own endpoint: messages/s at the
    big shape over ws:// and wss://, RSS per idle connection over ws://. The server is
    restarted with its HTTP listeners for these figures only, and without them after."""
    spec.websocket = True
    spec.write_config(*spec.extra["certs"])
    try:
        for tls in (False, True):
            tag = "tls" if tls else "plain"
            key = f"ws_{sizes.big_pairs}x{sizes.big_inflight}_{tag}"
            port = spec.wss_port if tls else spec.ws_port
            restart(spec, sizes)
            r[key] = message_figures(spec, sizes, gen_cores, key, [
                "--port", str(port), "--ws", spec.ws_path,
                "--pairs", str(sizes.big_pairs), "--inflight", str(sizes.big_inflight),
                *(["--tls"] if tls else [])])
        restart(spec, sizes)
        r["rss_ws_kib"] = measure_rss(spec, gen_cores, sizes.users, False, 100, sizes.settle,
                                      ws=True)
        log(f"{spec.name}: rss_ws_kib {r['rss_ws_kib']:.1f}")
    finally:
        spec.stop()
        spec.websocket = False
        spec.write_config(*spec.extra["certs"])  # what follows restarts the server


def bosh_figures(spec: ServerSpec, sizes: Sizes, gen_cores: str, r: dict[str, Any]) -> None:
    """XMPP over BOSH (XEP-0124/0206) through each server's own endpoint, plain HTTP:
    messages/s at ``bosh_pairs`` x ``bosh_inflight`` (each session holding one request and
    sending on a second, as Converse.js does), and RSS per idle session (its request held).
    The server is restarted with its HTTP listener for these figures only."""
    spec.bosh = True
    spec.write_config(*spec.extra["certs"])
    try:
        key = f"bosh_{sizes.bosh_pairs}x{sizes.bosh_inflight}"
        restart(spec, sizes)
        r[key] = message_figures(spec, sizes, gen_cores, key, [
            "--port", str(spec.bosh_port), "--bosh", spec.bosh_path,
            "--pairs", str(sizes.bosh_pairs), "--inflight", str(sizes.bosh_inflight)])
        restart(spec, sizes)
        r["rss_bosh_kib"] = measure_rss(spec, gen_cores, sizes.users, False, 100, sizes.settle,
                                        bosh=True)
        log(f"{spec.name}: rss_bosh_kib {r['rss_bosh_kib']:.1f}")
    finally:
        spec.stop()
        spec.bosh = False
        spec.write_config(*spec.extra["certs"])


# -- the table ---------------------------------------------------------------------------------

ROWS: list[tuple[str, Any, str, bool]] = [
    ("start-up to accepting connections (s)", lambda r: r.get("startup_s"), "{:.3f}", False),
    ("SCRAM-SHA-256 logins/s over STARTTLS", lambda r: r.get("logins_per_s"), "{:.0f}", True),
    ("server CPU per SCRAM-SHA-256 login (ms)", lambda r: r.get("login_cpu_ms"), "{:.2f}",
     False),
    ("RSS per idle connection, plain (KiB)", lambda r: r.get("rss_plain_kib"), "{:.1f}", False),
    ("RSS per idle connection, STARTTLS (KiB)", lambda r: r.get("rss_tls_kib"), "{:.1f}", False),
    ("RSS per connection, realistic login, STARTTLS (KiB)", lambda r: r.get("rss_real_kib"),
     "{:.1f}", False),
]
for _tag, _label in (("plain", "plain"), ("tls", "STARTTLS")):
    for _shape in ("5x1", "BIG"):
        ROWS.append((f"messages/s, {_shape} pairs x in flight, {_label}",
                     (lambda r, t=_tag, s=_shape: _msg(r, s, t, "msgs_per_s")), "{:.0f}", True))
        ROWS.append((f"latency p50 (ms), {_shape}, {_label}",
                     (lambda r, t=_tag, s=_shape: _msg(r, s, t, "p50_ms")), "{:.2f}", False))
        ROWS.append((f"latency p99 (ms), {_shape}, {_label}",
                     (lambda r, t=_tag, s=_shape: _msg(r, s, t, "p99_ms")), "{:.2f}", False))
        ROWS.append((f"server CPU per message (µs), {_shape}, {_label}",
                     (lambda r, t=_tag, s=_shape: _msg(r, s, t, "cpu_us")), "{:.1f}", False))
for _tag, _label in (("plain", "ws://"), ("tls", "wss://")):
    ROWS.append((f"WebSocket: messages/s, BIG pairs x in flight, {_label}",
                 (lambda r, t=_tag: _ws(r, t, "msgs_per_s")), "{:.0f}", True))
    ROWS.append((f"WebSocket: latency p99 (ms), BIG, {_label}",
                 (lambda r, t=_tag: _ws(r, t, "p99_ms")), "{:.2f}", False))
    ROWS.append((f"WebSocket: server CPU per message (µs), BIG, {_label}",
                 (lambda r, t=_tag: _ws(r, t, "cpu_us")), "{:.1f}", False))
ROWS.append(("WebSocket: RSS per idle connection, ws:// (KiB)", lambda r: r.get("rss_ws_kib"),
             "{:.1f}", False))
ROWS.append(("BOSH: messages/s, BOSHSHAPE pairs x in flight", lambda r: _bosh(r, "msgs_per_s"),
             "{:.0f}", True))
ROWS.append(("BOSH: latency p50 (ms)", lambda r: _bosh(r, "p50_ms"), "{:.2f}", False))
ROWS.append(("BOSH: latency p99 (ms)", lambda r: _bosh(r, "p99_ms"), "{:.2f}", False))
ROWS.append(("BOSH: server CPU per message (µs)", lambda r: _bosh(r, "cpu_us"), "{:.1f}",
             False))
ROWS.append(("BOSH: generator CPU (share of its core, highest run)",
             lambda r: _bosh(r, "gen_cpu"), "{:.2f}", False))
ROWS.append(("BOSH: RSS per idle session, one request held (KiB)",
             lambda r: r.get("rss_bosh_kib"), "{:.1f}", False))
ROWS.append(("MUC: messages delivered/s, 4 rooms x 50 occupants, STARTTLS",
             lambda r: r.get("muc_delivered_per_s"), "{:.0f}", True))
ROWS.append(("MUC: server CPU per delivered copy (µs)", lambda r: r.get("muc_cpu_us"),
             "{:.1f}", False))
ROWS.append(("login with a 200-contact roster, STARTTLS (ms)",
             lambda r: r.get("roster_login_ms"), "{:.1f}", False))


def _msg(r: dict[str, Any], shape: str, tag: str, field_name: str) -> float | None:
    for key, value in r.items():
        if not key.startswith("msg_") or not key.endswith("_" + tag):
            continue
        is_small = key.startswith("msg_5x1_")
        if (shape == "5x1") == is_small:
            return value.get(field_name)
    return None


def _ws(r: dict[str, Any], tag: str, field_name: str) -> float | None:
    for key, value in r.items():
        if key.startswith("ws_") and key.endswith("_" + tag) and isinstance(value, dict):
            return value.get(field_name)
    return None


def _bosh(r: dict[str, Any], field_name: str) -> float | None:
    for key, value in r.items():
        if key.startswith("bosh_") and isinstance(value, dict):
            return value.get(field_name)
    return None


def table(results: dict[str, dict[str, Any]], sizes: Sizes) -> str:
    names = list(results)
    peers = [n for n in names if n != "suricate"]
    head = ["| figure | " + " | ".join(names) + " | "
            + " | ".join(f"suricate / {p}" for p in peers) + " |"]
    head.append("|---" * (1 + len(names) + len(peers)) + "|")
    big = f"{sizes.big_pairs}x{sizes.big_inflight}"
    for label, get, fmt, _higher_better in ROWS:
        label = label.replace("BIG", big).replace(
            "BOSHSHAPE", f"{sizes.bosh_pairs}x{sizes.bosh_inflight}")
        if all(get(results[n]) is None for n in names):
            continue  # a figure none of the servers was measured for (--only)
        cells = []
        for n in names:
            v = get(results[n])
            cells.append(fmt.format(v) if v is not None else "-")
        ratios = []
        mine = get(results["suricate"]) if "suricate" in results else None
        for p in peers:
            theirs = get(results[p])
            ratios.append(f"{mine / theirs:.2f}" if mine and theirs else "-")
        head.append(f"| {label} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    return "\n".join(head)


def machine() -> str:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1]
    return (f"{cpu}, {os.cpu_count()} cores, {int(mem) // 1024} MiB RAM, Linux "
            f"{platform.release()}")


BEGIN, END = "<!-- bench/run.py: begin -->", "<!-- bench/run.py: end -->"


def write_block(path: Path, block: str) -> None:
    """Replace the generated block of ``path`` (between the markers), keeping the prose."""
    text = path.read_text() if path.exists() else (
        "# Performance: Suricate side by side with Prosody and ejabberd\n\n"
        f"{BEGIN}\n{END}\n")
    if BEGIN not in text or END not in text:
        text = text.rstrip("\n") + f"\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    path.write_text(f"{head}{BEGIN}\n{block}{END}{tail}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--servers", default="suricate,prosody,ejabberd")
    p.add_argument("--only", help="comma list: startup,logins,messages,websocket,bosh,rss,roster,"
                   "muc; and "
                   "rss_real (only when named; for suricate_default)")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/suricate-bench"))
    p.add_argument("--server-cores", default="0")
    p.add_argument("--gen-cores", default="1")
    p.add_argument("--port", type=int, default=5222)
    p.add_argument("--smoke", action="store_true", help="tiny sizes (CI: checks it works)")
    p.add_argument("--users", type=int)
    p.add_argument("--repeat", type=int)
    p.add_argument("--seconds", type=float)
    p.add_argument("--workers", type=int, help="Suricate worker processes (suricate serve --workers; "
                   "they use the Redis at 127.0.0.1:6379, database --redis-db)")
    p.add_argument("--redis-db", type=int, default=0)
    p.add_argument("--fresh", action="store_true", help="re-provision from scratch")
    p.add_argument("--json", type=Path, help="also write raw results here")
    p.add_argument("--write", type=Path, help="write the table as markdown here")
    a = p.parse_args()
    sizes = SMOKE if a.smoke else Sizes()
    if a.users is not None:
        sizes.users = a.users
    if a.repeat is not None:
        sizes.repeat = a.repeat
    if a.seconds is not None:
        sizes.seconds = a.seconds
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    only = set(a.only.split(",")) if a.only else None
    from suricate.net.certs import ensure_self_signed
    a.workdir.mkdir(parents=True, exist_ok=True)
    cert = ensure_self_signed(a.workdir / "certs", ["localhost"])[0]
    if any(name.startswith("suricate") for name in a.servers.split(",")):
        byte_compile()  # start-up as installed, not a compiler run: see byte_compile
    results: dict[str, dict[str, Any]] = {}
    names = account_names(sizes.users, sizes.contacts)
    for name in a.servers.split(","):
        cls, addr = SERVERS[name]
        workdir = a.workdir / name
        if a.fresh and workdir.exists():
            shutil.rmtree(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        spec = cls(name, addr, a.port, workdir, a.server_cores)
        if a.workers and name == "suricate":
            spec.extra["workers"] = a.workers
            spec.extra["redis_db"] = a.redis_db
        spec.extra["certs"] = (Path(cert.certfile), Path(cert.keyfile))
        spec.write_config(*spec.extra["certs"])
        marker = workdir / "accounts.done"
        if not marker.exists() or int(marker.read_text()) < len(names):
            log(f"{name}: provisioning {len(names)} accounts")
            t0 = time.monotonic()
            spec.provision(names)
            marker.write_text(str(len(names)))
            log(f"{name}: provisioned in {time.monotonic() - t0:.1f} s")
        results[name] = bench_server(spec, sizes, a.gen_cores, only)
    text = table(results, sizes)
    versions = "; ".join(r["version"] for r in results.values())
    print(text)
    print(f"\n{machine()}; {versions}")
    if a.json:
        a.json.write_text(json.dumps(results, indent=1, default=str))
    if a.write:
        load = os.getloadavg()
        block = (
            "Generated by `bench/run.py` (see its docstring and bench/loadgen.py). Each server "
            f"pinned to core {a.server_cores}, the load generator to core {a.gen_cores}, "
            "loopback only, same accounts (SCRAM-SHA-256, 4096 iterations), same EC P-256 "
            "certificate, no rate limits. Each figure is the median of "
            f"{sizes.repeat} runs ({sizes.seconds:g} s each after {sizes.warmup:g} s warm-up); "
            f"RSS over {sizes.users} idle logged-in connections. Ratios are Suricate / peer "
            "(above 1 is better for Suricate on rates, worse on times and memory).\n\n"
            f"Machine: {machine()}. Versions: {versions}. Load average at the end: "
            f"{load[0]:.2f} (the machine is shared: figures are noisy).\n\n"
            "    " + " ".join([Path(sys.executable).name, *sys.argv]) + "\n\n"
            + text + "\n")
        write_block(a.write, block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
