"""libpurple 2.14 (Debian 12's ``finch`` and ``pidgin``) on the embedded default: the exact
stanzas it sends, replayed over real TLS, where the walk with the real client found the server
short of what the client expects (docs/compliance.md, "Pidgin and finch")."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from suricate.core.defaults import default_config_toml
from suricate.core.server import Server
from suricate.jid import JID
from suricate.net.certs import ensure_self_signed
from tests.e2e.harness import RawClient, free_port, serving

#: The stream header libpurple sends, before and after STARTTLS (jabber_stream_init).
HEADER = ("<stream:stream to='localhost' xmlns='jabber:client' "
          "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")


@pytest.fixture
async def default(tmp_path: Path) -> AsyncIterator[Server]:
    """The embedded default on free ports with its self-signed certificate, its listeners'
    state_timeout shortened to 0.3 s ("a person is slow" in a test), and alice."""
    cert, _ = ensure_self_signed(tmp_path / "certs", ["localhost"],
                                 services=("conference", "pubsub", "upload"))
    ports = {"c2s_port": free_port(), "tls_port": free_port()}
    toml = default_config_toml(cert.certfile, cert.keyfile, str(tmp_path / "suricate.db"),
                               http_port=free_port(), https_port=free_port(), **ports)
    assert "state_timeout = 60000" in toml  # the default's listeners (suricate/core/defaults.py)
    toml = toml.replace("state_timeout = 60000", "state_timeout = 300")
    async with serving(tmp_path, toml, **ports) as server:
        await server.auth.register(JID.parse("alice@localhost"), "pw")
        yield server


def _insecure() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def starttls(port: int) -> RawClient:
    """libpurple's STARTTLS on 5222: header, ``<starttls/>``, ``<proceed/>``, handshake."""
    raw = await RawClient.open(port)
    await raw.send("<?xml version='1.0' ?>" + HEADER)
    assert "urn:ietf:params:xml:ns:xmpp-tls" in await raw.expect(r"<stream:features.*?</stream:features>")
    await raw.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    await raw.expect(r"<proceed[^>]*/>")
    await raw.writer.start_tls(_insecure())
    return raw


async def test_the_person_accepting_the_certificate_is_given_time(default: Server) -> None:
    """After ``<proceed/>`` libpurple checks the certificate and, for a self-signed one,
    asks "Accept certificate for localhost?" before it restarts the stream: the
    listener's state_timeout (5 s on the default) ended the stream with
    <connection-timeout/> while the dialog was open, and the first sign-in always failed.
    With a self-signed certificate the restart gets CERTIFICATE_REVIEW_SECONDS, over
    STARTTLS and direct TLS alike."""
    raw = await starttls(default.c2s_port)  # type: ignore[attr-defined]
    await asyncio.sleep(1.0)  # the person reads the dialog and clicks "Accept"
    await raw.send(HEADER)
    features = await raw.expect(r"<stream:features.*?</stream:features>")
    assert "SCRAM-SHA-512" in features  # what libpurple (Cyrus SASL) then chooses
    # The steps after it keep the listener's state_timeout.
    assert b"connection-timeout" in await raw.closed(timeout=3)
    await raw.close()
    direct = await RawClient.open(default.tls_port, tls=True)  # type: ignore[attr-defined]
    await asyncio.sleep(1.0)
    await direct.open_stream()  # raises if the server had closed the stream
    await direct.close()


