"""bitlbee 3.6 (Debian 12's), an IRC server that logs into XMPP as a client for its IRC
users, against a server that requires STARTTLS (docs/compliance.md, "Components and
scripts"). bitlbee runs as a daemon of its own on a free port; skipped without it
(``.ci/install-peers`` installs ``bitlbee``), failed without it under ``CI=true``."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from slixmpp import JID as SJID
from slixmpp.xmlstream import ET

from suricate.core.server import Server
from suricate.jid import JID
from tests.e2e.harness import (
    MODULES_TOML,
    Client,
    connect,
    disconnect,
    free_port,
    server_toml,
    serving,
)
from tests.e2e.test_biboumi import Irc, debian_binary, start_logged, stop_process

ROOM = "tea@conference.localhost"


def _xmpp_port() -> int:
    """bitlbee 3.6 connects to ports 5220 to 5229 only ("Incorrect port number"): a free one
    of those past the standard 5222 and 5223."""
    for port in range(5224, 5230):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.skip("no free port between 5224 and 5229 for bitlbee")


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    c2s, tls = _xmpp_port(), free_port()
    toml = server_toml(tmp_path, c2s, tls, modules=MODULES_TOML + "\n[modules.mod_muc]\n",
                       tls_mode="starttls_required")
    async with serving(tmp_path, toml, c2s_port=c2s, tls_port=tls) as srv:
        for user in ("alice", "bob"):
            await srv.auth.register(JID.parse(f"{user}@localhost"), "pass")
        yield srv


@pytest.fixture
def bitlbee(tmp_path: Path) -> Iterator[int]:
    """A bitlbee daemon (one process for every IRC user), its accounts in the test's
    folder."""
    binary = debian_binary("bitlbee", "bitlbee")
    port = free_port()
    data = tmp_path / "bitlbee"
    data.mkdir()
    conf = tmp_path / "bitlbee.conf"
    conf.write_text(f"""[settings]
RunMode = Daemon
DaemonInterface = 127.0.0.1
DaemonPort = {port}
AuthMode = Open
ConfigDir = {data}
PidFile = {tmp_path / 'bitlbee.pid'}
""")
    process = start_logged([binary, "-D", "-n", "-c", str(conf), "-d", str(data)],
                           tmp_path / "bitlbee.log")
    try:
        yield port
    finally:
        stop_process(process)


async def test_bitlbee_logs_in_and_chats(server: Server, bitlbee: int) -> None:
    """Walked: an IRC user of bitlbee adds an XMPP account on the server (STARTTLS, the
    self-signed certificate accepted with tls_verify false), logs in (PLAIN: bitlbee 3.6
    knows no SCRAM), adds a contact, chats both ways, and talks in a room."""
    bob = await connect(server, "bob@localhost/desk", "pass", plugins=("xep_0045",))
    irc = await Irc.login(bitlbee, "alice")
    try:
        bob.send_presence()
        await bob.get_roster(timeout=5)
        await bob.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "bob", timeout=5)
        owner = bob.make_iq_set(ito=SJID(ROOM))
        owner.append(ET.fromstring("<query xmlns='http://jabber.org/protocol/muc#owner'>"
                                   "<x xmlns='jabber:x:data' type='submit'/></query>"))
        await owner.send(timeout=5)

        def control(command: str) -> None:
            irc.send(f"PRIVMSG &bitlbee :{command}")

        await irc.expect("JOIN :&bitlbee")
        control("account add jabber alice@localhost pass")
        await irc.expect("Account successfully added")
        control("account jabber set server 127.0.0.1")
        control(f"account jabber set port {server.c2s_port}")  # type: ignore[attr-defined]
        control("account jabber set tls_verify false")
        control("account jabber on")
        await irc.expect("jabber - Logging in: Logged in", timeout=10)
        control("add jabber bob@localhost")
        await irc.expect(":bob!bob@localhost JOIN :&bitlbee", timeout=10)
        irc.send("PRIVMSG bob :hello bob from bitlbee")
        msg = await _message(bob, "hello bob from bitlbee")
        assert str(msg["from"].bare) == "alice@localhost" and msg["type"] == "chat"
        bob.send_message(mto=msg["from"], mbody="hi from bob", mtype="chat")
        await irc.expect(":bob!bob@localhost PRIVMSG alice :hi from bob")

        control(f"chat add jabber {ROOM} #tea")
        await irc.expect("Chatroom successfully added")
        irc.send("JOIN #tea")
        await irc.expect(" 366 alice #tea ")
        irc.send("PRIVMSG #tea :hello room")
        msg = await _message(bob, "hello room")
        assert msg["type"] == "groupchat" and str(msg["from"]) == f"{ROOM}/alice"
        bob.send_message(mto=SJID(ROOM), mbody="room reply", mtype="groupchat")
        await irc.expect("PRIVMSG #tea :room reply")
    finally:
        irc.close()
        await disconnect(bob)


async def _message(client: Client, body: str) -> Any:
    while True:
        msg = await client.next_message(timeout=10)
        if msg["body"] == body:
            return msg
