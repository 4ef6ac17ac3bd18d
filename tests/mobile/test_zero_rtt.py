"""FAST in TLS 1.3 early data (RFC 8446 §2.3, XEP-0484 §3.4): a resumed TLS session carries
the stream header and the FAST <authenticate/> in its first flight; a replay of that flight
is refused through the FAST counter."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from suricate.core.server import Server
from tests.e2e.harness import eventually, running_server
from tests.mobile.client import authenticate_xml, bind2, ht_response, request_token
from tests.mobile.conftest import add_user, modules_toml
from tests.mobile.zero_rtt import (
    STREAM_OPEN,
    RecordingProxy,
    ZeroRttClient,
    client_context,
    replay,
)

EARLY = 'tls.early_data = true\ntls.session_tickets = "stateless"'


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with running_server(tmp_path, modules=modules_toml(), tls_mode="tls",
                              c2s_extra=EARLY) as srv:
        await add_user(srv, "alice")
        yield srv


def _first_login(port: int, ctx: Any) -> tuple[str, Any]:
    c = ZeroRttClient(port, ctx)
    c.send(STREAM_OPEN)
    features = c.expect(r"<stream:features>.*?</stream:features>").group(0)
    assert "tls-0rtt='true'" in features
    c.send(authenticate_xml("PLAIN", b"\0alice\0secret", "phone-1",
                            bind2() + request_token("HT-SHA-256-NONE")))
    success = c.expect(r"<success xmlns='urn:xmpp:sasl:2'>.*?</success>").group(0)
    token = success.split("token='")[1].split("'")[0]
    c.send("<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
    c.expect(r"id='p'")  # by now the session tickets have arrived
    session = c.session()
    c.close()
    return token, session


def _early_login(port: int, ctx: Any, session: Any, token: str, count: int | None,
                 mechanism: str = "HT-SHA-256-NONE") -> tuple[ZeroRttClient, str]:
    fast = f"<fast xmlns='urn:xmpp:fast:0' count='{count}'/>" if count is not None \
        else "<fast xmlns='urn:xmpp:fast:0'/>"
    early = STREAM_OPEN + authenticate_xml(
        mechanism, ht_response("alice", token, mechanism, b""), "phone-1", bind2() + fast)
    c = ZeroRttClient(port, ctx, session, early=early)
    # the client never sends the <authenticate/> again: an answer proves the server read
    # it from the early data
    answer = c.expect(r"<(success|failure) xmlns='urn:xmpp:sasl:2'>.*?</\1>").group(0)
    return c, answer


async def test_zero_rtt_login_and_replay_refused(server: Server) -> None:
    port = server.c2s_port  # type: ignore[attr-defined]
    fast = server.modules["mod_fast_auth_token"]
    ctx = client_context()
    token, session = await asyncio.to_thread(_first_login, port, ctx)

    proxy = RecordingProxy(port)  # the path between client and server, recorded
    try:
        c, answer = await asyncio.to_thread(_early_login, proxy.port, ctx, session, token, 1)
        c.close()
    finally:
        proxy.close()
    assert c.resumed
    assert answer.startswith("<success"), answer
    assert "<bound xmlns='urn:xmpp:bind:0'/>" in answer
    assert fast.early_data_logins == 1  # type: ignore[attr-defined]
    flight = proxy.first_flights[0]
    assert b"authenticate" not in flight  # encrypted, of course: the attacker replays blind

    # An attacker replays the recorded flight: the server reads the early data again, and the
    # FAST counter (1, already used) refuses the login; no session appears.
    failed_before = server.counters["c2s_auth_failed"]
    sessions_before = len(server.sessions)
    # the client's connections above close asynchronously on the server's side: count from
    # none, or their late close could hide (or fake) the replayed connection's own
    await eventually(lambda: _connections(server) == 0)
    await asyncio.to_thread(replay, port, flight)

    async def refused() -> bool:
        return server.counters["c2s_auth_failed"] == failed_before + 1
    await eventually(refused)
    assert fast.early_data_logins == 1  # type: ignore[attr-defined]
    # the replayed connection is gone (the attacker hung up) and left no session behind
    await eventually(lambda: _connections(server) == 0)
    assert len(server.sessions) <= sessions_before

    # The real client, counting on, logs in with 0-RTT again.
    c, answer = await asyncio.to_thread(_early_login, port, ctx, session, token, 2)
    c.close()
    assert answer.startswith("<success"), answer
    assert fast.early_data_logins == 2  # type: ignore[attr-defined]


async def test_zero_rtt_without_count_or_with_channel_binding_refused(server: Server) -> None:
    port = server.c2s_port  # type: ignore[attr-defined]
    ctx = client_context()
    token, session = await asyncio.to_thread(_first_login, port, ctx)
    c, answer = await asyncio.to_thread(_early_login, port, ctx, session, token, None)
    c.close()
    assert answer.startswith("<failure") and "count" in answer, answer
    # channel binding is not combined with early data: no -EXPR in 0-RTT
    c, answer = await asyncio.to_thread(_early_login, port, ctx, session, token, 3,
                                        "HT-SHA-256-EXPR")
    c.close()
    assert answer.startswith("<failure") and "invalid-mechanism" in answer, answer


async def test_without_early_data_the_same_login_still_works(server: Server) -> None:
    port = server.c2s_port  # type: ignore[attr-defined]
    ctx = client_context()
    token, _ = await asyncio.to_thread(_first_login, port, ctx)

    def run() -> str:
        c = ZeroRttClient(port, ctx)  # full handshake, no ticket
        c.send(STREAM_OPEN + authenticate_xml(
            "HT-SHA-256-NONE", ht_response("alice", token, "HT-SHA-256-NONE", b""), "phone-1",
            bind2()))
        out = c.expect(r"<(success|failure) xmlns='urn:xmpp:sasl:2'>.*?</\1>").group(0)
        c.close()
        return out
    assert (await asyncio.to_thread(run)).startswith("<success")


def _connections(server: Server) -> int:
    return sum(len(listener.connections) for listener in server.listeners)
