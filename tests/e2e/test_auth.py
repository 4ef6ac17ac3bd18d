"""Authentication over real sockets and real TLS: each SCRAM variant slixmpp supports, PLAIN,
-PLUS with every channel-binding type (own test client: no library exports tls-exporter), and
the refusals (tampered binding, wrong password, unknown mechanism, too many failures)."""

from __future__ import annotations

import asyncio
import base64
import ssl

import pytest

from suricate.core.server import Server
from suricate.jid import JID
from tests.e2e.harness import connect, disconnect
from tests.e2e.tls_client import TestClient


@pytest.fixture
async def alice(server: Server) -> str:
    await server.auth.register(JID.parse("alice@localhost"), "wonderland")
    return "alice@localhost"


@pytest.mark.parametrize("mech", ["SCRAM-SHA-1", "SCRAM-SHA-224", "SCRAM-SHA-256",
                                  "SCRAM-SHA-384", "SCRAM-SHA-512", "PLAIN"])
@pytest.mark.parametrize("direct_tls", [False, True], ids=["starttls", "direct-tls"])
async def test_slixmpp_logs_in_with_each_mechanism(server: Server, alice: str, mech: str,
                                                   direct_tls: bool) -> None:
    client = await connect(server, f"{alice}/r", "wonderland", direct_tls=direct_tls,
                           sasl_mech=mech)
    assert str(client.boundjid) == f"{alice}/r"
    await disconnect(client)


async def test_slixmpp_scram_plus_with_tls_unique_on_tls12(server: Server, alice: str) -> None:
    client_kwargs = {"sasl_mech": "SCRAM-SHA-1-PLUS"}
    from tests.e2e.harness import Client

    client = Client(f"{alice}/plus", "wonderland", **client_kwargs)
    client.ssl_context.maximum_version = ssl.TLSVersion.TLSv1_2
    client.enable_direct_tls = False
    client.connect("127.0.0.1", server.c2s_port)  # type: ignore[attr-defined]
    await asyncio.wait_for(client.session_started, 10)
    assert str(client.boundjid) == f"{alice}/plus"
    tls = client.transport.get_extra_info("ssl_object")  # type: ignore[union-attr]
    assert tls is not None and tls.version() == "TLSv1.2"
    await disconnect(client)


async def test_wrong_password_is_refused(server: Server, alice: str) -> None:
    with pytest.raises(PermissionError):
        await connect(server, f"{alice}/r", "not-the-password", sasl_mech="SCRAM-SHA-256")


def _plus_login(port: int, cb_type: str, version: str, direct: bool,
                tamper: bool = False) -> tuple[bool, str, str, str]:
    client = TestClient(port, direct_tls=direct, tls_version=version)
    try:
        features = client.open_stream()
        if not direct:
            features = client.starttls()
        # the binding is checked on the TLS version the case is about
        assert client.negotiated_version == f"TLSv{version}", client.negotiated_version
        ok, answer = client.scram_login("alice", "wonderland", "SHA-256", cb_type=cb_type,
                                        tamper=tamper)
        jid = client.bind() if ok else ""
        return ok, answer, features, jid
    finally:
        client.close()


@pytest.mark.parametrize(("cb_type", "version"), [
    ("tls-exporter", "1.3"), ("tls-server-end-point", "1.3"),
    ("tls-unique", "1.2"), ("tls-server-end-point", "1.2"),
])
@pytest.mark.parametrize("direct", [False, True], ids=["starttls", "direct-tls"])
async def test_scram_plus_channel_bindings(server: Server, alice: str, cb_type: str,
                                           version: str, direct: bool) -> None:
    port = server.tls_port if direct else server.c2s_port  # type: ignore[attr-defined]
    ok, answer, features, jid = await asyncio.to_thread(_plus_login, port, cb_type, version,
                                                        direct)
    assert ok, answer
    assert jid == "alice@localhost/test"
    # XEP-0440: the binding types on offer are advertised
    assert f"<channel-binding type=\"{cb_type}\"/>" in features
    assert "<mechanism>SCRAM-SHA-256-PLUS</mechanism>" in features


@pytest.mark.parametrize(("cb_type", "version"), [("tls-exporter", "1.3"),
                                                  ("tls-unique", "1.2")])
async def test_tampered_channel_binding_is_refused(server: Server, alice: str, cb_type: str,
                                                   version: str) -> None:
    ok, answer, _, _ = await asyncio.to_thread(_plus_login, server.c2s_port,  # type: ignore
                                               cb_type, version, False, True)
    assert not ok
    assert "<not-authorized/>" in answer


async def test_tls_unique_refused_on_tls13(server: Server, alice: str) -> None:
    def run() -> tuple[bool, str, str]:
        client = TestClient(server.c2s_port, tls_version="1.3")  # type: ignore[attr-defined]
        try:
            client.open_stream()
            features = client.starttls()
            # RFC 9266 §1: tls-unique is undefined on TLS 1.3; we compute some bytes anyway
            ok, answer = client.scram_login("alice", "wonderland", cb_type="tls-unique")
            return ok, answer, features
        finally:
            client.close()

    ok, answer, features = await asyncio.to_thread(run)
    assert not ok
    assert 'type="tls-unique"' not in features
    assert "<failure" in answer


async def test_plain_is_not_offered_before_tls(server: Server) -> None:
    def run() -> tuple[str, str]:
        client = TestClient(server.c2s_port)  # type: ignore[attr-defined]
        try:
            before = client.open_stream()
            after = client.starttls()
            return before, after
        finally:
            client.close()

    before, after = await asyncio.to_thread(run)
    assert "<starttls" in before
    assert "<mechanism>PLAIN</mechanism>" not in before
    assert "<mechanism>PLAIN</mechanism>" in after
    assert "<starttls" not in after


async def test_unknown_mechanism_and_too_many_failures(server: Server, alice: str) -> None:
    def run() -> tuple[str, str]:
        client = TestClient(server.c2s_port)  # type: ignore[attr-defined]
        try:
            client.open_stream()
            client.starttls()
            client.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='X-FOO'/>")
            unknown = client.expect(r"<failure.*?</failure>").group(0)
            bad = base64.b64encode(b"\0alice\0wrong").decode()
            for _ in range(2):
                client.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
                            f"mechanism='PLAIN'>{bad}</auth>")
                client.expect(r"<failure.*?</failure>")
            return unknown, client.read_until_closed()
        finally:
            client.close()

    unknown, rest = await asyncio.to_thread(run)
    assert "<invalid-mechanism/>" in unknown
    # the third failure in a row ends the stream (RFC 6120 §6.4.5)
    assert "<not-authorized/>" in rest or "<policy-violation" in rest
    assert rest.endswith("</stream:stream>")


async def test_other_clients_keep_working_after_a_bad_one(server: Server, alice: str) -> None:
    good = await connect(server, f"{alice}/good", "wonderland")

    def bad() -> str:
        client = TestClient(server.c2s_port)  # type: ignore[attr-defined]
        try:
            client.send("<?xml version='1.0'?><stream:stream to='localhost' "
                        "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
                        "version='1.0'><<<<")
            return client.read_until_closed()
        finally:
            client.close()

    text = await asyncio.to_thread(bad)
    assert "<not-well-formed" in text
    good.send_message(mto=f"{alice}/good", mbody="still here", mtype="chat")
    msg = await good.next_message()
    assert msg["body"] == "still here"
    await disconnect(good)
