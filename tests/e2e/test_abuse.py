"""Spam and abuse on a public server, with real clients (slixmpp over TLS) and the real admin
API: XEP-0377 "block and report", a registration wave (watchers, password strength), the
operator's ban of a spammer (sessions, offline messages) and a banned JID in a room.
docs/operations.md, "Spam and abuse"."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from slixmpp import JID as SJID
from slixmpp.exceptions import IqError

from suricate.admin import HTTP_HANDLERS
from suricate.config import parse_config
from suricate.core.server import Server
from suricate.jid import JID
from suricate.modules import MODULES
from tests.e2e.harness import (
    ALL_MODULES,
    Client,
    connect,
    disconnect,
    eventually,
    free_port,
    running_server,
)
from tests.e2e.test_register import Registrant, login_fails, stream_error_of
from tests.ops.harness import admin, http, ops_toml

REPORTING = "urn:xmpp:reporting:1"
SID = "urn:xmpp:sid:0"
MODULES_TOML = "\n".join(f"[modules.{m}]" for m in ALL_MODULES if m != "mod_blocking") + """
[modules.mod_blocking]
report_recipients = ["abuse@localhost"]
[modules.mod_mam]
[modules.mod_mam.pm]
[modules.mod_muc]
host = "conference.@HOST@"
"""


@contextlib.asynccontextmanager
async def abuse_server(tmp: Path) -> AsyncIterator[tuple[Server, Path]]:
    """The server with the admin API and /metrics, and its configuration on disk (for the
    command line)."""
    c2s, tls, port = free_port(), free_port(), free_port()
    config = tmp / "suricate.toml"
    config.write_text(ops_toml(tmp, c2s, tls, port, modules=MODULES_TOML))
    server = Server(parse_config(config.read_text(), tmp), tmp, MODULES,
                    http_handlers=HTTP_HANDLERS)
    await server.start()
    server.c2s_port = c2s  # type: ignore[attr-defined]
    server.tls_port = tls  # type: ignore[attr-defined]
    server.http_port = port  # type: ignore[attr-defined]
    try:
        yield server, config
    finally:
        await server.stop()


async def accounts(server: Server, *names: str) -> None:
    for name in names:
        await server.auth.register(JID.parse(f"{name}@localhost"), f"{name}-pw")


async def online(client: Client) -> None:
    """Available presence (a message to the bare JID goes to available resources), handled
    by the server once its ping is answered."""
    client.send_presence()
    await client.plugin["xep_0199"].send_ping("localhost", timeout=5)


def block_and_report(client: Client, jid: str, stanza_id: str, text: str) -> Any:
    """What Conversations, Gajim and Dino send for "block and report" (XEP-0377 §5)."""
    iq = client.Iq()
    iq["type"] = "set"
    iq.xml.append(ET.fromstring(
        f"<block xmlns='urn:xmpp:blocking'><item jid='{jid}'>"
        f"<report xmlns='{REPORTING}' reason='urn:xmpp:reporting:spam'>"
        f"<stanza-id xmlns='{SID}' by='alice@localhost' id='{stanza_id}'/>"
        f"<text xml:lang='en'>{text}</text><report-origin/></report></item></block>"))
    return iq.send(timeout=5)


async def test_block_and_report_is_kept_and_shown_to_the_operator(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "suricate.mod_blocking")
    async with abuse_server(tmp_path) as (server, config):
        await accounts(server, "alice", "spammer", "abuse")
        alice = await connect(server, "alice@localhost/phone", "alice-pw",
                              plugins=("xep_0030", "xep_0191"))
        spammer = await connect(server, "spammer@localhost/bot", "spammer-pw")
        operator = await connect(server, "abuse@localhost/desk", "abuse-pw",
                                 plugins=("xep_0199",))
        await online(operator)

        # §2: the server says it takes reports, and which reasons it understands.
        info = await alice.plugin["xep_0030"].get_info(jid="localhost", timeout=5)
        features = set(info["disco_info"]["features"])
        assert {REPORTING, "urn:xmpp:reporting:spam", "urn:xmpp:reporting:abuse",
                "urn:xmpp:blocking"} <= features

        spammer.send_message(mto="alice@localhost/phone", mbody="cheap pills at http://x.example",
                             mtype="chat")
        spam = await alice.next_message()
        stanza_id = spam.xml.find(f"{{{SID}}}stanza-id").get("id")

        await block_and_report(alice, "spammer@localhost", stanza_id, "unsolicited ads")
        # The block works as it does without a report (§5).
        assert await alice.plugin["xep_0191"].get_blocked_jids() == {"spammer@localhost"}

        # The operator's JIDs are told by message.
        told = await operator.next_message()
        assert told["from"] == "localhost"
        assert "alice@localhost blocked and reported spammer@localhost for spam" \
            in told["body"]
        assert "unsolicited ads" in told["body"] and "cheap pills" in told["body"]

        # One log line for fail2ban or alerting, with the reported account's address.
        line = next(r.getMessage() for r in caplog.records
                    if r.getMessage().startswith("spam_report "))
        assert "reporter=alice@localhost reported=spammer@localhost " \
               "reason=urn:xmpp:reporting:spam reported_ip=127.0.0.1" in line

        # The admin API: the report, with the archived message it names.
        data = await admin(server, """query { spam { listReports(domain: "localhost") {
            reporter reported reason text stanzaIds messages processing timestamp } } }""")
        [report] = data["spam"]["listReports"]
        assert report["reporter"] == "alice@localhost"
        assert report["reported"] == "spammer@localhost"
        assert report["reason"] == "urn:xmpp:reporting:spam"
        assert report["text"] == "unsolicited ads"
        assert report["stanzaIds"] == [stanza_id]
        assert len(report["messages"]) == 1 and "cheap pills" in report["messages"][0]
        assert report["processing"] == ["report-origin"]

        # The metric.
        _, _, metrics = await http(server, "/metrics")
        assert 'mod_blocking_report_count{host_type="localhost"} 1' in metrics.decode()

        # The command line, generated from the schema like the other categories.
        cli = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "suricate", "spam", "reportsAbout",
                             "--user", "spammer@localhost", "--config", str(config)],
            capture_output=True, text=True, timeout=60)
        assert cli.returncode == 0, cli.stderr
        [shown] = json.loads(cli.stdout)
        assert shown["reporter"] == "alice@localhost" and shown["text"] == "unsolicited ads"
        await disconnect(alice, spammer, operator)


async def test_ban_ends_sessions_and_removes_the_waiting_spam(tmp_path: Path) -> None:
    async with abuse_server(tmp_path) as (server, _):
        await accounts(server, "spammer", "bob", "carol")
        spammer = await connect(server, "spammer@localhost/bot", "spammer-pw")
        carol = await connect(server, "carol@localhost/pc", "carol-pw")
        ended = stream_error_of(spammer)
        # bob is offline: the wave waits in his offline storage, next to a real message.
        for i in range(3):
            spammer.send_message(mto="bob@localhost", mbody=f"spam {i}", mtype="chat")
        carol.send_message(mto="bob@localhost", mbody="lunch?", mtype="chat")
        offline = server.modules["mod_offline"].store
        await eventually(lambda: offline.count_offline("localhost", "bob"), timeout=5)
        await eventually(lambda: _count_is(offline, 4))

        data = await admin(server, """mutation { spam { banUser(user: "spammer@localhost",
            reason: "spam wave") { sessionsKicked offlineMessagesRemoved message } } }""")
        assert data["spam"]["banUser"]["sessionsKicked"] == 1
        assert data["spam"]["banUser"]["offlineMessagesRemoved"] == 3
        assert await asyncio.wait_for(ended, 5) == "policy-violation"
        assert await login_fails(server, "spammer@localhost/bot", "spammer-pw")

        bob = await connect(server, "bob@localhost/phone", "bob-pw", plugins=("xep_0199",))
        await online(bob)  # offline messages come with the first available presence
        msg = await bob.next_message()
        assert msg["body"] == "lunch?"
        with pytest.raises(asyncio.TimeoutError):
            await bob.next_message(timeout=0.5)
        await disconnect(carol, bob)


async def _count_is(store: Any, n: int) -> bool:
    return bool(await store.count_offline("localhost", "bob") == n)


class WeakRegistrant(Registrant):
    """Keeps the error's text too."""

    async def _register(self, form: Any) -> None:
        iq = self.Iq()
        iq["type"] = "set"
        iq["register"]["username"] = self.boundjid.user
        iq["register"]["password"] = self.password
        try:
            await iq.send()
        except IqError as err:
            self.outcome.set_result((err.iq["error"]["condition"], err.iq["error"]["text"]))
        else:
            self.outcome.set_result(("registered", ""))


