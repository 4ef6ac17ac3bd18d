"""Group chat and PEP across federation, against real Prosody 0.12 and ejabberd 23.01 (the
peers of test_federation_interop.py, with their MUC and PEP modules on): slixmpp clients on
both sides, s2s over TLS with Server Dialback (XEP-0220), and for the rooms with SASL EXTERNAL
(XEP-0178) too.

- a peer's user joins a room at conference.suricate.test (XEP-0045 §7.2: occupants, history,
  subject, self-ping, status changes, groupchat, private messages, mediated and direct
  invitations both ways, leaving) and reads its archive (XEP-0313 §4 on the room JID);
  members-only, invitation, nick conflict, kick and ban with a remote user;
- a Suricate user does the same in a room of the peer's MUC service (and reads its archive,
  whose results its own archive does not keep);
- PEP (XEP-0163) both ways between contacts with a mutual subscription: notifications driven
  by the other server's client caps (XEP-0115 over s2s, XEP-0163 §4.3.1), the last item at
  presence (§4.3.4, also to a new session), item retrieval by an IQ get to the account's
  bare JID (XEP-0060 §6.5) and the presence access model against a user without
  subscription;
- the pubsub service pubsub.suricate.test used from the peer;
- a peer crashing while its user is in a Suricate room (no ghost occupant)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from slixmpp import JID as SJID
from slixmpp.exceptions import IqError, PresenceError
from slixmpp.xmlstream import ET
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import StanzaPath

from suricate.core.server import Server
from suricate.jid import JID
from suricate.modules.mod_caps import ModCaps
from suricate.modules.mod_roster.store import RosterItem
from tests.e2e.harness import Client, disconnect, free_port
from tests.interop import peers as P
from tests.interop.test_federation_interop import require_peers, suricate_toml
from tests.s2s.harness import federated_server, register

pytestmark = [pytest.mark.timeout(150), pytest.mark.xdist_group("fixed-ports"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]

MUC_PLUGINS = ("xep_0030", "xep_0004", "xep_0045", "xep_0059", "xep_0199", "xep_0203",
               "xep_0249", "xep_0313", "xep_0359")
PEP_PLUGINS = ("xep_0030", "xep_0004", "xep_0060", "xep_0115", "xep_0163")
DEVICELIST = "eu.siacs.conversations.axolotl.devicelist"
AVATAR_METADATA = "urn:xmpp:avatar:metadata"
MUC_USER = "http://jabber.org/protocol/muc#user"
CONFERENCE = "jabber:x:conference"  # XEP-0249

# peer -> (domain, its user for the MUC tests, its user for the PEP test)
PEERS = {"prosody": (P.PROSODY, "paula", "pia"), "ejabberd": (P.EJABBERD, "eddie", "ella")}
# Suricate's user in the PEP test, one per peer: the peers' rosters hold it from their start.
PEP_USER = {"prosody": "sam-pep-prosody", "ejabberd": "sam-pep-ejabberd"}

SURICATE_MODULES = """
[modules.mod_muc]
[modules.mod_mam]
async_writer.flush_interval = 100
[modules.mod_mam.pm]
[modules.mod_mam.muc]
[modules.mod_caps]
[modules.mod_pubsub]
"""

PROSODY_MUC = f"""
Component "conference.{P.PROSODY}" "muc"
  modules_enabled = {{ "muc_mam" }}
"""

# mod_admin_extra: ejabberdctl add_rosteritem (the PEP test's mutual subscription)
EJABBERD_MODULES = """
  mod_admin_extra: {}
  mod_caps: {}
  mod_pubsub:
    plugins: ["flat", "pep"]
  mod_mam: {}
  mod_muc:
    access_create: all
    default_room_options:
      mam: true
