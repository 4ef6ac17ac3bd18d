"""External components (XEP-0114) against a real server: slixmpp's ComponentXMPP over plain
TCP and over direct TLS, and raw streams for what a library would not send."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import slixmpp

from suricate.core.server import Server
from suricate.net.certs import ensure_self_signed
from tests.e2e.harness import (
    MODULES_TOML,
    RawClient,
    connect,
    disconnect,
    eventually,
    free_port,
    running_server,
)

SECRET = "s3cret"


class Component(slixmpp.ComponentXMPP):
    def __init__(self, jid: str, secret: str) -> None:
        super().__init__(jid, secret)
        self.messages: asyncio.Queue[Any] = asyncio.Queue()
        self.started = asyncio.get_event_loop().create_future()
        self.ended = asyncio.get_event_loop().create_future()
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.add_event_handler("session_start", self._start)
        self.add_event_handler("message", self.messages.put_nowait)
        self.add_event_handler("disconnected", self._end)
        self.add_event_handler("stream_error", self._stream_error)
        self.stream_errors: list[str] = []

    def _start(self, _: Any) -> None:
        if not self.started.done():
            self.started.set_result(True)

    def _stream_error(self, err: Any) -> None:
        self.stream_errors.append(err["condition"])

    def _end(self, _: Any) -> None:
        if not self.ended.done():
            self.ended.set_result(True)
        if not self.started.done():
            self.started.set_exception(ConnectionError("disconnected"))


def component_toml(tmp: Path, plain: int, tls: int, extra: str = "") -> str:
    cert, _ = ensure_self_signed(tmp / "certs", ["localhost"])
    return f"""
[[listen.component]]
port = {plain}
ip_address = "127.0.0.1"
password = "{SECRET}"
{extra}

[[listen.component]]
port = {tls}
ip_address = "127.0.0.1"
password = "{SECRET}"
hidden_components = true
tls.certfile = "{cert.certfile}"
tls.keyfile = "{cert.keyfile}"
tls.verify_mode = "none"

# a domain nobody serves goes to federation: keep its DNS lookups short
[s2s.outgoing]
dns.timeout = 1
dns.retries = 1
"""


@contextlib.asynccontextmanager
async def server_with_components(tmp: Path, extra: str = "",
                                 modules: str | None = None) -> AsyncIterator[Server]:
    plain, tls = free_port(), free_port()
    async with running_server(tmp, extra=component_toml(tmp, plain, tls, extra),
                              modules=modules) as server:
        server.component_port = plain  # type: ignore[attr-defined]
        server.component_tls_port = tls  # type: ignore[attr-defined]
        yield server


async def start_component(server: Server, jid: str, secret: str = SECRET,
                          tls: bool = False) -> Component:
    comp = Component(jid, secret)
    comp.register_plugin("xep_0199")
    if tls:
        comp.enable_direct_tls = True
        comp.enable_plaintext = False
        # slixmpp knows no direct-TLS service name for components: name one so its connect
        # loop tries TLS first (MongooseIM 6.4 serves component TLS as direct TLS).
        comp.tls_services = {"xmpps-component"}
        comp.connect("127.0.0.1", server.component_tls_port)  # type: ignore[attr-defined]
    else:
        comp.enable_direct_tls = False
        comp.connect("127.0.0.1", server.component_port)  # type: ignore[attr-defined]
    await asyncio.wait_for(asyncio.shield(comp.started), 10)
    return comp


async def _register(server: Server, user: str) -> None:
    from suricate.jid import JID
    await server.auth.register(JID(user, "localhost", None), "pass")


async def test_component_exchanges_messages_with_a_client_over_tcp_and_tls(
        tmp_path: Path) -> None:
    async with server_with_components(tmp_path) as server:
        await _register(server, "alice")
        for tls, domain in ((False, "echo.localhost"), (True, "secure.localhost")):
            comp = await start_component(server, domain, tls=tls)
            alice = await connect(server, "alice@localhost/a", "pass")
            try:
                alice.send_message(mto=f"bot@{domain}", mbody="hello component")
                got = await asyncio.wait_for(comp.messages.get(), 5)
                assert str(got["from"]) == "alice@localhost/a"
                assert got["body"] == "hello component"
                comp.send_message(mto="alice@localhost/a", mfrom=f"bot@{domain}",
                                  mbody="hello human")
                back = await alice.next_message()
                assert str(back["from"]) == f"bot@{domain}"
                assert back["body"] == "hello human"
                # an IQ from the component to the server is answered (ping)
                rtt = await comp.plugin["xep_0199"].ping(jid="localhost", ifrom=domain, timeout=5)
                assert rtt is not None
            finally:
                await disconnect(alice)
                comp.disconnect()
                await asyncio.wait_for(asyncio.shield(comp.ended), 5)


async def _disco_items(entity: Any, ifrom: str | None = None) -> set[str]:
    items = await entity.plugin["xep_0030"].get_items(jid="localhost", ifrom=ifrom, timeout=5)
    return {item[0] for item in items["disco_items"]["items"]}


@pytest.mark.parametrize("users_see_hidden", [True, False])
async def test_hidden_components_are_hidden_from_users_as_mod_disco_says(
        tmp_path: Path, users_see_hidden: bool) -> None:
    # MongooseIM 6.4: a listener's hidden_components are left out of the disco#items sent to
    # users only when mod_disco.users_can_see_hidden_services = false (default true); an
    # entity without a user part (a component, a server) always gets every item.
    disco = "[modules.mod_disco]" + (
        "" if users_see_hidden else "\nusers_can_see_hidden_services = false")
    modules = MODULES_TOML.replace("[modules.mod_disco]", disco)
    async with server_with_components(tmp_path, modules=modules) as server:
        await _register(server, "alice")
        shown = await start_component(server, "shown.localhost")
        shown.register_plugin("xep_0030")
        hidden = await start_component(server, "hidden.localhost", tls=True)
        alice = await connect(server, "alice@localhost/a", "pass", plugins=("xep_0030",))
        try:
            jids = await _disco_items(alice)
            assert "shown.localhost" in jids
            assert ("hidden.localhost" in jids) is users_see_hidden
            assert {"shown.localhost", "hidden.localhost"} <= await _disco_items(
                shown, ifrom="shown.localhost")
        finally:
            await disconnect(alice)
            for comp in (shown, hidden):
                comp.disconnect()


async def raw_component(port: int, domain: str, extra: str = "") -> tuple[RawClient, str]:
    raw = await RawClient.open(port)
    await raw.send(f"<stream:stream xmlns='jabber:component:accept' "
                   f"xmlns:stream='http://etherx.jabber.org/streams' to='{domain}'{extra}>")
    header = await raw.expect(r"<stream:stream[^>]*>")
    stream_id = header.split("id='")[1].split("'")[0]
    return raw, stream_id


def handshake_digest(stream_id: str, secret: str = SECRET) -> str:
    """XEP-0114 §3: the handshake's SHA-1 of the stream id and the shared secret."""
    return hashlib.sha1((stream_id + secret).encode()).hexdigest()


