"""What two people on different servers do with their contacts, walked against real Prosody
0.12 and ejabberd 23.01 (one of each for the module) with slixmpp clients on both sides, s2s
over TLS with Server Dialback (XEP-0220). The contacts hold a mutual subscription (RFC 6121
§3) from the start: the peers' rosters are written at their start, ours by the test.

- a contact's vCard (XEP-0054, an IQ to the bare JID) and its avatar hash in presence
  (XEP-0153), the other server's version (XEP-0092), last activity (XEP-0012: the server's
  uptime, a contact's idle time), entity time (XEP-0202), disco#items of the server and of
  its MUC service (XEP-0030);
- the conversation archived on both sides (XEP-0313), carbons of an s2s message to a second
  device (XEP-0280), delivery receipts (XEP-0184) and chat markers (XEP-0333) across;
- blocking a remote contact (XEP-0191): nothing from it arrives, it gets no presence;
- an upload URL (XEP-0363) the remote contact downloads, and the upload service refusing a
  remote user;
- a remote user's voice taken and given back in a moderated room of ours (XEP-0045 §8.4);
- bookmarks (XEP-0402) that autojoin a room on the other server;
- errors: a domain that refuses connections or never speaks, and a peer that refuses our
  certificate (RFC 6120 §8.3.3.16/17): how long the sender waits;
- our server restarting: the remote contact sees us go and come back (RFC 6121 §4.3.2)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from slixmpp import JID as SJID
from slixmpp.exceptions import IqError
from slixmpp.xmlstream import ET
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import StanzaPath

from suricate.core.server import Server
from suricate.modules.mod_roster.store import RosterItem
from suricate.net.certs import ensure_self_signed
from tests.e2e.harness import Client, disconnect, free_port
from tests.interop import peers as P
from tests.interop.test_federation_interop import require_peers, suricate_toml
from tests.interop.test_federation_muc_pep import chat, create_instant, muc_presence
from tests.s2s.harness import federated_server, register

pytestmark = [pytest.mark.timeout(150), pytest.mark.xdist_group("fixed-ports"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]

PLUGINS = ("xep_0030", "xep_0004", "xep_0045", "xep_0054", "xep_0012", "xep_0092",
           "xep_0202", "xep_0199", "xep_0059", "xep_0313", "xep_0359", "xep_0280",
           "xep_0184", "xep_0333", "xep_0191", "xep_0060", "xep_0115", "xep_0163",
           "xep_0363")
CLIENT = "jabber:client"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
VCARD_UPDATE = "vcard-temp:x:update"
BOOKMARKS = "urn:xmpp:bookmarks:1"
MUC_USER = "http://jabber.org/protocol/muc#user"

# Each test's contacts: one of ours and one on each peer, named after the test's topic.
TOPICS = ("info", "chat", "block", "restart")
PEER_DOMAINS = {"prosody": P.PROSODY, "ejabberd": P.EJABBERD}


def ours_name(topic: str, peer: str) -> str:
    return f"s{topic}{peer[0]}"


def theirs_name(topic: str) -> str:
    # (letters only: Prosody's file storage escapes the rest of a user name)
    return f"t{topic}"



SURICATE_MODULES = """
[modules.mod_vcard]
[modules.mod_last]
[modules.mod_version]
[modules.mod_time]
[modules.mod_blocking]
[modules.mod_carboncopy]
[modules.mod_caps]
[modules.mod_pubsub]
[modules.mod_muc]
[modules.mod_mam]
async_writer.flush_interval = 100
[modules.mod_mam.pm]
[modules.mod_mam.muc]
"""

PROSODY_EXTRA = f"""
default_archive_policy = true
Component "conference.{P.PROSODY}" "muc"
  modules_enabled = {{ "muc_mam" }}
"""
PROSODY_MODULES = ("pep", "offline", "vcard_legacy", "mam", "carbons", "blocklist",
                   "lastactivity", "version", "time", "uptime", "bookmarks", "smacks")

EJABBERD_MODULES = """
  mod_admin_extra: {}
  mod_caps: {}
  mod_vcard: {}
  mod_vcard_xupdate: {}
  mod_last: {}
  mod_version: {}
  mod_time: {}
  mod_carboncopy: {}
  mod_privacy: {}
  mod_blocking: {}
  mod_pubsub:
    plugins: ["flat", "pep"]
  mod_mam:
    default: always
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
        users = {theirs_name(t): "pass" for t in TOPICS}
        peers.start_prosody(users, modules=PROSODY_MODULES, extra=PROSODY_EXTRA, rosters={
            theirs_name(t): [f"{ours_name(t, 'prosody')}@{P.SURICATE}"] for t in TOPICS})
        # Each test starts and stops its own Suricate: stanzas ejabberd sends us while we
        # are down (a room answering our user's leaving) make it refuse to reach us for a
        # random 1-300 s (s2s_max_retry_delay), even once we are back and connect to it.
        peers.start_ejabberd(users, modules=EJABBERD_MODULES, rosters={
            theirs_name(t): [f"{ours_name(t, 'ejabberd')}@{P.SURICATE}"] for t in TOPICS},
            top="s2s_max_retry_delay: 1")
        yield peers
    finally:
        peers.stop()
        if os.environ.get("SURICATE_KEEP_INTEROP") != "1":  # keep the logs for a look
            P.remove(peers)


