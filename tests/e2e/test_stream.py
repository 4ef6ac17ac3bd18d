"""RFC 6120 stream rules over real sockets: bad input gets the right stream or stanza error,
the stream ends cleanly, and the server goes on serving others."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from suricate.core.server import Server
from suricate.jid import JID
from tests.e2e.harness import running_server
from tests.e2e.tls_client import STREAM_OPEN, TestClient, logged_in


@pytest.fixture
async def limited(tmp_path: Path) -> AsyncIterator[Server]:
    """A server whose STARTTLS listener has tight limits."""
    async with running_server(
        tmp_path, c2s_extra="max_stanza_size = 2000\nstate_timeout = 400",
        extra='[access]\nmax_user_sessions = [{acl = "all", value = 2}]',
    ) as srv:
        await srv.auth.register(JID.parse("alice@localhost"), "pw")
        await srv.auth.register(JID.parse("bob@localhost"), "pw")
        yield srv


def _raw(port: int, *chunks: str) -> str:
    client = TestClient(port)
    try:
        for chunk in chunks:
            client.send(chunk)
        return client.read_until_closed()
    finally:
        client.close()


HEADER = STREAM_OPEN.format(to="localhost")


@pytest.mark.parametrize(("payload", "condition"), [
    ("<message><body>unclosed</message>", "not-well-formed"),
    ("<!-- a comment -->", "restricted-xml"),
    ("<?pi data?>", "restricted-xml"),
    ("<message><body>&custom;</body></message>", "restricted-xml"),
    ("<message xmlns='jabber:client'>hi</message>", "not-authorized"),
    ("<iq type='get' id='1'><query xmlns='jabber:iq:roster'/></iq>", "not-authorized"),
])
async def test_bad_input_before_auth(limited: Server, payload: str, condition: str) -> None:
    text = await asyncio.to_thread(_raw, limited.c2s_port,  # type: ignore[attr-defined]
                                   HEADER, payload)
    assert f"<{condition} xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\"/>" in text, text
    assert text.endswith("</stream:stream>")


async def test_dtd_is_refused(limited: Server) -> None:
    text = await asyncio.to_thread(
        _raw, limited.c2s_port,  # type: ignore[attr-defined]
        "<?xml version='1.0'?><!DOCTYPE lol [<!ENTITY lol 'lol'><!ENTITY lol2 '&lol;&lol;'>]>"
        + HEADER.removeprefix("<?xml version='1.0'?>"))
    assert "<restricted-xml" in text
    assert "<stream:stream" in text  # RFC 6120 §4.9.1.1: header first, then the error


@pytest.mark.parametrize(("header", "condition"), [
    (STREAM_OPEN.format(to="elsewhere.example"), "host-unknown"),
    (STREAM_OPEN.format(to="localhost").replace("jabber:client", "jabber:server"),
     "invalid-namespace"),
    (STREAM_OPEN.format(to="localhost").replace("version='1.0'>", ">"), "unsupported-version"),
    (STREAM_OPEN.format(to="localhost").replace(
        "http://etherx.jabber.org/streams", "urn:wrong"), "invalid-namespace"),
])
async def test_bad_stream_header(limited: Server, header: str, condition: str) -> None:
    text = await asyncio.to_thread(_raw, limited.c2s_port, header)  # type: ignore[attr-defined]
    assert f"<{condition} " in text, text


async def test_state_timeout_closes_a_silent_connection(limited: Server) -> None:
    text = await asyncio.to_thread(_raw, limited.c2s_port, HEADER)  # type: ignore[attr-defined]
    assert "<connection-timeout" in text


async def test_oversized_stanza_is_a_policy_violation(limited: Server) -> None:
    def run() -> str:
        client = logged_in(limited.c2s_port, "alice", "pw")  # type: ignore[attr-defined]
        try:
            client.send("<message to='bob@localhost'><body>" + "x" * 5000 + "</body></message>")
            return client.read_until_closed()
        finally:
            client.close()

    text = await asyncio.to_thread(run)
    assert "<policy-violation" in text


async def test_session_rules(limited: Server) -> None:
    def run() -> tuple[str, str, str, str]:
        client = logged_in(limited.c2s_port, "alice", "pw")  # type: ignore[attr-defined]
        try:
            # whitespace keepalive (RFC 6120 §4.6.1) is fine
            client.send("   \n ")
            # an invalid JID in 'to' is a stanza error, the stream stays up
            client.send("<message to='a@b@c' id='m1'><body>x</body></message>")
            malformed = client.expect(r"<message[^>]*type=\"error\".*?</message>").group(0)
            client.send("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
            alive = client.expect(r"<iq[^>]*id=\"p1\"[^>]*>|<iq[^>]*id=\"p1\"[^>]*/>").group(0)
            client.send("<foo xmlns='jabber:client'/>")
            unsupported = client.read_until_closed()
        finally:
            client.close()
        spoofer = logged_in(limited.c2s_port, "alice", "pw", "r2")  # type: ignore[attr-defined]
        try:
            spoofer.send("<message from='bob@localhost/x' to='alice@localhost'><body>x</body>"
                         "</message>")
            spoofed = spoofer.read_until_closed()
        finally:
            spoofer.close()
        return malformed, alive, unsupported, spoofed

    malformed, alive, unsupported, spoofed = await asyncio.to_thread(run)
    assert "<jid-malformed" in malformed
    assert 'id="p1"' in alive
    assert "<unsupported-stanza-type" in unsupported
    assert "<invalid-from" in spoofed


async def test_resource_conflict_and_session_limit(limited: Server) -> None:
    """RFC 6120 §7.7.2.2: a second session of one full JID replaces the first (<conflict/>).
    max_user_sessions (2 here) as MongooseIM 6.4 applies it: a bind over the limit opens, and
    the account's oldest session ends with <conflict/>; the others stay."""
    def run() -> tuple[str, str, str, str]:
        first = logged_in(limited.c2s_port, "bob", "pw", "same")  # type: ignore[attr-defined]
        second = logged_in(limited.c2s_port, "bob", "pw", "same")  # type: ignore[attr-defined]
        third = fourth = None
        try:
            replaced = first.read_until_closed()
            third = logged_in(limited.c2s_port, "bob", "pw", "other")  # type: ignore
            fourth = TestClient(limited.c2s_port)  # type: ignore[attr-defined]
            fourth.open_stream()
            fourth.starttls()
            import base64
            token = base64.b64encode(b"\0bob\0pw").decode()
            fourth.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                        f"{token}</auth>")
            fourth.expect(r"<success")
            fourth.open_stream()
            fourth.send("<iq type='set' id='b2'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                        "<resource>fourth</resource></bind></iq>")
            bound = fourth.expect(r"<iq[^>]*id=\"b2\".*?</iq>").group(0)
            oldest = second.read_until_closed()
            third.send("<iq type='get' id='p3'><ping xmlns='urn:xmpp:ping'/></iq>")
            alive = third.expect(r"<iq[^>]*id=\"p3\"[^>]*/?>").group(0)
            return replaced, bound, oldest, alive
        finally:
            for client in (first, second, third, fourth):
                if client is not None:
                    client.close()

    replaced, bound, oldest, alive = await asyncio.to_thread(run)
    assert "<conflict" in replaced
    assert 'type="result"' in bound and "bob@localhost/fourth" in bound
    assert "<conflict" in oldest
    assert 'type="result"' in alive


async def test_direct_tls_negotiates_alpn(limited: Server) -> None:
    def run() -> tuple[bytes | None, str]:
        client = TestClient(limited.tls_port, direct_tls=True,  # type: ignore[attr-defined]
                            alpn=[b"xmpp-client"])
        try:
            assert client.tls is not None
            return client.tls.get_alpn_proto_negotiated(), client.open_stream()
        finally:
            client.close()

    alpn, features = await asyncio.to_thread(run)
    assert alpn == b"xmpp-client"
    assert "<starttls" not in features
    assert "<mechanism>PLAIN</mechanism>" in features


async def test_starttls_required(tmp_path: Path) -> None:
    async with running_server(tmp_path, tls_mode="starttls_required") as srv:
        await srv.auth.register(JID.parse("alice@localhost"), "pw")

        def run() -> tuple[str, str, str]:
            client = TestClient(srv.c2s_port)  # type: ignore[attr-defined]
            try:
                features = client.open_stream()
                client.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
                            "mechanism='SCRAM-SHA-256'>biwsbj1hbGljZSxyPWFiYw==</auth>")
                refused = client.expect(r"<failure.*?</failure>").group(0)
                after = client.starttls()
                return features, refused, after
            finally:
                client.close()

        features, refused, after = await asyncio.to_thread(run)
    assert "<required/>" in features
    assert "<mechanisms" not in features
    assert "<encryption-required/>" in refused
    assert "<mechanism>SCRAM-SHA-256</mechanism>" in after


