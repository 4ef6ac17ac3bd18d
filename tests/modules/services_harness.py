"""A server without listeners for module tests: only the modules under test are loaded, and
sessions are stand-ins registered in the session table that record what they receive.
IQs go in through the router as a client's would; the answer comes back as an Element."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from suricate.config import parse_config
from suricate.core.server import Server
from suricate.jid import JID
from suricate.modules import MODULES
from suricate.xml import ns
from suricate.xml.element import Element

_ids = itertools.count(1)


@contextlib.asynccontextmanager
async def module_server(tmp: Path, modules: str,
                        hosts: tuple[str, ...] = ("localhost",)) -> AsyncIterator[Server]:
    host_list = ", ".join(f'"{h}"' for h in hosts)
    cfg = parse_config(f"""
[general]
hosts = [{host_list}]
default_server_domain = "{hosts[0]}"

[auth]
methods = ["rdbms"]
password.scram_iterations = 4096

[outgoing_pools.rdbms.default.connection]
driver = "sqlite"
database = "{tmp / 'suricate.db'}"

{modules}
""", tmp)
    server = Server(cfg, tmp, MODULES)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


class FakeSession:
    """What the router and the modules need from a bound client session."""

    def __init__(self, server: Server, jid: str, available: bool = True) -> None:
        self.server = server
        self.jid = JID.parse(jid)
        self.user = self.jid.bare
        self.domain = self.jid.domain
        self.priority = 0
        self.presence: Element | None = Element("presence", ns.CLIENT) if available else None
        self.module_state: dict[str, Any] = {}
        self.anonymous = False
        self.resumable = False  # no XEP-0198 session to wait for the client
        self.received: asyncio.Queue[Element] = asyncio.Queue()
        self.errors: list[Any] = []
        server.sessions.register(self)

    @property
    def available(self) -> bool:
        return self.presence is not None

    def deliver(self, stanza: Element) -> None:
        self.received.put_nowait(stanza)

    def replaced(self) -> None:
        pass

    def stream_error(self, err: Any) -> None:
        self.errors.append(err)
        self.server.sessions.unregister(self)

    def leave(self) -> None:
        self.server.sessions.unregister(self)

    async def iq(self, type_: str, payload: Element, to: str | None = None,
                 timeout: float = 5.0) -> Element:
        """Send an IQ as the client would (no 'to' means the own bare JID, RFC 6120 §10.3.3)
        and return the answer with the same id."""
        iq_id = f"t{next(_ids)}"
        target = JID.parse(to) if to else self.jid.bare
        iq = Element("iq", ns.CLIENT, {"type": type_, "id": iq_id, "from": str(self.jid),
                                       "to": str(target)}, [payload])
        self.server.router.route(self.jid, target, iq)
        while True:
            stanza = await asyncio.wait_for(self.received.get(), timeout)
            if stanza.name == "iq" and stanza.attrs.get("id") == iq_id:
                return stanza


def error_condition(stanza: Element) -> str | None:
    """The defined condition of an error stanza, or None if it is not an error."""
    if stanza.attrs.get("type") != "error":
        return None
    err = stanza.find("error")
    assert err is not None
    cond = err.find_all(xmlns=ns.STANZAS_ERRORS)
    return cond[0].name if cond else None