async def register(server: Server, jid: str, password: str) -> tuple[str, str]:
    client = WeakRegistrant(jid, password)
    client.enable_direct_tls = False
    client.enable_starttls = True
    client.connect("127.0.0.1", server.c2s_port)  # type: ignore[attr-defined]
    outcome: tuple[str, str] = await asyncio.wait_for(client.outcome, 10)
    client.abort()
    return outcome


async def test_registration_wave_watchers_strength_and_timeout(tmp_path: Path) -> None:
    modules = "\n".join(f"[modules.{m}]" for m in ALL_MODULES if m != "mod_register") + """
[modules.mod_register]
registration_watchers = ["watcher@localhost"]
password_strength = 48
"""
    # An operator's file keeps 6.4's registration_timeout of 600 s.
    async with running_server(tmp_path, modules=modules) as server:
        await accounts(server, "watcher")
        watcher = await connect(server, "watcher@localhost/desk", "watcher-pw",
                                plugins=("xep_0199",))
        await online(watcher)
        # password_strength (6.4: entropy bits): refused with a text that says what to do.
        condition, text = await register(server, "bot1@localhost", "hunter22")
        assert condition == "not-acceptable"
        assert "too weak" in text and "48 bits" in text
        assert await register(server, "bot1@localhost", "Correct-Horse-Battery-9") \
            == ("registered", "")
        told = await watcher.next_message()
        assert "bot1@localhost was registered from IP address 127.0.0.1" in told["body"]
        # registration_timeout: the next account from the same address waits.
        condition, _ = await register(server, "bot2@localhost", "Correct-Horse-Battery-9")
        assert condition == "resource-constraint"
        await disconnect(watcher)