async def test_wrong_secret_is_not_authorized(tmp_path: Path) -> None:
    async with server_with_components(tmp_path) as server:
        raw, stream_id = await raw_component(server.component_port,  # type: ignore[attr-defined]
                                              "bad.localhost")
        await raw.send(f"<handshake>{handshake_digest(stream_id, 'wrong')}</handshake>")
        out = (await raw.closed()).decode()
        assert "<not-authorized xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\"/>" in out
        assert out.endswith("</stream:stream>")
        assert server.components.lookup("bad.localhost") is None
        # slixmpp with a wrong secret: the stream ends, no session
        comp = Component("bad.localhost", "wrong")
        comp.connect("127.0.0.1", server.component_port)  # type: ignore[attr-defined]
        await asyncio.wait_for(asyncio.shield(comp.ended), 5)
        assert not comp.started.done() or comp.started.exception() is not None


async def test_a_header_without_a_domain_is_host_unknown(tmp_path: Path) -> None:
    # XEP-0114 §3: the component names its domain in 'to'; without one there is no domain to
    # serve (RFC 6120 §4.9.3.6 host-unknown, as MongooseIM 6.4 answers).
    async with server_with_components(tmp_path) as server:
        raw = await RawClient.open(server.component_port)  # type: ignore[attr-defined]
        await raw.send("<stream:stream xmlns='jabber:component:accept' "
                       "xmlns:stream='http://etherx.jabber.org/streams'>")
        out = (await raw.closed()).decode()
        assert "<host-unknown xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\"/>" in out


async def test_spoofed_from_ends_the_component_stream(tmp_path: Path) -> None:
    async with server_with_components(tmp_path) as server:
        raw, stream_id = await raw_component(server.component_port,  # type: ignore[attr-defined]
                                              "echo.localhost")
        await raw.send(f"<handshake>{handshake_digest(stream_id)}</handshake>")
        await raw.expect("<handshake/>")
        await raw.send("<message from='mallory@localhost' to='alice@localhost'>"
                       "<body>spoof</body></message>")
        out = (await raw.closed()).decode()
        assert "<invalid-from xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\"/>" in out
        assert server.components.lookup("echo.localhost") is None