"""


@pytest.fixture(scope="module")
def peers() -> Iterator[P.Peers]:
    require_peers()
    peers = P.make_peers()
    try:
        peers.start_prosody({"paula": "pass", "pia": "pass"}, modules=("pep",),
                            extra=PROSODY_MUC,
                            rosters={"pia": [f"{PEP_USER['prosody']}@{P.SURICATE}"]})
        peers.start_ejabberd({"eddie": "pass", "ella": "pass"}, modules=EJABBERD_MODULES,
                             rosters={"ella": [f"{PEP_USER['ejabberd']}@{P.SURICATE}"]})
        yield peers
    finally:
        peers.stop()
        if os.environ.get("SURICATE_KEEP_INTEROP") != "1":  # keep the logs for a look
            P.remove(peers)


@contextlib.asynccontextmanager
async def suricate(peers: P.Peers, tmp: Path, auth: str = "dialback") -> AsyncIterator[Server]:
    c2s = free_port()
    toml = suricate_toml(peers, c2s, auth, SURICATE_MODULES)
    async with federated_server(tmp, P.SURICATE, toml, c2s, peers.s2s_port) as server:
        yield server


def _drain(queue: asyncio.Queue[Any]) -> list[Any]:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


def assert_muc_links(server: Server, pairs: set[tuple[str, str]], auth: str) -> None:
    """The s2s streams between ``pairs`` (local, remote; one side a MUC service, a domain of
    its own on s2s) authenticated as ``auth`` says, both ways."""
    outgoing = {key: link.stream.auth_method for key, link in server.s2s.links.items()
                if key in pairs and link.stream is not None}
    assert outgoing == dict.fromkeys(pairs, auth)
    incoming = {(stream.local, remote): method for stream in server.s2s.incoming
                for remote, method in stream.auth_methods.items()}
    assert {incoming.get(pair) for pair in pairs} == {auth}


def _client(jid: str, plugins: tuple[str, ...]) -> Client:
    client = Client(jid, "pass")
    client.auto_authorize = None
    client.auto_subscribe = False
    for plugin in plugins:
        client.register_plugin(plugin)
    client.enable_direct_tls = False
    client.enable_starttls = True
    # slixmpp stops its generic "presence" event for a room once it saw a MUC presence from
    # it: the MUC presences are collected here.
    client.muc_presences = asyncio.Queue()  # type: ignore[attr-defined]
    client.add_event_handler("groupchat_presence", client.muc_presences.put_nowait)
    # Invitations have no <body/> at times (XEP-0249 §2), and slixmpp's "message" event
    # wants one: both kinds are collected here.
    client.invitations = asyncio.Queue()  # type: ignore[attr-defined]
    client.register_handler(Callback("invitations", StanzaPath("message/muc/invite"),
                                     client.invitations.put_nowait))
    client.register_handler(Callback("direct invitations", StanzaPath("message/groupchat_invite"),
                                     client.invitations.put_nowait))
    return client


async def login(jid: str, ip: str, port: int, plugins: tuple[str, ...]) -> Client:
    client = _client(jid, plugins)
    client.connect(ip, port)
    await asyncio.wait_for(client.session_started, 20)
    return client


async def ours(server: Server, name: str, plugins: tuple[str, ...]) -> Client:
    await register(server, name)
    return await login(f"{name}@{P.SURICATE}/s", "127.0.0.1",
                       server.c2s_port, plugins)  # type: ignore[attr-defined]


async def theirs(peers: P.Peers, peer: str, name: str, plugins: tuple[str, ...]) -> Client:
    domain = PEERS[peer][0]
    return await login(f"{name}@{domain}/t", P.ADDRESSES[domain], peers.c2s_ports[domain],
                       plugins)


async def groupchat(client: Client, body: str, timeout: float = 15) -> Any:
    """The next groupchat message with ``body`` (others skipped)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        msg = await client.next_message(deadline - loop.time())
        if msg["type"] == "groupchat" and msg["body"] == body:
            return msg


async def chat(client: Client, body: str, timeout: float = 15) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        msg = await client.next_message(deadline - loop.time())
        if msg["type"] == "chat" and msg["body"] == body:
            return msg


async def muc_presence(client: Client, jid: str, type_: str = "available",
                       timeout: float = 15) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        pres = await asyncio.wait_for(client.muc_presences.get(),  # type: ignore[attr-defined]
                                      deadline - loop.time())
        if str(pres["from"]) == jid and pres["type"] == type_:
            return pres


