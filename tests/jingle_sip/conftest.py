"""mod_jingle_sip with real parts: a Suricate server, slixmpp clients and SIPp (Debian's
``sip-tester``) as the SIP peer, each over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from suricate.core.server import Server
from suricate.jid import JID
from suricate.modules.mod_jingle_sip import ModJingleSip
from tests.e2e.harness import (
    MODULES_TOML,
    Client,
    disconnect,
    eventually,
    free_port,
    running_server,
)

JINGLE = "urn:xmpp:jingle:1"
SCENARIOS = Path(__file__).parent / "scenarios"


def need_sipp() -> str:
    """SIPp's path; skipped without it, except under CI=true where its absence fails."""
    path = shutil.which("sipp")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("sipp is not installed (Debian package sip-tester, .ci/install-peers)")
        pytest.skip("sipp is not installed (Debian package sip-tester, .ci/install-peers)")
    return path


class JingleClient(Client):
    """A slixmpp client that queues the Jingle IQs it receives and acknowledges them, as a
    Jingle client does (XEP-0166 §6.3)."""

    def __init__(self, jid: str, password: str, **kwargs: Any) -> None:
        super().__init__(jid, password, **kwargs)
        self.jingles: asyncio.Queue[ET.Element] = asyncio.Queue()
        self.register_handler(Callback(
            "jingle", MatchXPath(f"{{jabber:client}}iq/{{{JINGLE}}}jingle"), self._jingle))

    def _jingle(self, iq: Any) -> None:
        if iq["type"] != "set":
            return
        self.jingles.put_nowait(iq.xml.find(f"{{{JINGLE}}}jingle"))
        iq.reply().send()

    async def next_jingle(self, action: str | None = None, timeout: float = 5.0) -> ET.Element:
        while True:
            jingle = await asyncio.wait_for(self.jingles.get(), timeout)
            if action is None or jingle.get("action") == action:
                return jingle

    async def jingle_set(self, to: str, payload: str) -> Any:
        iq = self.make_iq_set(ito=to)
        iq.append(ET.fromstring(payload))
        return await iq.send(timeout=5)


@dataclass
class Bridge:
    server: Server
    sip_port: int  # the bridge's listen_port
    proxy_port: int  # where SIPp listens as the "proxy"
    tmp: Path

    @property
    def module(self) -> ModJingleSip:
        module = self.server.modules["mod_jingle_sip"]
        assert isinstance(module, ModJingleSip)
        return module


def bridge_toml(sip_port: int, proxy_port: int, transport: str = "udp", extra: str = "") -> str:
    return MODULES_TOML + f"""
[modules.mod_jingle_sip]
proxy_host = "localhost"
proxy_port = {proxy_port}
listen_port = {sip_port}
local_host = "127.0.0.1"
sdp_origin = "192.0.2.10"
transport = "{transport}"
{extra}
"""


@contextlib.asynccontextmanager
async def bridge(tmp: Path, transport: str = "udp", extra: str = "",
                 proxy_port: int | None = None,
                 sip_port: int | None = None) -> AsyncIterator[Bridge]:
    sip_port, proxy = sip_port or free_port(), proxy_port or free_port()
    async with running_server(tmp, modules=bridge_toml(sip_port, proxy, transport,
                                                       extra)) as server:
        for user in ("alice", "bob"):
            await server.auth.register(JID.parse(f"{user}@localhost"), f"{user}-pw")
        yield Bridge(server, sip_port, proxy, tmp)


@contextlib.asynccontextmanager
async def jingle_client(b: Bridge, jid: str) -> AsyncIterator[JingleClient]:
    """A logged-in, available client (an INVITE rings available resources only)."""
    user = jid.split("@")[0]
    c = JingleClient(jid, f"{user}-pw")
    c.enable_direct_tls = False
    c.enable_starttls = True
    c.connect("127.0.0.1", b.server.c2s_port)  # type: ignore[attr-defined]
    await asyncio.wait_for(c.session_started, 10)
    c.send_presence()
    bare = JID.parse(jid).bare
    await eventually(lambda: b.server.sessions.available(bare))
    try:
        yield c
    finally:
        await disconnect(c)


class Sipp:
    """One SIPp run of a scenario file; ``wait()`` is its exit status (0: every call of the
    scenario passed, including its body checks)."""

    def __init__(self, proc: asyncio.subprocess.Process, log_dir: Path) -> None:
        self.proc = proc
        self.log_dir = log_dir

    async def wait(self, timeout: float = 15.0) -> int:
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        return self.proc.returncode if self.proc.returncode is not None else -1

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("*.log")))

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


async def sipp(tmp: Path, scenario: str, port: int, remote: int | None = None,
               transport: str = "udp") -> Sipp:
    """Start SIPp on 127.0.0.1:``port`` for one call of ``scenario``: as a UAS when
    ``remote`` is None, else calling 127.0.0.1:``remote``."""
    exe = need_sipp()
    log_dir = tmp / f"sipp-{scenario}-{port}"
    log_dir.mkdir()
    args = [exe, "-sf", str(SCENARIOS / scenario), "-i", "127.0.0.1", "-p", str(port),
            "-mp", str(free_port()), "-m", "1", "-timeout", "12", "-timeout_error",
            "-nostdin", "-trace_err", "-trace_msg",
            "-t", "u1" if transport == "udp" else "t1"]
    if remote is not None:
        args.insert(1, f"127.0.0.1:{remote}")
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=log_dir, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    if remote is None:  # a UAS: the test's first request must find it listening
        await eventually(lambda: bound(port, transport), timeout=5)
    return Sipp(proc, log_dir)


def bound(port: int, transport: str) -> bool:
    """Whether something listens on ``port`` (the kernel's socket tables, Linux)."""
    table = Path("/proc/net/udp" if transport == "udp" else "/proc/net/tcp")
    wanted = f":{port:04X}"
    for line in table.read_text().splitlines()[1:]:
        fields = line.split()
        # tcp: state 0A is LISTEN
        if fields[1].endswith(wanted) and (transport == "udp" or fields[3] == "0A"):
            return True
    return False
