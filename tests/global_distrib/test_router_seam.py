"""``Router.beyond`` (what mod_global_distrib plugs in) is asked only where the router would
otherwise store offline, answer with an error or try federation; a stanza whose recipient has
a session here never reaches it. A stand-in records the questions (no Redis, no sockets)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from suricate.jid import JID
from suricate.xml import ns
from suricate.xml.element import Element
from tests.modules.services_harness import FakeSession, module_server


class Recorder:
    def __init__(self, take: bool) -> None:
        self.take = take
        self.asked: list[tuple[str, str, str]] = []

    def _ask(self, kind: str, to: JID, stanza: Element) -> bool:
        self.asked.append((kind, str(to), stanza.name))
        return self.take

    def to_full(self, frm: JID, to: JID, stanza: Element) -> bool:
        return self._ask("full", to, stanza)

    def to_bare(self, frm: JID, to: JID, stanza: Element) -> bool:
        return self._ask("bare", to, stanza)

    def to_domain(self, frm: JID, to: JID, stanza: Element) -> bool:
        return self._ask("domain", to, stanza)


def _msg(frm: str, to: str, mtype: str = "chat") -> Element:
    return Element("message", ns.CLIENT, {"from": frm, "to": to, "type": mtype},
                   [Element("body", ns.CLIENT, {}, ["hi"])])


@pytest.mark.parametrize("take", [True, False])
def test_asked_only_where_no_session_is(tmp_path: Path, take: bool) -> None:
    async def run() -> None:
        async with module_server(tmp_path, "[modules.mod_presence]\n[modules.mod_roster]\n") \
                as server:
            alice = FakeSession(server, "alice@localhost/r")
            bob = FakeSession(server, "bob@localhost/r")
            beyond = Recorder(take)
            server.router.beyond = beyond
            route = server.router.route
            a, b = JID.parse("alice@localhost/r"), JID.parse("bob@localhost/r")
            # Recipients here: delivered, never asked.
            route(a, b, _msg(str(a), str(b)))
            route(a, b.bare, _msg(str(a), str(b.bare)))
            route(a, b.bare, Element("presence", ns.CLIENT,
                                     {"from": str(a), "to": "bob@localhost"}))
            await asyncio.sleep(0.05)
            assert beyond.asked == []
            assert bob.received.qsize() == 3
            # No session here: asked once per stanza, at the place the router would go on.
            carol = JID.parse("carol@localhost/x")
            route(a, carol, _msg(str(a), str(carol)))
            route(a, carol.bare, _msg(str(a), str(carol.bare)))
            route(a, carol.bare, Element("presence", ns.CLIENT,
                                         {"from": str(a), "to": str(carol.bare)}))
            muc = JID.parse("room@muc.elsewhere.example")
            if take:  # (declined, it would go on to s2s: no DNS from tests)
                route(a, muc, _msg(str(a), str(muc), "groupchat"))
            await asyncio.sleep(0.05)
            expected = [("full", str(carol), "message"), ("bare", str(carol.bare), "message"),
                        ("bare", str(carol.bare), "presence")]
            if take:
                expected.append(("domain", str(muc), "message"))
                assert alice.received.empty()  # taken over: no error from here
            else:
                # Declined: the router goes on (§8.5.3.2.1: the chat message to a full JID
                # is then one to the bare JID, asked again there), then §8 here: carol has
                # no account, so alice gets <service-unavailable/> for each message.
                expected.insert(1, ("bare", str(carol.bare), "message"))
                await asyncio.wait_for(alice.received.get(), 2)
                await asyncio.wait_for(alice.received.get(), 2)
            assert beyond.asked == expected

    asyncio.run(run())
