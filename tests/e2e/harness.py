"""End-to-end harness: a real Suricate server on free loopback ports, real clients over real
sockets and real TLS (slixmpp from PyPI, and a raw XML client for what no library does)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import inspect
import os
import random
import re
import socket
import ssl
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import slixmpp

from suricate.config import parse_config
from suricate.core.defaults import default_config_toml
from suricate.core.server import Server
from suricate.jid import JID
from suricate.modules import MODULES
from suricate.net.certs import ensure_self_signed

ALL_MODULES = (
    "mod_disco", "mod_ping", "mod_version", "mod_last", "mod_time", "mod_private", "mod_vcard",
    "mod_register", "mod_blocking", "mod_presence", "mod_roster", "mod_offline",
)
MODULES_TOML = "\n".join(f"[modules.{m}]" for m in ALL_MODULES if m in MODULES)


_HANDED_OUT: set[int] = set()


def _below_ephemeral() -> range:
    """Ports for test listeners: below the kernel's ephemeral range (Linux's
    net.ipv4.ip_local_port_range, 32768-60999 by default), so that no outgoing connection of
    this or another test process (a client, a Redis or PostgreSQL connection) is given one as
    its local port between ``free_port`` choosing it and the server binding it: with the
    kernel's own choice (bind to port 0) that happened under CI's two workers, a node then
    failing with "address already in use"."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return range(20000, max(low - 100, 20100))  # room for a listener's port + i


# Ports handed out by any test process on this machine (both xdist workers, other sessions):
# "port pid time" lines, read and rewritten under an exclusive lock. A port is bindable from
# ``free_port`` choosing it until its server binds it (a subprocess: seconds on a loaded
# machine); drawn in that window by another process too, one of the two servers failed with
# "address already in use" (a tests/e2e/test_extdisco.py server, in a full run with other test
# sessions on the machine). A claim outlives that window by far, and a port still in use
# after it has a listener, which the bind check sees.
_LEDGER = Path(tempfile.gettempdir()) / "suricate-test-ports"
_CLAIM_FOR = 600.0


def free_port() -> int:
    """A port nothing listens on now, chosen at random below the ephemeral range, that no
    test process on this machine was handed within the last ``_CLAIM_FOR`` seconds."""
    try:
        ledger = open(_LEDGER, "a+")  # noqa: SIM115 - held across the lock below
    except OSError:
        return _draw(set())
    with ledger:
        fcntl.flock(ledger, fcntl.LOCK_EX)
        ledger.seek(0)
        now = time.time()
        claims = []
        for line in ledger.read().splitlines():
            fields = line.split()
            with contextlib.suppress(ValueError, IndexError):
                if float(fields[2]) > now - _CLAIM_FOR:
                    claims.append((int(fields[0]), line))
        port = _draw({claimed for claimed, _ in claims})
        ledger.seek(0)
        ledger.truncate()
        ledger.writelines(f"{line}\n" for _, line in claims)
        ledger.write(f"{port} {os.getpid()} {now:.3f}\n")
        return port  # the lock goes with the file's closing


def _draw(claimed: set[int]) -> int:
    ports = _below_ephemeral()
    while True:
        port = random.choice(ports)
        if port in _HANDED_OUT or port in claimed:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue  # a listener of another process, or a connection's local port
        _HANDED_OUT.add(port)
        return port


def server_toml(tmp: Path, c2s_port: int, tls_port: int, extra: str = "",
                modules: str | None = None, c2s_extra: str = "",
                tls_mode: str = "starttls", auth_extra: str = "", pool_toml: str = "") -> str:
    default, _ = ensure_self_signed(tmp / "certs", ["localhost"])
    if modules is None:
        modules = MODULES_TOML
    return f"""
{general_toml("localhost")}
{c2s_listener_toml(c2s_port, default.certfile, default.keyfile, tls_mode)}
{c2s_extra}
{c2s_listener_toml(tls_port, default.certfile, default.keyfile, "tls")}
{auth_toml(auth_extra)}
{pool_toml or sqlite_pool_toml(tmp / 'suricate.db')}

{extra}

{modules}
"""


def general_toml(domain: str) -> str:
    return f"""
[general]
hosts = ["{domain}"]
default_server_domain = "{domain}"
loglevel = "info"
"""


