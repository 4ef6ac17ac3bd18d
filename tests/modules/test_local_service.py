"""A module serving a subdomain (MongooseIM's "conference.@HOST@" pattern) through the component
table: stanzas to it reach the module's handler, the domain is listed in disco#items, a second
claim on the same domain is refused, and unwire gives the domain back."""

from __future__ import annotations

from pathlib import Path

import pytest

from suricate.core.module import Module
from suricate.jid import JID
from suricate.xml import ns
from suricate.xml.element import Element
from tests.modules.services_harness import FakeSession, module_server


class ModEcho(Module):
    name = "mod_echo"


async def test_module_serves_its_subdomain_on_every_host(tmp_path: Path) -> None:
    async with module_server(tmp_path, "[modules.mod_disco]",
                             hosts=("localhost", "example.org")) as server:
        module = ModEcho(server, {})
        seen: list[tuple[JID, JID, str]] = []

        def handler(frm: JID, to: JID, stanza: Element) -> None:
            seen.append((frm, to, stanza.name))
            server.router.route(to, frm, Element("message", ns.CLIENT,
                                                 {"from": str(to), "to": str(frm)}))

        assert module.serve_subdomains("echo.@HOST@", handler) == {
            "echo.example.org": "example.org", "echo.localhost": "localhost"}
        alice = FakeSession(server, "alice@localhost/a")
        server.router.route(alice.jid, JID.parse("room@echo.localhost"),
                            Element("message", ns.CLIENT, {"from": str(alice.jid),
                                                           "to": "room@echo.localhost"}))
        assert seen == [(alice.jid, JID.parse("room@echo.localhost"), "message")]
        echoed = await alice.received.get()
        assert echoed.attrs["from"] == "room@echo.localhost"

        items = await alice.iq("get", Element("query", ns.DISCO_ITEMS), to="localhost")
        jids = {i.attrs["jid"] for i in items.find("query", ns.DISCO_ITEMS).find_all("item")}
        assert "echo.localhost" in jids and "echo.example.org" not in jids

        with pytest.raises(RuntimeError, match="already served"):
            ModEcho(server, {}).serve_subdomains("echo.@HOST@", handler)

        module.unwire()
        assert server.components.lookup("echo.localhost") is None