async def create_instant(client: Client, room: str, nick: str) -> None:
    """Create the room by joining it and accept the default configuration (XEP-0045
    §10.1.2): Prosody and Suricate keep a new room locked until then. Occupants may invite
    (§7.8.2; ejabberd lets only admins and owners invite without it)."""
    await client.plugin["xep_0045"].join_muc_wait(SJID(room), nick, timeout=20)
    form = client.plugin["xep_0004"].make_form(ftype="submit")
    # Prosody takes a form with its FORM_TYPE only (XEP-0068 §3)
    form.add_field(var="FORM_TYPE", ftype="hidden",
                   value="http://jabber.org/protocol/muc#roomconfig")
    form.add_field(var="muc#roomconfig_allowinvites", value=True)
    await client.plugin["xep_0045"].set_room_config(SJID(room), form, timeout=20)


async def invitation(client: Client, ns: str, timeout: float = 15) -> Any:
    """The next message with an invitation: mediated (``MUC_USER``, XEP-0045 §7.8.2) or
    direct (``CONFERENCE``, XEP-0249 §2); others skipped. ejabberd and Prosody add a
    jabber:x:conference element to the mediated ones: a direct one has no muc#user invite."""
    mediated = f"{{{MUC_USER}}}x/{{{MUC_USER}}}invite"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        msg = await asyncio.wait_for(client.invitations.get(),  # type: ignore[attr-defined]
                                     deadline - loop.time())
        if (msg.xml.find(mediated) is not None) == (ns == MUC_USER):
            return msg


async def room_basics(owner: Client, guest: Client, room: str) -> list[Any]:
    """``owner`` made ``room`` and said "before"; ``guest`` (on the other server) joins, gets
    the occupants and the history (XEP-0045 §7.2.3, §7.2.15), both talk (§7.4), exchange
    private messages (§7.5), and ``guest`` leaves (§7.14). Returns the groupchat messages
    ``guest`` got (its own echoed, the owner's). Invitations, mediated (§7.8.2) and direct
    (XEP-0249), go both ways between them, to their full JIDs: neither sent presence to
    the other's server."""
    # disco#info of the room over s2s, as clients ask before joining (XEP-0045 §6.4): a MUC
    # room, archived (XEP-0313 §6.1.2)
    info = await guest.plugin["xep_0030"].get_info(jid=room, timeout=20)
    assert {"http://jabber.org/protocol/muc", "urn:xmpp:mam:2"} <= set(
        info["disco_info"]["features"])
    owner.plugin["xep_0045"].set_subject(SJID(room), f"Topic of {room}")
    owner.send_message(mto=room, mbody="before", mtype="groupchat")
    await groupchat(owner, "before")
    me, subject, occupants, history = await guest.plugin["xep_0045"].join_muc_wait(
        SJID(room), "Guest", maxstanzas=10, timeout=20)
    assert str(me["from"]) == f"{room}/Guest"
    assert "110" in {str(c) for c in me["muc"]["status_codes"]}
    assert f"{room}/Owner" in {str(p["from"]) for p in occupants}
    assert [m["body"] for m in history] == ["before"]
    # §7.2.15: the subject comes last, after the history.
    assert subject["subject"] == f"Topic of {room}"
    await muc_presence(owner, f"{room}/Guest")
    # XEP-0410 §3: the client's self-ping to its occupant JID crosses to the room, which
    # answers it (clients ping so to learn they are still joined).
    await guest.plugin["xep_0199"].send_ping(f"{room}/Guest", timeout=20)
    # §7.7.2: an occupant's new availability is broadcast to the other server's occupant.
    owner.send_presence(pto=f"{room}/Owner", pshow="away", pstatus="brb")
    # (slixmpp's presence "type" is the <show/> when there is one)
    away = await muc_presence(guest, f"{room}/Owner", "away")
    assert away["status"] == "brb"

    guest.send_message(mto=room, mbody="hello from the guest", mtype="groupchat")
    seen = await groupchat(owner, "hello from the guest")
    assert str(seen["from"]) == f"{room}/Guest"
    echo = await groupchat(guest, "hello from the guest")  # the room's copy to the sender
    owner.send_message(mto=room, mbody="hello from the owner", mtype="groupchat")
    seen = await groupchat(guest, "hello from the owner")
    assert str(seen["from"]) == f"{room}/Owner"
    got = [echo, seen]

    guest.send_message(mto=f"{room}/Owner", mbody="psst", mtype="chat")
    private = await chat(owner, "psst")
    assert str(private["from"]) == f"{room}/Guest"
    owner.send_message(mto=f"{room}/Guest", mbody="psst back", mtype="chat")
    private = await chat(guest, "psst back")
    assert str(private["from"]) == f"{room}/Owner"

    # Mediated invitations (§7.8.2), each crossing the servers once: the room forwards them
    # from its bare JID to the JID named in <invite to=.../>, naming the inviter.
    for inviter, invitee in ((guest, owner), (owner, guest)):
        inviter.plugin["xep_0045"].invite(SJID(room), invitee.boundjid.full, reason="come")
        mediated = await invitation(invitee, MUC_USER)
        assert str(mediated["from"]) == room
        # The inviter's JID (§7.8.2); Prosody names its occupant JID instead.
        assert str(mediated["muc"]["invite"]["from"]) in {
            inviter.boundjid.bare, inviter.boundjid.full,
            f"{room}/{'Guest' if inviter is guest else 'Owner'}"}
    # Direct invitations (XEP-0249 §2): a message from user to user, with the room's JID.
    for inviter, invitee in ((owner, guest), (guest, owner)):
        inviter.plugin["xep_0249"].send_invitation(invitee.boundjid.full, SJID(room),
                                                   reason="see you there")
        direct = await invitation(invitee, CONFERENCE)
        assert str(direct["from"]) == inviter.boundjid.full
        assert str(direct["groupchat_invite"]["jid"]) == room

    guest.plugin["xep_0045"].leave_muc(SJID(room), "Guest")
    gone = await muc_presence(owner, f"{room}/Guest", "unavailable")
    assert gone["muc"]["role"] == "none"
    return got


