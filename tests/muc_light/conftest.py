"""Helpers of the MUC Light tests: a real Suricate with mod_muc_light and real slixmpp
clients over direct TLS. slixmpp has no MUC Light plugin: the urn:xmpp:muclight:0 IQs are
written out as XML and sent as raw IQs, and every message stanza is collected."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from typing import Any

from slixmpp.exceptions import IqError
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import StanzaPath

from suricate.core.server import Server
from suricate.jid import JID
from tests.e2e.harness import Client, connect

SERVICE = "muclight.localhost"
NS = "urn:xmpp:muclight:0"
BASE_MODULES = """
[modules.mod_disco]
[modules.mod_presence]
[modules.mod_roster]
"""


def light_toml(options: str = "", extra_modules: str = "") -> str:
    return BASE_MODULES + extra_modules + "[modules.mod_muc_light]\n" + options


async def user(server: Server, name: str, resource: str = "r",
               plugins: tuple[str, ...] = ("xep_0030",)) -> Client:
    """Register ``name`` (if needed), log it in over direct TLS, send initial presence and
    wait until the server has it (one IQ round trip after it)."""
    jid = JID.parse(f"{name}@localhost")
    if not await server.user_exists(jid):
        await server.auth.register(jid, f"{name}-pw")
    client = await connect(server, f"{name}@localhost/{resource}", f"{name}-pw",
                           direct_tls=True, plugins=plugins)
    client.stanzas = asyncio.Queue()  # type: ignore[attr-defined]
    client.register_handler(Callback("every message", StanzaPath("message"),
                                     client.stanzas.put_nowait))  # type: ignore[attr-defined]
    client.send_presence()
    await iq(client, "localhost", "get", "<query xmlns='http://jabber.org/protocol/disco#info'/>")
    return client


async def iq(client: Client, to: str, type_: str, payload: str) -> ET.Element | None:
    """Send a raw IQ; the payload of the result (None when empty). IqError on an error."""
    stanza = client.Iq()
    stanza["type"] = type_
    stanza["to"] = to
    stanza.append(ET.fromstring(payload))
    result = await stanza.send(timeout=5)
    children = list(result.xml)
    return children[0] if children else None


async def iq_error(client: Client, to: str, type_: str, payload: str) -> str:
    """The error condition the server answers to a raw IQ (the test fails on a result)."""
    try:
        await iq(client, to, type_, payload)
    except IqError as err:
        return str(err.condition)
    raise AssertionError("expected an error")


async def next_message(client: Client, timeout: float = 5.0) -> Any:
    return await asyncio.wait_for(client.stanzas.get(), timeout)  # type: ignore[attr-defined]


async def no_message(client: Client, wait: float = 0.3) -> None:
    await asyncio.sleep(wait)
    assert client.stanzas.empty(), client.stanzas.get_nowait()  # type: ignore[attr-defined]


def users_of(x: ET.Element, xmlns: str) -> dict[str, str]:
    return {u.text or "": u.attrib["affiliation"] for u in x.findall(f"{{{xmlns}}}user")}


def create_xml(name: str = "", occupants: dict[str, str] | None = None,
               **config: str) -> str:
    conf = "".join(f"<{k}>{v}</{k}>" for k, v in config.items())
    users = "".join(f"<user affiliation='{a}'>{j}</user>"
                    for j, a in (occupants or {}).items())
    return (f"<query xmlns='{NS}#create'><configuration>{conf}</configuration>"
            f"<occupants>{users}</occupants></query>")


def affs_xml(changes: dict[str, str]) -> str:
    users = "".join(f"<user affiliation='{a}'>{j}</user>" for j, a in changes.items())
    return f"<query xmlns='{NS}#affiliations'>{users}</query>"


# The storage suite's backends (sqlite, and pgsql / mysql when PostgreSQL / MariaDB answer).
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
