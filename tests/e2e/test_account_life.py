"""An account's life on the embedded default (``suricate serve`` with no ``--config``), as
clients drive it: registered in band (XEP-0077 §3.1), its password changed (§3.3, in band as
Conversations and Gajim do it, and by the administrator through GraphQL), then cancelled
(§3.2, Conversations' "delete account"). Real clients over real TLS: slixmpp (its xep_0077
plugin), our SCRAM-PLUS client and our SASL2/FAST client where no library does it."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from slixmpp import JID as SlixJID
from slixmpp.exceptions import IqError

from suricate.admin import HTTP_HANDLERS
from suricate.core.defaults import default_config_toml
from suricate.core.server import Server
from suricate.jid import JID
from suricate.net.certs import ensure_self_signed
from suricate.protocol.c2s import C2SState
from tests.e2e.harness import (
    Client,
    RawClient,
    connect,
    disconnect,
    eventually,
    free_port,
    serving,
)
from tests.e2e.test_register import register_in_band, stream_error_of
from tests.e2e.tls_client import TestClient
from tests.mobile.client import Sasl2Client, bind2, request_token
from tests.ops.harness import admin, admin_endpoint_toml

REGISTER = ("xep_0004", "xep_0066", "xep_0077")


@contextlib.asynccontextmanager
async def default_server(tmp: Path) -> AsyncIterator[Server]:
    """The embedded default on free ports, plus a GraphQL admin listener (the default has
    none) for the administrator's side."""
    cert, _ = ensure_self_signed(tmp / "certs", ["localhost"],
                                 services=("conference", "pubsub", "upload"))
    ports = {"c2s_port": free_port(), "tls_port": free_port(), "http_port": free_port()}
    toml = default_config_toml(cert.certfile, cert.keyfile, str(tmp / "suricate.db"),
                               c2s_port=ports["c2s_port"], tls_port=ports["tls_port"],
                               http_port=free_port(), https_port=free_port())
    toml += admin_endpoint_toml(ports["http_port"])
    async with serving(tmp, toml, HTTP_HANDLERS, **ports) as server:
        yield server


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with default_server(tmp_path) as srv:
        yield srv


async def logs_in(server: Server, user: str, password: str, mech: str) -> bool:
    """A slixmpp login with ``mech``, or SCRAM-SHA-256-PLUS (tls-exporter) with ours."""
    if mech.endswith("-PLUS"):
        def plus() -> bool:
            client = TestClient(server.c2s_port, tls_version="1.3")  # type: ignore[attr-defined]
            try:
                client.open_stream()
                client.starttls()
                ok, _ = client.scram_login(user, password, "SHA-256", cb_type="tls-exporter")
                return ok
            finally:
                client.close()
        return await asyncio.to_thread(plus)
    try:
        client = await connect(server, f"{user}@localhost/check", password, sasl_mech=mech)
    except (PermissionError, ConnectionError):
        return False
    await disconnect(client)
    return True


def fast_token(server: Server, user: str, password: str) -> str:
    """A XEP-0484 token, asked for at a SASL2 PLAIN login as Conversations does."""
    client = Sasl2Client(server.tls_port, direct_tls=True)  # type: ignore[attr-defined]
    try:
        client.features()
        out = client.plain(user, password, bind2() + request_token("HT-SHA-256-NONE"),
                           agent="phone")
        assert out.ok and out.token is not None, out.xml
        return str(out.token[0])
    finally:
        client.close()


def fast_login_ok(server: Server, user: str, token: str) -> bool:
    client = Sasl2Client(server.tls_port, direct_tls=True)  # type: ignore[attr-defined]
    try:
        client.features()
        return bool(client.fast(user, token, "HT-SHA-256-NONE", bind2()).ok)
    finally:
        client.close()


# -- password change ------------------------------------------------------------------------
MECHS = ("SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS", "PLAIN")