def _bodies(results: list[Any]) -> list[str]:
    return [str(r["mam_result"]["forwarded"]["stanza"]["body"]) for r in results]


async def room_archive(client: Any, room: str, at_least: int) -> list[Any]:
    """The room's messages with a body in its archive (XEP-0313 §4 on the room JID) as
    ``client`` reads it, over s2s, once it holds ``at_least`` of them: archive writers on
    either server lag a little. (Prosody archives subject changes too.)"""
    results: list[Any] = []
    for _ in range(50):
        results = [m async for m in client.plugin["xep_0313"].iterate(
            jid=SJID(room), rsm={"max": 25}) if m["mam_result"]["forwarded"]["stanza"]["body"]]
        if len(results) >= at_least:
            break
        await asyncio.sleep(0.1)
    return results


@pytest.mark.parametrize("auth", ["external", "dialback"])
@pytest.mark.parametrize("peer", ["prosody", "ejabberd"])
async def test_peer_user_joins_a_room_on_suricate(peers: P.Peers, tmp_path: Path,
                                                  peer: str, auth: str) -> None:
    room = f"lounge-{peer}-{auth}@conference.{P.SURICATE}"
    async with suricate(peers, tmp_path, auth) as server:
        sam = await ours(server, "sam", MUC_PLUGINS)
        guest = await theirs(peers, peer, PEERS[peer][1], MUC_PLUGINS)
        try:
            await create_instant(sam, room, "Owner")
            got = await room_basics(sam, guest, room)
            # XEP-0359 §3 / XEP-0045 §7.2.4: the remote occupant's copies carry the room's
            # stanza-id, the id its archive uses.
            ids = [str(m["stanza_id"]["id"]) for m in got]
            assert all(str(m["stanza_id"]["by"]) == room for m in got) and all(ids)
            # XEP-0313 §4 on the room JID, asked over s2s by the peer's user (the room is
            # open: anyone may read its archive); the archive writer flushes every 100 ms.
            results = await room_archive(guest, room, 3)
            assert _bodies(results) == ["before", "hello from the guest", "hello from the owner"]
            assert [str(r["mam_result"]["id"]) for r in results[1:]] == ids
            # The room's own s2s streams (conference.suricate.test <-> the peer's domain).
            service = f"conference.{P.SURICATE}"
            assert_muc_links(server, {(service, PEERS[peer][0])}, auth)
        finally:
            await disconnect(sam, guest)


