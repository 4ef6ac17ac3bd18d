"""mod_private: XEP-0049 Private XML Storage."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from suricate.core.server import Server
from suricate.jid import JID
from suricate.xml import ns
from suricate.xml.element import Element
from suricate.xml.parser import parse_fragment
from tests.modules.services_harness import FakeSession, error_condition, module_server


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with module_server(tmp_path, "[modules.mod_private]") as srv:
        await srv.auth.register(JID.parse("hamlet@localhost"), "pw")
        await srv.auth.register(JID.parse("macbeth@localhost"), "pw")
        yield srv


def query(xml: str = "") -> Element:
    (el,) = parse_fragment(f"<query xmlns='jabber:iq:private'>{xml}</query>")
    return el


async def test_store_and_retrieve(server: Server) -> None:
    hamlet = FakeSession(server, "hamlet@localhost/denmark")
    stored = await hamlet.iq("set", query(
        "<exodus xmlns='exodus:prefs'><defaultnick>Hamlet</defaultnick></exodus>"))
    assert stored.attrs["type"] == "result" and stored.children == []
    reply = await hamlet.iq("get", query("<exodus xmlns='exodus:prefs'/>"))
    assert reply.find("query", ns.PRIVATE) == query(
        "<exodus xmlns='exodus:prefs'><defaultnick>Hamlet</defaultnick></exodus>")


async def test_nothing_stored_returns_the_empty_element(server: Server) -> None:
    hamlet = FakeSession(server, "hamlet@localhost/denmark")
    reply = await hamlet.iq("get", query("<storage xmlns='storage:bookmarks'/>"))
    assert reply.find("query", ns.PRIVATE) == query("<storage xmlns='storage:bookmarks'/>")


async def test_several_elements_of_one_namespace_share_the_slot(server: Server) -> None:
    hamlet = FakeSession(server, "hamlet@localhost/denmark")
    both = "<a xmlns='x:notes'>1</a><b xmlns='x:notes'>2</b>"
    await hamlet.iq("set", query(both + "<c xmlns='x:other'/>"))
    reply = await hamlet.iq("get", query("<a xmlns='x:notes'/>"))
    assert reply.find("query", ns.PRIVATE) == query(both)
    # a later set replaces what the namespace held
    await hamlet.iq("set", query("<a xmlns='x:notes'>3</a>"))
    reply = await hamlet.iq("get", query("<a xmlns='x:notes'/>"))
    assert reply.find("query", ns.PRIVATE) == query("<a xmlns='x:notes'>3</a>")


async def test_another_account_is_forbidden(server: Server) -> None:
    hamlet = FakeSession(server, "hamlet@localhost/denmark")
    await hamlet.iq("set", query("<exodus xmlns='exodus:prefs'>secret</exodus>"))
    macbeth = FakeSession(server, "macbeth@localhost/castle")
    for type_ in ("get", "set"):
        reply = await macbeth.iq(type_, query("<exodus xmlns='exodus:prefs'/>"),
                                 to="hamlet@localhost")
        assert error_condition(reply) == "forbidden"


async def test_own_bare_jid_as_to_is_allowed(server: Server) -> None:
    hamlet = FakeSession(server, "hamlet@localhost/denmark")
    reply = await hamlet.iq("set", query("<p xmlns='x:p'/>"), to="hamlet@localhost")
    assert reply.attrs["type"] == "result"


@pytest.mark.parametrize("payload", [
    "", "<exodus/>", "<exodus xmlns='jabber:client'/>", "<exodus xmlns='jabber:server'/>",
    "<exodus xmlns='jabber:component:accept'/>"])
async def test_missing_or_unqualified_child_is_not_acceptable(server: Server,
                                                               payload: str) -> None:
    hamlet = FakeSession(server, "hamlet@localhost/denmark")
    for type_ in ("get", "set"):
        reply = await hamlet.iq(type_, query(payload))
        assert error_condition(reply) == "not-acceptable"
