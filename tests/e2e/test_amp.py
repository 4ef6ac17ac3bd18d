"""mod_amp (XEP-0079) with real clients: slixmpp's xep_0079 plugin sends the rules and reads
the server's notifications and errors over real sockets.

One server per test, with mod_offline (so "stored" happens) and mod_amp; bob is the
recipient, alice the sender."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from slixmpp.plugins.xep_0079.stanza import AMPFeature

from suricate.core.server import Server
from suricate.jid import JID
from tests.e2e.harness import ALL_MODULES, Client, connect, disconnect, running_server

AMP = "http://jabber.org/protocol/amp"
AMP_ERRORS = "http://jabber.org/protocol/amp#errors"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
PLUGINS = ("xep_0030", "xep_0079", "xep_0199")
MODULES = "\n".join(f"[modules.{m}]" for m in (*ALL_MODULES, "mod_amp"))


# slixmpp's xep_0079 declares the §8 stream feature without a plugin_attrib, so it never sees
# it; named, the plugin records it in ``client.features``.
AMPFeature.plugin_attrib = "amp"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with running_server(tmp_path, modules=MODULES) as srv:
        for name in ("alice", "bob"):
            await srv.auth.register(JID.parse(f"{name}@localhost"), f"{name}-pw")
        yield srv


class Sender:
    """alice, with queues of what comes back: notifications and errors."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.notes: asyncio.Queue[Any] = asyncio.Queue()
        self.errors: asyncio.Queue[Any] = asyncio.Queue()
        client.add_event_handler("amp_notify", self.notes.put_nowait)
        client.add_event_handler("message_error", self.errors.put_nowait)

    def send(self, to: str, rules: list[tuple[str, str, str]], msg_id: str,
             per_hop: bool = False) -> None:
        msg = self.client.make_message(mto=to, mbody="hello", mtype="chat")
        msg["id"] = msg_id
        for action, condition, value in rules:
            msg["amp"].add_rule(action, condition, value)
        if per_hop:
            msg["amp"]["per_hop"] = True
        msg.send()

    async def settled(self, server: Server) -> None:
        """The server read everything sent before and finished the work it started."""
        await self.client.plugin["xep_0199"].send_ping("localhost", timeout=5)
        await server.drain(5)
        await self.client.plugin["xep_0199"].send_ping("localhost", timeout=5)


async def alice_sends(server: Server) -> Sender:
    return Sender(await connect(server, "alice@localhost/desk", "alice-pw", plugins=PLUGINS))


async def bob_online(server: Server, resource: str = "phone") -> Client:
    bob = await connect(server, f"bob@localhost/{resource}", "bob-pw")
    bob.send_presence()
    await bob.next_presence()  # its own presence: bob is available now
    return bob


def rule_of(parent: Any, xmlns: str = AMP) -> dict[str, str]:
    rule = parent.find(f"{{{xmlns}}}rule")
    assert rule is not None
    return dict(rule.attrib)


async def test_disco_and_stream_feature_advertise_amp(server: Server) -> None:
    alice = await connect(server, "alice@localhost/desk", "alice-pw", plugins=PLUGINS)
    assert "amp" in alice.features  # §8: <amp xmlns='http://jabber.org/features/amp'/>
    info = await alice.plugin["xep_0030"].get_info(jid="localhost", timeout=5)
    assert AMP in info["disco_info"]["features"]
    # §2.1.1: the node lists what is supported, and only that.
    node = await alice.plugin["xep_0079"].discover_support(timeout=5)
    assert set(node["disco_info"]["features"]) == {
        AMP, f"{AMP}?action=drop", f"{AMP}?action=error", f"{AMP}?action=notify",
        f"{AMP}?condition=deliver", f"{AMP}?condition=match-resource"}
    await disconnect(alice)


async def test_notify_deliver_direct_when_the_recipient_is_online(server: Server) -> None:
    bob = await bob_online(server)
    alice = await alice_sends(server)
    alice.send("bob@localhost", [("notify", "deliver", "stored"),
                                 ("notify", "deliver", "direct")], "m1")
    note = await asyncio.wait_for(alice.notes.get(), 5)
    # §3.4.4: from the server, the message's id, the rule met, the original from/to.
    assert note["from"] == "localhost" and note["id"] == "m1" and not note["body"]
    amp = note.xml.find(f"{{{AMP}}}amp")
    assert amp.get("status") == "notify"
    assert amp.get("from") == "alice@localhost/desk" and amp.get("to") == "bob@localhost"
    assert rule_of(amp) == {"action": "notify", "condition": "deliver", "value": "direct"}
    # The default behaviour goes on: bob gets the message, without the rules.
    msg = await bob.next_message()
    assert msg["body"] == "hello" and msg.xml.find(f"{{{AMP}}}amp") is None
    await disconnect(alice.client, bob)