@pytest.mark.parametrize("peer", ["prosody", "ejabberd"])
async def test_remote_user_and_a_members_only_room_on_suricate(peers: P.Peers, tmp_path: Path,
                                                               peer: str) -> None:
    """Affiliations hold remote bare JIDs like local ones: a members-only room refuses the
    peer's user (XEP-0045 §7.2.7, registration-required), a mediated invitation (§7.8.2)
    reaches it over s2s and makes it a member, a nick in use is a conflict (§7.2.9), a kick
    (§8.2, 307) and a ban (§9.1, 301) reach it, and a banned user may not join again."""
    domain, name, _ = PEERS[peer]
    room, their_jid = f"club-{peer}@conference.{P.SURICATE}", f"{name}@{domain}"
    async with suricate(peers, tmp_path) as server:
        sam = await ours(server, "sam", MUC_PLUGINS)
        guest = await theirs(peers, peer, name, MUC_PLUGINS)
        try:
            guest.send_presence()  # the invitation goes to the bare JID (RFC 6121 §8.5.2)
            await sam.plugin["xep_0045"].join_muc_wait(SJID(room), "Owner", timeout=20)
            form = sam.plugin["xep_0004"].make_form(ftype="submit")
            form.add_field(var="muc#roomconfig_membersonly", value=True)
            await sam.plugin["xep_0045"].set_room_config(SJID(room), form, timeout=20)
            with pytest.raises(PresenceError) as refused:
                await guest.plugin["xep_0045"].join_muc_wait(SJID(room), "Guest", timeout=20)
            assert refused.value.presence["error"]["condition"] == "registration-required"

            sam.plugin["xep_0045"].invite(SJID(room), SJID(their_jid), reason="join us")
            while True:
                invite = await guest.next_message(20)
                if invite.xml.find(f"{{{MUC_USER}}}x/{{{MUC_USER}}}invite") is not None:
                    break
            assert str(invite["from"]) == room
            with pytest.raises(PresenceError) as taken:
                await guest.plugin["xep_0045"].join_muc_wait(SJID(room), "Owner", timeout=20)
            assert taken.value.presence["error"]["condition"] == "conflict"
            me, _, _, _ = await guest.plugin["xep_0045"].join_muc_wait(
                SJID(room), "Guest", maxstanzas=0, timeout=20)
            assert me["muc"]["affiliation"] == "member"

            await sam.plugin["xep_0045"].set_role(SJID(room), "Guest", "none", reason="bye",
                                                  timeout=20)
            kicked = await muc_presence(guest, f"{room}/Guest", "unavailable")
            assert {"110", "307"} <= {str(c) for c in kicked["muc"]["status_codes"]}

            # A ban (§9.1) of the remote bare JID: the occupant leaves with 301, and may not
            # come back (§7.2.8, forbidden).
            await guest.plugin["xep_0045"].join_muc_wait(SJID(room), "Guest", maxstanzas=0,
                                                         timeout=20)
            await sam.plugin["xep_0045"].set_affiliation(SJID(room), "outcast", jid=their_jid,
                                                         reason="enough", timeout=20)
            banned = await muc_presence(guest, f"{room}/Guest", "unavailable")
            assert {"110", "301"} <= {str(c) for c in banned["muc"]["status_codes"]}
            assert banned["muc"]["affiliation"] == "outcast"
            with pytest.raises(PresenceError) as refused:
                await guest.plugin["xep_0045"].join_muc_wait(SJID(room), "Guest", timeout=20)
            assert refused.value.presence["error"]["condition"] == "forbidden"
        finally:
            await disconnect(sam, guest)


