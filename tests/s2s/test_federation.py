"""Two Suricate servers federating in one process: messages, presence subscriptions and pings
in both directions, over TLS, once authenticated with SASL EXTERNAL (XEP-0178) and once with
Server Dialback (XEP-0220)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from suricate.core.server import Server
from tests.e2e.harness import disconnect, eventually, free_port
from tests.s2s.harness import federated_server, federated_toml, login, register, two_servers
from tests.s2s.pki import CertificateAuthority


def _out_auth(server: Server, remote: str) -> str:
    link = server.s2s.links.get((server.default_domain, remote))
    return link.stream.auth_method if link is not None and link.stream is not None else ""


@pytest.mark.parametrize("auth", ["external", "dialback"])
async def test_two_servers_exchange_messages_presence_and_pings(tmp_path: Path,
                                                                auth: str) -> None:
    async with two_servers(tmp_path, auth) as (alpha, beta):
        await register(alpha, "alice")
        await register(beta, "bob")
        plugins = ("xep_0199", "xep_0030")
        alice = await login(alpha, "alice@alpha.test/a", plugins=plugins)
        bob = await login(beta, "bob@beta.test/b", plugins=plugins)
        try:
            alice.send_presence()
            bob.send_presence()
            await alice.next_presence(type_="available")  # own presence echo
            await bob.next_presence(type_="available")
            # messages, both directions
            alice.send_message(mto="bob@beta.test/b", mbody="hi bob", mtype="chat")
            msg = await bob.next_message()
            assert (str(msg["from"]), msg["body"]) == ("alice@alpha.test/a", "hi bob")
            bob.send_message(mto="alice@alpha.test", mbody="hi alice", mtype="chat")
            msg = await alice.next_message()
            assert (str(msg["from"]), msg["body"]) == ("bob@beta.test/b", "hi alice")

            # both directions authenticated the way the test asked for
            assert _out_auth(alpha, "beta.test") == auth
            assert _out_auth(beta, "alpha.test") == auth
            assert all(s.conn.tls is not None for s in beta.s2s.incoming)

            # pings: to the remote server and to the remote client's full JID
            assert await alice.plugin["xep_0199"].ping("beta.test", timeout=5) is not None
            assert await bob.plugin["xep_0199"].ping("alpha.test", timeout=5) is not None
            assert await alice.plugin["xep_0199"].ping("bob@beta.test/b",
                                                       timeout=5) is not None
            assert await bob.plugin["xep_0199"].ping("alice@alpha.test/a",
                                                     timeout=5) is not None

            # presence subscription alice -> bob, approved; then bob -> alice
            alice.send_presence(pto="bob@beta.test", ptype="subscribe")
            request = await bob.next_presence(type_="subscribe")
            assert str(request["from"]) == "alice@alpha.test"
            bob.send_presence(pto="alice@alpha.test", ptype="subscribed")
            approved = await alice.next_presence(type_="subscribed")
            assert str(approved["from"]) == "bob@beta.test"

            async def bob_seen() -> bool:
                while not alice.presences.empty():
                    pres = alice.presences.get_nowait()
                    if str(pres["from"]) == "bob@beta.test/b" and pres["type"] == "available":
                        return True
                return False
            await eventually(bob_seen, timeout=5)

            bob.send_presence(pto="alice@alpha.test", ptype="subscribe")
            request = await alice.next_presence(type_="subscribe")
            assert str(request["from"]) == "bob@beta.test"
            alice.send_presence(pto="bob@beta.test", ptype="subscribed")
            approved = await bob.next_presence(type_="subscribed")
            assert str(approved["from"]) == "alice@alpha.test"
        finally:
            await disconnect(alice, bob)


async def test_messages_queued_while_connecting_all_arrive_in_order(tmp_path: Path) -> None:
    async with two_servers(tmp_path, "dialback") as (alpha, beta):
        await register(alpha, "alice")
        await register(beta, "bob")
        alice = await login(alpha, "alice@alpha.test/a")
        bob = await login(beta, "bob@beta.test/b")
        try:
            for i in range(20):
                alice.send_message(mto="bob@beta.test/b", mbody=f"m{i}", mtype="chat")
            bodies = [(await bob.next_message())["body"] for _ in range(20)]
            assert bodies == [f"m{i}" for i in range(20)]
            # one pooled connection for the domain pair
            assert len(alpha.s2s.links) == 1
        finally:
            await disconnect(alice, bob)


async def test_message_to_a_remote_user_without_session_is_handled_remotely(
        tmp_path: Path) -> None:
    async with two_servers(tmp_path, "dialback") as (alpha, beta):
        await register(alpha, "alice")
        alice = await login(alpha, "alice@alpha.test/a")
        try:
            # no such account on beta: beta answers service-unavailable over s2s
            alice.send_message(mto="nobody@beta.test", mbody="hello?", mtype="chat")
            err = await alice.next_message(timeout=10)
            assert err["type"] == "error"
            assert err["error"]["condition"] == "service-unavailable"
            assert str(err["from"]) == "nobody@beta.test"
        finally:
            await disconnect(alice)



async def test_address_override_is_used_whatever_ip_versions_says(tmp_path: Path) -> None:
    # s2s.outgoing.address names the address to connect to; ip_versions orders the addresses
    # a name resolves to (RFC 6120 §3.2.1), it does not filter a configured IPv4 address out
    # (MongooseIM 6.4 uses a predefined address as it is).
    only_v6 = {"outgoing_extra": "ip_versions = [6]"}
    async with two_servers(tmp_path, "dialback", **{"alpha.test": only_v6}) as (alpha, beta):
        await register(alpha, "alice")
        await register(beta, "bob")
        alice = await login(alpha, "alice@alpha.test/a")
        bob = await login(beta, "bob@beta.test/b")
        try:
            alice.send_message(mto="bob@beta.test/b", mbody="over v4", mtype="chat")
            msg = await bob.next_message(timeout=10)
            assert msg["body"] == "over v4"
        finally:
            await disconnect(alice, bob)

async def test_shutdown_ends_incoming_streams_with_system_shutdown(tmp_path: Path) -> None:
    async with two_servers(tmp_path, "dialback") as (alpha, beta):
        await register(alpha, "alice")
        await register(beta, "bob")
        alice = await login(alpha, "alice@alpha.test/a")
        bob = await login(beta, "bob@beta.test/b")
        try:
            alice.send_message(mto="bob@beta.test/b", mbody="x", mtype="chat")
            await bob.next_message()
            assert beta.s2s.incoming
            await beta.stop()

            async def gone() -> bool:
                return not alpha.s2s.links[("alpha.test", "beta.test")].established
            await eventually(gone, timeout=5)
        finally:
            await disconnect(alice, bob)
        await asyncio.sleep(0)


async def test_a_stanza_too_big_for_the_peer_bounces_and_the_next_ones_arrive(
        tmp_path: Path) -> None:
    """beta takes stanzas up to 20000 bytes on s2s and ends the stream with
    <policy-violation/> at a bigger one (RFC 6120 §4.9.3.12), reading nothing after it. alice
    gets policy-violation for it (RFC 6120 §8.3.3.12); the message written after it arrives
    over a new stream (tests/interop/test_federation_im.py: the same with Prosody)."""
    limit = {"beta.test": {"s2s_extra": "max_stanza_size = 20000"}}
    async with two_servers(tmp_path, "dialback", **limit) as (alpha, beta):
        await register(alpha, "alice")
        await register(beta, "bob")
        alice = await login(alpha, "alice@alpha.test/a")
        bob = await login(beta, "bob@beta.test/b")
        try:
            alice.send_message(mto="bob@beta.test/b", mbody="first", mtype="chat")
            assert (await bob.next_message(timeout=10))["body"] == "first"
            alice.send_message(mto="bob@beta.test/b", mbody="x" * 30000, mtype="chat")
            alice.send_message(mto="bob@beta.test/b", mbody="after", mtype="chat")
            err = await alice.next_message(timeout=10)
            assert (err["type"], str(err["from"])) == ("error", "bob@beta.test/b")
            assert err.xml.find("{jabber:client}error/"
                                "{urn:ietf:params:xml:ns:xmpp-stanzas}policy-violation") \
                is not None
            assert (await bob.next_message(timeout=10))["body"] == "after"
        finally:
            await disconnect(alice, bob)


async def test_a_peer_that_comes_back_is_reached_at_once(tmp_path: Path) -> None:
    """alpha backs off beta after failed attempts (1 s, doubling: 4 s after the third);
    beta starts and authenticates a stream to alpha with SASL EXTERNAL (nothing makes alpha
    connect out, unlike dialback's verification): alpha's reply goes at once instead of
    bouncing until the back-off ends (tests/interop/test_federation_im.py: the same with a
    Prosody that crashed)."""
    ca = CertificateAuthority(tmp_path / "ca")
    ports = {d: (free_port(), free_port()) for d in ("alpha.test", "beta.test")}
    tomls = {me: federated_toml(tmp_path / me, me, *ports[me],
                                {other: ("127.0.0.1", ports[other][1])}, "external", ca)
             for me, other in (("alpha.test", "beta.test"), ("beta.test", "alpha.test"))}
    alpha_toml = tomls["alpha.test"].replace("max_retry_delay = 2", "max_retry_delay = 60")
    async with federated_server(tmp_path / "alpha.test", "alpha.test", alpha_toml,
                                *ports["alpha.test"]) as alpha:
        await register(alpha, "alice")
        alice = await login(alpha, "alice@alpha.test/a")
        alice.send_presence()
        try:
            for wait in (1.05, 2.05, 0.0):  # beta is not there yet
                alice.send_message(mto="bob@beta.test", mbody="anyone?", mtype="chat")
                err = await alice.next_message(timeout=10)
                assert (err["type"], err["error"]["condition"]) == (
                    "error", "remote-server-not-found")
                await asyncio.sleep(wait)
            link = alpha.s2s.links[("alpha.test", "beta.test")]
            assert link.failures == 3
            async with federated_server(tmp_path / "beta.test", "beta.test",
                                        tomls["beta.test"], *ports["beta.test"]) as beta:
                await register(beta, "bob")
                bob = await login(beta, "bob@beta.test/b")
                bob.send_presence()
                bob.send_message(mto="alice@alpha.test", mbody="I am here", mtype="chat")
                msg = await alice.next_message(timeout=10)
                assert (msg["type"], msg["body"]) == ("chat", "I am here")
                alice.send_message(mto=str(msg["from"]), mbody="hello bob", mtype="chat")
                assert (await bob.next_message(timeout=10))["body"] == "hello bob"
                assert link.established and link.stream is not None
                assert link.stream.auth_method == "external"
                await disconnect(bob)
        finally:
            await disconnect(alice)