async def test_in_band_password_change(server: Server) -> None:
    await server.auth.register(JID.parse("alice@localhost"), "old-pw")
    token = await asyncio.to_thread(fast_token, server, "alice", "old-pw")
    phone = await connect(server, "alice@localhost/phone", "old-pw", direct_tls=True,
                          plugins=("xep_0030", *REGISTER))
    laptop = await connect(server, "alice@localhost/laptop", "old-pw")
    laptop_error = stream_error_of(laptop)
    phone_error = stream_error_of(phone)
    await phone.plugin["xep_0077"].change_password("new-pw")
    # The other session was opened with the old password: it ends (as in Prosody), with
    # 'reset' (RFC 6120 §4.9.3.19: its credentials were revoked); the client logs in again
    # with the new password or asks its user for it.
    assert await asyncio.wait_for(laptop_error, 5) == "reset"
    # The session that changed it stays, and still answers.
    await phone.plugin["xep_0030"].get_info(jid=SlixJID("localhost"), timeout=5)
    assert not phone_error.done()
    for mech in MECHS:
        assert not await logs_in(server, "alice", "old-pw", mech), mech
        assert await logs_in(server, "alice", "new-pw", mech), mech
    # XEP-0484 §6 (Security Considerations): tokens issued before go with the old password.
    assert not await asyncio.to_thread(fast_login_ok, server, "alice", token)
    await disconnect(phone, laptop)


async def test_password_change_by_the_administrator(server: Server) -> None:
    await server.auth.register(JID.parse("bob@localhost"), "old-pw")
    token = await asyncio.to_thread(fast_token, server, "bob", "old-pw")
    phone = await connect(server, "bob@localhost/phone", "old-pw")
    error = stream_error_of(phone)
    await admin(server, 'mutation { account { changeUserPassword(user: "bob@localhost", '
                'newPassword: "new-pw") { message } } }')
    # No session of the account made the change: every one of them ends.
    assert await asyncio.wait_for(error, 5) == "reset"
    for mech in MECHS:
        assert not await logs_in(server, "bob", "old-pw", mech), mech
        assert await logs_in(server, "bob", "new-pw", mech), mech
    assert not await asyncio.to_thread(fast_login_ok, server, "bob", token)
    await disconnect(phone)


# -- account removal ------------------------------------------------------------------------
async def iq(client: Client, kind: str, payload: str, to: str | None = None) -> str:
    """Send an IQ with ``payload`` (XML text); the answer as text, an error's too."""
    stanza = client.Iq()
    stanza["type"] = kind
    if to is not None:
        stanza["to"] = to
    stanza.append(ET.fromstring(payload))
    try:
        answer = await stanza.send(timeout=5)
    except IqError as err:
        answer = err.iq
    return str(answer)


PRIVATE = "<query xmlns='jabber:iq:private'><notes xmlns='urn:example:notes'>{}</notes></query>"
VCARD = "<vCard xmlns='vcard-temp'>{}</vCard>"
PEP_NODE = "urn:xmpp:bookmarks:1"
PUBLISH = (f"<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='{PEP_NODE}'>"
           "<item id='club@conference.localhost'><conference xmlns='urn:xmpp:bookmarks:1' "
           "name='Club'/></item></publish></pubsub>")
PEP_ITEMS = (f"<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='{PEP_NODE}'/>"
             "</pubsub>")
MAM_QUERY = "<query xmlns='urn:xmpp:mam:2' queryid='q1'/>"
ROSTER = "<query xmlns='jabber:iq:roster'/>"
ROOM = "club@conference.localhost"
MEMBERS = ("<query xmlns='http://jabber.org/protocol/muc#admin'>"
           "<item affiliation='member'/></query>")


async def make_contacts(alice: Client, bob: Client) -> None:
    """A mutual subscription (RFC 6121 §3): both rosters say 'both'."""
    alice.send_presence(pto="bob@localhost", ptype="subscribe")
    await bob.next_presence(type_="subscribe")
    bob.send_presence(pto="alice@localhost", ptype="subscribed")
    bob.send_presence(pto="alice@localhost", ptype="subscribe")
    await alice.next_presence(type_="subscribe")
    alice.send_presence(pto="bob@localhost", ptype="subscribed")

    async def both() -> bool:
        return "subscription=\"both\"" in await iq(bob, "get", ROSTER) \
            and "subscription=\"both\"" in await iq(alice, "get", ROSTER)
    for _ in range(50):
        if await both():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("no mutual subscription")


async def bob_owns_a_room_with_member_alice(bob: Client) -> None:
    await bob.plugin["xep_0045"].join_muc_wait(SlixJID(ROOM), "bob", maxchars=0)
    config = ("<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' "
              "type='submit'><field var='FORM_TYPE'><value>"
              "http://jabber.org/protocol/muc#roomconfig</value></field>"
              "<field var='muc#roomconfig_persistentroom'><value>1</value></field></x></query>")
    assert "type=\"result\"" in await iq(bob, "set", config, to=ROOM)
    grant = ("<query xmlns='http://jabber.org/protocol/muc#admin'>"
             "<item affiliation='member' jid='alice@localhost'/></query>")
    assert "type=\"result\"" in await iq(bob, "set", grant, to=ROOM)
    assert "alice@localhost" in await iq(bob, "get", MEMBERS, to=ROOM)