@pytest.mark.parametrize("auth", ["external", "dialback"])
@pytest.mark.parametrize("peer", ["prosody", "ejabberd"])
async def test_suricate_user_joins_a_room_on_the_peer(peers: P.Peers, tmp_path: Path,
                                                      peer: str, auth: str) -> None:
    domain, name, _ = PEERS[peer]
    room = f"hall-{auth}@conference.{domain}"
    async with suricate(peers, tmp_path, auth) as server:
        sam = await ours(server, "sam", MUC_PLUGINS)
        host = await theirs(peers, peer, name, MUC_PLUGINS)
        try:
            await create_instant(host, room, "Owner")
            await room_basics(host, sam, room)
            assert_muc_links(server, {(P.SURICATE, f"conference.{domain}")}, auth)
            # The peer's room archive (Prosody's muc_mam, ejabberd's mod_mam), asked by a
            # Suricate user: the IQ goes out, the results and the <fin/> come back (XEP-0313
            # §4). The peer's archive writes may lag a little.
            results = await room_archive(sam, room, 3)
            assert _bodies(results) == ["before", "hello from the guest", "hello from the owner"]
            # Those results came from the room's bare JID to sam's full JID: delivered, and
            # not archived again in sam's own archive (XEP-0313 §5 business rules; nor are
            # the room's groupchat messages: archive_groupchats is off).
            await asyncio.sleep(0.3)  # our archive writer flushes every 100 ms
            own = [m async for m in sam.plugin["xep_0313"].iterate(rsm={"max": 50})]
            assert not set(_bodies(own)) & {"before", "hello from the guest",
                                            "hello from the owner"}
            # sam joins again, never having sent broadcast presence, and goes offline: the
            # room learns it from Suricate (RFC 6121 §4.6.3), no ghost occupant.
            await sam.plugin["xep_0045"].join_muc_wait(SJID(room), "Guest", maxstanzas=0,
                                                       timeout=20)
            await muc_presence(host, f"{room}/Guest")
            await disconnect(sam)
            await muc_presence(host, f"{room}/Guest", "unavailable")
        finally:
            await disconnect(sam, host)


def _devicelist(device: int) -> ET.Element:
    xml = ET.Element("{eu.siacs.conversations.axolotl}list")
    ET.SubElement(xml, "{eu.siacs.conversations.axolotl}device", id=str(device))
    return xml


def _avatar_metadata(sha1: str) -> ET.Element:
    xml = ET.Element(f"{{{AVATAR_METADATA}}}metadata")
    ET.SubElement(xml, f"{{{AVATAR_METADATA}}}info", id=sha1, bytes="42", type="image/png",
                  width="8", height="8")
    return xml


async def _interested(client: Client) -> asyncio.Queue[Any]:
    """Announce ``+notify`` for the device list and the avatar metadata in the client's caps
    (XEP-0163 §4.3.1, XEP-0115), then come online; the notifications it gets are queued."""
    for node in (DEVICELIST, AVATAR_METADATA):
        client.plugin["xep_0030"].add_feature(f"{node}+notify")
    await client.plugin["xep_0115"].update_caps(broadcast=False)
    events: asyncio.Queue[Any] = asyncio.Queue()
    client.add_event_handler("pubsub_publish", events.put_nowait)
    client.send_presence()
    return events


async def _notification(events: asyncio.Queue[Any], frm: str, node: str,
                        timeout: float = 20) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        msg = await asyncio.wait_for(events.get(), deadline - loop.time())
        if str(msg["from"]) == frm and msg["pubsub_event"]["items"]["node"] == node:
            return msg["pubsub_event"]["items"]["item"]


async def _publish(client: Client, node: str, item_id: str, payload: ET.Element) -> None:
    # OMEMO's publish options (XEP-0384 §5.3.2): the device list is readable by anyone.
    options = client.plugin["xep_0004"].make_form(ftype="submit")
    options.add_field(var="FORM_TYPE", ftype="hidden",
                      value="http://jabber.org/protocol/pubsub#publish-options")
    options.add_field(var="pubsub#access_model", value="open")
    await client.plugin["xep_0060"].publish(client.boundjid.bare, node, id=item_id,
                                            payload=payload, options=options, timeout=20)


async def _fetch(client: Client, owner: str, node: str) -> list[Any]:
    result = await client.plugin["xep_0060"].get_items(owner, node, timeout=20)
    return list(result["pubsub"]["items"]["substanzas"])


