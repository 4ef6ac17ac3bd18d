"""biboumi 9.0, the XMPP <-> IRC gateway (XEP-0114 component), against Suricate's component
listener (docs/compliance.md, "Components and scripts"). The first tests replay the exact
stanzas biboumi and its users exchanged during the walk, over real sockets and TLS for the
users; the last one runs biboumi itself against ngircd (Debian's ``biboumi`` and ``ngircd``;
skipped without them, failed without them under ``CI=true``)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from slixmpp import JID as SJID
from slixmpp.xmlstream import ET
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from suricate.core.server import Server
from suricate.jid import JID
from tests.e2e.harness import (
    MODULES_TOML,
    RawClient,
    connect,
    disconnect,
    eventually,
    free_port,
    running_server,
)
from tests.e2e.test_component import handshake_digest

SECRET = "biboumisecret"
GATEWAY = "biboumi.localhost"
MAM = "urn:xmpp:mam:2"
MODULES = MODULES_TOML + """
[modules.mod_muc]
[modules.mod_mam]
async_writer.flush_interval = 100
[modules.mod_mam.pm]
"""


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    port = free_port()
    component = f"""
[[listen.component]]
port = {port}
ip_address = "127.0.0.1"
password = "{SECRET}"
"""
    async with running_server(tmp_path, extra=component, modules=MODULES,
                              tls_mode="starttls_required") as srv:
        srv.component_port = port  # type: ignore[attr-defined]
        for user in ("alice", "bob"):
            await srv.auth.register(JID.parse(f"{user}@localhost"), "pass")
        yield srv


async def biboumi_stream(server: Server) -> RawClient:
    """What biboumi 9.0 sends to log in (no XML declaration, no version, a namespaced
    <handshake/>), byte for byte."""
    raw = await RawClient.open(server.component_port)  # type: ignore[attr-defined]
    await raw.send(f"<stream:stream to='{GATEWAY}' xmlns:stream='http://etherx.jabber.org/"
                   "streams' xmlns='jabber:component:accept'>")
    header = await raw.expect(r"<stream:stream[^>]*>")
    stream_id = header.split("id='")[1].split("'")[0]
    digest = handshake_digest(stream_id, SECRET)
    await raw.send(f"<handshake xmlns='jabber:component:accept'>{digest}</handshake>")
    await raw.expect("<handshake/>")
    return raw


async def test_the_gateways_rooms_hear_their_users_leave_when_the_server_stops(
        server: Server) -> None:
    """Walked: alice in an IRC channel through biboumi, Suricate stopped (SIGTERM). The
    gateway got system-shutdown but never alice's unavailable presence: the session's end is
    announced by close hooks that ran after the component stream was already gone, so alice
    stayed in the channel on the IRC side (a ghost until biboumi's own timeouts) although
    RFC 6121 §4.6.3 has the server tell every entity she sent directed presence to. Remote
    rooms over s2s were told (the s2s streams close later); components were not."""
    room = f"#room%irc.localhost@{GATEWAY}"
    gateway = await biboumi_stream(server)
    alice = await connect(server, "alice@localhost/walk", "pass")
    alice.send_presence()
    # slixmpp's join (XEP-0045 §7.2.2), and biboumi's answer once the IRC JOIN is through
    join = alice.make_presence(pto=f"{room}/alice")
    join.xml.append(ET.fromstring("<x xmlns='http://jabber.org/protocol/muc'/>"))
    join.send()
    await gateway.expect(rf"<presence [^>]*to=\"{room}/alice\"[^>]*>.*?</presence>")
    await gateway.send(
        f"<presence from='{room}/alice' to='alice@localhost/walk'>"
        "<x xmlns='http://jabber.org/protocol/muc#user'><status code='100'/>"
        "<status code='210'/><status code='110'/><item affiliation='none' "
        f"jid='alice%irc.localhost@{GATEWAY}/~alice@127.0.0.1' role='participant'/></x>"
        "</presence>")
    while str((await alice.next_presence())["from"]) != f"{room}/alice":
        pass
    await server.stop()
    out = (await gateway.closed()).decode()
    leave = re.search(rf"<presence (?=[^>]*type=\"unavailable\")(?=[^>]*from=\"alice@localhost"
                      rf"/walk\")[^>]*to=\"{re.escape(room)}/alice\"", out)
    assert leave is not None and leave.start() < out.index("<system-shutdown"), out
    await disconnect(alice)
    await gateway.close()


async def test_private_messages_from_irc_users_are_archived(server: Server) -> None:
    """biboumi marks every message it sends a user with XEP-0334 <no-copy/> and XEP-0280
    <private/>: the IRC server's notices, and private messages from IRC users. The account's
    archive kept none of them (any element of the carbons namespace was taken for a carbon
    copy), so a second device never saw the IRC side of a private conversation.
    <private/> only keeps a message from being copied to other resources (XEP-0280 §6);
    XEP-0313 §5.1.1 archives chat messages with a body, as MongooseIM and Prosody do."""
    gateway = await biboumi_stream(server)
    alice = await connect(server, "alice@localhost/walk", "pass")
    results: asyncio.Queue[Any] = asyncio.Queue()
    alice.register_handler(Callback("mam", MatchXPath(f"{{jabber:client}}message/{{{MAM}}}result"),
                                    results.put_nowait))
    carol = f"carol%irc.localhost@{GATEWAY}"
    try:
        alice.send_message(mto=SJID(carol), mbody="psst", mtype="chat")
        await gateway.expect(r"<body>psst</body>")
        # the gateway's exact stanza
        await gateway.send(
            f"<message from='{carol}' to='alice@localhost/walk' type='chat'>"
            "<no-copy xmlns='urn:xmpp:hints'/><private xmlns='urn:xmpp:carbons:2'/>"
            "<body>psst back</body></message>")
        assert (await alice.next_message())["body"] == "psst back"

        async def archived() -> list[str]:
            iq = alice.make_iq_set()
            iq.append(ET.fromstring(f"<query xmlns='{MAM}'/>"))
            await iq.send(timeout=5)
            bodies = []
            while not results.empty():
                bodies.append(results.get_nowait().xml.find(".//{jabber:client}body").text)
            return bodies

        expected = ["psst", "psst back"]
        await eventually(lambda: _equal(archived(), expected), interval=0.1)
    finally:
        await disconnect(alice)
        await gateway.close()


async def _equal(bodies: Any, expected: list[str]) -> bool:
    return await bodies == expected


# -- biboumi itself, with ngircd --------------------------------------------------------------

def debian_binary(name: str, package: str) -> str:
    """A Debian binary; skipped without it (install: .ci/install-peers), failed under
    CI=true."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} missing under CI=true (.ci/install-peers installs {package})")
        pytest.skip(f"{name} is not installed (.ci/install-peers installs {package})")
    return path


