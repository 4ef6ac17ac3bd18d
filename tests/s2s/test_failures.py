"""Federation failures: every stanza waiting for a connection that cannot be made is bounced
with the right error (RFC 6120 §8.3.3.12, .16, .17), and a misbehaving peer gets the right
stream error (RFC 6120 §4.9.3) without harming anyone else."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from suricate.core.server import Server
from suricate.jid import JID
from tests.e2e.harness import RawClient, disconnect, free_port
from tests.s2s.harness import federated_server, federated_toml, login, register, two_servers
from tests.s2s.pki import CertificateAuthority

FAST_DNS = "dns.timeout = 1\ndns.retries = 1\nstate_timeout = 1000\n"


@contextlib.asynccontextmanager
async def lone_server(tmp: Path, peers: dict[str, tuple[str, int]], extra: str = "",
                      outgoing_extra: str = FAST_DNS, auth: str = "dialback",
                      ca: CertificateAuthority | None = None) -> AsyncIterator[Server]:
    c2s, s2s = free_port(), free_port()
    toml = federated_toml(tmp, "alpha.test", c2s, s2s, peers, auth, ca, extra=extra,
                          outgoing_extra=outgoing_extra)
    async with federated_server(tmp, "alpha.test", toml, c2s, s2s) as server:
        await register(server, "alice")
        yield server


async def _bounces(server: Server, to: str, count: int = 3, timeout: float = 10) -> list[Any]:
    """Send ``count`` messages to ``to``; return the errors that come back."""
    alice = await login(server, "alice@alpha.test/a")
    try:
        alice.send_presence()
        for i in range(count):
            alice.send_message(mto=to, mbody=f"m{i}", mtype="chat")
        errors = [await alice.next_message(timeout=timeout) for _ in range(count)]
        return errors
    finally:
        await disconnect(alice)


def _conditions(errors: list[Any]) -> set[str]:
    assert all(e["type"] == "error" for e in errors)
    return {e["error"]["condition"] for e in errors}


async def test_unknown_domain_bounces_remote_server_not_found(tmp_path: Path) -> None:
    async with lone_server(tmp_path, {}) as server:
        errors = await _bounces(server, "bob@nowhere.invalid")
        assert _conditions(errors) == {"remote-server-not-found"}
        assert sorted(e["body"] for e in errors) == ["m0", "m1", "m2"]  # payload kept
        assert "server-to-server connection failed" in errors[0]["error"]["text"]


async def test_refused_connection_bounces_remote_server_not_found(tmp_path: Path) -> None:
    closed = free_port()
    async with lone_server(tmp_path, {"beta.test": ("127.0.0.1", closed)}) as server:
        errors = await _bounces(server, "bob@beta.test")
        assert _conditions(errors) == {"remote-server-not-found"}
        # during the back-off, a new stanza is bounced at once, without a new attempt
        alice = await login(server, "alice@alpha.test/b")
        try:
            alice.send_message(mto="bob@beta.test", mbody="again", mtype="chat")
            err = await alice.next_message(timeout=2)
            assert err["error"]["condition"] == "remote-server-not-found"
            assert "next attempt" in err["error"]["text"]
        finally:
            await disconnect(alice)


async def test_silent_peer_bounces_remote_server_timeout(tmp_path: Path) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await reader.read(1 << 16)
            await asyncio.sleep(30)
    peer = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = peer.sockets[0].getsockname()[1]
    try:
        async with lone_server(tmp_path, {"beta.test": ("127.0.0.1", port)}) as server:
            errors = await _bounces(server, "bob@beta.test")
            assert _conditions(errors) == {"remote-server-timeout"}
    finally:
        peer.close()


async def test_untrusted_certificate_bounces(tmp_path: Path) -> None:
    # beta presents a certificate from its own CA; alpha trusts another one
    beta_ca = CertificateAuthority(tmp_path / "beta-ca")
    alpha_ca = CertificateAuthority(tmp_path / "alpha-ca")
    c2s, s2s = free_port(), free_port()
    beta_toml = federated_toml(tmp_path / "beta", "beta.test", c2s, s2s, {}, "external",
                               beta_ca)
    async with federated_server(tmp_path / "beta", "beta.test", beta_toml, c2s, s2s), \
            lone_server(tmp_path / "alpha", {"beta.test": ("127.0.0.1", s2s)},
                        auth="external", ca=alpha_ca) as alpha:
        errors = await _bounces(alpha, "bob@beta.test")
        assert _conditions(errors) == {"remote-server-not-found"}
        assert "certificate not trusted" in errors[0]["error"]["text"]


async def test_tls_handshake_failure_bounces(tmp_path: Path) -> None:
    # a peer that offers STARTTLS, says proceed, then answers the ClientHello with garbage
    async def broken(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await reader.readuntil(b">")
            writer.write(b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
                         b"xmlns:stream='http://etherx.jabber.org/streams' id='x' "
                         b"version='1.0'><stream:features><starttls "
                         b"xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:features>")
            await reader.readuntil(b"/>")
            writer.write(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            await reader.read(1 << 16)
            writer.write(b"this is not TLS" * 10)
            await asyncio.sleep(5)
    peer = await asyncio.start_server(broken, "127.0.0.1", 0)
    port = peer.sockets[0].getsockname()[1]
    try:
        async with lone_server(tmp_path, {"beta.test": ("127.0.0.1", port)}) as server:
            errors = await _bounces(server, "bob@beta.test")
            assert _conditions(errors) == {"remote-server-not-found"}
            assert "TLS failed" in errors[0]["error"]["text"]
    finally:
        peer.close()


async def test_outgoing_policy_deny_bounces_not_allowed(tmp_path: Path) -> None:
    deny = '[[s2s.host_policy]]\nhost = "beta.test"\npolicy = "deny"\n'
    async with lone_server(tmp_path, {"beta.test": ("127.0.0.1", free_port())},
                           extra=deny) as server:
        errors = await _bounces(server, "bob@beta.test")
        assert _conditions(errors) == {"not-allowed"}
        assert not server.s2s.links  # no connection was even tried


async def test_incoming_policy_deny_is_a_policy_violation(tmp_path: Path) -> None:
    async with two_servers(tmp_path, "dialback") as (alpha, beta):
        beta.s2s.default_policy = "deny"  # beta federates with nobody
        await register(alpha, "alice")
        alice = await login(alpha, "alice@alpha.test/a")
        try:
            alice.send_message(mto="bob@beta.test", mbody="let me in", mtype="chat")
            err = await alice.next_message(timeout=10)
            assert err["error"]["condition"] == "remote-server-not-found"
            assert "policy-violation" in err["error"]["text"]
        finally:
            await disconnect(alice)



async def test_incoming_policy_of_host_config_denies_sasl_external_too(tmp_path: Path) -> None:
    # [[host_config]] s2s (6.4: per host policy) decides for the local domain an incoming
    # stream addresses, whatever way the peer authenticates (XEP-0178 as well as XEP-0220).
    deny = '[[host_config]]\nhost = "beta.test"\n[host_config.s2s]\ndefault_policy = "deny"\n'
    async with two_servers(tmp_path, "external",
                           **{"beta.test": {"extra": deny}}) as (alpha, beta):
        await register(alpha, "alice")
        await register(beta, "bob")
        alice = await login(alpha, "alice@alpha.test/a")
        try:
            alice.send_message(mto="bob@beta.test", mbody="let me in", mtype="chat")
            err = await alice.next_message(timeout=10)
            assert err["type"] == "error"
            assert err["error"]["condition"] == "remote-server-not-found"
            assert "policy-violation" in err["error"]["text"]
        finally:
            await disconnect(alice)


async def test_incoming_policy_of_host_config_allows_what_the_top_level_denies(
        tmp_path: Path) -> None:
    allow = '[[host_config]]\nhost = "beta.test"\n[host_config.s2s]\ndefault_policy = "allow"\n'
    async with two_servers(tmp_path, "dialback",
                           **{"beta.test": {"extra": allow}}) as (alpha, beta):
        beta.s2s.default_policy = "deny"  # the top level federates with nobody
        await register(alpha, "alice")
        await register(beta, "bob")
        alice = await login(alpha, "alice@alpha.test/a")
        bob = await login(beta, "bob@beta.test/b")
        try:
            alice.send_message(mto="bob@beta.test/b", mbody="hello", mtype="chat")
            msg = await bob.next_message(timeout=10)
            assert msg["body"] == "hello"
        finally:
            await disconnect(alice, bob)

# -- a misbehaving peer on our s2s listener ----------------------------------------------------
def _header(frm: str = "evil.test", to: str = "beta.test") -> str:
    return ("<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
            "xmlns:stream='http://etherx.jabber.org/streams' "
            f"xmlns:db='jabber:server:dialback' from='{frm}' to='{to}' version='1.0'>")


async def test_incoming_stream_errors(tmp_path: Path) -> None:
    c2s, s2s = free_port(), free_port()
    toml = federated_toml(tmp_path, "beta.test", c2s, s2s, {}, "dialback", None,
                          s2s_extra="state_timeout = 500")
    async with federated_server(tmp_path, "beta.test", toml, c2s, s2s):
        cases = [
            (_header(to="unknown.test"), "host-unknown"),
            (_header(frm="beta.test"), "invalid-from"),
            (_header() + "<message from='x@evil.test' to='y@beta.test'/>", "not-authorized"),
            ("", "connection-timeout"),
            ("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
             "xmlns:stream='http://etherx.jabber.org/streams' to='beta.test'>",
             "invalid-namespace"),
        ]
        for opening, condition in cases:
            raw = await RawClient.open(s2s)
            if opening:
                await raw.send(opening)
            out = (await raw.closed(timeout=5)).decode()
            assert f"<{condition} xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\"/>" in out, out
            await raw.close()


def _key(secret: str, receiving: str, originating: str, stream_id: str) -> str:
    keyed = hashlib.sha256(secret.encode()).hexdigest().encode()
    return hmac.new(keyed, f"{receiving} {originating} {stream_id}".encode(),
                    hashlib.sha256).hexdigest()


async def test_dialback_then_spoofed_from_and_missing_to(tmp_path: Path) -> None:
    """A raw peer claiming alpha.test (whose real server shares its secret with the test)
    passes dialback, then misbehaves: beta ends only that stream."""
    async with two_servers(tmp_path, "dialback") as (alpha, beta):
        alpha.s2s.secret = "the-alpha-secret"  # as [s2s] shared would set it
        await register(beta, "bob")
        bob = await login(beta, "bob@beta.test/b")
        try:
            for bad, condition in (
                    ("<message from='mallory@evil.test' to='bob@beta.test'/>", "invalid-from"),
                    ("<message from='alice@alpha.test'/>", "improper-addressing"),
                    ("<message from='alice@alpha.test' to='bob@elsewhere.test'/>",
                     "host-unknown")):
                raw = await RawClient.open(beta.s2s_port)  # type: ignore[attr-defined]
                await raw.send(_header(frm="alpha.test"))
                header = await raw.expect(r"<stream:stream[^>]*>")
                stream_id = header.split("id='")[1].split("'")[0]
                await raw.expect("</stream:features>")
                key = _key("the-alpha-secret", "beta.test", "alpha.test", stream_id)
                await raw.send(f"<db:result from='alpha.test' to='beta.test'>{key}</db:result>")
                await raw.expect("type=\"valid\"|type='valid'", timeout=10)
                await raw.send("<message from='alice@alpha.test' to='bob@beta.test/b' "
                               "type='chat'><body>legit</body></message>")
                assert (await bob.next_message())["body"] == "legit"
                await raw.send(bad)
                out = (await raw.closed()).decode()
                assert f"<{condition} " in out, out
            # bob's session and the real federation are unharmed
            assert beta.sessions.lookup(JID.parse(str(bob.boundjid))) is not None
        finally:
            await disconnect(bob)


async def test_dialback_with_a_wrong_key_is_refused(tmp_path: Path) -> None:
    async with two_servers(tmp_path, "dialback") as (alpha, beta):
        raw = await RawClient.open(beta.s2s_port)  # type: ignore[attr-defined]
        await raw.send(_header(frm="alpha.test"))
        await raw.expect("</stream:features>")
        await raw.send("<db:result from='alpha.test' to='beta.test'>0badc0ffee</db:result>")
        out = (await raw.closed(timeout=10)).decode()
        assert "type=\"invalid\"" in out
        assert "<not-authorized " in out
