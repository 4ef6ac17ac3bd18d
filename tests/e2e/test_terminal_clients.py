"""What the terminal clients of Debian (profanity 0.13 on libstrophe 0.12, mcabber 1.1 on
loudmouth 1.5) send and expect, found by driving them in tmux against the embedded default
(docs/compliance.md, "Terminal clients"). Each test replays the exact stanzas the client
sent, over a real socket and real TLS, on a server with the modules a real service runs."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pty
import re
import shutil
import struct
import subprocess
import termios
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from slixmpp import JID as SJID
from slixmpp.xmlstream import ET
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from suricate.core.server import Server
from suricate.jid import JID
from suricate.modules.mod_pubsub.config import config_form as node_config_form
from suricate.modules.mod_pubsub.subscription import options_form
from suricate.xml.element import Element
from tests.e2e.harness import RawClient, connect, disconnect, eventually, running_server
from tests.muc.conftest import create_instant, user

MAM = "urn:xmpp:mam:2"
ROOM = "tea@conference.localhost"

# The modules of a real service (docs/compliance.md), STARTTLS required on 5222 as on the
# embedded default.
MODULES = """
[modules.mod_disco]
[modules.mod_presence]
[modules.mod_roster]
[modules.mod_stream_management]
[modules.mod_carboncopy]
[modules.mod_csi]
[modules.mod_sasl2]
[modules.mod_bind2]
[modules.mod_muc]
[modules.mod_mam]
[modules.mod_mam.pm]
[modules.mod_mam.muc]
"""


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with running_server(tmp_path, modules=MODULES,
                              tls_mode="starttls_required") as srv:
        yield srv


async def test_nothing_but_starttls_before_tls(server: Server) -> None:
    """libstrophe's log showed <authentication xmlns='urn:xmpp:sasl:2'> with Bind 2 and SM
    inline but no mechanism next to <starttls><required/>: RFC 6120 §5.3.1, nothing else is
    advertised while TLS is mandatory (and XEP-0388 §2.1 has nothing to offer without a
    mechanism)."""
    raw = await RawClient.open(server.c2s_port)  # type: ignore[attr-defined]
    await raw.send("<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' "
                   "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")
    features = await raw.expect(r"<stream:features.*?</stream:features>")
    assert "<required/>" in features
    assert "urn:xmpp:sasl:2" not in features and "<mechanisms" not in features
    # SASL2 not offered: an <authenticate/> anyway ends the stream (XEP-0388 §2.1).
    await raw.send("<authenticate xmlns='urn:xmpp:sasl:2' mechanism='SCRAM-SHA-1'>"
                   "<initial-response>biwsbj1hbGljZSxyPWFiYw==</initial-response></authenticate>")
    await raw.expect(r"<stream:error><not-authorized xmlns=.urn:ietf:params:xml:ns:xmpp-streams./>")
    await raw.close()


async def test_the_archive_is_on_the_servers_disco_as_profanity_looks(server: Server) -> None:
    """profanity 0.13 asks disco#info of the domain and its items only, never the account,
    and refuses /mam ("Server doesn't support MAM") unless urn:xmpp:mam:2 is there: as
    MongooseIM's mod_mam_pm (disco_local_features) and ejabberd, the server lists it too.
    Then its query, as it sends it, gets the conversation."""
    for name in ("alice", "bob"):
        await server.auth.register(JID.parse(f"{name}@localhost"), f"{name}-pw")
    alice = await connect(server, "alice@localhost/profanity", "alice-pw",
                          plugins=("xep_0030",))
    bob = await connect(server, "bob@localhost/mcabber", "bob-pw")
    info = await alice.plugin["xep_0030"].get_info(jid="localhost")
    assert MAM in info["disco_info"]["features"]
    account = await alice.plugin["xep_0030"].get_info(jid="alice@localhost")
    assert MAM in account["disco_info"]["features"]

    bob.send_message(mto="alice@localhost/profanity", mbody="hi alice from mcabber", mtype="chat")
    await alice.next_message()
    alice.send_message(mto="bob@localhost/mcabber", mbody="hello bob from profanity", mtype="chat")
    await bob.next_message()
    results: asyncio.Queue[Any] = asyncio.Queue()
    alice.register_handler(Callback("mam", MatchXPath(f"{{jabber:client}}message/{{{MAM}}}result"),
                                    results.put_nowait))

    async def profanity_query() -> list[str]:
        iq = alice.make_iq_set()
        iq.append(ET.fromstring(
            f"<query xmlns='{MAM}'><x xmlns='jabber:x:data' type='submit'>"
            f"<field type='hidden' var='FORM_TYPE'><value>{MAM}</value></field>"
            "<field var='with'><value>bob@localhost</value></field>"
            "<field var='start'><value>2000-01-01T00:00:00Z</value></field></x></query>"))
        fin = await iq.send(timeout=5)
        assert fin.xml.find(f"{{{MAM}}}fin") is not None
        bodies = []
        while not results.empty():
            bodies.append(results.get_nowait().xml.find(".//{jabber:client}body").text)
        return bodies

    # The archive is written in batches off the message path: asked until the flush.
    expected = ["hi alice from mcabber", "hello bob from profanity"]
    await eventually(lambda: _equal(profanity_query(), expected), interval=0.1)
    await disconnect(alice, bob)


async def _equal(bodies: Any, expected: list[str]) -> bool:
    return bool(await bodies == expected)


async def test_mcabbers_topic_with_an_empty_body_sets_the_subject(server: Server) -> None:
    """mcabber's /room topic sends <body></body> with the <subject/>. The room relayed it as
    a message (every client shows "has set the topic") but kept the old subject, so the next
    to join saw none. An empty body is no body (XEP-0045 §8.1): the subject changes."""
    alice = await user(server, "alice")
    await create_instant(alice, ROOM, "alice")
    bob = await user(server, "bob")
    await bob.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "bob", timeout=5)
    subjects: asyncio.Queue[Any] = asyncio.Queue()
    alice.add_event_handler("groupchat_subject", subjects.put_nowait)
    bob.send_raw(f"<message type='groupchat' to='{ROOM}' id='165362435668'>"
                 "<body></body><subject>Third topic</subject></message>")
    relayed = await asyncio.wait_for(subjects.get(), 5)
    assert relayed["subject"] == "Third topic"
    assert relayed.xml.find("{jabber:client}body") is None
    carol = await user(server, "carol")
    _, subject, _, _ = await carol.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "carol",
                                                                   timeout=5)
    assert subject["subject"] == "Third topic"
    assert str(subject["from"]) == f"{ROOM}/bob"
    # A subject with a body that says something stays a message (§8.1), as before.
    bob.send_raw(f"<message type='groupchat' to='{ROOM}'>"
                 "<body>look</body><subject>Not a topic</subject></message>")
    await asyncio.sleep(0.2)
    dave = await user(server, "dave")
    _, subject, _, _ = await dave.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "dave",
                                                                  timeout=5)
    assert subject["subject"] == "Third topic"
    await disconnect(alice, bob, carol, dave)


def _values_before_options(form: Any) -> None:
    for field in form.iter("{jabber:x:data}field"):
        names = [child.tag.split("}")[1] for child in field]
        if "option" in names and "value" in names:
            assert names.index("option") > max(i for i, n in enumerate(names) if n == "value"), \
                (field.get("var"), names)


def _element_values_before_options(form: Element) -> None:
    for field in form.find_all("field"):
        names = [child.name for child in field.elements()]
        if "option" in names and "value" in names:
            assert names.index("option") > max(i for i, n in enumerate(names) if n == "value"), \
                (field.attrs.get("var"), names)


async def test_form_values_come_before_options(server: Server) -> None:
    """profanity's room configuration form (/room config) is list-single fields whose <value/>
    came after the <option/>s; XEP-0004's schema has desc, required, value*, option* in that
    order. The same for the pubsub node configuration and subscription options forms."""
    alice = await user(server, "alice")
    await alice.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "alice", timeout=5)
    form = await alice.plugin["xep_0045"].get_room_config(SJID(ROOM))
    fields = list(form.xml.iter("{jabber:x:data}field"))
    assert any(f.find("{jabber:x:data}option") is not None for f in fields)
    _values_before_options(form.xml)
    await disconnect(alice)
    _element_values_before_options(node_config_form(
        {"access_model": "open", "send_last_published_item": "never", "max_items": 10}))
    _element_values_before_options(options_form({"show-values": ["chat"]}))


# -- profanity itself -----------------------------------------------------------------------

def _profanity() -> str:
    """The profanity binary; skipped without it (install: .ci/install-peers), failed under
    CI=true."""
    path = shutil.which("profanity")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("profanity missing under CI=true (.ci/install-peers installs it)")
        pytest.skip("profanity is not installed (.ci/install-peers installs it)")
    return path


class Terminal:
    """profanity on a pseudo-terminal of its own (it is a curses program): keys in, and
    what it logs (-l DEBUG, every stanza) read from its log file."""

    def __init__(self, binary: str, home: Path, account: str) -> None:
        self.log = home / "share" / "profanity" / "logs" / "profanity.log"
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "TERM": "xterm",
               "XDG_CONFIG_HOME": str(home / "config"), "XDG_DATA_HOME": str(home / "share")}
        self.process = subprocess.Popen([binary, "-a", account, "-l", "DEBUG"], env=env,
                                        stdin=slave, stdout=slave, stderr=slave,
                                        start_new_session=True)
        os.close(slave)
        self.master = master
        # The screen is read and dropped: a full pty would stop profanity.
        asyncio.get_running_loop().add_reader(master, self._drain)

    def _drain(self) -> None:
        with contextlib.suppress(OSError):
            os.read(self.master, 65536)

    def type(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\r")

    async def logged(self, pattern: str, timeout: float = 8.0) -> str:
        """The first line of the log matching ``pattern`` (a regexp), once it is there."""
        regex = re.compile(pattern)
        found: list[str] = []

        def seen() -> bool:
            text = self.log.read_text(errors="replace") if self.log.exists() else ""
            found.extend(m.group(0) for m in regex.finditer(text))
            return bool(found)

        await eventually(seen, timeout=timeout, interval=0.1)
        return found[0]

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.master)
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        os.close(self.master)


async def test_profanity_logs_in_chats_and_reads_the_archive(server: Server,
                                                              tmp_path: Path) -> None:
    """The real profanity: STARTTLS required, SCRAM, a message from a slixmpp contact, and
    `/mam on` then opening the chat asks the archive (it did not before the domain listed
    urn:xmpp:mam:2)."""
    binary = _profanity()
    for name in ("alice", "bob"):
        await server.auth.register(JID.parse(f"{name}@localhost"), f"{name}-pw")
    home = tmp_path / "profanity-home"
    accounts = home / "share" / "profanity" / "accounts"
    accounts.parent.mkdir(parents=True)
    # tls.policy trust: the test certificate is self-signed (profanity would ask).
    accounts.write_text(
        "[alice@localhost]\nenabled=true\njid=alice@localhost\nserver=127.0.0.1\n"
        f"port={server.c2s_port}\ntls.policy=trust\n"  # type: ignore[attr-defined]
        "password=alice-pw\nresource=term\n")
    terminal = Terminal(binary, home, "alice@localhost")
    try:
        await terminal.logged(r"SASL SCRAM-SHA-\d+ auth successful")
        await terminal.logged(r"RECV: <iq [^\n]*<bind ")
        bob = await connect(server, "bob@localhost/slix", "bob-pw")
        bob.send_message(mto="alice@localhost/term", mbody="hi from slixmpp", mtype="chat")
        await terminal.logged(r"RECV: <message [^\n]*<body>hi from slixmpp</body>")
        # The message opened bob's window (2); profanity asks the archive when it opens one.
        terminal.type("/mam on")
        terminal.type("/close 2")
        terminal.type("/msg bob@localhost")
        await terminal.logged(f'SENT: <iq [^\\n]*<query xmlns="{MAM}">')
        result = await terminal.logged(r"RECV: <message [^\n]*<result [^\n]*hi from slixmpp")
        assert "urn:xmpp:mam:2" in result
        await disconnect(bob)
    finally:
        terminal.close()
