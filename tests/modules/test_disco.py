"""mod_disco: XEP-0030 info and items of the server and of accounts, XEP-0157 server info."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from suricate.core.server import Server
from suricate.jid import JID
from suricate.modules.mod_disco import server_info_form
from suricate.xml import ns
from suricate.xml.element import Element
from tests.modules.services_harness import FakeSession, error_condition, module_server

MODULES = """
[modules.mod_disco]
extra_domains = ["irc.example.org"]
server_info = [
  {name = "abuse-addresses", urls = ["mailto:abuse@localhost", "xmpp:abuse@localhost"]},
  {name = "admin-addresses", urls = ["xmpp:admin@localhost"], modules = ["mod_muc"]},
]
[modules.mod_ping]
[modules.mod_version]
[modules.mod_vcard]
[modules.mod_private]
"""


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with module_server(tmp_path, MODULES) as srv:
        await srv.auth.register(JID.parse("alice@localhost"), "pw")
        await srv.auth.register(JID.parse("bob@localhost"), "pw")
        yield srv


def info_query(node: str | None = None) -> Element:
    return Element("query", ns.DISCO_INFO, {"node": node} if node else {})


def features(query: Element) -> list[str]:
    return [f.attrs["var"] for f in query.find_all("feature")]


async def test_server_info_lists_identity_features_and_contact_form(server: Server) -> None:
    alice = FakeSession(server, "alice@localhost/phone")
    reply = await alice.iq("get", info_query(), to="localhost")
    assert reply.attrs["type"] == "result"
    assert reply.attrs["from"] == "localhost"
    query = reply.find("query", ns.DISCO_INFO)
    assert query is not None
    identity = query.find("identity")
    assert identity is not None and identity.attrs == {
        "category": "server", "type": "im", "name": "Suricate"}
    # jabber:iq:private on the domain too: poezio 0.14 looks for it there (test_poezio.py).
    assert features(query) == sorted([ns.DISCO_INFO, ns.DISCO_ITEMS, ns.PING, ns.VERSION,
                                      ns.VCARD, ns.PRIVATE])
    form = query.find("x", ns.DATA_FORMS)
    assert form is not None and form.attrs["type"] == "result"
    fields = {f.attrs["var"]: [v.text for v in f.find_all("value")]
              for f in form.find_all("field")}
    # admin-addresses is reserved to mod_muc's disco#info, not the server's.
    assert fields == {
        "FORM_TYPE": [ns.SERVERINFO],
        "abuse-addresses": ["mailto:abuse@localhost", "xmpp:abuse@localhost"],
    }


async def test_server_info_of_unknown_node_is_item_not_found(server: Server) -> None:
    alice = FakeSession(server, "alice@localhost/phone")
    reply = await alice.iq("get", info_query("http://example.org/nope"), to="localhost")
    assert error_condition(reply) == "item-not-found"


async def test_disco_set_is_not_allowed(server: Server) -> None:
    alice = FakeSession(server, "alice@localhost/phone")
    reply = await alice.iq("set", info_query(), to="localhost")
    assert error_condition(reply) == "not-allowed"


async def test_server_items_list_extra_domains(server: Server) -> None:
    alice = FakeSession(server, "alice@localhost/phone")
    reply = await alice.iq("get", Element("query", ns.DISCO_ITEMS), to="localhost")
    query = reply.find("query", ns.DISCO_ITEMS)
    assert query is not None
    # The extra domain, and mod_vcard's user directory (XEP-0055, search = true by default).
    assert [i.attrs for i in query.find_all("item")] == [{"jid": "irc.example.org"},
                                                         {"jid": "vjud.localhost"}]


async def test_server_items_of_unknown_node_is_item_not_found(server: Server) -> None:
    alice = FakeSession(server, "alice@localhost/phone")
    reply = await alice.iq("get", Element("query", ns.DISCO_ITEMS, {"node": "x"}),
                           to="localhost")
    assert error_condition(reply) == "item-not-found"


async def test_account_info_is_registered_account_with_sm_features(server: Server) -> None:
    alice = FakeSession(server, "alice@localhost/phone")
    reply = await alice.iq("get", info_query(), to="bob@localhost")
    assert reply.attrs["from"] == "bob@localhost"
    query = reply.find("query", ns.DISCO_INFO)
    assert query is not None
    identity = query.find("identity")
    assert identity is not None
    assert identity.attrs == {"category": "account", "type": "registered"}
    assert features(query) == sorted([ns.DISCO_INFO, ns.DISCO_ITEMS, ns.PRIVATE, ns.VCARD])


async def test_own_account_info_without_to(server: Server) -> None:
    alice = FakeSession(server, "alice@localhost/phone")
    reply = await alice.iq("get", info_query())
    assert reply.attrs["type"] == "result"
    assert reply.attrs["from"] == "alice@localhost"


async def test_account_items_are_empty(server: Server) -> None:
    alice = FakeSession(server, "alice@localhost/phone")
    reply = await alice.iq("get", Element("query", ns.DISCO_ITEMS), to="bob@localhost")
    query = reply.find("query", ns.DISCO_ITEMS)
    assert query is not None and query.find_all() == []


async def test_unknown_account_is_service_unavailable(server: Server) -> None:
    alice = FakeSession(server, "alice@localhost/phone")
    for payload in (info_query(), Element("query", ns.DISCO_ITEMS)):
        reply = await alice.iq("get", payload, to="nobody@localhost")
        assert error_condition(reply) == "service-unavailable"


def test_server_info_form_filters_by_module() -> None:
    entries: list[dict[str, Any]] = [{"name": "abuse-addresses", "urls": ["a"], "modules": None},
               {"name": "support-addresses", "urls": ["s"], "modules": ["mod_muc"]}]
    form = server_info_form(entries, "mod_muc")
    assert form is not None
    assert [f.attrs["var"] for f in form.find_all("field")] == [
        "FORM_TYPE", "abuse-addresses", "support-addresses"]
    assert server_info_form(entries[1:], "mod_disco") is None


def test_server_info_entries_of_one_name_make_one_field() -> None:
    # XEP-0004 §3.2: var is unique in a form; the MUC's form gets both entries' addresses.
    entries: list[dict[str, Any]] = [
        {"name": "abuse-addresses", "urls": ["mailto:abuse@x", "xmpp:abuse@x"], "modules": None},
        {"name": "abuse-addresses", "urls": ["xmpp:abuse@x", "xmpp:muc-abuse@x"],
         "modules": ["mod_muc"]}]
    form = server_info_form(entries, "mod_muc")
    assert form is not None
    fields = form.find_all("field")
    assert [f.attrs["var"] for f in fields] == ["FORM_TYPE", "abuse-addresses"]
    assert [v.text for v in fields[1].find_all("value")] == [
        "mailto:abuse@x", "xmpp:abuse@x", "xmpp:muc-abuse@x"]