@pytest.mark.parametrize("peer", ["prosody", "ejabberd"])
async def test_pep_between_contacts_across_servers(peers: P.Peers, tmp_path: Path,
                                                   peer: str) -> None:
    domain, stranger_name, name = PEERS[peer]
    sam_name, their_jid = PEP_USER[peer], f"{name}@{domain}"
    sam_jid = f"{sam_name}@{P.SURICATE}"
    avatar = "a" * 40
    async with suricate(peers, tmp_path) as server:
        await register(server, sam_name)
        # the mutual subscription (RFC 6121 §3), as the peer's roster has it from its start
        await server.modules["mod_roster"].store.put_roster_item(
            P.SURICATE, sam_name, RosterItem(their_jid, subscription="both"))
        sam = await login(f"{sam_jid}/s", "127.0.0.1", server.c2s_port,  # type: ignore[attr-defined]
                          PEP_PLUGINS)
        them = stranger = None
        try:
            sam_events = await _interested(sam)
            # The avatar metadata before the contact comes online, with the PEP default
            # access model (presence, XEP-0163 §5: readable by presence subscribers).
            await sam.plugin["xep_0060"].publish(sam_jid, AVATAR_METADATA, id=avatar,
                                                 payload=_avatar_metadata(avatar), timeout=20)
            them = await theirs(peers, peer, name, PEP_PLUGINS)
            their_events = await _interested(them)
            # XEP-0163 §4.3.4: the contact's presence with +notify caps reached Suricate,
            # which sends it the last item of the node.
            item = await _notification(their_events, sam_jid, AVATAR_METADATA)
            assert item["id"] == avatar
            # Suricate learnt the caps of the peer's client from the presence it sent sam
            # (XEP-0115 §6.3; a disco#info through s2s when the hash is new).
            caps = server.modules["mod_caps"]
            assert isinstance(caps, ModCaps)
            for _ in range(200):
                known = caps.remote_features(JID.parse(their_jid))
                if any(f"{DEVICELIST}+notify" in f for _, f in known):
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"Suricate never learnt the caps of {their_jid}")

            # Suricate -> peer: a notification (XEP-0163 §4.3), then IQ gets (XEP-0060 §6.5)
            # to sam's bare JID from the peer's client.
            await _publish(sam, DEVICELIST, "current", _devicelist(1111))
            item = await _notification(their_events, sam_jid, DEVICELIST)
            assert item["id"] == "current"
            assert item["payload"].find("{eu.siacs.conversations.axolotl}device").get(
                "id") == "1111"
            assert [i["id"] for i in await _fetch(them, sam_jid, DEVICELIST)] == ["current"]
            assert [i["id"] for i in await _fetch(them, sam_jid, AVATAR_METADATA)] == [avatar]
            # Someone else on the peer, without a subscription, may read the open device
            # list but not the presence-model avatar (XEP-0060 §6.5.9: not-authorized +
            # presence-subscription-required).
            stranger = await theirs(peers, peer, stranger_name, PEP_PLUGINS)
            assert [i["id"] for i in await _fetch(stranger, sam_jid, DEVICELIST)] == ["current"]
            with pytest.raises(IqError) as refused:
                await _fetch(stranger, sam_jid, AVATAR_METADATA)
            error = refused.value.iq["error"]
            assert error["condition"] == "not-authorized"
            assert error.xml.find("{http://jabber.org/protocol/pubsub#errors}"
                                  "presence-subscription-required") is not None

            # peer -> Suricate: the peer notifies sam (it learnt sam's caps through s2s) and
            # sam fetches the peer user's item.
            await _publish(them, DEVICELIST, "current", _devicelist(2222))
            item = await _notification(sam_events, their_jid, DEVICELIST)
            assert item["payload"].find("{eu.siacs.conversations.axolotl}device").get(
                "id") == "2222"
            fetched = await _fetch(sam, their_jid, DEVICELIST)
            assert [i["id"] for i in fetched] == ["current"]
            assert fetched[0]["payload"].find(
                "{eu.siacs.conversations.axolotl}device").get("id") == "2222"

            # sam comes back in a new session (as a phone reconnecting): the peer learns its
            # caps again (XEP-0115 over s2s: its disco#info goes to the new full JID) and
            # sends it the last item of the contact's node (XEP-0163 §4.3.4).
            await disconnect(sam)
            sam = await login(f"{sam_jid}/back", "127.0.0.1",
                              server.c2s_port,  # type: ignore[attr-defined]
                              PEP_PLUGINS)
            sam_events = await _interested(sam)
            item = await _notification(sam_events, their_jid, DEVICELIST)
            assert item["payload"].find("{eu.siacs.conversations.axolotl}device").get(
                "id") == "2222"
        finally:
            await disconnect(*(c for c in (sam, them, stranger) if c is not None))