class Irc:
    """An IRC user on a raw socket (RFC 2812): lines in, lines out."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def login(cls, port: int, nick: str) -> Irc:
        for _ in range(50):  # ngircd is starting
            try:
                irc = cls(*await asyncio.open_connection("127.0.0.1", port))
                break
            except OSError:
                await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"no IRC server on port {port}")
        irc.send(f"NICK {nick}", f"USER {nick} 0 * :{nick}")
        await irc.expect(" 001 ")
        return irc

    def send(self, *lines: str) -> None:
        self.writer.write("".join(f"{line}\r\n" for line in lines).encode())

    async def expect(self, needle: str, timeout: float = 5.0) -> str:
        async def read() -> str:
            while True:
                line = (await self.reader.readline()).decode(errors="replace")
                if not line:
                    raise AssertionError(f"IRC connection closed waiting for {needle!r}")
                if line.startswith("PING"):
                    self.send("PONG" + line[4:].rstrip("\r\n"))
                elif needle in line:
                    return line.rstrip("\r\n")
        return await asyncio.wait_for(read(), timeout)

    def close(self) -> None:
        self.writer.close()


def start_logged(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


async def stop_in_loop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to a process that says goodbye over a stream this test's server serves: the
    loop must keep running meanwhile (biboumi waits for the server's </stream:stream>)."""
    process.terminate()
    for _ in range(100):
        if process.poll() is not None:
            return
        await asyncio.sleep(0.05)
    stop_process(process)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@pytest.fixture
def ngircd(tmp_path: Path) -> Iterator[int]:
    """ngircd of its own on a free port, with its own configuration (not the packaged
    service), without its flood penalties (1 to 2 s per command: biboumi's join would take
    5 s)."""
    binary = debian_binary("ngircd", "ngircd")
    port = free_port()
    conf = tmp_path / "ngircd.conf"
    conf.write_text(f"""[Global]
Name = irc.localhost
Info = Suricate's test IRC server
Listen = 127.0.0.1
Ports = {port}
PidFile = {tmp_path / 'ngircd.pid'}
MotdPhrase = hello
[Limits]
MaxPenaltyTime = 0
[Options]
DNS = no
Ident = no
PAM = no
""")
    process = start_logged([binary, "-n", "-f", str(conf)], tmp_path / "ngircd.log")
    try:
        yield port
    finally:
        stop_process(process)


def _biboumi(tmp_path: Path, server: Server) -> subprocess.Popen[bytes]:
    """biboumi against the component listener: its database in the test's folder, no identd
    (port 113), IRC over plain TCP only (the ports are set per server with its ad-hoc
    command, below)."""
    binary = debian_binary("biboumi", "biboumi")
    port = server.component_port  # type: ignore[attr-defined]
    conf = tmp_path / "biboumi.cfg"
    conf.write_text(f"""hostname={GATEWAY}
password={SECRET}
xmpp_server_ip=127.0.0.1
port={port}
db_name={tmp_path / 'biboumi.sqlite'}
identd_port=0
log_level=1
policy_directory={tmp_path}
""")
    return start_logged([binary, str(conf)], tmp_path / "biboumi.log")


