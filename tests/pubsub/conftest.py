"""PEP and PubSub with real slixmpp clients over TLS: a Suricate with mod_caps and mod_pubsub."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from suricate.core.server import Server
from suricate.jid import JID
from suricate.modules.mod_caps import session_features
from suricate.modules.mod_roster.store import RosterItem
from tests.e2e.harness import MODULES_TOML, Client, connect, running_server

PUBSUB_MODULES = MODULES_TOML + "\n[modules.mod_caps]\n[modules.mod_pubsub]\n"
PLUGINS = ("xep_0030", "xep_0004", "xep_0060", "xep_0115", "xep_0163", "xep_0203")


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with running_server(tmp_path, modules=PUBSUB_MODULES) as srv:
        yield srv


async def accounts(server: Server, *names: str) -> None:
    for name in names:
        await server.auth.register(JID.parse(f"{name}@localhost"), f"{name}-pw")


async def friends(server: Server, a: str, b: str) -> None:
    """A mutual presence subscription, written before either logs in."""
    await server.modules["mod_roster"].store.put_roster_item("localhost", a, RosterItem(f"{b}@localhost",
                                                                   subscription="both"))
    await server.modules["mod_roster"].store.put_roster_item("localhost", b, RosterItem(f"{a}@localhost",
                                                                   subscription="both"))


class Events:
    """The pubsub notifications a client receives, by kind."""

    def __init__(self, client: Client) -> None:
        self.queues: dict[str, asyncio.Queue[Any]] = {}
        for kind in ("publish", "retract", "purge", "delete"):
            queue: asyncio.Queue[Any] = asyncio.Queue()
            self.queues[kind] = queue
            client.add_event_handler(f"pubsub_{kind}", queue.put_nowait)

    async def next(self, kind: str, timeout: float = 5.0) -> Any:
        return await asyncio.wait_for(self.queues[kind].get(), timeout)

    async def none(self, kind: str, wait: float = 0.3) -> None:
        await asyncio.sleep(wait)
        assert self.queues[kind].empty(), self.queues[kind].get_nowait()


async def online(server: Server, name: str, interests: tuple[str, ...] = (),
                 resource: str = "r", plugins: tuple[str, ...] = PLUGINS) -> tuple[Client, Events]:
    """Log in, announce ``interests`` (+notify) in caps, send available presence and wait until
    the server learnt the caps."""
    client = await connect(server, f"{name}@localhost/{resource}", f"{name}-pw", direct_tls=True,
                           plugins=plugins)
    client.auto_authorize = None
    client.auto_subscribe = False
    events = Events(client)
    if "xep_0115" in plugins:
        for namespace in interests:
            client.plugin["xep_0030"].add_feature(f"{namespace}+notify")
        await client.plugin["xep_0115"].update_caps(broadcast=False)
    client.send_presence()
    if "xep_0115" in plugins:
        full = JID.parse(f"{name}@localhost/{resource}")
        for _ in range(200):
            session = server.sessions.lookup(full)
            if session is not None and session_features(session):
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError(f"the server never learnt the caps of {full}")
    return client, events


def payload(xml: str) -> ET.Element:
    return ET.fromstring(xml)
