"""mod_ping: XEP-0199 pongs from the server and for accounts; pings to idle clients."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from suricate.core import hooks as H
from suricate.core.server import Server
from suricate.jid import JID
from suricate.modules.mod_ping import ModPing, PingState
from suricate.xml import ns
from suricate.xml.element import Element
from tests.modules.services_harness import FakeSession, error_condition, module_server

PINGS = """
[modules.mod_ping]
send_pings = true
ping_interval = 10
ping_req_timeout = 5
timeout_action = "kill"
"""


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with module_server(tmp_path, PINGS) as srv:
        await srv.auth.register(JID.parse("alice@localhost"), "pw")
        yield srv


def ping() -> Element:
    return Element("ping", ns.PING)


async def test_server_answers_ping_with_empty_result(server: Server) -> None:
    alice = FakeSession(server, "alice@localhost/phone")
    reply = await alice.iq("get", ping(), to="localhost")
    assert reply.attrs["type"] == "result"
    assert reply.attrs["from"] == "localhost"
    assert reply.children == []


async def test_server_answers_ping_for_an_account(server: Server) -> None:
    alice = FakeSession(server, "alice@localhost/phone")
    reply = await alice.iq("get", ping(), to="alice@localhost")
    assert reply.attrs["type"] == "result"
    assert reply.attrs["from"] == "alice@localhost"


async def test_ping_to_unknown_account_is_service_unavailable(server: Server) -> None:
    alice = FakeSession(server, "alice@localhost/phone")
    reply = await alice.iq("get", ping(), to="ghost@localhost")
    assert error_condition(reply) == "service-unavailable"


async def test_ping_set_is_not_allowed(server: Server) -> None:
    alice = FakeSession(server, "alice@localhost/phone")
    reply = await alice.iq("set", ping(), to="localhost")
    assert error_condition(reply) == "not-allowed"


def module(server: Server) -> ModPing:
    mod = server.modules["mod_ping"]
    assert isinstance(mod, ModPing)
    return mod


async def opened(server: Server, jid: str, at: float) -> Any:
    """A stand-in session that went through SESSION_OPENED (typed Any: it plays a C2S)."""
    session = FakeSession(server, jid)
    await server.hooks.fold_async(H.SESSION_OPENED, None, session)
    state = session.module_state["mod_ping"]
    state.last_active = at
    return session


async def test_active_client_is_not_pinged(server: Server) -> None:
    mod = module(server)
    alice = await opened(server, "alice@localhost/phone", at=100.0)
    alice.module_state["mod_ping"].last_active = 105.0  # said something meanwhile
    mod._check(alice, now=110.0)
    assert alice.received.empty()
    assert alice.module_state["mod_ping"].ping_sent is None


async def test_idle_client_is_pinged_and_answer_clears_it(server: Server) -> None:
    mod = module(server)
    alice = await opened(server, "alice@localhost/phone", at=100.0)
    mod._check(alice, now=110.0)
    iq = alice.received.get_nowait()
    assert iq.attrs["type"] == "get" and iq.attrs["from"] == "localhost"
    assert iq.attrs["to"] == "alice@localhost/phone"
    assert iq.find("ping", ns.PING) is not None
    state: PingState = alice.module_state["mod_ping"]
    assert state.ping_sent == 110.0
    # The pong is a stanza from the client: USER_SEND_PACKET stamps it.
    pong = Element("iq", ns.CLIENT, {"type": "result", "id": iq.attrs["id"],
                                     "to": "localhost"})
    assert server.hooks.fold(H.USER_SEND_PACKET, pong, alice) is pong
    state.last_active = 111.0  # as if the pong arrived at 111
    mod._check(alice, now=115.0)
    assert state.ping_sent is None
    assert alice.errors == []


async def test_unanswered_ping_kills_the_session(server: Server) -> None:
    mod = module(server)
    alice = await opened(server, "alice@localhost/phone", at=100.0)
    mod._check(alice, now=110.0)
    mod._check(alice, now=114.0)  # still within ping_req_timeout
    assert alice.errors == []
    mod._check(alice, now=115.0)
    assert [e.condition for e in alice.errors] == ["connection-timeout"]


async def test_timeout_action_none_keeps_the_session(tmp_path: Path) -> None:
    async with module_server(tmp_path, PINGS.replace('"kill"', '"none"')) as server:
        mod = module(server)
        alice = await opened(server, "alice@localhost/phone", at=100.0)
        mod._check(alice, now=110.0)
        mod._check(alice, now=115.0)
        assert alice.errors == []
        assert alice.module_state["mod_ping"].ping_sent is None


async def test_closed_session_leaves_the_wheel(server: Server) -> None:
    mod = module(server)
    alice = await opened(server, "alice@localhost/phone", at=100.0)
    alice.leave()
    before = sum(len(s) for s in mod._wheel.values())
    mod._check(alice, now=110.0)
    assert alice.received.empty()
    assert sum(len(s) for s in mod._wheel.values()) == before


async def test_no_idle_tracking_without_send_pings(tmp_path: Path) -> None:
    async with module_server(tmp_path, "[modules.mod_ping]") as server:
        alice = FakeSession(server, "alice@localhost/phone")
        await server.hooks.fold_async(H.SESSION_OPENED, None, alice)
        assert "mod_ping" not in alice.module_state
        assert module(server)._timer is None