async def test_certificate_chosen_by_sni(tmp_path: Path) -> None:
    from cryptography import x509

    from suricate.config import parse_config
    from suricate.modules import MODULES
    from suricate.net.certs import ensure_self_signed
    from tests.e2e.harness import free_port, server_toml

    hosts = ["localhost", "chat.example"]
    _, per_host = ensure_self_signed(tmp_path / "sni", hosts)
    text = server_toml(tmp_path, free_port(), free_port()).replace(
        'hosts = ["localhost"]', 'hosts = ["localhost", "chat.example"]')
    srv = Server(parse_config(text, tmp_path), tmp_path, MODULES, sni_certs=per_host)
    await srv.start()
    try:
        port = srv.listeners[1].port

        def names(sni: str) -> list[str]:
            client = TestClient(port, direct_tls=True, sni=sni)
            try:
                assert client.tls is not None
                cert = client.tls.get_peer_certificate()
                assert cert is not None
                san = cert.to_cryptography().extensions.get_extension_for_class(
                    x509.SubjectAlternativeName).value
                return list(san.get_values_for_type(x509.DNSName))
            finally:
                client.close()

        assert await asyncio.to_thread(names, "chat.example") == ["chat.example"]
        assert await asyncio.to_thread(names, "localhost") == ["localhost"]
    finally:
        await srv.stop()


