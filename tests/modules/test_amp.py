"""mod_amp at the router, without sockets: a message from another server for a local account
(its rules decided here, at the recipient's server), a sender the recipient blocks, the
"none" outcome without offline storage, and nothing wired without the module."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from suricate.core import hooks as H
from suricate.core.server import Server
from suricate.jid import JID
from suricate.modules.mod_blocking import BLOCKLIST
from suricate.xml import ns
from suricate.xml.element import Element
from suricate.xml.parser import parse_fragment
from tests.modules.services_harness import FakeSession, module_server

AMP = "http://jabber.org/protocol/amp"
ROMEO = JID.parse("romeo@montague.example/orchard")  # a user of another server
BOB = JID.parse("bob@localhost")


def amp_message(rules: str, to: str = "bob@localhost") -> Element:
    return parse_fragment(
        f"<message from='{ROMEO}' to='{to}' id='r1' type='chat'><body>hi</body>"
        f"<amp xmlns='{AMP}'>{rules}</amp></message>", ns.CLIENT)[0]


def child(parent: Element, *path: tuple[str, str]) -> Element:
    for name, xmlns in path:
        found = parent.find(name, xmlns)
        assert found is not None, (name, parent)
        parent = found
    return parent


async def started(tmp: Path, modules: str) -> AsyncIterator[tuple[Server, list[Element]]]:
    async with module_server(tmp, modules) as server:
        await server.auth.register(BOB, "pw")
        to_remote: list[Element] = []

        def s2s_route(frm: JID, to: JID, stanza: Element) -> bool:
            to_remote.append(stanza)  # what would leave over s2s, for romeo's server
            return True

        server.s2s.route = s2s_route  # type: ignore[method-assign]
        yield server, to_remote


@pytest.fixture
async def amp(tmp_path: Path) -> AsyncIterator[tuple[Server, list[Element]]]:
    modules = "[modules.mod_amp]\n[modules.mod_offline]\n[modules.mod_blocking]\n"
    async for pair in started(tmp_path, modules):
        yield pair


async def test_rules_from_another_server_are_decided_here(
        amp: tuple[Server, list[Element]]) -> None:
    server, to_remote = amp
    bob = FakeSession(server, "bob@localhost/phone")
    server.router.route(ROMEO, BOB, amp_message(
        "<rule condition='deliver' value='direct' action='notify'/>"))
    got = await asyncio.wait_for(bob.received.get(), 5)
    assert got.find("amp", AMP) is None and got.find_text("body") == "hi"
    [note] = to_remote
    assert note.attrs["from"] == "localhost" and note.attrs["to"] == str(ROMEO)
    assert child(note, ("amp", AMP)).attrs["status"] == "notify"
    # A ruleset this server refuses is answered to the remote sender; bob gets nothing.
    to_remote.clear()
    server.router.route(ROMEO, BOB, amp_message(
        "<rule condition='expire-at' value='2030-01-01T00:00:00Z' action='drop'/>"))
    [error] = to_remote
    assert error.attrs["type"] == "error"
    child(error, ("error", ns.CLIENT), ("unsupported-conditions", AMP))
    assert bob.received.empty()


async def test_a_blocked_sender_learns_nothing(amp: tuple[Server, list[Element]]) -> None:
    server, to_remote = amp
    bob = FakeSession(server, "bob@localhost/phone")
    BLOCKLIST.set(bob, frozenset({ROMEO.bare}))
    server.router.route(ROMEO, BOB, amp_message(
        "<rule condition='deliver' value='direct' action='error'/>"))
    # The session's blocking filter drops it on delivery (XEP-0191); no AMP event says so.
    await asyncio.wait_for(bob.received.get(), 5)
    await server.drain(5)
    assert to_remote == []


async def test_none_without_offline_storage(tmp_path: Path) -> None:
    async for server, to_remote in started(tmp_path, "[modules.mod_amp]\n"):
        server.router.route(ROMEO, BOB, amp_message(
            "<rule condition='deliver' value='stored' action='error'/>"
            "<rule condition='deliver' value='none' action='notify'/>"))
        await server.drain(5)
        # §3.4.4: the notification, then the default behaviour: service-unavailable
        # (RFC 6121 §8.5.2.2.1).
        note, error = to_remote
        assert child(note, ("amp", AMP), ("rule", AMP)).attrs["value"] == "none"
        child(error, ("error", ns.CLIENT), ("service-unavailable", ns.STANZAS_ERRORS))


async def test_nothing_is_wired_without_the_module(tmp_path: Path) -> None:
    async for server, _ in started(tmp_path, "[modules.mod_offline]\n"):
        assert not server.hooks.has(H.FILTER_LOCAL_PACKET)
        assert "mod_amp" not in server.modules


async def test_leaving_for_another_server(amp: tuple[Server, list[Element]]) -> None:
    server, to_remote = amp
    alice = FakeSession(server, "alice@localhost/desk")
    module = server.modules["mod_amp"]

    def sent(rules: str, per_hop: str) -> Element | None:
        msg = parse_fragment(
            f"<message from='alice@localhost/desk' to='{ROMEO}' id='p1' type='chat'>"
            f"<body>hi</body><amp xmlns='{AMP}' {per_hop}>{rules}</amp></message>",
            ns.CLIENT)[0]
        result: Element | None = module.sent(msg, alice)  # type: ignore[attr-defined]
        return result

    rule = "<rule condition='deliver' value='direct' action='error'/>"
    # By default the recipient's server decides: the rules leave with the message.
    kept = sent(rule, "")
    assert kept is not None and kept.find("amp", AMP) is not None
    assert alice.received.empty()
    # Per hop, this server's part is "routed to the next hop": direct (§3.3.1).
    assert sent(rule, "per-hop='true'") is None
    failed = await asyncio.wait_for(alice.received.get(), 5)
    assert failed.attrs["type"] == "error" and failed.attrs["from"] == "localhost"
    child(failed, ("error", ns.CLIENT), ("failed-rules", "http://jabber.org/protocol/amp#errors"))
    assert to_remote == []
