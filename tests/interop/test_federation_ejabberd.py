"""Suricate and a real ejabberd 23.01 (Debian package, one per module: SASL EXTERNAL both
ways) as an operator lives it beyond the happy path of ``test_federation_interop``:

- a message or an IQ to an account the other side does not have comes back to its sender
  with service-unavailable (RFC 6121 §8.5.2.2.1, §8.5.2.2.3), in both directions;
- software version (XEP-0092) of each server, asked from the other side;
- an external component of Suricate's (XEP-0114, slixmpp's ``ComponentXMPP``) is reached by
  ejabberd's users over s2s and reaches them, as its own domain (dialback for it: the
  server's certificate does not name it); once it is gone, their stanzas to it bounce with
  service-unavailable instead of vanishing."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from slixmpp.exceptions import IqError

from suricate.core.server import Server
from tests.e2e.harness import Client, disconnect, free_port
from tests.e2e.test_component import SECRET, Component
from tests.interop import peers as P
from tests.interop.test_federation_im import error, user
from tests.interop.test_federation_interop import require_peers, suricate_toml
from tests.s2s.harness import federated_server, register

pytestmark = [pytest.mark.timeout(150), pytest.mark.xdist_group("fixed-ports")]

AUTH = "external"


@pytest.fixture(scope="module")
def peers() -> Iterator[P.Peers]:
    require_peers()
    peers = P.make_peers()
    try:
        peers.start_ejabberd({"eddie": "pass", "edna": "pass"}, modules="  mod_version: {}\n")
        yield peers
    finally:
        peers.stop()
        if os.environ.get("SURICATE_KEEP_INTEROP") != "1":  # keep the logs for a look
            P.remove(peers)


@pytest.fixture
async def suricate(peers: P.Peers, tmp_path: Path) -> AsyncIterator[Server]:
    c2s, component = free_port(), free_port()
    toml = suricate_toml(
        peers,
        c2s,
        AUTH,
        f"""
[modules.mod_version]

[[listen.component]]
port = {component}
ip_address = "127.0.0.1"
password = "{SECRET}"
""",
    )
    async with federated_server(tmp_path, P.SURICATE, toml, c2s, peers.s2s_port) as server:
        server.component_port = component  # type: ignore[attr-defined]
        yield server


async def ours(server: Server, name: str) -> Client:
    await register(server, name)
    client = await user(f"{name}@{P.SURICATE}/s", "127.0.0.1", server.c2s_port)  # type: ignore[attr-defined]
    client.register_plugin("xep_0092")
    return client


async def theirs(peers: P.Peers, name: str) -> Client:
    client = await user(f"{name}@{P.EJABBERD}/t", P.EJABBERD_IP, peers.c2s_ports[P.EJABBERD])
    client.register_plugin("xep_0092")
    return client


async def ping_error(client: Client, to: str) -> str:
    """The condition of the error answering a ping (XEP-0199) to ``to``."""
    try:
        reply = await client.plugin["xep_0199"].send_ping(to, timeout=15)
    except IqError as exc:
        return str(exc.iq["error"]["condition"])
    raise AssertionError(f"a result from {to}: {reply}")


async def test_unknown_accounts_bounce_and_versions_both_ways(
    peers: P.Peers, suricate: Server
) -> None:
    sam, eddie = await ours(suricate, "sam"), await theirs(peers, "eddie")
    try:
        # RFC 6121 §8.5.2.2.1: a message to an account the server does not have comes back
        # to its sender as service-unavailable, whichever side the sender is on.
        sam.send_message(mto=f"nobody@{P.EJABBERD}", mbody="hello?", mtype="chat")
        assert await error(sam, timeout=20) == (f"nobody@{P.EJABBERD}", "service-unavailable")
        eddie.send_message(mto=f"nobody@{P.SURICATE}", mbody="hello?", mtype="chat")
        assert await error(eddie, timeout=20) == (f"nobody@{P.SURICATE}", "service-unavailable")
        # §8.5.2.2.3: an IQ to it too (to a full JID: ejabberd answers a ping to any bare
        # JID of its domain itself)
        assert await ping_error(sam, f"nobody@{P.EJABBERD}/r") == "service-unavailable"
        assert await ping_error(eddie, f"nobody@{P.SURICATE}/r") == "service-unavailable"
        # XEP-0092 across servers, both ways
        version = await sam.plugin["xep_0092"].get_version(P.EJABBERD, timeout=15)
        assert version["software_version"]["name"] == "ejabberd"
        version = await eddie.plugin["xep_0092"].get_version(P.SURICATE, timeout=15)
        assert version["software_version"]["name"] == "Suricate"
    finally:
        await disconnect(sam, eddie)


async def test_ejabberd_users_and_a_suricate_component(peers: P.Peers, suricate: Server) -> None:
    gateway = Component(P.GATEWAY, SECRET)
    gateway.register_plugin("xep_0092")
    gateway.register_plugin("xep_0199")
    gateway.enable_direct_tls = False
    gateway.connect("127.0.0.1", suricate.component_port)  # type: ignore[attr-defined]
    await asyncio.wait_for(asyncio.shield(gateway.started), 10)
    edna = await theirs(peers, "edna")
    bot = f"bot@{P.GATEWAY}"
    try:
        edna.send_message(mto=bot, mbody="hello gateway", mtype="chat")
        got: Any = await asyncio.wait_for(gateway.messages.get(), 20)
        assert (str(got["from"]), got["body"]) == (f"edna@{P.EJABBERD}/t", "hello gateway")
        gateway.send_message(
            mto=f"edna@{P.EJABBERD}/t", mfrom=bot, mbody="hello edna", mtype="chat"
        )
        back = await edna.next_message(timeout=20)
        assert (str(back["from"]), back["body"]) == (bot, "hello edna")
        # IQs both ways: ejabberd's user asks the component, the component pings ejabberd
        version = await edna.plugin["xep_0092"].get_version(P.GATEWAY, timeout=15)
        assert version["type"] == "result"
        assert (
            await gateway.plugin["xep_0199"].ping(jid=P.EJABBERD, ifrom=P.GATEWAY, timeout=15)
            is not None
        )
        # the component leaves: edna's next message comes back, it does not vanish
        gateway.disconnect()
        await asyncio.wait_for(asyncio.shield(gateway.ended), 5)
        edna.send_message(mto=bot, mbody="still there?", mtype="chat")
        assert await error(edna, timeout=20) == (bot, "service-unavailable")
    finally:
        await disconnect(edna)
        if not gateway.ended.done():
            gateway.disconnect()