async def test_hide_service_name_closes_silently(tmp_path: Path) -> None:
    from suricate.config import parse_config
    from suricate.modules import MODULES
    from tests.e2e.harness import free_port, server_toml

    text = server_toml(tmp_path, free_port(), free_port()).replace(
        'loglevel = "info"', 'loglevel = "info"\nhide_service_name = true')
    srv = Server(parse_config(text, tmp_path), tmp_path, MODULES)
    await srv.start()
    try:
        port = srv.listeners[0].port
        garbage = await asyncio.to_thread(_raw, port, "GET / HTTP/1.1\r\n\r\n")
        wrong_host = await asyncio.to_thread(_raw, port, STREAM_OPEN.format(to="other.example"))
        good = await asyncio.to_thread(_raw, port, HEADER, "</stream:stream>")
    finally:
        await srv.stop()
    assert garbage == "" and wrong_host == ""
    assert "<stream:features>" in good


async def test_stanzas_before_bad_bytes_in_the_same_read_are_delivered(limited: Server) -> None:
    def run() -> tuple[str, str]:
        bob = logged_in(limited.c2s_port, "bob", "pw", "b")  # type: ignore[attr-defined]
        alice = logged_in(limited.c2s_port, "alice", "pw", "a")  # type: ignore[attr-defined]
        try:
            bob.send("<presence/>")
            bob.expect(r"<presence[^>]*/>|<presence[^>]*>.*?</presence>")
            # one write: a good message, then garbage
            alice.send("<message to='bob@localhost/b' type='chat'><body>first</body></message>"
                       "<<<")
            ended = alice.read_until_closed()
            got = bob.expect(r"<message[^>]*>.*?</message>").group(0)
            return ended, got
        finally:
            alice.close()
            bob.close()

    ended, got = await asyncio.to_thread(run)
    assert "<not-well-formed" in ended
    assert "<body>first</body>" in got

ANY_IQ = r"<iq[^>]*/>|<iq[^>]*[^/]>.*?</iq>"


async def test_iq_without_id_is_a_bad_request(limited: Server) -> None:
    """RFC 6120 §8.1.3 and §8.2.3: 'id' is REQUIRED on an IQ. Such an IQ is neither answered
    as if valid nor routed on: the server returns bad-request (§8.3.3.1), which can carry no
    'id' (§8.3.1 copies the request's), never answers an error with an error (§8.3.1), and
    keeps the stream: it is a stanza error, not a stream error."""
    def run() -> tuple[list[str], str, str, str]:
        alice = logged_in(limited.c2s_port, "alice", "pw", "a")  # type: ignore[attr-defined]
        bob = logged_in(limited.c2s_port, "bob", "pw", "b")  # type: ignore[attr-defined]
        try:
            errors = []
            for iq in [
                "<iq type='get'><ping xmlns='urn:xmpp:ping'/></iq>",  # to the account
                "<iq type='get' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",  # server
                "<iq type='get' to='alice@localhost'><query xmlns='jabber:iq:roster'/></iq>",
                "<iq type='get' to='bob@localhost/b'><ping xmlns='urn:xmpp:ping'/></iq>",
                "<iq type='set' to='bob@localhost'><vCard xmlns='vcard-temp'/></iq>",
                "<iq type='result' to='bob@localhost/b'/>",
            ]:
                alice.send(iq)
                errors.append(alice.expect(ANY_IQ).group(0))
            # an error without an id is dropped: no error about an error
            alice.send("<iq type='error' to='bob@localhost/b'><error type='cancel'>"
                       "<bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>")
            alice.send("<iq type='get' id='alive'><ping xmlns='urn:xmpp:ping'/></iq>")
            alive = alice.expect(ANY_IQ).group(0)
            # bob got none of the IQs without an id: the first IQ he sees is this one
            alice.send("<iq type='get' id='marker' to='bob@localhost/b'>"
                       "<ping xmlns='urn:xmpp:ping'/></iq>")
            seen_by_bob = bob.expect(ANY_IQ).group(0)
            return errors, alive, seen_by_bob, alice.buffer.decode()
        finally:
            alice.close()
            bob.close()

    errors, alive, seen_by_bob, rest = await asyncio.to_thread(run)
    for error in errors:
        assert 'type="error"' in error, error
        assert "<bad-request " in error, error
        assert " id=" not in error.split(">", 1)[0], error
    assert 'id="alive"' in alive and 'type="result"' in alive, alive
    assert 'id="marker"' in seen_by_bob, seen_by_bob
    assert "<iq" not in rest