def _toml(peers: P.Peers, c2s: int, extra: str = "") -> str:
    return suricate_toml(peers, c2s, "dialback", SURICATE_MODULES + extra)


@contextlib.asynccontextmanager
async def suricate(peers: P.Peers, tmp: Path, extra: str = "") -> AsyncIterator[Server]:
    c2s = free_port()
    async with federated_server(tmp, P.SURICATE, _toml(peers, c2s, extra), c2s,
                                peers.s2s_port) as server:
        yield server


async def login(jid: str, ip: str, port: int) -> Client:
    """A logged-in client with its roster (an interested resource, RFC 6121 §2.1.6) that
    collects every error stanza and every message, with a body or not."""
    client = Client(jid, "pass")
    client.auto_authorize = None
    client.auto_subscribe = False
    for plugin in PLUGINS:
        client.register_plugin(plugin)
    client.enable_direct_tls = False
    client.enable_starttls = True
    client.errors = asyncio.Queue()  # type: ignore[attr-defined]
    client.stanzas = asyncio.Queue()  # type: ignore[attr-defined]
    for kind in ("message", "presence"):
        client.register_handler(Callback(f"{kind} errors", StanzaPath(f"{kind}@type=error"),
                                         client.errors.put_nowait))  # type: ignore[attr-defined]
    client.register_handler(Callback("all messages", StanzaPath("message"),
                                     client.stanzas.put_nowait))  # type: ignore[attr-defined]
    client.connect(ip, port)
    await asyncio.wait_for(client.session_started, 20)
    await client.get_roster(timeout=10)
    return client


async def ours(server: Server, topic: str, peer: str, resource: str = "s",
               new: bool = True) -> Client:
    name = ours_name(topic, peer)
    if new:
        await register(server, name)
        # the mutual subscription the peer's roster holds from its start
        await server.modules["mod_roster"].store.put_roster_item(
            P.SURICATE, name, RosterItem(their_jid(topic, peer), subscription="both"))
    return await login(f"{name}@{P.SURICATE}/{resource}", "127.0.0.1",
                       server.c2s_port)  # type: ignore[attr-defined]


def our_jid(topic: str, peer: str) -> str:
    return f"{ours_name(topic, peer)}@{P.SURICATE}"


def their_jid(topic: str, peer: str) -> str:
    return f"{theirs_name(topic)}@{PEER_DOMAINS[peer]}"


async def theirs(peers: P.Peers, topic: str, peer: str, resource: str = "t") -> Client:
    domain = PEER_DOMAINS[peer]
    return await login(f"{theirs_name(topic)}@{domain}/{resource}", P.ADDRESSES[domain],
                       peers.c2s_ports[domain])


async def presence(client: Client, frm: str, type_: str = "available",
                   timeout: float = 10) -> Any:
    """The next presence from ``frm`` (a bare JID: any of its resources) of ``type_``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        pres = await asyncio.wait_for(client.presences.get(), deadline - loop.time())
        if str(pres["from"]).split("/")[0] == frm and pres["type"] == type_:
            return pres


async def stanza(client: Client, path: str, timeout: float = 10) -> Any:
    """The next message (body or not) holding the element at ``path`` (ElementPath)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        msg = await asyncio.wait_for(client.stanzas.get(),  # type: ignore[attr-defined]
                                     deadline - loop.time())
        if msg.xml.find(path) is not None:
            return msg


def condition(stanza: Any) -> str:
    """The RFC 6120 §8.3.3 condition of an error stanza (read from the XML: slixmpp knows
    RFC 3920's conditions only)."""
    error = stanza.xml.find(f"{{{CLIENT}}}error")
    return next(child.tag.split("}")[1] for child in error
                if child.tag.startswith(f"{{{STANZAS}}}") and not child.tag.endswith("}text"))


async def error(client: Client, timeout: float = 10) -> tuple[str, str]:
    got = await asyncio.wait_for(client.errors.get(), timeout)  # type: ignore[attr-defined]
    return str(got["from"]), condition(got)


def _drain(queue: asyncio.Queue[Any]) -> list[Any]:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


def _jid(peer: str) -> str:
    return PEER_DOMAINS[peer]


# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("peer", ["prosody", "ejabberd"])
async def test_a_contact_and_the_other_server_as_clients_show_them(
        peers: P.Peers, tmp_path: Path, peer: str) -> None:
    domain = PEER_DOMAINS[peer]
    async with suricate(peers, tmp_path) as server:
        sam, them = await ours(server, "info", peer), await theirs(peers, "info", peer)
        try:
            # vCards with a photo (XEP-0054 §3.2), read across by an IQ to the bare JID
            for client, name in ((sam, "Sam"), (them, "Them")):
                card = client.plugin["xep_0054"].make_vcard()
                card["FN"] = name
                card["PHOTO"]["TYPE"] = "image/png"
                card["PHOTO"]["BINVAL"] = name.encode() * 10
                await client.plugin["xep_0054"].publish_vcard(card, timeout=10)
            got = await sam.plugin["xep_0054"].get_vcard(their_jid("info", peer), cached=False,
                                                         timeout=10)
            assert got["vcard_temp"]["FN"] == "Them"
            got = await them.plugin["xep_0054"].get_vcard(our_jid("info", peer), cached=False,
                                                          timeout=10)
            assert got["vcard_temp"]["FN"] == "Sam"
            # XEP-0153 §4.1: the server puts the photo's hash in its users' presence (ours,
            # ejabberd's mod_vcard_xupdate, Prosody's mod_vcard_legacy)...
            them.send_presence()
            sam.send_presence()
            seen = await presence(them, our_jid("info", peer))
            update = seen.xml.find(f"{{{VCARD_UPDATE}}}x/{{{VCARD_UPDATE}}}photo")
            assert update is not None and len(update.text or "") == 40
            # XEP-0092 (the software of the other server) both ways
            version = await sam.plugin["xep_0092"].get_version(domain, timeout=10)
            assert version["software_version"]["name"]
            version = await them.plugin["xep_0092"].get_version(P.SURICATE, timeout=10)
            assert version["software_version"]["name"] == "Suricate"
            # XEP-0202: the other server's time
            for client, target in ((sam, domain), (them, P.SURICATE)):
                answer = await client.plugin["xep_0202"].get_entity_time(target, timeout=10)
                # (read from the XML: slixmpp appends a second "Z" to the utc it parses)
                utc = answer.xml.find("{urn:xmpp:time}time/{urn:xmpp:time}utc")
                assert utc is not None and (utc.text or "").endswith("Z")
            # XEP-0012 §5: a server's last activity is its uptime
            for client, target in ((sam, domain), (them, P.SURICATE)):
                last = await client.plugin["xep_0012"].get_last_activity(target, timeout=10)
                assert int(last["last_activity"]["seconds"]) >= 0
            # XEP-0030: the other server's items and its MUC service's info and items
            for client, target in ((sam, domain), (them, P.SURICATE)):
                items = await client.plugin["xep_0030"].get_items(jid=target, timeout=10)
                assert f"conference.{target}" in {i[0] for i in items["disco_items"]["items"]}
                info = await client.plugin["xep_0030"].get_info(jid=f"conference.{target}",
                                                                 timeout=10)
                assert "http://jabber.org/protocol/muc" in info["disco_info"]["features"]
                await client.plugin["xep_0030"].get_items(jid=f"conference.{target}",
                                                          timeout=10)
            # ...and the peer's user's reaches ours (its server or its client put it there)
            them.send_presence(pto=our_jid("info", peer))
            seen = await presence(sam, their_jid("info", peer))
            update = seen.xml.find(f"{{{VCARD_UPDATE}}}x/{{{VCARD_UPDATE}}}photo")
            assert update is not None and len(update.text or "") == 40
            # XEP-0012 §4 on a user's bare JID while it is online: 0 seconds for a
            # subscriber, forbidden for anyone else; RFC 6121 §8.5.1: an IQ to an account
            # that does not exist gets service-unavailable (the peers answer a vCard request
            # for one with an empty vCard).
            last = await them.plugin["xep_0012"].get_last_activity(our_jid("info", peer),
                                                                   timeout=10)
            assert last["last_activity"]["seconds"] == 0
            stranger = await theirs(peers, "restart", peer, "stranger")
            try:
                with pytest.raises(IqError) as refused:
                    await stranger.plugin["xep_0012"].get_last_activity(our_jid("info", peer),
                                                                        timeout=10)
                assert refused.value.iq["error"]["condition"] == "forbidden"
            finally:
                await disconnect(stranger)
            with pytest.raises(IqError) as refused:
                await them.plugin["xep_0054"].get_vcard(f"nobody@{P.SURICATE}", cached=False,
                                                        timeout=10)
            assert refused.value.iq["error"]["condition"] == "service-unavailable"
            # What only the account itself may do at its bare JID is refused to a contact
            # on another server (RFC 6120 §10.5: the server answers for the account): its
            # archive, roster, private storage, blocklist, privacy lists, carbons, a publish
            # to its PEP service, a vCard set.
            for typ, payload in (
                    ("set", "<query xmlns='urn:xmpp:mam:2'/>"),
                    ("get", "<query xmlns='jabber:iq:roster'/>"),
                    ("get", "<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'"
                            "/></query>"),
                    ("get", "<blocklist xmlns='urn:xmpp:blocking'/>"),
                    ("get", "<query xmlns='jabber:iq:privacy'/>"),
                    ("set", "<enable xmlns='urn:xmpp:carbons:2'/>"),
                    ("set", "<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='x'>"
                            "<item id='1'><a xmlns='y'/></item></publish></pubsub>"),
                    ("set", "<vCard xmlns='vcard-temp'><FN>Not Sam</FN></vCard>")):
                iq = them.make_iq(ito=our_jid("info", peer), itype=typ)
                iq.append(ET.fromstring(payload))
                with pytest.raises(IqError) as refused:
                    await iq.send(timeout=10)
                assert condition(refused.value.iq) in {"forbidden", "service-unavailable",
                                                       "not-allowed"}, payload
            # XEP-0012 §4: a contact's idle time once it is offline, asked by a subscriber
            await disconnect(sam)
            await presence(them, our_jid("info", peer), "unavailable")
            last = await them.plugin["xep_0012"].get_last_activity(our_jid("info", peer),
                                                                   timeout=10)
            assert int(last["last_activity"]["seconds"]) < 30
            await disconnect(them)
            sam = await ours(server, "info", peer, new=False)
            last = await sam.plugin["xep_0012"].get_last_activity(their_jid("info", peer),
                                                                  timeout=10)
            assert int(last["last_activity"]["seconds"]) < 30
        finally:
            await disconnect(sam, them)