@pytest.mark.parametrize("peer", ["prosody", "ejabberd"])
async def test_peer_user_subscribes_to_the_pubsub_service(peers: P.Peers, tmp_path: Path,
                                                          peer: str) -> None:
    """pubsub.suricate.test is a domain of its own on s2s, like the MUC service: a peer's user
    discovers it, subscribes to a node (XEP-0060 §6.1), gets the notification of a publish
    (§7.1.2.1) and fetches the items (§6.5)."""
    domain, name, _ = PEERS[peer]
    service, node = f"pubsub.{P.SURICATE}", f"news-{peer}"
    async with suricate(peers, tmp_path) as server:
        owner = await ours(server, "publisher", PEP_PLUGINS)
        reader = await theirs(peers, peer, name, PEP_PLUGINS)
        try:
            events: asyncio.Queue[Any] = asyncio.Queue()
            reader.add_event_handler("pubsub_publish", events.put_nowait)
            # RFC 6121 §8.5.2.1.1: the notification goes to the bare JID, delivered to the
            # reader's available resources only.
            reader.send_presence()
            await owner.plugin["xep_0060"].create_node(service, node, timeout=20)
            info = await reader.plugin["xep_0030"].get_info(jid=service, timeout=20)
            assert ("pubsub", "service") in {i[:2] for i in info["disco_info"]["identities"]}
            sub = await reader.plugin["xep_0060"].subscribe(service, node, timeout=20)
            assert sub["pubsub"]["subscription"]["subscription"] == "subscribed"
            await owner.plugin["xep_0060"].publish(service, node, id="n1",
                                                   payload=_devicelist(7), timeout=20)
            item = await _notification(events, service, node)
            assert item["id"] == "n1"
            assert [i["id"] for i in await _fetch(reader, service, node)] == ["n1"]
        finally:
            await disconnect(owner, reader)


async def test_room_on_suricate_drops_the_occupant_of_a_crashed_server(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The peer crashes (SIGKILL: the room never gets its user's unavailable presence); the
    next groupchat copy to that user bounces (remote-server-not-found from our s2s layer) and
    the room removes the occupant with status 333 (XEP-0045 §15.6) instead of keeping a ghost.
    A Prosody of its own: the module's peers stay up."""
    require_peers()
    own = P.make_peers()
    room = f"crash@conference.{P.SURICATE}"
    try:
        own.start_prosody({"paula": "pass"})
        async with suricate(own, tmp_path) as server:
            sam = await ours(server, "sam", MUC_PLUGINS)
            guest = await theirs(own, "prosody", "paula", MUC_PLUGINS)
            await create_instant(sam, room, "Owner")
            await guest.plugin["xep_0045"].join_muc_wait(SJID(room), "Guest", maxstanzas=0,
                                                         timeout=20)
            await muc_presence(sam, f"{room}/Guest")
            own.kill()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            gone = None
            while gone is None and loop.time() < deadline:
                sam.send_message(mto=room, mbody="anyone there?", mtype="groupchat")
                with contextlib.suppress(TimeoutError):
                    gone = await muc_presence(sam, f"{room}/Guest", "unavailable", timeout=2)
            assert gone is not None, "the crashed server's user is still an occupant"
            assert {str(c) for c in gone["muc"]["status_codes"]} == {"333"}
            # Once: the removal's own copy to the unreachable user bounced at once, and that
            # error did not start the removal again (nor crash the routing).
            await asyncio.sleep(0.5)
            again = [p for p in _drain(sam.muc_presences)  # type: ignore[attr-defined]
                     if str(p["from"]) == f"{room}/Guest"]
            assert again == []
            assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
            guest.abort()
            await disconnect(sam)
    finally:
        P.remove(own)
