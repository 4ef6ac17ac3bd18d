"""mod_vcard: XEP-0054 vcard-temp."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from suricate.core.server import Server
from suricate.jid import JID
from suricate.modules.mod_vcard import MAX_VCARD_BYTES
from suricate.xml import ns
from suricate.xml.element import Element
from suricate.xml.parser import parse_fragment
from tests.modules.services_harness import FakeSession, error_condition, module_server

PETER = ("<vCard xmlns='vcard-temp'><FN>Peter Saint-Andre</FN><N><FAMILY>Saint-Andre</FAMILY>"
         "<GIVEN>Peter</GIVEN><MIDDLE/></N><NICKNAME>stpeter</NICKNAME></vCard>")


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with module_server(tmp_path, "[modules.mod_vcard]") as srv:
        await srv.auth.register(JID.parse("stpeter@localhost"), "pw")
        await srv.auth.register(JID.parse("jer@localhost"), "pw")
        yield srv


def vcard(xml: str = "<vCard xmlns='vcard-temp'/>") -> Element:
    (el,) = parse_fragment(xml)
    return el


async def test_set_and_get_own_vcard(server: Server) -> None:
    peter = FakeSession(server, "stpeter@localhost/roundabout")
    reply = await peter.iq("set", vcard(PETER))
    assert reply.attrs["type"] == "result" and reply.children == []
    reply = await peter.iq("get", vcard())
    assert reply.find("vCard", ns.VCARD) == vcard(PETER)


async def test_own_vcard_not_set_yet_is_empty(server: Server) -> None:
    peter = FakeSession(server, "stpeter@localhost/roundabout")
    reply = await peter.iq("get", vcard())
    assert reply.attrs["type"] == "result"
    assert reply.find("vCard", ns.VCARD) == vcard()


async def test_get_another_users_vcard(server: Server) -> None:
    peter = FakeSession(server, "stpeter@localhost/roundabout")
    await peter.iq("set", vcard(PETER))
    jer = FakeSession(server, "jer@localhost/home")
    reply = await jer.iq("get", vcard(), to="stpeter@localhost")
    assert reply.attrs["from"] == "stpeter@localhost"
    assert reply.find("vCard", ns.VCARD) == vcard(PETER)


async def test_another_without_vcard_or_unknown_is_service_unavailable(server: Server) -> None:
    peter = FakeSession(server, "stpeter@localhost/roundabout")
    for to in ("jer@localhost", "ghost@localhost"):
        reply = await peter.iq("get", vcard(), to=to)
        assert error_condition(reply) == "service-unavailable"


async def test_set_another_users_vcard_is_forbidden(server: Server) -> None:
    jer = FakeSession(server, "jer@localhost/home")
    reply = await jer.iq("set", vcard(PETER), to="stpeter@localhost")
    assert error_condition(reply) == "forbidden"
    assert await server.modules["mod_vcard"].store.get_vcard("localhost", "stpeter") is None


async def test_oversized_vcard_is_not_acceptable(server: Server) -> None:
    peter = FakeSession(server, "stpeter@localhost/roundabout")
    big = vcard()
    big.add("DESC", text="x" * MAX_VCARD_BYTES)
    reply = await peter.iq("set", big)
    assert error_condition(reply) == "not-acceptable"


async def test_server_vcard(server: Server) -> None:
    peter = FakeSession(server, "stpeter@localhost/roundabout")
    reply = await peter.iq("get", vcard(), to="localhost")
    card = reply.find("vCard", ns.VCARD)
    assert card is not None and card.find_text("FN") == "Suricate"