async def fill_account(server: Server, alice: Client, bob: Client) -> None:
    """What Conversations leaves on a server: contacts, archive, bookmarks in PEP, a vCard,
    private XML, a room membership, messages waiting offline."""
    await make_contacts(alice, bob)
    await bob_owns_a_room_with_member_alice(bob)
    assert "type=\"result\"" in await iq(alice, "set", PRIVATE.format("secret notes"))
    assert "type=\"result\"" in await iq(alice, "set", VCARD.format("<FN>Alice</FN>"))
    assert "type=\"result\"" in await iq(alice, "set", PUBLISH)
    alice.send_message(mto=SlixJID("bob@localhost"), mbody="archived", mtype="chat")
    assert (await bob.next_message())["body"] == "archived"
    assert await archived(alice) == 1


async def archived(client: Client) -> int:
    """How many messages the account's archive holds (XEP-0313 §4.3 RSM count)."""
    final = await iq(client, "set", MAM_QUERY)
    count = re.search(r"<count>(\d+)</count>", final)
    return int(count.group(1)) if count else 0


async def account_data(alice: Client, bob: Client) -> dict[str, bool]:
    """Which of the account's data the account (and the room's owner) can read back."""
    return {
        "roster": "<item" in await iq(alice, "get", ROSTER),
        "archive": await archived(alice) > 0,
        "private": "secret notes" in await iq(alice, "get", PRIVATE.format("")),
        "vcard": "Alice" in await iq(alice, "get", VCARD.format("")),
        "pep": "Club" in await iq(alice, "get", PEP_ITEMS),
        "room": "alice@localhost" in await iq(bob, "get", MEMBERS, to=ROOM),
    }


def offline_rows(server: Server, user: str) -> int:
    db = sqlite3.connect(server.base_dir / "suricate.db")
    try:
        row = db.execute("SELECT COUNT(*) FROM offline_messages WHERE username = ?",
                         (user,)).fetchone()
        return int(row[0])
    finally:
        db.close()


async def test_cancelled_account_leaves_nothing_behind(server: Server) -> None:
    plugins = ("xep_0030", "xep_0045", "xep_0199", *REGISTER)
    for user in ("alice", "bob"):
        await server.auth.register(JID.parse(f"{user}@localhost"), "pw")
    token = await asyncio.to_thread(fast_token, server, "alice", "pw")
    alice = await connect(server, "alice@localhost/phone", "pw", plugins=plugins)
    bob = await connect(server, "bob@localhost/laptop", "pw", plugins=plugins)
    alice.send_presence()
    bob.send_presence()
    await fill_account(server, alice, bob)
    # A message waiting offline: alice's second device is connected but not available
    # (RFC 6121 §8.5.2.1.1 stores what no available resource can take).
    alice.send_presence(ptype="unavailable")
    await eventually(lambda: not server.sessions.available(JID.parse("alice@localhost")))
    bob.send_message(mto=SlixJID("alice@localhost"), mbody="waiting offline", mtype="chat")
    await eventually(lambda: offline_rows(server, "alice") == 1)
    assert set((await account_data(alice, bob)).values()) == {True}
    while not bob.presences.empty():
        bob.presences.get_nowait()

    gone = stream_error_of(alice)
    result = await alice.plugin["xep_0077"].cancel_registration()
    assert result["type"] == "result"
    assert await asyncio.wait_for(gone, 5) == "not-authorized"  # XEP-0077 §3.2
    # RFC 6121 §3.3 and §3.2 from the server on alice's behalf, as MongooseIM's
    # mod_roster:remove_user sends them: bob's roster no longer subscribes either way.
    kinds = {(await bob.next_presence(type_=kind))["type"]
             for kind in ("unsubscribe", "unsubscribed")}
    assert kinds == {"unsubscribe", "unsubscribed"}
    roster = await iq(bob, "get", ROSTER)
    assert "subscription=\"both\"" not in roster, roster
    assert offline_rows(server, "alice") == 0
    # RFC 6121 §8.5.1: a message to an account that does not exist is not stored; the sender
    # learns it with service-unavailable.
    bob.send_message(mto=SlixJID("alice@localhost"), mbody="anyone there?", mtype="chat")
    bounce = await bob.next_message()
    assert bounce["type"] == "error"
    assert bounce["error"]["condition"] == "service-unavailable"

    # The same name registered again starts empty.
    outcome, again = await register_in_band(server, "alice@localhost/phone", "pw")
    assert outcome == "registered"
    for plugin in plugins:
        again.register_plugin(plugin)
    again.send_presence()
    with contextlib.suppress(asyncio.TimeoutError):
        message = await again.next_message(timeout=1)
        raise AssertionError(f"an old message came back: {message}")
    assert set((await account_data(again, bob)).values()) == {False}
    assert not await asyncio.to_thread(fast_login_ok, server, "alice", token)
    await disconnect(again, bob)