def _upload_toml(peers: P.Peers, port: int) -> str:
    cert, key, _ = peers.combined_pem(P.SURICATE)
    return f"""
[[listen.http]]
port = {port}
ip_address = "127.0.0.1"
tls.certfile = "{cert}"
tls.keyfile = "{key}"

[[listen.http.handlers.mod_http_upload]]
host = "_"
path = "/upload"

[modules.mod_http_upload]
backend = "disk"
max_file_size = 100000
disk.directory = "files"
disk.base_url = "https://127.0.0.1:{port}/upload"
"""


def _https(peers: P.Peers) -> aiohttp.ClientSession:
    """An HTTP client on the other side that trusts the test CA (the URL names our
    address, not our domain: no name check)."""
    context = ssl.create_default_context(cafile=str(peers.ca.certfile))
    context.check_hostname = False
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context))


async def _archive(client: Client, with_: str, at_least: int) -> list[Any]:
    """The messages with a body of ``client``'s own archive with ``with_`` (XEP-0313 §4),
    once it holds ``at_least`` of them: archive writers lag a little."""
    results: list[Any] = []
    for _ in range(50):
        results = [m async for m in client.plugin["xep_0313"].iterate(
            with_jid=SJID(with_), rsm={"max": 25})
            if m["mam_result"]["forwarded"]["stanza"]["body"]]
        if len(results) >= at_least:
            break
        await asyncio.sleep(0.1)
    return results


def _bodies(results: list[Any]) -> list[str]:
    return [str(r["mam_result"]["forwarded"]["stanza"]["body"]) for r in results]


@pytest.mark.parametrize("peer", ["prosody", "ejabberd"])
async def test_a_conversation_with_a_remote_contact(peers: P.Peers, tmp_path: Path,
                                                    peer: str) -> None:
    http = free_port()
    async with suricate(peers, tmp_path, _upload_toml(peers, http)) as server:
        laptop = await ours(server, "chat", peer, "laptop")
        phone = await ours(server, "chat", peer, "phone", new=False)
        them = await theirs(peers, "chat", peer)
        try:
            for client in (laptop, phone):
                await client.plugin["xep_0280"].enable(timeout=10)
                client.send_presence()
            them.send_presence()
            await presence(them, our_jid("chat", peer))
            # The contact writes to the laptop's full JID asking for a receipt (XEP-0184
            # §5.1): the phone gets a carbon of it (XEP-0280 §6), the laptop's client answers
            # with a receipt that crosses back.
            them.plugin["xep_0184"].auto_request = True
            them.send_message(mto=laptop.boundjid.full, mbody="hello sam", mtype="chat")
            got = await chat(laptop, "hello sam")
            received = (f"{{urn:xmpp:carbons:2}}received/{{urn:xmpp:forward:0}}forwarded/"
                        f"{{{CLIENT}}}message")
            carbon = await stanza(phone, "{urn:xmpp:carbons:2}received")
            assert carbon.xml.find(received).findtext(f"{{{CLIENT}}}body") == "hello sam"
            receipt = await stanza(them, "{urn:xmpp:receipts}received")
            assert receipt.xml.find("{urn:xmpp:receipts}received").get("id") == got["id"]
            # XEP-0359 §3: our server stamped the message with the id of its archive entry
            stamp = got.xml.find("{urn:xmpp:sid:0}stanza-id")
            assert stamp is not None and stamp.get("by") == our_jid("chat", peer)

            # The laptop answers a markable message (XEP-0333 §4); the phone gets the sent
            # carbon; the contact displays it, and the marker crosses back.
            them.plugin["xep_0184"].auto_request = False
            answer = laptop.make_message(mto=their_jid("chat", peer), mbody="hi back",
                                         mtype="chat")
            answer["markable"] = True
            answer.send()
            seen = await chat(them, "hi back")
            sent = (f"{{urn:xmpp:carbons:2}}sent/{{urn:xmpp:forward:0}}forwarded/"
                    f"{{{CLIENT}}}message")
            carbon = await stanza(phone, "{urn:xmpp:carbons:2}sent")
            assert carbon.xml.find(sent).findtext(f"{{{CLIENT}}}body") == "hi back"
            them.plugin["xep_0333"].send_marker(laptop.boundjid.full, seen["id"],
                                                "displayed")
            marker = await stanza(laptop, "{urn:xmpp:chat-markers:0}displayed")
            assert marker.xml.find("{urn:xmpp:chat-markers:0}displayed").get(
                "id") == seen["id"]

            # An upload (XEP-0363) whose URL the contact opens from its own network.
            data = bytes(range(256)) * 40
            slot = (await laptop.plugin["xep_0363"].request_slot(
                SJID(P.UPLOAD), "cat.png", len(data), "image/png", timeout=10))[
                "http_upload_slot"]
            async with _https(peers) as client, client.put(
                    slot["put"]["url"], data=data,
                    headers={"Content-Type": "image/png"}) as response:
                assert response.status in (200, 201)
            laptop.send_message(mto=their_jid("chat", peer), mbody=slot["get"]["url"],
                                mtype="chat")
            url = (await chat(them, slot["get"]["url"]))["body"]
            async with _https(peers) as client, client.get(url) as response:
                assert response.status == 200
                assert await response.read() == data
            # The upload service is for our users: the contact's own request is refused
            # (XEP-0363 §5, not-allowed) over s2s.
            with pytest.raises(IqError) as refused:
                await them.plugin["xep_0363"].request_slot(SJID(P.UPLOAD), "x.png", 10,
                                                           "image/png", timeout=10)
            assert refused.value.iq["error"]["condition"] == "not-allowed"

            # To the bare JID: every available resource gets it (RFC 6121 §8.5.2.1.1).
            them.send_message(mto=our_jid("chat", peer), mbody="to you both", mtype="chat")
            for device in (laptop, phone):
                await chat(device, "to you both")
            # sam away: kept offline (with its archive id), delivered at the next login
            # (XEP-0160) with its original time (XEP-0203).
            await disconnect(laptop, phone)
            await presence(them, our_jid("chat", peer), "unavailable")
            them.send_message(mto=our_jid("chat", peer), mbody="while away", mtype="chat")
            await asyncio.sleep(0.5)
            laptop = await ours(server, "chat", peer, "laptop", new=False)
            laptop.send_presence()
            kept = await chat(laptop, "while away")
            assert kept.xml.find("{urn:xmpp:delay}delay") is not None
            stamp = kept.xml.find("{urn:xmpp:sid:0}stanza-id")
            assert stamp is not None and stamp.get("by") == our_jid("chat", peer)

            # Both archives hold the conversation (XEP-0313 §4, with=).
            want = ["hello sam", "hi back", url, "to you both", "while away"]
            assert _bodies(await _archive(laptop, their_jid("chat", peer), 5)) == want
            assert _bodies(await _archive(them, our_jid("chat", peer), 5)) == want
        finally:
            await disconnect(laptop, phone, them)