async def test_notify_deliver_stored_when_the_recipient_is_offline(server: Server) -> None:
    alice = await alice_sends(server)
    alice.send("bob@localhost", [("notify", "deliver", "direct"),
                                 ("notify", "deliver", "stored")], "m2")
    note = await asyncio.wait_for(alice.notes.get(), 5)
    assert note["id"] == "m2"
    assert rule_of(note.xml.find(f"{{{AMP}}}amp"))["value"] == "stored"
    await alice.settled(server)
    assert await server.modules["mod_offline"].store.count_offline("localhost", "bob") == 1
    bob = await bob_online(server)
    msg = await bob.next_message()
    assert msg["body"] == "hello" and msg.xml.find(f"{{{AMP}}}amp") is None
    await disconnect(alice.client, bob)


async def test_error_and_drop_actions_stop_the_message(server: Server) -> None:
    alice = await alice_sends(server)
    # §5.3 transient message: an error rather than offline storage.
    alice.send("bob@localhost", [("error", "deliver", "stored")], "m3")
    error = await asyncio.wait_for(alice.errors.get(), 5)
    assert error["id"] == "m3" and error["from"] == "localhost"
    err = error.xml.find("{jabber:client}error")
    assert err.get("type") == "modify"
    assert err.find(f"{{{STANZAS}}}undefined-condition") is not None
    # §3.4.3: <failed-rules/> holds the rule that was met.
    failed = err.find(f"{{{AMP_ERRORS}}}failed-rules")
    assert rule_of(failed, AMP_ERRORS) == {"action": "error", "condition": "deliver",
                                           "value": "stored"}
    assert error.xml.find(f"{{{AMP}}}amp").get("status") == "error"
    # §3.4.2: a drop stops it without a word.
    alice.send("bob@localhost", [("drop", "deliver", "stored")], "m4")
    await alice.settled(server)
    assert alice.errors.empty() and alice.notes.empty()
    assert await server.modules["mod_offline"].store.count_offline("localhost", "bob") == 0
    await disconnect(alice.client)


async def test_match_resource_exact_and_other(server: Server) -> None:
    bob = await bob_online(server, "phone")
    alice = await alice_sends(server)
    # To bob/laptop, which has no session: the chat message would reach bob/phone, "other".
    alice.send("bob@localhost/laptop", [("error", "match-resource", "other")], "m5")
    error = await asyncio.wait_for(alice.errors.get(), 5)
    assert error["id"] == "m5"
    failed = error.xml.find(f"{{jabber:client}}error/{{{AMP_ERRORS}}}failed-rules")
    assert rule_of(failed, AMP_ERRORS)["value"] == "other"
    # To bob/phone itself: "exact" is met, "other" is not.
    alice.send("bob@localhost/phone", [("error", "match-resource", "other"),
                                       ("notify", "match-resource", "exact")], "m6")
    note = await asyncio.wait_for(alice.notes.get(), 5)
    assert note["id"] == "m6"
    amp = note.xml.find(f"{{{AMP}}}amp")
    assert amp.get("to") == "bob@localhost/phone" and rule_of(amp)["value"] == "exact"
    msg = await bob.next_message()
    assert msg["id"] == "m6"  # m5 never reached bob
    # With per-hop, match-resource rules are ignored (§3.3.3): delivered, no event.
    alice.send("bob@localhost/laptop", [("error", "match-resource", "other")], "m7",
               per_hop=True)
    assert (await bob.next_message())["id"] == "m7"
    assert alice.errors.empty()
    await disconnect(alice.client, bob)


async def test_unsupported_and_invalid_rules_are_refused(server: Server) -> None:
    bob = await bob_online(server)
    alice = await alice_sends(server)
    cases = [
        # (rule, general condition, element listing the rules at issue) per §6.1
        (("drop", "expire-at", "2004-01-01T00:00:00Z"), "bad-request",
         "unsupported-conditions"),
        (("alert", "deliver", "stored"), "bad-request", "unsupported-actions"),
        (("notify", "deliver", "sometimes"), "not-acceptable", "invalid-rules"),
    ]
    for n, (rule, condition, listed) in enumerate(cases):
        alice.send("bob@localhost", [("notify", "deliver", "direct"), rule], f"r{n}")
        error = await asyncio.wait_for(alice.errors.get(), 5)
        assert error["id"] == f"r{n}" and error["from"] == "localhost"
        err = error.xml.find("{jabber:client}error")
        assert err.get("type") == "modify"
        assert err.find(f"{{{STANZAS}}}{condition}") is not None
        # Only the rule at fault is listed; the reply carries the whole ruleset back.
        assert rule_of(err.find(f"{{{AMP}}}{listed}")) == dict(
            zip(("action", "condition", "value"), rule, strict=True))
        assert len(error.xml.findall(f"{{{AMP}}}amp/{{{AMP}}}rule")) == 2
    await alice.settled(server)
    # Refused rulesets go nowhere (§2.2.1), not even the valid notify rule's message.
    assert alice.notes.empty() and bob.messages.empty()
    await disconnect(alice.client, bob)