async def test_removal_by_the_administrator_tells_the_contacts(server: Server) -> None:
    plugins = ("xep_0030", "xep_0045")
    for user in ("alice", "bob"):
        await server.auth.register(JID.parse(f"{user}@localhost"), "pw")
    alice = await connect(server, "alice@localhost/phone", "pw", plugins=plugins)
    bob = await connect(server, "bob@localhost/laptop", "pw", plugins=plugins)
    alice.send_presence()
    bob.send_presence()
    await make_contacts(alice, bob)
    gone = stream_error_of(alice)
    await admin(server, 'mutation { account { removeUser(user: "alice@localhost") '
                '{ message } } }')
    await asyncio.wait_for(gone, 5)
    for kind in ("unsubscribe", "unsubscribed"):
        await bob.next_presence(type_=kind)
    assert "subscription=\"both\"" not in await iq(bob, "get", ROSTER)
    await disconnect(bob)


# -- registration edge cases ----------------------------------------------------------------
async def register_raw(server: Server, username: str, password: str,
                       extra: str = "") -> str:
    """One in-band registration (XEP-0077 §3.1) over direct TLS, before authentication;
    the answer (the error condition, or 'result')."""
    raw = await RawClient.open(server.tls_port, tls=True)  # type: ignore[attr-defined]
    try:
        await raw.send("<?xml version='1.0'?><stream:stream to='localhost' "
                       "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
                       "version='1.0'>")
        await raw.expect(r"</stream:features>")
        await raw.send(f"<iq type='set' id='r1'><query xmlns='jabber:iq:register'>"
                       f"<username>{username}</username><password>{password}</password>"
                       f"{extra}</query></iq>")
        answer = (await raw.expect(r"<iq [^>]*id=.r1.(?:[^>]*/>|.*?</iq>)")).replace('"', "'")
    finally:
        await raw.close()
    if "type='result'" in answer:
        return "result"
    condition = re.search(r"<([a-z-]+) xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'", answer)
    assert condition, answer
    assert password not in answer or not password  # §3.3: never echoed
    return condition.group(1)


@pytest.mark.parametrize(("username", "condition"), [
    ("bad@name", "jid-malformed"),          # RFC 7622 §3.3.1: '@' is not in a localpart
    ("with space", "jid-malformed"),        # nor a space
    ("a/b", "jid-malformed"),               # nor '/'
    ("quo&quot;te", "jid-malformed"),       # nor '"'
    ("x" * 1024, "jid-malformed"),          # RFC 7622 §3.3: at most 1023 bytes
    ("", "not-acceptable"),                 # XEP-0077 §3.1: a required field is missing
])
async def test_unusable_username_is_refused(server: Server, username: str,
                                            condition: str) -> None:
    assert await register_raw(server, username, "pw-ok") == condition
    assert await server.storage.count_users("localhost") == 0


async def test_empty_password_is_not_acceptable(server: Server) -> None:
    assert await register_raw(server, "carol", "") == "not-acceptable"
    assert not await server.user_exists(JID.parse("carol@localhost"))


async def test_taken_name_is_a_conflict_whatever_its_case(server: Server) -> None:
    assert await register_raw(server, "dave", "pw-1") == "result"
    # The localpart is case-mapped (RFC 7622 §3.3, UsernameCaseMapped): DAVE is dave.
    for name in ("dave", "DAVE", "Dave"):
        assert await register_raw(server, name, "pw-2") == "conflict", name
    assert await server.auth.check_password(JID.parse("dave@localhost"), "pw-1")