async def settled(them: Client, sam: Client) -> None:
    """Until what ``them`` sent before has been through our server and what our server
    wrote to ``sam`` before has been read: a ping to our domain over the same s2s stream,
    then one over sam's own stream (each answered in order, RFC 6120 §10.1)."""
    await them.plugin["xep_0199"].send_ping(P.SURICATE, timeout=10)
    await sam.plugin["xep_0199"].send_ping(P.SURICATE, timeout=10)


@pytest.mark.parametrize("peer", ["prosody", "ejabberd"])
async def test_blocking_a_remote_contact(peers: P.Peers, tmp_path: Path, peer: str) -> None:
    async with suricate(peers, tmp_path) as server:
        sam, them = await ours(server, "block", peer), await theirs(peers, "block", peer)
        try:
            them.send_presence()
            sam.send_presence()
            await presence(them, our_jid("block", peer))
            await presence(sam, their_jid("block", peer))
            # XEP-0191 §3.3: the contact is told sam went away (it is subscribed)...
            await sam.plugin["xep_0191"].block(SJID(their_jid("block", peer)), timeout=10)
            await presence(them, our_jid("block", peer), "unavailable")
            # ...gets none of sam's later presence...
            sam.send_presence(pshow="away", pstatus="later")
            # ...and its messages are not delivered. (§3.3 suggests a service-unavailable
            # error; mod_blocking drops them in silence, as for an offline account with
            # offline storage, so that the contact cannot tell it is blocked.)
            them.send_message(mto=sam.boundjid.full, mbody="are you there?", mtype="chat")
            # sam's own messages to it are refused by our server (not-acceptable, §3.3).
            sam.send_message(mto=their_jid("block", peer), mbody="oops", mtype="chat")
            assert await error(sam) == (their_jid("block", peer), "not-acceptable")
            await settled(them, sam)
            assert [p for p in _drain(them.presences)
                    if str(p["from"]).startswith(our_jid("block", peer))] == []
            assert [m for m in _drain(sam.stanzas)  # type: ignore[attr-defined]
                    if m["body"] == "are you there?"] == []
            assert them.errors.empty()  # type: ignore[attr-defined]
            # What the server answers on sam's behalf (an IQ to the bare JID) is refused
            # too (§3.3: service-unavailable, as from an account that is not there): before,
            # a remote contact learnt "last active 0 seconds ago" and read its disco#info.
            for ask in (
                    lambda: them.plugin["xep_0012"].get_last_activity(our_jid("block", peer),
                                                                      timeout=10),
                    lambda: them.plugin["xep_0030"].get_info(jid=our_jid("block", peer),
                                                             timeout=10),
                    lambda: them.plugin["xep_0199"].send_ping(sam.boundjid.full,
                                                              timeout=10)):
                with pytest.raises(IqError) as refused:
                    await ask()
                assert refused.value.iq["error"]["condition"] == "service-unavailable"
            # a probe and a contact request from it get nothing back, and do not reach sam
            them.send_presence(pto=our_jid("block", peer), ptype="probe")
            them.send_presence(pto=our_jid("block", peer), ptype="subscribe")
            await asyncio.sleep(0.5)
            assert [p for p in _drain(them.presences)
                    if str(p["from"]).startswith(our_jid("block", peer))] == []
            assert [p for p in _drain(sam.presences) if p["type"] == "subscribe"] == []
            # §3.4: unblocked, it gets sam's current presence again.
            await sam.plugin["xep_0191"].unblock(SJID(their_jid("block", peer)), timeout=10)
            back = await presence(them, our_jid("block", peer), "away")
            assert back["status"] == "later"
            them.send_message(mto=sam.boundjid.full, mbody="there you are", mtype="chat")
            await chat(sam, "there you are")
            # A domain item (§6 JID matching) blocks everyone at the other server.
            await sam.plugin["xep_0191"].block(SJID(PEER_DOMAINS[peer]), timeout=10)
            await presence(them, our_jid("block", peer), "unavailable")
            them.send_message(mto=sam.boundjid.full, mbody="still me", mtype="chat")
            sam.send_message(mto=their_jid("block", peer), mbody="oops", mtype="chat")
            assert await error(sam) == (their_jid("block", peer), "not-acceptable")
            await settled(them, sam)
            assert [m for m in _drain(sam.stanzas)  # type: ignore[attr-defined]
                    if m["body"] == "still me"] == []
            await sam.plugin["xep_0191"].unblock(SJID(PEER_DOMAINS[peer]), timeout=10)
            await presence(them, our_jid("block", peer), "away")
        finally:
            await disconnect(sam, them)


