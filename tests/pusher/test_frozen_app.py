"""A phone app frozen with its socket open (iOS), and the device behind each registration
across a restart: slixmpp phones with stream management (XEP-0198) over STARTTLS, a slixmpp
XEP-0114 component as the app server (XEP-0357 §3). Both failed before: the frozen app was
never notified while its socket stayed open, and after a restart every registration counted
as any device's."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from suricate.core.c2s import STREAM_MANAGEMENT
from suricate.core.server import Server
from suricate.protocol.c2s import C2SState
from suricate.protocol.sm import StreamManagement
from tests.e2e.harness import Client, connect, disconnect, eventually, free_port, running_server
from tests.e2e.test_component import SECRET, component_toml
from tests.mobile.conftest import add_user, modules_toml
from tests.pusher.test_phone_walk import pushes, short
from tests.pusher.test_push import APP, AppServer, _session, enable, push_server

DELAY = 2  # wake_unacked_after, seconds


@contextlib.asynccontextmanager
async def never_asking(tmp: Path) -> AsyncIterator[tuple[Server, AppServer]]:
    """push_server, with stream management that never asks for acknowledgements by itself
    (`ack_freq = "infinity"`): a client acknowledges only what the push watch asks for."""
    plain, tls = free_port(), free_port()
    modules = modules_toml(f"[modules.mod_event_pusher.push]\nwake_unacked_after = {DELAY}\n")
    modules = modules.replace("[modules.mod_stream_management]\n",
                              '[modules.mod_stream_management]\nack_freq = "infinity"\n')
    assert 'ack_freq = "infinity"' in modules
    async with running_server(tmp, extra=component_toml(tmp, plain, tls),
                              modules=modules) as server:
        await add_user(server, "alice")
        await add_user(server, "bob")
        app = AppServer(APP, SECRET)
        app.connect("127.0.0.1", plain)
        await asyncio.wait_for(asyncio.shield(app.started), 10)
        try:
            yield server, app
        finally:
            app.disconnect()


async def phone(server: Server, resource: str, node: str | None) -> Client:
    """alice's device ``resource`` with stream management on, present, push enabled with
    ``node`` (None: not enabled in this session)."""
    jid = f"alice@localhost/{resource}"
    client = await connect(server, jid, "secret", plugins=("xep_0198",))
    client.send_presence()
    await eventually(lambda: STREAM_MANAGEMENT.get(_session(server, jid)) is not None)
    if node is not None:
        await enable(client, node=node)
    return client


async def pushes_after(app: AppServer, timeout: float) -> list[tuple[str, str, str, Any]]:
    """The publishes once one came (within ``timeout`` s), as ``pushes``."""
    arrived, iq = await asyncio.wait_for(app.published.get(), timeout)
    app.published.put_nowait((arrived, iq))
    return await pushes(app)


def unacked(server: Server, jid: str) -> int:
    sm = STREAM_MANAGEMENT.get(_session(server, jid))
    assert sm is not None
    return len(sm.buffer)


async def test_a_frozen_app_is_woken_until_it_reads_again(tmp_path: Path) -> None:
    # The server asks for an acknowledgement (<r/>) only when a message starts a wait here:
    # each client below acknowledges what it read only because the push watch asked.
    async with never_asking(tmp_path) as (server, app):
        frozen = await phone(server, "frozen", "node-frozen")
        awake = await phone(server, "awake", "node-awake")
        bob = await connect(server, "bob@localhost/desk", "secret")
        try:
            # iOS freezes the app: the socket stays open, nobody reads it (no <a/> either).
            assert frozen.transport is not None
            frozen.transport.pause_reading()
            sent = time.monotonic()
            bob.send_message(mto="alice@localhost", mbody="one", mtype="chat")
            arrived, iq = await asyncio.wait_for(app.published.get(), DELAY + 3)
            assert DELAY - 0.1 < arrived - sent < DELAY + 2
            app.published.put_nowait((arrived, iq))
            # The session that acknowledges at once is not woken.
            assert short(await pushes(app)) == [("node-frozen", "1", "one")]
            assert _session(server, "alice@localhost/frozen").state \
                == C2SState.SESSION_ESTABLISHED
            # Only the sessions that enabled push have their counters watched.
            assert type(STREAM_MANAGEMENT.get(_session(server, "alice@localhost/frozen"))) \
                is not StreamManagement
            # Asleep: the next message wakes it at once.
            sent = time.monotonic()
            bob.send_message(mto="alice@localhost/frozen", mbody="two", mtype="chat")
            arrived, iq = await asyncio.wait_for(app.published.get(), 3)
            assert arrived - sent < DELAY
            app.published.put_nowait((arrived, iq))
            assert short(await pushes(app)) == [("node-frozen", "2", "two")]
            # The app reads again: it acknowledges, gets everything, and is not woken again.
            frozen.transport.resume_reading()
            await eventually(lambda: unacked(server, "alice@localhost/frozen") == 0)
            bodies = [(await frozen.next_message())["body"] for _ in range(2)]
            assert bodies == ["one", "two"]
            bob.send_message(mto="alice@localhost", mbody="three", mtype="chat")
            assert (await frozen.next_message())["body"] == "three"
            assert [(await awake.next_message())["body"] for _ in range(2)] == ["one", "three"]
            # Frozen again, and its connection lost before the wait ends: the message written
            # before the loss (which a session waiting to be resumed never notified) wakes it.
            frozen.transport.pause_reading()
            bob.send_message(mto="alice@localhost/frozen", mbody="four", mtype="chat")
            await eventually(lambda: unacked(server, "alice@localhost/frozen") == 1)
            frozen.abort()
            await eventually(lambda: _session(server, "alice@localhost/frozen").state
                             == C2SState.RESUME_SESSION)
            # "three", acknowledged at once, woke nobody (its push would have come first).
            assert short(await pushes_after(app, DELAY + 2)) == [("node-frozen", "1", "four")]
        finally:
            await disconnect(bob, awake, frozen)


async def test_wake_unacked_after_0_turns_it_off(tmp_path: Path) -> None:
    # Off: not even the counters of a session that enabled push are touched.
    async with push_server(tmp_path, "wake_unacked_after = 0") as (server, _):
        client = await phone(server, "frozen", "node-frozen")
        try:
            sm = STREAM_MANAGEMENT.get(_session(server, "alice@localhost/frozen"))
            assert type(sm) is StreamManagement
            assert server.modules["mod_event_pusher"].unacked is None  # type: ignore[attr-defined]
        finally:
            await disconnect(client)


async def test_each_registration_keeps_its_device_across_a_restart(tmp_path: Path) -> None:
    # Before: the device behind a registration was kept in memory only; after a restart a
    # message queued for the sleeping phone woke the connected tablet's registration too.
    async with push_server(tmp_path) as (server, _):
        for resource, node in (("phone", "node-phone"), ("tablet", "node-tablet")):
            client = await connect(server, f"alice@localhost/{resource}", "secret")
            await enable(client, node=node)
            await disconnect(client)
    async with push_server(tmp_path) as (server, app):
        regs = await server.modules["mod_event_pusher"].store.registrations(  # type: ignore[attr-defined]
            "localhost", "alice")
        assert [(r.node, r.device) for r in regs] == [("node-phone", "phone"),
                                                      ("node-tablet", "tablet")]
        # Both log in again without enabling push; the tablet stays, the phone's network goes.
        tablet = await connect(server, "alice@localhost/tablet", "secret")
        sleeping = await phone(server, "phone", None)
        bob = await connect(server, "bob@localhost/desk", "secret")
        try:
            sleeping.abort()
            await eventually(lambda: getattr(_session(server, "alice@localhost/phone"),
                                             "state", None) == C2SState.RESUME_SESSION)
            bob.send_message(mto="alice@localhost/phone", mbody="hi", mtype="chat")
            assert short(await pushes(app)) == [("node-phone", "1", "hi")]
        finally:
            await disconnect(bob, tablet)
