"""go-sendxmpp (Debian 12's 0.5.6, on go-xmpp), what operators' scripts send alerts with,
against a server that requires STARTTLS and serves direct TLS on a second port, as the
embedded default does (docs/compliance.md, "Components and scripts"). Skipped without the
binary (``.ci/install-peers`` installs ``go-sendxmpp``), failed without it under
``CI=true``."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from slixmpp import JID as SJID
from slixmpp.xmlstream import ET

from suricate.core.server import Server
from suricate.jid import JID
from tests.e2e.harness import MODULES_TOML, connect, disconnect, running_server

ROOM = "alerts@conference.localhost"


def _go_sendxmpp() -> str:
    path = shutil.which("go-sendxmpp")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("go-sendxmpp missing under CI=true (.ci/install-peers installs it)")
        pytest.skip("go-sendxmpp is not installed (.ci/install-peers installs it)")
    return path


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with running_server(tmp_path, modules=MODULES_TOML + "\n[modules.mod_muc]\n",
                              tls_mode="starttls_required") as srv:
        for user in ("alice", "bob"):
            await srv.auth.register(JID.parse(f"{user}@localhost"), "pass")
        yield srv


async def _send(binary: str, home: Path, port: int, *args: str, stdin: str) -> str:
    """One run of go-sendxmpp as a script runs it: the account on the command line, the
    message on standard input, -n for the self-signed certificate (its only way to accept
    one). Its own HOME: no configuration file of the machine's user is read."""
    process = await asyncio.create_subprocess_exec(
        binary, "-n", "-u", "alice@localhost", "-p", "pass", "-j", f"127.0.0.1:{port}",
        *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, env={"HOME": str(home), "PATH": os.environ["PATH"]})
    out, _ = await asyncio.wait_for(process.communicate(stdin.encode()), 10)
    assert process.returncode == 0, out
    return out.decode(errors="replace")


async def test_go_sendxmpp_alerts_a_user_and_a_room(server: Server, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """Walked: a message to a user over STARTTLS (required) and over direct TLS, a message
    to a room (-c: it joins, sends and leaves), and raw XML (--raw). go-sendxmpp 0.5.6 logs
    in with PLAIN over TLS although SCRAM-SHA-* (and -PLUS) are offered: its go-xmpp takes
    PLAIN whenever TLS is up; no SASL2, no stream management."""
    binary = _go_sendxmpp()
    bob = await connect(server, "bob@localhost/desk", "pass", plugins=("xep_0045",))
    try:
        bob.send_presence()
        # a room for the alerts, opened for others (an instant room, XEP-0045 §10.1.2)
        await bob.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "bob", timeout=5)
        owner = bob.make_iq_set(ito=SJID(ROOM))
        owner.append(ET.fromstring("<query xmlns='http://jabber.org/protocol/muc#owner'>"
                                   "<x xmlns='jabber:x:data' type='submit'/></query>"))
        await owner.send(timeout=5)

        with caplog.at_level(logging.INFO, logger="suricate.c2s"):
            await _send(binary, tmp_path, server.c2s_port,  # type: ignore[attr-defined]
                        "bob@localhost", stdin="disk full on host1\n")
            msg = await _next(bob.messages, "disk full on host1")
            assert msg["type"] == "chat" and str(msg["from"].bare) == "alice@localhost"
        assert "mech=PLAIN" in caplog.text

        await _send(binary, tmp_path, server.tls_port,  # type: ignore[attr-defined]
                    "-t", "bob@localhost", stdin="over direct TLS\n")
        await _next(bob.messages, "over direct TLS")

        await _send(binary, tmp_path, server.c2s_port,  # type: ignore[attr-defined]
                    "-a", "alertbot", "-c", ROOM, stdin="deploy done\n")
        msg = await _next(bob.messages, "deploy done")
        assert msg["type"] == "groupchat" and str(msg["from"]) == f"{ROOM}/alertbot"

        await _send(binary, tmp_path, server.c2s_port,  # type: ignore[attr-defined]
                    "--raw", stdin="<message to='bob@localhost' type='chat'>"
                                   "<body>raw alert</body></message>\n")
        await _next(bob.messages, "raw alert")
    finally:
        await disconnect(bob)


async def _next(messages: asyncio.Queue[Any], body: str) -> Any:
    while True:
        msg = await asyncio.wait_for(messages.get(), 5)
        if msg["body"] == body:
            return msg
