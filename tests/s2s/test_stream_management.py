"""XEP-0198 acknowledgements on s2s between two Suricate servers: a stanza written to a stream
the peer lost before acknowledging it is sent again over a new stream, or bounced with
remote-server-timeout (RFC 6120 §8.3.3.17) when the peer cannot be reached: never lost
without a word. The same against a real Prosody: tests/interop/test_federation_im.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from suricate.core.s2s_in import S2SIn
from suricate.core.server import Server
from suricate.protocol.s2s import S2SAcks
from suricate.protocol.sm import MOD, HandledCountTooHigh
from suricate.protocol.stanza import to_wire
from suricate.xml.element import Element
from tests.e2e.harness import RawClient, disconnect, free_port
from tests.s2s.harness import federated_server, federated_toml, login, register, two_servers


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def incoming_from(server: Server, remote: str) -> S2SIn:
    return next(s for s in server.s2s.incoming if remote in s.remote_domains)


def test_acks_forget_what_h_covers_and_refuse_too_high() -> None:
    acks = S2SAcks()
    acks.acked = MOD - 1  # h wraps at 2^32 (XEP-0198 §4)
    stanzas = [
        Element(
            "message",
            "jabber:client",
            {"to": f"b@beta.test/{i}"},
            [Element("body", "jabber:client", {}, [f"m{i} <&>"])],
        )
        for i in range(3)
    ]
    acks.unacked.extend(to_wire(stanza) for stanza in stanzas)  # kept as bytes
    assert acks.ack(1) == 2  # MOD-1 -> 0 -> 1
    with pytest.raises(HandledCountTooHigh):
        acks.ack(3)
    # back as elements, for a new stream or a bounce
    assert [to_wire(stanza) for stanza in acks.take()] == [to_wire(stanzas[2])]
    assert not acks.unacked


@pytest.mark.parametrize("auth", ["external", "dialback"])
async def test_stanzas_a_lost_stream_did_not_acknowledge_go_over_a_new_one(
    tmp_path: Path, auth: str
) -> None:
    async with two_servers(tmp_path, auth) as (alpha, beta):
        await register(alpha, "alice")
        await register(beta, "bob")
        alice = await login(alpha, "alice@alpha.test/a")
        bob = await login(beta, "bob@beta.test/b")
        alice.send_message(mto="bob@beta.test/b", mbody="first", mtype="chat")
        assert (await bob.next_message())["body"] == "first"
        link = alpha.s2s.links[("alpha.test", "beta.test")]
        stream = link.stream
        assert stream is not None and stream.acks is not None  # beta offered <sm/>
        await until(lambda: stream.sm_enabled and not stream.acks.unacked)  # type: ignore
        incoming = incoming_from(beta, "alpha.test")
        assert incoming.handled == 1

        # beta stops reading (its stanzas sit in the socket), then the connection dies
        # under them, as when the peer crashes right after our write
        incoming.conn.pause_reading()
        for i in range(3):
            alice.send_message(mto="bob@beta.test/b", mbody=f"m{i}", mtype="chat")
        await until(lambda: len(stream.acks.unacked) == 3)  # type: ignore[union-attr]
        incoming.conn.abort()
        assert [(await bob.next_message())["body"] for _ in range(3)] == ["m0", "m1", "m2"]
        assert link.stream is not stream and link.stream is not None
        assert alice.messages.empty()  # no error
        await disconnect(alice, bob)


async def test_unacknowledged_stanzas_bounce_when_the_peer_stays_unreachable(
    tmp_path: Path,
) -> None:
    """The peer reads nothing any more (hung): after s2s.outgoing.ack_timeout the stream is
    closed, and as the peer cannot be reached again its stanzas bounce with
    remote-server-timeout."""
    fast = {"alpha.test": {"outgoing_extra": "ack_timeout = 300"}}
    async with two_servers(tmp_path, "dialback", **fast) as (alpha, beta):
        await register(alpha, "alice")
        await register(beta, "bob")
        alice = await login(alpha, "alice@alpha.test/a")
        bob = await login(beta, "bob@beta.test/b")
        alice.send_presence()
        alice.send_message(mto="bob@beta.test/b", mbody="first", mtype="chat")
        assert (await bob.next_message())["body"] == "first"
        incoming_from(beta, "alpha.test").conn.pause_reading()
        alpha.s2s.overrides["beta.test"] = ("127.0.0.1", free_port())  # nobody listens
        for i in range(2):
            alice.send_message(mto="bob@beta.test/b", mbody=f"m{i}", mtype="chat")
        errors = [await alice.next_message() for _ in range(2)]
        assert [(e["type"], e["body"], e["error"]["condition"]) for e in errors] == [
            ("error", "m0", "remote-server-timeout"),
            ("error", "m1", "remote-server-timeout"),
        ]
        assert "not acknowledged" in errors[0]["error"]["text"]
        assert bob.messages.empty()
        await disconnect(alice, bob)


async def test_without_stream_management_nothing_is_kept(tmp_path: Path) -> None:
    """A peer that offers no <sm/> (ejabberd 23.01, or [s2s] stream_management = false)."""
    async with two_servers(tmp_path, "external") as (alpha, beta):
        beta.s2s.stream_management = False  # as [s2s] stream_management = false
        await register(alpha, "alice")
        await register(beta, "bob")
        alice = await login(alpha, "alice@alpha.test/a")
        bob = await login(beta, "bob@beta.test/b")
        alice.send_message(mto="bob@beta.test/b", mbody="plain", mtype="chat")
        assert (await bob.next_message())["body"] == "plain"
        stream = alpha.s2s.links[("alpha.test", "beta.test")].stream
        assert stream is not None and stream.acks is None
        assert incoming_from(beta, "alpha.test").handled is None
        await disconnect(alice, bob)


async def test_enable_before_the_feature_is_offered_fails(tmp_path: Path) -> None:
    """<sm/> is offered once nothing but dialback is left: not next to STARTTLS, which
    restarts the stream (XEP-0198: after authentication). An early <enable/> gets
    <failed/> and the stream goes on; an <r/> before <enable/> gets nothing."""
    c2s, s2s = free_port(), free_port()
    toml = federated_toml(tmp_path, "beta.test", c2s, s2s, {}, "dialback", None)
    async with federated_server(tmp_path, "beta.test", toml, c2s, s2s):
        raw = await RawClient.open(s2s)
        await raw.send(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
            "xmlns:stream='http://etherx.jabber.org/streams' "
            "xmlns:db='jabber:server:dialback' from='alpha.test' to='beta.test' "
            "version='1.0'>"
        )
        features = await raw.expect("<stream:features.*?</stream:features>")
        assert "starttls" in features and "urn:xmpp:sm:3" not in features
        await raw.send("<r xmlns='urn:xmpp:sm:3'/><enable xmlns='urn:xmpp:sm:3'/>")
        failed = await raw.expect(".*?</failed>")
        assert "<a " not in failed and "unexpected-request" in failed
        await raw.close()


async def test_acks_are_requested_per_batch_not_per_stanza(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """200 messages in a burst: a handful of <r/> (here one), not one per stanza."""
    requests = 0
    answer = S2SIn._sm

    def counting(self: S2SIn, el: Element) -> None:
        nonlocal requests
        requests += el.name == "r"
        answer(self, el)

    monkeypatch.setattr(S2SIn, "_sm", counting)
    async with two_servers(tmp_path, "dialback") as (alpha, beta):
        await register(alpha, "alice")
        await register(beta, "bob")
        alice = await login(alpha, "alice@alpha.test/a")
        bob = await login(beta, "bob@beta.test/b")
        for i in range(200):
            alice.send_message(mto="bob@beta.test/b", mbody=f"m{i}", mtype="chat")
        assert [(await bob.next_message())["body"] for _ in range(200)][-1] == "m199"
        stream = alpha.s2s.links[("alpha.test", "beta.test")].stream
        assert stream is not None and stream.acks is not None
        await until(lambda: not stream.acks.unacked)  # type: ignore[union-attr]
        assert 1 <= requests <= 20, requests  # one per loop turn that wrote stanzas at most
        await disconnect(alice, bob)
