"""mod_domain_isolation with real clients on one server serving a.test and b.test: alice@a.test
reaches carol@a.test and conference.a.test, but not bob@b.test nor conference.b.test (she gets
service-unavailable and bob gets nothing); without the module the two domains talk."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from slixmpp.exceptions import IqError

from suricate.core.server import Server
from suricate.jid import JID
from suricate.net.certs import ensure_self_signed
from tests.e2e.harness import (
    ALL_MODULES,
    Client,
    c2s_listener_toml,
    connect,
    disconnect,
    free_port,
    serving,
    sqlite_pool_toml,
)

A, B = "a.test", "b.test"
PLUGINS = ("xep_0030", "xep_0199")


def config(tmp: Path, c2s_port: int, tls_port: int, isolated: bool) -> str:
    cert, _ = ensure_self_signed(tmp / "certs", [A, B])
    modules = "\n".join(f"[modules.{m}]" for m in (*ALL_MODULES, "mod_muc"))
    if isolated:
        modules += "\n[modules.mod_domain_isolation]"
    return f"""
[general]
hosts = ["{A}", "{B}"]
default_server_domain = "{A}"
{c2s_listener_toml(c2s_port, cert.certfile, cert.keyfile)}
{c2s_listener_toml(tls_port, cert.certfile, cert.keyfile, "tls")}
[auth]
methods = ["rdbms"]
password.scram_iterations = 4096
{sqlite_pool_toml(tmp / 'suricate.db')}
{modules}
"""


async def two_domains(tmp: Path, isolated: bool) -> AsyncIterator[tuple[Server, dict[str, Client]]]:
    c2s_port, tls_port = free_port(), free_port()
    async with serving(tmp, config(tmp, c2s_port, tls_port, isolated), c2s_port=c2s_port,
                       tls_port=tls_port) as server:
        clients = {}
        for jid in (f"alice@{A}", f"carol@{A}", f"bob@{B}"):
            await server.auth.register(JID.parse(jid), "pw")
            client = await connect(server, f"{jid}/r", "pw", plugins=PLUGINS)
            client.send_presence()
            clients[jid.split("@")[0]] = client
        try:
            yield server, clients
        finally:
            await disconnect(*clients.values())


@pytest.fixture
async def isolated(tmp_path: Path) -> AsyncIterator[tuple[Server, dict[str, Client]]]:
    async for pair in two_domains(tmp_path, isolated=True):
        yield pair


async def errors_of(client: Client) -> asyncio.Queue[Any]:
    queue: asyncio.Queue[Any] = asyncio.Queue()
    client.add_event_handler("message_error", queue.put_nowait)
    return queue


async def test_messages_stay_within_a_domain(
        isolated: tuple[Server, dict[str, Client]]) -> None:
    _, c = isolated
    alice, bob, carol = c["alice"], c["bob"], c["carol"]
    errors = await errors_of(alice)
    alice.send_message(mto=f"bob@{B}", mbody="across", mtype="chat")
    error = await asyncio.wait_for(errors.get(), 5)
    assert error["error"]["condition"] == "service-unavailable"
    assert error["from"] == f"bob@{B}"
    assert error["body"] == "across"
    alice.send_message(mto=f"carol@{A}", mbody="next door", mtype="chat")
    received = await carol.next_message()
    assert received["body"] == "next door" and received["from"] == f"alice@{A}/r"
    # The other way round, and to a full JID, is refused the same.
    back = await errors_of(bob)
    bob.send_message(mto=f"alice@{A}/r", mbody="hello?", mtype="chat")
    assert (await asyncio.wait_for(back.get(), 5))["error"]["condition"] == \
        "service-unavailable"
    # Nothing crossed: a round trip on each stream shows no message arrived.
    await bob.plugin["xep_0199"].send_ping(B, timeout=5)
    await alice.plugin["xep_0199"].send_ping(A, timeout=5)
    for client in (alice, bob):  # slixmpp also queues the errors as messages
        assert all(m["type"] == "error" for m in _drain(client.messages))


def _drain(queue: asyncio.Queue[Any]) -> list[Any]:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


async def test_iq_and_presence_across_domains_are_refused(
        isolated: tuple[Server, dict[str, Client]]) -> None:
    server, c = isolated
    alice = c["alice"]
    with pytest.raises(IqError) as err:
        await alice.plugin["xep_0030"].get_info(jid=f"bob@{B}")
    assert err.value.iq["error"]["condition"] == "service-unavailable"
    with pytest.raises(IqError) as err:
        await alice.plugin["xep_0030"].get_info(jid=B)  # the other domain itself
    assert err.value.iq["error"]["condition"] == "service-unavailable"
    assert (await alice.plugin["xep_0030"].get_info(jid=f"carol@{A}"))["type"] == "result"
    # A subscription request (routed from alice's bare JID) never reaches bob.
    bob = c["bob"]
    alice.send_presence(pto=f"bob@{B}", ptype="subscribe")
    await alice.plugin["xep_0199"].send_ping(A, timeout=5)
    await server.drain(5)  # the roster's work on it is done
    await bob.plugin["xep_0199"].send_ping(B, timeout=5)
    assert not [p for p in _drain(bob.presences) if p["type"] == "subscribe"]
    # ...and alice learns it: the error comes back to the bare JID the request left from,
    # and reaches her available resources (mod_presence)
    refused = [p for p in _drain(alice.presences) if p["type"] == "error"]
    assert [(str(p["from"]), p["error"]["condition"]) for p in refused] == [
        (f"bob@{B}", "service-unavailable")]


async def test_a_domain_keeps_its_own_services(
        isolated: tuple[Server, dict[str, Client]]) -> None:
    _, c = isolated
    alice = c["alice"]
    # conference.a.test belongs to a.test: alice uses it; conference.b.test is b.test's.
    info = await alice.plugin["xep_0030"].get_info(jid=f"conference.{A}")
    assert "http://jabber.org/protocol/muc" in info["disco_info"]["features"]
    with pytest.raises(IqError) as err:
        await alice.plugin["xep_0030"].get_info(jid=f"conference.{B}")
    assert err.value.iq["error"]["condition"] == "service-unavailable"
    # Joining a room of her own domain works.
    alice.send_presence(pto=f"room@conference.{A}/alice")
    joined = await alice.next_presence()
    while joined["from"] != f"room@conference.{A}/alice":
        joined = await alice.next_presence()
    assert joined["type"] != "error"


async def test_without_the_module_domains_talk(tmp_path: Path) -> None:
    async for _, c in two_domains(tmp_path, isolated=False):
        c["alice"].send_message(mto=f"bob@{B}", mbody="across", mtype="chat")
        assert (await c["bob"].next_message())["body"] == "across"
        iq = c["alice"].make_iq_get(ito=f"bob@{B}")
        iq.append(ET.Element("{http://jabber.org/protocol/disco#info}query"))
        assert (await iq.send(timeout=5))["type"] == "result"
        c["alice"].send_presence(pto=f"bob@{B}", ptype="subscribe")
        assert (await c["bob"].next_presence(type_="subscribe"))["from"] == f"alice@{A}"