async def test_a_stanza_without_addresses_gets_bad_request_and_the_component_stays(
        tmp_path: Path) -> None:
    # MongooseIM 6.4 (mongoose_component_connection) answers a component's stanza that lacks
    # 'from' or 'to' with a bad-request error and keeps the stream: one faulty stanza of a
    # gateway (a presence "broadcast" without 'to', a common slip with ComponentXMPP) must not
    # cut every user of the gateway off. An error or a result is never answered with an
    # error (RFC 6120 §8.3.1).
    async with server_with_components(tmp_path) as server:
        await _register(server, "alice")
        alice = await connect(server, "alice@localhost/a", "pass")
        raw, stream_id = await raw_component(server.component_port,  # type: ignore[attr-defined]
                                              "echo.localhost")
        try:
            await raw.send(f"<handshake>{handshake_digest(stream_id)}</handshake>")
            await raw.expect("<handshake/>")
            await raw.send("<message from='bot@echo.localhost' id='m1'><body>to whom?</body>"
                           "</message>")
            err = await raw.expect(r"<message [^>]*id=\"m1\".*?</message>")
            assert 'type="error"' in err and "<bad-request " in err
            await raw.send("<presence type='error' id='p1'/><presence id='p2'/>")
            # everything up to the answer to p2: nothing answered p1
            answered = await raw.expect(r"\A.*?<presence [^>]*id=\"p2\".*?</presence>")
            assert "<bad-request " in answered and 'id="p1"' not in answered
            # still connected and registered: the next stanza is delivered
            await raw.send("<message from='bot@echo.localhost' to='alice@localhost/a'>"
                           "<body>still here</body></message>")
            assert (await alice.next_message())["body"] == "still here"
            assert server.components.lookup("echo.localhost") is not None
        finally:
            await disconnect(alice)
            await raw.close()


async def test_check_from_false_lets_the_component_speak_for_others(tmp_path: Path) -> None:
    async with server_with_components(tmp_path, extra="check_from = false") as server:
        await _register(server, "alice")
        alice = await connect(server, "alice@localhost/a", "pass")
        raw, stream_id = await raw_component(server.component_port,  # type: ignore[attr-defined]
                                              "gateway.localhost")
        try:
            await raw.send(f"<handshake>{handshake_digest(stream_id)}</handshake>")
            await raw.expect("<handshake/>")
            await raw.send("<message from='someone@legacy.example' to='alice@localhost/a' "
                           "type='chat'><body>via gateway</body></message>")
            msg = await alice.next_message()
            assert str(msg["from"]) == "someone@legacy.example"
        finally:
            await disconnect(alice)
            await raw.close()


async def test_second_connection_for_a_domain_is_refused_by_default(tmp_path: Path) -> None:
    async with server_with_components(tmp_path) as server:
        first = await start_component(server, "echo.localhost")
        raw, stream_id = await raw_component(server.component_port,  # type: ignore[attr-defined]
                                              "echo.localhost")
        await raw.send(f"<handshake>{handshake_digest(stream_id)}</handshake>")
        out = (await raw.closed()).decode()
        assert "<conflict xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\"/>" in out
        # the first one is still connected and registered
        assert server.components.lookup("echo.localhost") is not None
        assert not first.ended.done()
        first.disconnect()


async def test_kick_old_replaces_the_first_connection(tmp_path: Path) -> None:
    async with server_with_components(tmp_path, extra='conflict_behaviour = "kick_old"') \
            as server:
        first = await start_component(server, "echo.localhost")
        second = await start_component(server, "echo.localhost")
        await asyncio.wait_for(asyncio.shield(first.ended), 5)
        assert "conflict" in first.stream_errors
        registered = server.components.lookup("echo.localhost")
        assert registered is not None and not registered.closed
        second.disconnect()


async def test_is_subdomain_registers_under_every_host(tmp_path: Path) -> None:
    async with server_with_components(tmp_path) as server:
        raw, stream_id = await raw_component(server.component_port,  # type: ignore[attr-defined]
                                              "muc", " is_subdomain='true'")
        await raw.send(f"<handshake>{handshake_digest(stream_id)}</handshake>")
        await raw.expect("<handshake/>")
        assert server.components.lookup("muc.localhost") is not None
        await raw.send("<message from='room@muc.localhost' to='nobody@localhost'>"
                       "<body>x</body></message>")
        await raw.close()


async def test_stanza_to_a_gone_component_domain_is_bounced(tmp_path: Path) -> None:
    async with server_with_components(tmp_path) as server:
        await _register(server, "alice")
        comp = await start_component(server, "echo.localhost")
        alice = await connect(server, "alice@localhost/a", "pass", plugins=("xep_0199",))
        try:
            # while it is there, the user's IQs reach it and its answers reach her
            assert await alice.plugin["xep_0199"].ping("bot@echo.localhost", timeout=5) \
                is not None
            comp.disconnect()
            await asyncio.wait_for(asyncio.shield(comp.ended), 5)
            await eventually(lambda: server.components.lookup("echo.localhost") is None)
            alice.send_message(mto="bot@echo.localhost", mbody="anyone?")
            err = await alice.next_message()
            assert err["type"] == "error"
            # A subdomain of a served domain that no component serves is not sent over s2s
            # (MongooseIM's default, general.route_subdomains unset): service-unavailable.
            assert err["error"]["condition"] == "service-unavailable"
            with pytest.raises(slixmpp.exceptions.IqError) as iq_error:
                await alice.plugin["xep_0199"].send_ping("bot@echo.localhost", timeout=5)
            assert iq_error.value.iq["error"]["condition"] == "service-unavailable"
        finally:
            await disconnect(alice)