async def test_biboumi_bridges_an_irc_channel(server: Server, ngircd: int,
                                              tmp_path: Path) -> None:
    """The walk, shortened: disco of the gateway, its IRC server configured with its ad-hoc
    command, a channel joined as a room (biboumi's #channel%server@gateway), chat both ways,
    the topic, private messages both ways; biboumi gone (users' stanzas bounce with
    service-unavailable, never lost silently) and back; then Suricate stopped: the IRC side
    sees the XMPP user leave."""
    room = f"#room%127.0.0.1@{GATEWAY}"
    carol = await Irc.login(ngircd, "carol")
    carol.send("JOIN #room")
    await carol.expect(" 366 ")
    gateway = _biboumi(tmp_path, server)
    alice = await connect(server, "alice@localhost/walk", "pass",
                          plugins=("xep_0030", "xep_0045", "xep_0050"))
    # every presence, the room's too (xep_0045 takes those of its rooms for itself)
    presences: asyncio.Queue[Any] = asyncio.Queue()
    alice.register_handler(Callback("presence", MatchXPath("{jabber:client}presence"),
                                    presences.put_nowait))
    try:
        await eventually(lambda: server.components.lookup(GATEWAY) is not None)
        info = await alice.plugin["xep_0030"].get_info(SJID(GATEWAY), timeout=5)
        assert ("conference", "irc") in {(c, t) for c, t, _, _ in info["disco_info"]["identities"]}
        # the IRC server's ports, in the form as a client returns it: plain TCP on
        # ngircd's port only, every other field as biboumi filled it in
        answer = await alice.plugin["xep_0050"].send_command(f"127.0.0.1@{GATEWAY}",
                                                              "configure")
        form = answer["command"]["form"]
        form.set_values({"ports": [str(ngircd)], "tls_ports": []})
        form["type"] = "submit"
        submit = alice.make_iq_set(ito=f"127.0.0.1@{GATEWAY}")
        submit["command"]["node"] = "configure"
        submit["command"]["sessionid"] = answer["command"]["sessionid"]
        submit["command"]["action"] = "complete"
        submit["command"].append(form)
        done = await submit.send(timeout=5)
        assert done["command"]["status"] == "completed"

        alice.plugin["xep_0045"].join_muc(SJID(room), "alice")
        await _presence_from(presences, f"{room}/alice")
        await carol.expect("JOIN :#room")
        alice.send_message(mto=SJID(room), mbody="hello from xmpp", mtype="groupchat")
        await carol.expect("PRIVMSG #room :hello from xmpp")
        carol.send("PRIVMSG #room :hello from irc")
        msg = await _message(alice, "hello from irc")
        assert str(msg["from"]) == f"{room}/carol" and msg["type"] == "groupchat"
        alice.send_message(mto=SJID(room), msubject="xmpp topic", mtype="groupchat")
        await carol.expect("TOPIC #room :xmpp topic")
        alice.send_message(mto=SJID(f"carol%127.0.0.1@{GATEWAY}"), mbody="psst", mtype="chat")
        await carol.expect("PRIVMSG carol :psst")
        carol.send("PRIVMSG alice :psst back")
        msg = await _message(alice, "psst back")
        assert str(msg["from"]) == f"carol%127.0.0.1@{GATEWAY}"

        # biboumi stopped: it says goodbye (332), then the gateway's JIDs bounce
        await stop_in_loop(gateway)
        assert gateway.returncode == 0
        gone = await _presence_from(presences, f"{room}/alice")
        assert gone["type"] == "unavailable"
        await eventually(lambda: server.components.lookup(GATEWAY) is None)
        alice.send_message(mto=SJID(room), mbody="anyone?", mtype="groupchat")
        bounce = await _message(alice, "anyone?")
        assert bounce["type"] == "error"
        assert bounce["error"]["condition"] == "service-unavailable"

        # back, rejoined; then the server stops and the IRC side sees alice go
        gateway = _biboumi(tmp_path, server)
        await eventually(lambda: server.components.lookup(GATEWAY) is not None)
        alice.plugin["xep_0045"].join_muc(SJID(room), "alice")
        await _presence_from(presences, f"{room}/alice")
        await carol.expect("JOIN :#room")
        await server.stop()
        assert "alice" in await carol.expect(" PART #room")
    finally:
        await disconnect(alice)
        carol.close()
        stop_process(gateway)


async def _presence_from(presences: asyncio.Queue[Any], jid: str) -> Any:
    while True:
        pres = await asyncio.wait_for(presences.get(), 10)
        if str(pres["from"]) == jid:
            return pres


async def _message(client: Any, body: str) -> Any:
    while True:
        msg = await client.next_message(timeout=10)
        if msg["body"] == body:
            return msg