async def test_a_banned_jid_leaves_under_every_nick_and_cannot_come_back(
        tmp_path: Path) -> None:
    async with abuse_server(tmp_path) as (server, _):
        await accounts(server, "owner", "spammer")
        room = SJID("lobby@conference.localhost")
        muc = ("xep_0004", "xep_0045")
        owner = await connect(server, "owner@localhost/pc", "owner-pw", plugins=muc)
        await owner.plugin["xep_0045"].join_muc_wait(room, "owner", timeout=5)
        form = owner.plugin["xep_0004"].make_form(ftype="submit")  # an instant room (§10.1.2)
        await owner.plugin["xep_0045"].set_room_config(room, form, timeout=5)
        # Two devices of the spammer under two nicks.
        bots = [await connect(server, f"spammer@localhost/bot{i}", "spammer-pw", plugins=muc)
                for i in (1, 2)]
        for i, bot in enumerate(bots):
            await bot.plugin["xep_0045"].join_muc_wait(room, f"nick{i}", timeout=5)
        occupants = owner.plugin["xep_0045"]
        await eventually(lambda: set(occupants.get_roster(room)) == {"owner", "nick0", "nick1"})

        # The moderator (here the owner) bans the bare JID: both nicks go (XEP-0045 §9.1).
        await occupants.set_affiliation(room, "outcast", jid=SJID("spammer@localhost"),
                                        reason="flood")
        await eventually(lambda: set(occupants.get_roster(room)) == {"owner"})

        # Neither device can come back, under any nick (§7.2.7: forbidden).
        for bot in bots:
            # slixmpp's xep_0045 keeps a room's presence errors to itself: read the stream.
            errors: asyncio.Queue[Any] = asyncio.Queue()
            bot.add_filter("in", lambda st, q=errors: (
                q.put_nowait(st) if st.name == "presence" and st["type"] == "error" else None,
                st)[1])
            pres = bot.make_presence(pto=SJID(f"{room}/another-nick"))
            pres.xml.append(ET.fromstring("<x xmlns='http://jabber.org/protocol/muc'/>"))
            pres.send()
            error = await asyncio.wait_for(errors.get(), 5)
            assert error["from"] == f"{room}/another-nick"
            assert error["error"]["condition"] == "forbidden"
        assert set(occupants.get_roster(room)) == {"owner"}
        await disconnect(owner, *bots)