async def test_pep_is_announced_where_libpurple_looks(default: Server) -> None:
    """libpurple (jabber_disco_server_info_result_cb) takes PEP as there only when the
    *server's* disco#info lists the identity pubsub/pep; XEP-0163 §6.1 puts it on the
    account, where it was alone: Pidgin never published its avatar as XEP-0084, nor its
    mood or nick. Both now say it."""
    raw = await starttls(default.c2s_port)  # type: ignore[attr-defined]
    await raw.send(HEADER)
    await raw.expect(r"<stream:features.*?</stream:features>")
    token = base64.b64encode(b"\0alice\0pw").decode()
    await raw.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                   f"{token}</auth>")
    await raw.expect(r"<success[^>]*?(/>|>.*?</success>)")
    await raw.send(HEADER)
    await raw.expect(r"<stream:features.*?</stream:features>")
    await raw.send("<iq type='set' id='purple1a4706cb'><bind "
                   "xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>finch</resource>"
                   "</bind></iq>")
    await raw.expect(r"<iq[^>]*purple1a4706cb.*?</iq>")
    for iq_id, to in (("purple1a4706ce", "localhost"), ("purple1a4706cf", "alice@localhost")):
        await raw.send(f"<iq type='get' id='{iq_id}' to='{to}'>"
                       "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        info = (await raw.expect(rf"<iq[^>]*{iq_id}.*?</iq>")).replace("'", '"')
        assert '<identity category="pubsub" type="pep"/>' in info, info
    await raw.close()


async def test_libpurple_finds_and_uses_the_file_transfer_proxy(default: Server) -> None:
    """finch's start-up looks for a proxy/bytestreams identity among the server's disco#items
    (jabber_disco_info_cb), asks it for its streamhost and keeps it only if the streamhost's
    jid is the answer's from (jabber_disco_bytestream_server_cb); sending a file, it offers
    that streamhost, connects with SOCKS5 to the hash of sid + its JID + the target's and
    activates. The stanzas and bytes of the finch walk (docs/compliance.md)."""
    raw = await starttls(default.c2s_port)  # type: ignore[attr-defined]
    await raw.send(HEADER)
    await raw.expect(r"<stream:features.*?</stream:features>")
    token = base64.b64encode(b"\0alice\0pw").decode()
    await raw.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                   f"{token}</auth>")
    await raw.expect(r"<success[^>]*?(/>|>.*?</success>)")
    await raw.send(HEADER)
    await raw.expect(r"<stream:features.*?</stream:features>")
    await raw.send("<iq type='set' id='purple536816bc'><bind "
                   "xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>finch</resource>"
                   "</bind></iq>")
    await raw.expect(r"<iq[^>]*purple536816bc.*?</iq>")
    await raw.send("<iq type='get' id='purple536816be' to='localhost'>"
                   "<query xmlns='http://jabber.org/protocol/disco#items'/></iq>")
    items = (await raw.expect(r"<iq[^>]*purple536816be.*?</iq>")).replace("'", '"')
    assert '<item jid="proxy.localhost"/>' in items, items
    await raw.send("<iq type='get' id='purple536816c1' to='proxy.localhost'>"
                   "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
    info = (await raw.expect(r"<iq[^>]*purple536816c1.*?</iq>")).replace("'", '"')
    assert 'category="proxy" type="bytestreams"' in info, info
    await raw.send("<iq type='get' id='purple536816c9' to='proxy.localhost'>"
                   "<query xmlns='http://jabber.org/protocol/bytestreams'/></iq>")
    answer = (await raw.expect(r"<iq[^>]*purple536816c9.*?</iq>")).replace("'", '"')
    port = default.modules["mod_proxy65"].port  # type: ignore[attr-defined]
    assert 'from="proxy.localhost"' in answer
    assert f'<streamhost jid="proxy.localhost" host="localhost" port="{port}"/>' in answer
    # "Send File" to bob@localhost/slix: the target (bob) connected first, then finch.
    key = hashlib.sha1(b"purple536817e4alice@localhost/finchbob@localhost/slix").hexdigest()
    socks = []
    for _ in range(2):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x05\x01\x00")
        assert await reader.readexactly(2) == b"\x05\x00"
        writer.write(b"\x05\x01\x00\x03\x28" + key.encode() + b"\x00\x00")
        assert (await reader.readexactly(47))[:2] == b"\x05\x00"
        socks.append((reader, writer))
    await raw.send("<iq type='set' id='purple536817e6' to='proxy.localhost'><query "
                   "xmlns='http://jabber.org/protocol/bytestreams' sid='purple536817e4'>"
                   "<activate>bob@localhost/slix</activate></query></iq>")
    assert "type=\"result\"" in (await raw.expect(r"<iq[^>]*purple536817e6[^>]*>")).replace(
        "'", '"')
    socks[1][1].write(b"file.bin's bytes")
    assert await asyncio.wait_for(socks[0][0].readexactly(16), 5) == b"file.bin's bytes"
    for _, writer in socks:
        writer.close()
    await raw.close()
