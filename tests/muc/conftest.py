"""Helpers of the MUC tests: a real Suricate with mod_muc, real slixmpp clients (xep_0045)
over direct TLS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from slixmpp import JID as SJID
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import StanzaPath

from suricate.core.server import Server
from suricate.jid import JID
from tests.e2e.harness import Client, connect, eventually, running_server

MUC_MODULES = """
[modules.mod_disco]
[modules.mod_presence]
[modules.mod_roster]
"""

SERVICE = "conference.localhost"
PLUGINS = ("xep_0030", "xep_0004", "xep_0045", "xep_0059", "xep_0199", "xep_0249", "xep_0313",
           "xep_0359", "xep_0424", "xep_0425")


def muc_toml(options: str = "") -> str:
    return MUC_MODULES + "[modules.mod_muc]\n" + options


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with running_server(tmp_path, modules=muc_toml()) as srv:
        yield srv


async def user(server: Server, name: str, resource: str = "r") -> Client:
    """Register ``name`` (if needed) and log it in over direct TLS with the MUC plugins."""
    jid = JID.parse(f"{name}@localhost")
    if not await server.user_exists(jid):
        await server.auth.register(jid, f"{name}-pw")
    client = await connect(server, f"{name}@localhost/{resource}", f"{name}-pw",
                           direct_tls=True, plugins=PLUGINS)
    # slixmpp stops its generic "presence" event for a room once it saw a MUC presence
    # from it: the MUC presences are collected here instead.
    client.muc_presences = asyncio.Queue()  # type: ignore[attr-defined]
    client.add_event_handler("groupchat_presence", client.muc_presences.put_nowait)
    # Message errors without a body do not raise slixmpp's "message" event.
    client.errors = asyncio.Queue()  # type: ignore[attr-defined]
    client.register_handler(Callback("errors", StanzaPath("message@type=error"),
                                     client.errors.put_nowait))
    client.send_presence()
    # Available once the server has processed that presence: with a database a few ms away,
    # what another client sends next (an invitation to the bare JID) could come first.
    # (Without mod_presence, nothing makes a session available.)
    if "mod_presence" in server.modules:
        await eventually(lambda: any(str(s.jid) == str(client.boundjid) and s.available
                                     for s in server.sessions))
    return client


async def create_instant(client: Client, room: str, nick: str) -> Any:
    """Join a new room and accept the default configuration (XEP-0045 §10.1.2)."""
    pres, _, _, _ = await client.plugin["xep_0045"].join_muc_wait(SJID(room), nick, timeout=5)
    form = client.plugin["xep_0004"].make_form(ftype="submit")
    await client.plugin["xep_0045"].set_room_config(SJID(room), form, timeout=5)
    return pres


def codes(stanza: Any) -> set[str]:
    return {str(c) for c in stanza["muc"]["status_codes"]}


async def next_groupchat(client: Client, timeout: float = 5.0) -> Any:
    while True:
        msg = await client.next_message(timeout)
        if msg["type"] == "groupchat" and msg["body"]:
            return msg


async def presence_from(client: Client, jid: str, type_: str | None = None,
                        timeout: float = 5.0) -> Any:
    """The next presence from ``jid`` (others are skipped)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        pres = await asyncio.wait_for(client.muc_presences.get(),  # type: ignore[attr-defined]
                                      deadline - loop.time())
        if str(pres["from"]) == jid and (type_ is None or pres["type"] == type_):
            return pres


def drain(*clients: Client) -> None:
    """Forget what the clients received so far (the next assertions look at new stanzas)."""
    for client in clients:
        for queue in (client.muc_presences, client.messages):  # type: ignore[attr-defined]
            while not queue.empty():
                queue.get_nowait()


async def create_room(client: Client, room: str, nick: str, fields: dict[str, Any]) -> None:
    """Join a new room and submit its configuration form (XEP-0045 §10.1.3, reserved room)."""
    await client.plugin["xep_0045"].join_muc_wait(SJID(room), nick, timeout=5)
    form = client.plugin["xep_0004"].make_form(ftype="submit")
    for var, value in fields.items():
        form.add_field(var=var, value=value)
    await client.plugin["xep_0045"].set_room_config(SJID(room), form, timeout=5)


async def error_message(client: Client, timeout: float = 5.0) -> Any:
    return await asyncio.wait_for(client.errors.get(), timeout)  # type: ignore[attr-defined]


# The storage suite's backends (sqlite, and pgsql / mysql when PostgreSQL / MariaDB answer):
# the MUC store and the persistence tests run on all three.
from tests.storage.conftest import (  # noqa: E402, F401
    MyDatabase,
    PgDatabase,
    backend,
    make_storage,
    my_database,
    pg_database,
    rdbms_pool_toml,
    reset_database,
    storage,
)


async def pool_toml(db: PgDatabase | MyDatabase | None) -> str:
    """The [outgoing_pools] of a server on ``db`` (None: the harness's SQLite file)."""
    if db is None:
        return ""
    await reset_database(db)
    return rdbms_pool_toml(db)