def c2s_listener_toml(port: int, certfile: Any, keyfile: Any, tls_mode: str = "starttls") -> str:
    """A loopback c2s listener whose clients' certificates nobody checks."""
    return f"""
[[listen.c2s]]
port = {port}
ip_address = "127.0.0.1"
tls.mode = "{tls_mode}"
tls.certfile = "{certfile}"
tls.keyfile = "{keyfile}"
tls.verify_mode = "none"
"""


def auth_toml(methods: str = "") -> str:
    """``methods``: the line choosing the auth methods (default: rdbms)."""
    return f"""
[auth]
{methods or 'methods = ["rdbms"]'}
password.scram_iterations = 4096
"""


def sqlite_pool_toml(database: Path) -> str:
    return f"""
[outgoing_pools.rdbms.default.connection]
driver = "sqlite"
database = "{database}"
"""


#: Milliseconds: every ``running_server`` without a pool of its own gets its own PostgreSQL
#: database that far away (tests/latency_relay.py; docs/delivery.md, "A database a few
#: milliseconds away"). Unset in CI: a switch for walking the suites by hand.
SLOW_PG_ENV = "SURICATE_TEST_SLOW_PG_MS"


@contextlib.asynccontextmanager
async def running_server(tmp: Path, extra: str = "", modules: str | None = None,
                         c2s_extra: str = "", tls_mode: str = "starttls",
                         auth_extra: str = "", pool_toml: str = "") -> AsyncIterator[Server]:
    slow = os.environ.get(SLOW_PG_ENV)
    if slow and not pool_toml:
        from tests.latency_relay import postgresql_behind_relay

        async with postgresql_behind_relay(float(slow) / 1000) as pool_toml, running_server(
                tmp, extra, modules, c2s_extra, tls_mode, auth_extra, pool_toml) as server:
            yield server
        return
    c2s_port, tls_port = free_port(), free_port()
    toml = server_toml(tmp, c2s_port, tls_port, extra, modules, c2s_extra, tls_mode, auth_extra,
                       pool_toml)
    async with serving(tmp, toml, c2s_port=c2s_port, tls_port=tls_port) as server:
        yield server


@contextlib.asynccontextmanager
async def serving(tmp: Path, toml: str, http_handlers: Any = None,
                  **ports: int) -> AsyncIterator[Server]:
    """Start a server from ``toml``; each of ``ports`` becomes an attribute (``c2s_port``...)
    that the helpers below connect to. ``http_handlers``: the admin API's (GraphQL, REST)
    when the configuration has such a listener."""
    server = Server(parse_config(toml, tmp), tmp, MODULES, http_handlers=http_handlers)
    await server.start()
    for name, port in ports.items():
        setattr(server, name, port)
    try:
        yield server
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def serving_the_default(tmp: Path, users: tuple[str, ...] = (),
                              edit: Callable[[str], str] | None = None
                              ) -> AsyncIterator[Server]:
    """The embedded default's configuration (suricate/core/defaults.py) on free ports, its
    certificate made for the default's services, with ``users`` registered (password "pw");
    ``edit`` changes the TOML first."""
    cert, _ = ensure_self_signed(tmp / "certs", ["localhost"],
                                 services=("conference", "pubsub", "upload"))
    ports = {"c2s_port": free_port(), "tls_port": free_port()}
    toml = default_config_toml(cert.certfile, cert.keyfile, str(tmp / "suricate.db"),
                               http_port=free_port(), https_port=free_port(), **ports)
    async with serving(tmp, edit(toml) if edit else toml, **ports) as server:
        for user in users:
            await server.auth.register(JID.parse(f"{user}@localhost"), "pw")
        yield server