async def test_the_default_lets_one_machine_register_twice(server: Server) -> None:
    # registration_timeout = "infinity" in the default (someone trying the server from this
    # machine creates a second account at once); an operator's file keeps 6.4's 600 s
    # (tests/e2e/test_register.py).
    assert await register_raw(server, "erin", "pw") == "result"
    assert await register_raw(server, "frank", "pw") == "result"


async def test_a_logged_in_user_sees_its_registration_and_changes_its_password(
        server: Server) -> None:
    await server.auth.register(JID.parse("gina@localhost"), "old-pw")
    gina = await connect(server, "gina@localhost/pc", "old-pw")
    # XEP-0077 §3.1 (Example 4's case): an entity already registered gets <registered/> and
    # what is on file, never the password.
    form = await iq(gina, "get", "<query xmlns='jabber:iq:register'/>")
    assert "<registered" in form and "<username>gina</username>" in form
    assert "old-pw" not in form
    # Another account's name is not its to change (§3.3 changes one's own password).
    other = await iq(gina, "set", "<query xmlns='jabber:iq:register'><username>hank"
                     "</username><password>x</password></query>")
    assert "type=\"error\"" in other and "<password>" not in other
    # Registering again while logged in is a password change (§3.3).
    answer = await iq(gina, "set", "<query xmlns='jabber:iq:register'><username>gina"
                      "</username><password>new-pw</password></query>")
    assert "type=\"result\"" in answer, answer
    assert await server.auth.check_password(JID.parse("gina@localhost"), "new-pw")
    # An empty password does not replace the old one (§3.3).
    empty = await iq(gina, "set", "<query xmlns='jabber:iq:register'><username>gina"
                     "</username><password/></query>")
    assert "not-acceptable" in empty, empty
    assert await server.auth.check_password(JID.parse("gina@localhost"), "new-pw")
    await disconnect(gina)


# -- sessions waiting for resumption (XEP-0198 §5) ------------------------------------------
def waiting_sessions(server: Server, bare: str) -> list[Any]:
    return list(server.sessions.resources(JID.parse(bare)))


async def phone_lost_its_network(server: Server, user: str, password: str) -> None:
    """A phone with stream management whose socket dies without </stream:stream>: its session
    waits for the phone to resume it (the default's resume_timeout: 600 s)."""
    phone = await connect(server, f"{user}@localhost/phone", password, plugins=("xep_0198",))
    phone.send_presence()
    await eventually(lambda: phone.plugin["xep_0198"].enabled_in)
    await asyncio.sleep(0.1)  # the server's <enabled/> is sent: its side is on
    phone.abort()
    await eventually(lambda: any(s.state is C2SState.RESUME_SESSION
                                 for s in waiting_sessions(server, f"{user}@localhost")))


@pytest.mark.parametrize("how", ["in-band", "graphql"])
async def test_removal_ends_a_session_waiting_for_resumption(server: Server, how: str) -> None:
    for user in ("alice", "bob"):
        await server.auth.register(JID.parse(f"{user}@localhost"), "pw")
    await phone_lost_its_network(server, "alice", "pw")
    if how == "graphql":
        await admin(server, 'mutation { account { removeUser(user: "alice@localhost") '
                    '{ message } } }')
    else:
        laptop = await connect(server, "alice@localhost/laptop", "pw", plugins=REGISTER)
        await laptop.plugin["xep_0077"].cancel_registration()
    # Nothing of the account is left to resume, nor to take its messages.
    await eventually(lambda: not waiting_sessions(server, "alice@localhost"))
    bob = await connect(server, "bob@localhost/desk", "pw")
    bob.send_message(mto=SlixJID("alice@localhost"), mbody="still there?", mtype="chat")
    bounce = await bob.next_message()
    assert bounce["type"] == "error", bounce
    assert bounce["error"]["condition"] == "service-unavailable"
    await disconnect(bob)


async def test_password_change_ends_a_session_waiting_for_resumption(server: Server) -> None:
    await server.auth.register(JID.parse("alice@localhost"), "old-pw")
    await phone_lost_its_network(server, "alice", "old-pw")
    laptop = await connect(server, "alice@localhost/laptop", "old-pw", plugins=REGISTER)
    await laptop.plugin["xep_0077"].change_password("new-pw")
    # Only the session that changed the password is left.
    await eventually(lambda: [str(s.jid) for s in waiting_sessions(server, "alice@localhost")]
                     == ["alice@localhost/laptop"])
    await disconnect(laptop)
