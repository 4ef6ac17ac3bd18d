"""The embedded default (``suricate serve`` with no ``--config``) as today's clients meet it:
what Conversations, Monal, Dino, Gajim or Converse.js look for on a fresh server is there and
works, driven by a real client (slixmpp) over real TLS on the default's own configuration
(on free ports, so it runs beside the test that starts the real command on 5222)."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import aiohttp

from suricate.core.defaults import default_config_toml
from suricate.jid import JID
from suricate.net.certs import ensure_self_signed
from tests.e2e.harness import (
    RawClient,
    connect,
    disconnect,
    eventually,
    free_port,
    serving,
    serving_the_default,
)

PLUGINS = ("xep_0030", "xep_0045", "xep_0059", "xep_0280", "xep_0313", "xep_0359")


async def _features(client: Any, jid: str) -> set[str]:
    info = await client.plugin["xep_0030"].get_info(jid=jid, timeout=5)
    return set(info["disco_info"]["features"])


async def test_the_default_offers_what_modern_clients_use(tmp_path: Path) -> None:
    async with serving_the_default(tmp_path, ("alice", "bob")) as server:
        # Two accounts registered in-band from one address, one after the other (XEP-0077
        # §3.1), as someone trying the server on this machine does: neither waits.
        for user in ("carol", "dave"):
            raw = await RawClient.open(server.tls_port, tls=True)
            await raw.send("<?xml version='1.0'?><stream:stream to='localhost' "
                           "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/"
                           "streams' version='1.0'>")
            await raw.expect(r"</stream:features>")
            await raw.send(f"<iq type='set' id='r1'><query xmlns='jabber:iq:register'>"
                           f"<username>{user}</username><password>pw</password></query></iq>")
            assert "type='result'" in (await raw.expect(r"<iq [^>]*id=.r1.[^>]*>")).replace(
                '"', "'")
            await raw.close()
        # Before login: SASL2 with FAST (XEP-0388, XEP-0484) beside classic SASL, and after
        # it the stream features a phone needs (XEP-0198 resumption, XEP-0352 CSI).
        raw = await RawClient.open(server.tls_port, tls=True)
        await raw.send("<?xml version='1.0'?><stream:stream to='localhost' "
                       "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
                       "version='1.0'>")
        features = await raw.expect(r"<stream:features.*?</stream:features>")
        await raw.close()
        assert "urn:xmpp:sasl:2" in features and "urn:xmpp:fast:0" in features
        alice = await connect(server, "alice@localhost/phone", "pw", direct_tls=True,
                              plugins=(*PLUGINS, "xep_0198", "xep_0352"))
        bob = await connect(server, "bob@localhost/laptop", "pw", direct_tls=True,
                            plugins=PLUGINS)
        # The server's <enabled/> (XEP-0198 §3) with a resumption id, and CSI (XEP-0352 §2)
        # among the features the client saw.
        await eventually(lambda: alice.plugin["xep_0198"].enabled_in)
        assert alice.plugin["xep_0198"].sm_id and alice.plugin["xep_0352"].enabled
        for client in (alice, bob):
            client.send_presence()
        # The services of the default's certificate: group chat, pubsub, upload; and the
        # file transfer proxy (XEP-0065), which clients reach over SOCKS5, not TLS.
        items = await alice.plugin["xep_0030"].get_items(jid="localhost", timeout=5)
        services = {item[0] for item in items["disco_items"]["items"]}
        assert {"conference.localhost", "pubsub.localhost", "upload.localhost",
                "proxy.localhost"} <= services
        assert "urn:xmpp:carbons:2" in await _features(alice, "localhost")
        # The account: its archive (XEP-0313) and its PEP service (XEP-0163, OMEMO keys,
        # avatars and bookmarks live there).
        account = await alice.plugin["xep_0030"].get_info(jid="alice@localhost", timeout=5)
        assert "urn:xmpp:mam:2" in account["disco_info"]["features"]
        assert ("pubsub", "pep") in {(i[0], i[1]) for i in account["disco_info"]["identities"]}

        # A one-to-one message lands in both archives.
        bob.send_message(mto="alice@localhost", mbody="hello from the laptop", mtype="chat")
        assert (await alice.next_message())["body"] == "hello from the laptop"
        archived = [m async for m in alice.plugin["xep_0313"].iterate(rsm={"max": 50})]
        assert [str(m["mam_result"]["forwarded"]["stanza"]["body"]) for m in archived] == [
            "hello from the laptop"]

        # A room: created on join, its messages reach the occupants and its archive.
        room = "tea@conference.localhost"
        for client, nick in ((alice, "alice"), (bob, "bob")):
            await client.plugin["xep_0045"].join_muc_wait(room, nick,
                                                          timeout=10, maxstanzas=0)
            if client is alice:
                # XEP-0045 §10.1.1: a new room is locked until its owner accepts a config.
                form = await alice.plugin["xep_0045"].get_room_config(room)
                await alice.plugin["xep_0045"].set_room_config(room, form)
        bob.send_message(mto=room, mbody="tea anyone?", mtype="groupchat")

        async def groupchat() -> Any:
            while True:
                msg = await alice.next_message(timeout=10)
                if msg["type"] == "groupchat" and msg["body"]:
                    return msg

        assert (await groupchat())["body"] == "tea anyone?"
        room_archive = [m async for m in alice.plugin["xep_0313"].iterate(
            jid=room, rsm={"max": 50})]
        assert "tea anyone?" in [str(m["mam_result"]["forwarded"]["stanza"]["body"])
                                 for m in room_archive]
        await asyncio.wait_for(disconnect(alice, bob), 15)


async def test_the_default_bounds_what_a_stranger_can_make_it_hold(tmp_path: Path) -> None:
    """The default listens on every interface: a stanza larger than 256 KiB (what Prosody
    and ejabberd ship; a vCard with its avatar fits) ends the stream with policy-violation
    (RFC 6120 §4.9.3.14), before authentication too, instead of being buffered whole: one
    unauthenticated connection could otherwise make the server hold as much as it sends
    within state_timeout, tens of megabytes."""
    cert, _ = ensure_self_signed(tmp_path / "certs", ["localhost"],
                                 services=("conference", "pubsub", "upload"))
    ports = {"c2s_port": free_port(), "tls_port": free_port()}
    toml = default_config_toml(cert.certfile, cert.keyfile, str(tmp_path / "suricate.db"),
                               http_port=free_port(), https_port=free_port(), **ports)
    async with serving(tmp_path, toml, **ports):
        for port, tls in ((ports["tls_port"], True), (ports["c2s_port"], False)):
            raw = await RawClient.open(port, tls=tls)
            await raw.open_stream()
            await raw.send("<message><body>" + "x" * 300_000)
            text = (await raw.closed()).decode()
            assert "<policy-violation" in text, text[-300:]
            await raw.close()


async def test_the_default_bounds_a_browser_stanza_too_and_serves_the_others(
        tmp_path: Path) -> None:
    # The WebSocket endpoint takes the c2s listeners' limit: over it, policy-violation
    # (RFC 6120 §4.9.3.14), then <close/> (RFC 7395 §3.3.3); the stanza reaches nobody and
    # other sessions go on. (Without the limit a 30 MB frame was read whole, archived and
    # delivered.)
    import base64

    import aiohttp

    cert, _ = ensure_self_signed(tmp_path / "certs", ["localhost"],
                                 services=("conference", "pubsub", "upload"))
    ports = {"c2s_port": free_port(), "tls_port": free_port(), "http_port": free_port()}
    toml = default_config_toml(cert.certfile, cert.keyfile, str(tmp_path / "suricate.db"),
                               https_port=free_port(), **ports)
    async with serving(tmp_path, toml, **ports) as server:
        for user in ("alice", "bob"):
            await server.auth.register(JID.parse(f"{user}@localhost"), "pw")
        bob = await connect(server, "bob@localhost/laptop", "pw", direct_tls=True,
                            plugins=("xep_0199",))
        plain = base64.b64encode(b"\0alice\0pw").decode()
        framing = "urn:ietf:params:xml:ns:xmpp-framing"
        opening = f"<open xmlns='{framing}' to='localhost' version='1.0'/>"
        async with aiohttp.ClientSession() as http, http.ws_connect(
                f"http://127.0.0.1:{ports['http_port']}/ws-xmpp", protocols=("xmpp",)) as ws:
            for frame in (opening, f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
                          f"mechanism='PLAIN'>{plain}</auth>", opening,
                          "<iq xmlns='jabber:client' type='set' id='b'><bind "
                          "xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>"):
                await ws.send_str(frame)
                while "<jid>" not in (got := await ws.receive_str(timeout=5)) \
                        and not got.startswith(("<success", "<stream:features")):
                    pass
            await ws.send_str("<message xmlns='jabber:client' to='bob@localhost/laptop' "
                              "type='chat'><body>" + "x" * 300_000 + "</body></message>")
            texts = []
            while (msg := await ws.receive(timeout=5)).type == aiohttp.WSMsgType.TEXT:
                texts.append(msg.data)
            assert "<policy-violation" in texts[-2] and texts[-1] == f"<close xmlns='{framing}'/>"
        # bob received none of it and is still served
        assert bob.messages.empty()
        await bob.plugin["xep_0199"].ping(jid="localhost", timeout=5)
        await asyncio.wait_for(disconnect(bob), 15)


async def test_the_default_wants_tls_first_and_registers_only_this_machine(
        tmp_path: Path) -> None:
    """Port 5222 of the default is starttls_required: no mechanism is offered before TLS and
    an <auth/> in the clear gets <encryption-required/> (RFC 6120 §5.3.1, §6.4.5), so a man
    in the middle who strips <starttls/> gets no session in the clear. In-band registration
    is for this machine only (the listeners are on every interface and the default has no
    registration_timeout): an address elsewhere (a local proxy's X-Forwarded-For) gets
    <forbidden/>."""
    cert, _ = ensure_self_signed(tmp_path / "certs", ["localhost"])
    ports = {"c2s_port": free_port(), "tls_port": free_port(), "http_port": free_port()}
    toml = default_config_toml(cert.certfile, cert.keyfile, str(tmp_path / "suricate.db"),
                               https_port=free_port(), **ports)
    async with serving(tmp_path, toml, **ports) as server, aiohttp.ClientSession() as http:
        raw = await RawClient.open(ports["c2s_port"])
        await raw.send("<?xml version='1.0'?><stream:stream to='localhost' "
                       "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
                       "version='1.0'>")
        features = await raw.expect(r"<stream:features.*?</stream:features>")
        assert "<required/>" in features and "<mechanisms" not in features
        await raw.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>"
                       "biwsbj1hbGljZSxyPWFiYw==</auth>")
        await raw.expect("<encryption-required/>")
        await raw.close()

        async def register(user: str, headers: dict[str, str]) -> str:
            url = f"http://127.0.0.1:{ports['http_port']}/ws-xmpp"
            async with http.ws_connect(url, protocols=("xmpp",), headers=headers) as ws:
                await ws.send_str("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' "
                                  "to='localhost' version='1.0'/>")
                await ws.receive_str(timeout=5), await ws.receive_str(timeout=5)
                await ws.send_str(f"<iq xmlns='jabber:client' type='set' id='r'><query "
                                  f"xmlns='jabber:iq:register'><username>{user}</username>"
                                  f"<password>a long passphrase</password></query></iq>")
                return await ws.receive_str(timeout=5)

        assert 'type="result"' in await register("carol", {})
        assert "<forbidden" in await register("mallory", {"X-Forwarded-For": "203.0.113.7"})
        assert await server.auth.user_exists(JID.parse("carol@localhost"))
        assert not await server.auth.user_exists(JID.parse("mallory@localhost"))


async def test_a_phone_slow_to_acknowledge_keeps_its_stream_through_a_burst(
        tmp_path: Path) -> None:
    """XEP-0198 acknowledgements come one round trip late: 300 stanzas within that trip (a
    big roster's presence at login, rooms joined again, a busy room) must not end the
    stream, as MongooseIM's buffer_max of 100 did (docs/delivery.md)."""
    async with serving_the_default(tmp_path, ("alice", "bob")) as server:

        async def login(user: str, resource: str) -> RawClient:
            raw = await RawClient.open(server.tls_port, tls=True)
            await raw.open_stream()
            token = base64.b64encode(f"\0{user}\0pw".encode()).decode()
            await raw.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
                           f"mechanism='PLAIN'>{token}</auth>")
            await raw.expect("<success")
            await raw.open_stream()
            await raw.send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:"
                           f"xmpp-bind'><resource>{resource}</resource></bind></iq>")
            await raw.expect("</iq>")
            return raw

        phone = await login("alice", "phone")
        await phone.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
        await phone.expect("<enabled")
        laptop = await login("bob", "laptop")
        for i in range(300):
            await laptop.send(f"<message to='alice@localhost/phone' type='chat' id='m{i}'>"
                              f"<body>n{i}</body></message>")
        # The phone reads them all and acknowledges none (its answers are on their way).
        await phone.expect(r".*?<body>n299</body>", timeout=10)
        await phone.send("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
        assert "type='result'" in (await phone.expect(r"<iq [^>]*id=.p1.[^>]*>")).replace(
            '"', "'")
        await phone.close()
        await laptop.close()