@pytest.mark.parametrize("peer", ["prosody", "ejabberd"])
async def test_a_remote_occupants_voice_in_a_moderated_room(peers: P.Peers, tmp_path: Path,
                                                            peer: str) -> None:
    """XEP-0045 §8.4/§8.3: the moderator takes the remote occupant's voice and gives it back;
    the occupant's server passes on its new role, and the room refuses its messages while
    it has none (§7.4, forbidden)."""
    room = f"stage-{peer}@conference.{P.SURICATE}"
    async with suricate(peers, tmp_path) as server:
        await register(server, "mod")
        sam = await login(f"mod@{P.SURICATE}/s", "127.0.0.1",
                          server.c2s_port)  # type: ignore[attr-defined]
        guest = await theirs(peers, "info", peer, "muc")
        guest.muc_presences = asyncio.Queue()  # type: ignore[attr-defined]
        guest.add_event_handler("groupchat_presence", guest.muc_presences.put_nowait)
        try:
            await sam.plugin["xep_0045"].join_muc_wait(SJID(room), "Owner", timeout=20)
            form = sam.plugin["xep_0004"].make_form(ftype="submit")
            form.add_field(var="muc#roomconfig_moderatedroom", value=True)
            await sam.plugin["xep_0045"].set_room_config(SJID(room), form, timeout=20)
            me, _, _, _ = await guest.plugin["xep_0045"].join_muc_wait(
                SJID(room), "Guest", maxstanzas=0, timeout=20)
            assert me["muc"]["role"] == "participant"
            await sam.plugin["xep_0045"].set_role(SJID(room), "Guest", "visitor", timeout=20)
            await role(guest, f"{room}/Guest", "visitor")
            guest.send_message(mto=room, mbody="may I?", mtype="groupchat")
            refused = await error(guest)
            assert refused == (room, "forbidden")
            await sam.plugin["xep_0045"].set_role(SJID(room), "Guest", "participant",
                                                  timeout=20)
            await role(guest, f"{room}/Guest", "participant")
            guest.send_message(mto=room, mbody="thank you", mtype="groupchat")
            seen = await chat_in_room(sam, "thank you")
            assert str(seen["from"]) == f"{room}/Guest"
        finally:
            await disconnect(sam, guest)


async def role(client: Client, occupant: str, want: str, timeout: float = 10) -> Any:
    """The next presence of ``occupant`` (itself, status 110) with the role ``want``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        pres = await muc_presence(client, occupant, timeout=deadline - loop.time())
        if pres["muc"]["role"] == want:
            assert "110" in {str(c) for c in pres["muc"]["status_codes"]}
            return pres


async def reaches_us(client: Client, timeout: float = 10) -> None:
    """Until the client's server reaches ours (a ping to our domain answered)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            await client.plugin["xep_0199"].send_ping(P.SURICATE, timeout=5)
            return
        except IqError:
            assert loop.time() < deadline, "the peer does not reach us again"
            await asyncio.sleep(0.2)