async def test_kick_old_never_replaces_a_module_service(tmp_path: Path) -> None:
    # conflict_behaviour = "kick_old" replaces a connected component, not a service of the
    # server itself: a component naming conference.localhost (mod_muc's domain) is refused
    # with conflict and the MUC service keeps its domain, also after the component is gone.
    async with server_with_components(
            tmp_path, extra='conflict_behaviour = "kick_old"',
            modules=MODULES_TOML + "\n[modules.mod_muc]\n") as server:
        muc = server.components.lookup("conference.localhost")
        assert muc is not None
        raw, stream_id = await raw_component(server.component_port,  # type: ignore[attr-defined]
                                              "conference.localhost")
        await raw.send(f"<handshake>{handshake_digest(stream_id)}</handshake>")
        out = (await raw.closed()).decode()
        assert "<conflict xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\"/>" in out
        assert server.components.lookup("conference.localhost") is muc


async def test_presence_subscriptions_and_probes_with_a_component(tmp_path: Path) -> None:
    # RFC 6121 §3 and §4 with a component's JID as the contact: the subscription requests,
    # approvals, probes and presence broadcasts between a user and a gateway's contact all
    # cross the component stream, in both directions.
    async with server_with_components(tmp_path) as server:
        await _register(server, "alice")
        raw, stream_id = await raw_component(server.component_port,  # type: ignore[attr-defined]
                                              "echo.localhost")
        await raw.send(f"<handshake>{handshake_digest(stream_id)}</handshake>")
        await raw.expect("<handshake/>")
        alice = await connect(server, "alice@localhost/a", "pass")
        alice.auto_authorize = None
        alice.auto_subscribe = False
        bot = "bot@echo.localhost"
        try:
            await alice.get_roster(timeout=5)
            alice.send_presence()
            # the user subscribes to the gateway's contact, which approves and says online
            alice.send_presence(pto=bot, ptype="subscribe")
            await raw.expect(r"<presence [^>]*type=\"subscribe\"[^>]*/>")
            await raw.send(f"<presence from='{bot}' to='alice@localhost' type='subscribed'/>"
                           f"<presence from='{bot}' to='alice@localhost'/>")
            pres = await alice.next_presence(type_="available")
            if str(pres["from"]) != bot:  # her own presence, reflected first
                pres = await alice.next_presence(type_="available")
            assert str(pres["from"]) == bot
            assert alice.client_roster[bot]["subscription"] == "to"
            # the contact subscribes back, the user approves: the component gets her presence
            await raw.send(f"<presence from='{bot}' to='alice@localhost' type='subscribe'/>")
            await alice.next_presence(type_="subscribe")
            alice.send_presence(pto=bot, ptype="subscribed")
            await raw.expect(r"<presence [^>]*from=\"alice@localhost/a\"[^>]*>")
            # a probe from the component is answered with her presence (RFC 6121 §4.3.2)
            await raw.send(f"<presence from='{bot}' to='alice@localhost' type='probe'/>")
            await raw.expect(r"<presence [^>]*from=\"alice@localhost/a\"[^>]*>")
            # her next session probes the contact (RFC 6121 §4.2.2)
            await disconnect(alice)
            await raw.expect(r"<presence [^>]*type=\"unavailable\"[^>]*/>")
            alice = await connect(server, "alice@localhost/b", "pass")
            alice.send_presence()
            await raw.expect(r"<presence [^>]*type=\"probe\"[^>]*/>")
        finally:
            await disconnect(alice)
            await raw.close()


async def test_max_stanza_size_ends_the_component_stream(tmp_path: Path) -> None:
    async with server_with_components(tmp_path, extra="max_stanza_size = 1000") as server:
        raw, stream_id = await raw_component(server.component_port,  # type: ignore[attr-defined]
                                              "echo.localhost")
        await raw.send(f"<handshake>{handshake_digest(stream_id)}</handshake>")
        await raw.expect("<handshake/>")
        await raw.send("<message from='bot@echo.localhost' to='alice@localhost'><body>"
                       + "x" * 2000 + "</body></message>")
        out = (await raw.closed()).decode()
        # RFC 6120 §4.9.3.12: policy-violation for a stanza over the listener's limit
        assert "<policy-violation xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\"/>" in out
        assert server.components.lookup("echo.localhost") is None