class Client(slixmpp.ClientXMPP):
    """A slixmpp client that trusts our test certificate and records what it receives."""

    def __init__(self, jid: str, password: str, **kwargs: Any) -> None:
        super().__init__(jid, password, **kwargs)
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.messages: asyncio.Queue[Any] = asyncio.Queue()
        self.presences: asyncio.Queue[Any] = asyncio.Queue()
        self.session_started = asyncio.get_event_loop().create_future()
        self.add_event_handler("session_start", self._on_start)
        self.add_event_handler("message", self.messages.put_nowait)
        self.add_event_handler("presence", self.presences.put_nowait)
        self.add_event_handler("failed_auth", self._on_failed)
        self.add_event_handler("disconnected", self._on_disconnected)

    def _on_start(self, _: Any) -> None:
        if not self.session_started.done():
            self.session_started.set_result(True)

    def _on_failed(self, _: Any) -> None:
        if not self.session_started.done():
            self.session_started.set_exception(PermissionError("authentication failed"))

    def _on_disconnected(self, _: Any) -> None:
        if not self.session_started.done():
            self.session_started.set_exception(ConnectionError("disconnected"))

    async def next_message(self, timeout: float = 5.0) -> Any:
        return await asyncio.wait_for(self.messages.get(), timeout)

    async def next_presence(self, timeout: float = 5.0, type_: str | None = None) -> Any:
        while True:
            pres = await asyncio.wait_for(self.presences.get(), timeout)
            if type_ is None or pres["type"] == type_:
                return pres


async def connect(server: Server, jid: str, password: str, direct_tls: bool = False,
                  plugins: tuple[str, ...] = (), timeout: float = 10.0,
                  **kwargs: Any) -> Client:
    client = Client(jid, password, **kwargs)
    for plugin in plugins:
        client.register_plugin(plugin)
    if direct_tls:
        client.enable_direct_tls = True
        client.enable_starttls = False
        client.connect("127.0.0.1", server.tls_port)  # type: ignore[attr-defined]
    else:
        client.enable_direct_tls = False
        client.enable_starttls = True
        client.connect("127.0.0.1", server.c2s_port)  # type: ignore[attr-defined]
    await asyncio.wait_for(client.session_started, timeout)
    return client


async def disconnect(*clients: Client) -> None:
    """Close each stream properly and wait for the server's closing tag."""
    pending = [client.disconnect() for client in clients]
    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.gather(*pending), 10)


class RawClient:
    """Speaks bytes: for protocol details and bad input no library will send."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buffer = b""

    @classmethod
    async def open(cls, port: int, tls: bool = False) -> RawClient:
        ctx = None
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
        return cls(reader, writer)

    async def send(self, data: str | bytes) -> None:
        self.writer.write(data.encode() if isinstance(data, str) else data)
        await self.writer.drain()

    async def expect(self, pattern: str, timeout: float = 5.0) -> str:
        """Read until ``pattern`` (a regexp over the decoded stream) matches; return the match
        and consume the buffer up to its end."""
        regex = re.compile(pattern.encode(), re.S)
        # A pattern that starts with ".*?" matches at the buffer's start if anywhere: search()
        # would try it again from every later position while waiting (quadratic in the
        # buffer, seconds with a backlog of stanzas); match() is the same answer in one pass.
        find = regex.match if pattern.startswith(".*?") else regex.search
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            m = find(self.buffer)
            if m:
                self.buffer = self.buffer[m.end():]
                return m.group(0).decode()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"timeout waiting for {pattern!r}; got {self.buffer!r}")
            chunk = await asyncio.wait_for(self.reader.read(65536), remaining)
            if not chunk:
                raise AssertionError(f"connection closed waiting for {pattern!r}; "
                                     f"got {self.buffer!r}")
            self.buffer += chunk

    async def closed(self, timeout: float = 5.0) -> bytes:
        """Wait for the server to close; return what arrived meanwhile."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            chunk = await asyncio.wait_for(self.reader.read(65536), deadline - loop.time())
            if not chunk:
                return self.buffer
            self.buffer += chunk

    async def open_stream(self, to: str = "localhost") -> str:
        await self.send(
            f"<?xml version='1.0'?><stream:stream to='{to}' xmlns='jabber:client' "
            "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")
        return await self.expect(r"</stream:features>|<stream:features/>")

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


async def eventually(check: Any, timeout: float = 5.0, interval: float = 0.02) -> None:
    """Wait until ``check()`` (awaited if it returns an awaitable) is true: state the server
    reaches asynchronously."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await _value(check()):
        if loop.time() > deadline:
            raise AssertionError(f"condition not reached in {timeout} s: {check}")
        await asyncio.sleep(interval)


async def _value(result: Any) -> Any:
    return await result if inspect.isawaitable(result) else result