async def muc_unavailable(client: Client, occupants: set[str],
                          timeout: float = 10) -> dict[str, Any]:
    """The unavailable presences of ``occupants`` (in any order), by occupant JID."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    got: dict[str, Any] = {}
    while set(got) != occupants:
        pres = await asyncio.wait_for(client.muc_presences.get(),  # type: ignore[attr-defined]
                                      deadline - loop.time())
        if str(pres["from"]) in occupants and pres["type"] == "unavailable":
            got[str(pres["from"])] = pres
    return got


async def chat_in_room(client: Client, body: str, timeout: float = 10) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        msg = await client.next_message(deadline - loop.time())
        if msg["type"] == "groupchat" and msg["body"] == body:
            return msg


def _bookmark(name: str) -> ET.Element:
    conference = ET.Element(f"{{{BOOKMARKS}}}conference", autojoin="true", name=name)
    ET.SubElement(conference, f"{{{BOOKMARKS}}}nick").text = "Sam"
    return conference


@pytest.mark.parametrize("peer", ["prosody", "ejabberd"])
async def test_a_bookmark_autojoins_a_room_on_the_other_server(
        peers: P.Peers, tmp_path: Path, peer: str) -> None:
    """XEP-0402: the laptop bookmarks a room of the other server with autojoin (item id =
    the room's JID, published whitelist-only, §4.1); the phone, announcing +notify, is told
    (XEP-0163 §4.3) and joins the room with the bookmarked nick."""
    room = f"bookmarked-{peer}@conference.{PEER_DOMAINS[peer]}"
    async with suricate(peers, tmp_path) as server:
        await register(server, "marks")
        laptop = await login(f"marks@{P.SURICATE}/laptop", "127.0.0.1",
                             server.c2s_port)  # type: ignore[attr-defined]
        phone = None
        try:
            options = laptop.plugin["xep_0004"].make_form(ftype="submit")
            options.add_field(var="FORM_TYPE", ftype="hidden",
                              value="http://jabber.org/protocol/pubsub#publish-options")
            options.add_field(var="pubsub#persist_items", value=True)
            options.add_field(var="pubsub#max_items", value="max")
            options.add_field(var="pubsub#send_last_published_item", value="never")
            options.add_field(var="pubsub#access_model", value="whitelist")
            phone = await login(f"marks@{P.SURICATE}/phone", "127.0.0.1",
                                server.c2s_port)  # type: ignore[attr-defined]
            phone.plugin["xep_0030"].add_feature(f"{BOOKMARKS}+notify")
            await phone.plugin["xep_0115"].update_caps(broadcast=False)
            events: asyncio.Queue[Any] = asyncio.Queue()
            phone.add_event_handler("pubsub_publish", events.put_nowait)
            phone.send_presence()
            await asyncio.sleep(0.3)  # our server learns the phone's caps
            await laptop.plugin["xep_0060"].publish(
                laptop.boundjid.bare, BOOKMARKS, id=room, payload=_bookmark("Book club"),
                options=options, timeout=10)
            event = await asyncio.wait_for(events.get(), 10)
            item = event["pubsub_event"]["items"]["item"]
            assert item["id"] == room
            nick = item.xml.find(f"{{{BOOKMARKS}}}conference/{{{BOOKMARKS}}}nick").text
            me, _, _, _ = await phone.plugin["xep_0045"].join_muc_wait(
                SJID(item["id"]), nick, maxstanzas=0, timeout=20)
            assert "110" in {str(c) for c in me["muc"]["status_codes"]}
        finally:
            await disconnect(laptop, *([phone] if phone else []))


@pytest.mark.parametrize("peer", ["prosody", "ejabberd"])
async def test_remote_contacts_see_us_go_and_come_back(peers: P.Peers, tmp_path: Path,
                                                       peer: str) -> None:
    """RFC 6121 §4.5.2 / §4.3.2: our server stops (its users' unavailable presence goes
    out first), starts again, and the user's new login probes the contact and reaches it
    over new streams."""
    c2s = free_port()
    toml = _toml(peers, c2s)
    them = await theirs(peers, "restart", peer)
    them.muc_presences = asyncio.Queue()  # type: ignore[attr-defined]
    them.add_event_handler("groupchat_presence", them.muc_presences.put_nowait)
    try:
        ours_room = f"back-{peer}@conference.{P.SURICATE}"
        their_room = f"back@conference.{PEER_DOMAINS[peer]}"
        async with federated_server(tmp_path, P.SURICATE, toml, c2s, peers.s2s_port) as server:
            # (its presence now, not before we listen: ejabberd's probes would fail, and
            # it would bounce its answers to ours for a while, see ``reaches_us``)
            await reaches_us(them)
            them.send_presence()
            sam = await ours(server, "restart", peer)
            sam.send_presence()
            await presence(them, our_jid("restart", peer))
            await presence(sam, their_jid("restart", peer))
            # each in a room of the other's server
            await create_instant(them, their_room, "Host")
            await sam.plugin["xep_0045"].join_muc_wait(SJID(their_room), "Sam", maxstanzas=0,
                                                       timeout=20)
            await create_instant(sam, ours_room, "Sam")
            await them.plugin["xep_0045"].join_muc_wait(SJID(ours_room), "Them", maxstanzas=0,
                                                        timeout=20)
            _drain(them.muc_presences)  # type: ignore[attr-defined]
        await presence(them, our_jid("restart", peer), "unavailable")
        # XEP-0045 §15.6 (332): our room told the remote occupant it is out; the remote room
        # learnt that our user left (RFC 6121 §4.6.3: directed presence ends with the
        # session)
        gone = await muc_unavailable(them, {f"{their_room}/Sam", f"{ours_room}/Them"})
        assert {"110", "332"} <= {str(c) for c in gone[f"{ours_room}/Them"]["muc"][
            "status_codes"]}
        async with federated_server(tmp_path, P.SURICATE, toml, c2s, peers.s2s_port) as server:
            # ejabberd bounces what it has for us for up to s2s_max_retry_delay (1 s here)
            # after an attempt failed while we were down: until it reaches us again, it
            # would bounce its answers to the probes of sam's login.
            await reaches_us(them)
            sam = await ours(server, "restart", peer, new=False)
            sam.send_presence()
            await presence(sam, their_jid("restart", peer))
            await presence(them, our_jid("restart", peer))
            # XEP-0410 §3: a client's self-ping after the restart learns it is no longer in
            # our room (an error other than service-unavailable/feature-not-implemented,
            # which would mean "joined"), and joins again.
            with pytest.raises(IqError) as out:
                await them.plugin["xep_0199"].send_ping(f"{ours_room}/Them", timeout=10)
            assert condition(out.value.iq) not in {"service-unavailable",
                                                   "feature-not-implemented"}
            await them.plugin["xep_0045"].join_muc_wait(SJID(ours_room), "Them",
                                                        maxstanzas=0, timeout=20)
            await disconnect(sam)
    finally:
        await disconnect(them)


# ---------------------------------------------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_domain_that_refuses_never_answers_or_never_speaks(
        peers: P.Peers, tmp_path: Path) -> None:
    """RFC 6120 §8.3.3.16/17: the sender learns it, and soon. A domain whose address
    refuses connections bounces at once; one whose address never answers the connection
    (a listener with a full backlog: SYNs are dropped, as by a firewall) after
    s2s.outgoing.connection_timeout; one that accepts the connection and never sends a
    stream header after s2s.outgoing.state_timeout."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(5)
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    filler = socket.create_connection(full.getsockname(), 1)  # the backlog's one place
    extra = "".join(f"""
[[s2s.outgoing.address]]
host = "{host}"
ip_address = "127.0.0.1"
port = {port}
""" for host, port in (("refused.test", _closed_port()),
                       ("unanswered.test", full.getsockname()[1]),
                       ("silent.test", silent.getsockname()[1])))
    c2s = free_port()
    toml = _toml(peers, c2s).replace("state_timeout = 10000", "state_timeout = 2000")
    toml = toml.replace("connection_timeout = 5000", "connection_timeout = 1500")
    toml += extra  # (an array of tables may come after the others)
    try:
        async with federated_server(tmp_path, P.SURICATE, toml, c2s,
                                    peers.s2s_port) as server:
            await register(server, "err")
            sam = await login(f"err@{P.SURICATE}/s", "127.0.0.1",
                              server.c2s_port)  # type: ignore[attr-defined]
            started = time.monotonic()
            for domain in ("refused.test", "unanswered.test", "silent.test"):
                sam.send_message(mto=f"x@{domain}", mbody="hello?", mtype="chat")
            waited = {}
            for _ in range(3):
                frm, cond = await error(sam, 10)
                waited[frm] = (cond, round(time.monotonic() - started, 1))
            assert waited["x@refused.test"][0] == "remote-server-not-found"
            assert waited["x@refused.test"][1] < 1.0
            assert waited["x@unanswered.test"][0] == "remote-server-timeout"
            assert 1.4 < waited["x@unanswered.test"][1] < 3
            assert waited["x@silent.test"][0] == "remote-server-timeout"
            assert 1.9 < waited["x@silent.test"][1] < 4
            await disconnect(sam)
    finally:
        for sock in (silent, full, filler):
            sock.close()


async def test_a_peer_that_refuses_our_certificate(tmp_path: Path) -> None:
    """Prosody with s2s_secure_auth = true accepts only a certificate it trusts; ours is
    self-signed (our outgoing stream, in dialback mode, presents none, and the one of our
    listener, which its dialback call back meets, does not verify) and is refused: the
    sender gets an error at once, not after the timeouts. A Prosody of its own: the
    module's peers stay as they are."""
    require_peers()
    own = P.make_peers()
    try:
        own.start_prosody({"strict": "pass"}, secure_auth=True)
        c2s = free_port()
        # our certificate: self-signed, which the peer cannot trust (a CA-signed one would
        # let Prosody accept dialback, its call back to us then being verified)
        cert, key, _ = own.combined_pem(P.SURICATE)
        mine, _ = ensure_self_signed(tmp_path / "own-certs", [P.SURICATE])
        toml = suricate_toml(own, c2s, "dialback").replace(cert, str(mine.certfile)).replace(
            key, str(mine.keyfile))
        async with federated_server(tmp_path, P.SURICATE, toml, c2s, own.s2s_port) as server:
            await register(server, "err")
            sam = await login(f"err@{P.SURICATE}/s", "127.0.0.1",
                              server.c2s_port)  # type: ignore[attr-defined]
            started = time.monotonic()
            sam.send_message(mto=f"strict@{P.PROSODY}", mbody="hello?", mtype="chat")
            frm, cond = await error(sam, 30)
            waited = time.monotonic() - started
            # Prosody ends our stream with <not-authorized/>: the peer cannot be reached
            # as far as the sender can tell (as for a certificate we refuse, §13.7.2)
            assert (frm, cond) == (f"strict@{P.PROSODY}", "remote-server-not-found")
            assert waited < 3
            await disconnect(sam)
    finally:
        own.stop()
        if os.environ.get("SURICATE_KEEP_INTEROP") != "1":  # keep the logs for a look
            P.remove(own)
