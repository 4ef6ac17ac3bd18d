"""The connections between data centres: each node listens on its ``connections.endpoints``
and opens ``connections_per_endpoint`` connections to every endpoint another data centre
advertised, on first use.

A connection is a stream of frames, each a 4-byte big-endian length and a JSON object:
``{"h": local_host}`` first (who connects), then one object per stanza (``f`` from, ``t`` to,
``x`` the stanza serialized in ``jabber:client``, ``l`` its TTL, ``s`` the sender's wall clock
in seconds). The receiver writes back ``{"a": n}``: it has routed the first ``n`` stanzas.
JSON and the XML parser of client streams, not ``marshal`` as between the nodes of one
cluster: the data centres may run different builds, and a data centre is a peer to distrust
(RFC 6120 §11 restrictions apply to what it sends). TLS (``connections.tls``) authenticates
both sides with certificates issued by ``cacertfile``; without it anyone who reaches an
endpoint can inject stanzas, so plain TCP is for private networks only.

Stanzas written but not acknowledged when a connection ends (the other data centre died) are
handed back (``on_lost``): the sender routes them by RFC 6121 §8 here, never drops them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from suricate.modules.mod_global_distrib import metrics

log = logging.getLogger("suricate.mod_global_distrib")

MAX_FRAME = 16 * 1024 * 1024
#: After a failed connection attempt, sends to that data centre fail at once for this long
#: (a dead data centre's entries live until they expire: no connection attempt per stanza).
DOWN_FOR = 1.0

#: (from, to, stanza XML, ttl)
Item = tuple[str, str, str, int]
Emit = Callable[[Any, dict[str, str]], None]


def frame(obj: dict[str, Any]) -> bytes:
    data = json.dumps(obj, separators=(",", ":")).encode()
    return len(data).to_bytes(4, "big") + data


async def read_frame(reader: asyncio.StreamReader) -> dict[str, Any]:
    size = int.from_bytes(await reader.readexactly(4), "big")
    if size > MAX_FRAME:
        raise ValueError(f"frame of {size} bytes")
    obj = json.loads(await reader.readexactly(size))
    if not isinstance(obj, dict):
        raise ValueError("frame is not an object")
    return obj


class _Out:
    """One outgoing connection; ``unacked`` the items written and not acknowledged yet."""

    __slots__ = ("endpoint", "writer", "unacked", "task", "opening")

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.writer: asyncio.StreamWriter | None = None
        self.unacked: deque[Item] = deque()
        self.task: asyncio.Task[None] | None = None
        self.opening: asyncio.Lock = asyncio.Lock()


class Connections:
    def __init__(self, local_host: str, per_endpoint: int,
                 server_ctx: ssl.SSLContext | None, client_ctx: ssl.SSLContext | None,
                 on_stanza: Callable[[str, Item, float], None],
                 on_lost: Callable[[str, list[Item]], None],
                 endpoints_of: Callable[[str], Awaitable[list[str]]], emit: Emit) -> None:
        self.local_host = local_host
        self.per_endpoint = max(1, per_endpoint)
        self.server_ctx = server_ctx
        self.client_ctx = client_ctx
        self.on_stanza = on_stanza
        self.on_lost = on_lost
        self.endpoints_of = endpoints_of
        self.emit = emit
        self._servers: list[asyncio.Server] = []
        self._pools: dict[str, dict[str, list[_Out]]] = {}  # host -> endpoint -> connections
        self._disabled: list[_Out] = []
        self._down: dict[str, float] = {}
        self._incoming: set[asyncio.StreamWriter] = set()
        self._closing = False

    # -- listening ----------------------------------------------------------------------------
    async def listen(self, endpoints: list[tuple[str, int]]) -> list[str]:
        """Listen on each endpoint; the ``host:port`` actually bound (port 0: any)."""
        bound: list[str] = []
        for host, port in endpoints:
            server = await asyncio.start_server(self._accepted, host, port, ssl=self.server_ctx)
            self._servers.append(server)
            sock = server.sockets[0].getsockname()
            bound.append(f"{host}:{sock[1]}")
        return bound

    async def _accepted(self, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
        self._incoming.add(writer)
        self.emit_("INCOMING_ESTABLISHED", {})
        origin = ""
        handled = 0
        ack_pending = False
        loop = asyncio.get_running_loop()

        def ack() -> None:
            nonlocal ack_pending
            ack_pending = False
            if not writer.is_closing():
                writer.write(frame({"a": handled}))

        try:
            hello = await read_frame(reader)
            origin = str(hello.get("h") or "")
            if not origin or origin == self.local_host:
                raise ValueError(f"bad hello {hello!r}")
            self.emit_("INCOMING_FIRST_PACKET", {"host": origin})
            while True:
                obj = await read_frame(reader)
                item = (str(obj["f"]), str(obj["t"]), str(obj["x"]), int(obj["l"]))
                try:
                    self.on_stanza(origin, item, float(obj.get("s", 0)))
                except Exception:  # our bug: logged, and the connection goes on
                    log.exception("global_distrib_route_failed origin=%s", origin)
                finally:
                    handled += 1
                    if not ack_pending:
                        ack_pending = True
                        loop.call_soon(ack)
        except (asyncio.IncompleteReadError, ConnectionError):
            if origin:
                self.emit_("INCOMING_CLOSED", {"host": origin})
        except (ValueError, KeyError, TypeError, ssl.SSLError, OSError) as exc:
            log.warning("global_distrib_incoming_failed origin=%s error=%s", origin, exc)
            self.emit_("INCOMING_ERRORED", {"host": origin})
        finally:
            if ack_pending:
                ack()
            with contextlib.suppress(Exception):
                writer.close()
            self._incoming.discard(writer)

    def emit_(self, name: str, labels: dict[str, str]) -> None:
        self.emit(getattr(metrics, name), labels)

    # -- sending -------------------------------------------------------------------------------
    async def send(self, host: str, key: str, item: Item) -> bool:
        """Write ``item`` to a connection toward ``host`` (the same one for the same ``key``,
        the sender's JID: its stanzas arrive in order); False when no endpoint of ``host``
        can be reached (the caller routes the stanza by RFC 6121 §8)."""
        if self._closing:
            return False
        if self._down.get(host, 0.0) > time.monotonic():
            return False
        pool = await self._pool(host)
        conns = [c for cs in pool.values() for c in cs]
        if not conns:
            self._down[host] = time.monotonic() + DOWN_FOR
            return False
        first = hash(key) % len(conns)
        for i in range(len(conns)):
            conn = conns[(first + i) % len(conns)]
            if await self._open(host, conn):
                assert conn.writer is not None
                conn.unacked.append(item)
                frm, to, xml, ttl = item
                conn.writer.write(frame({"f": frm, "t": to, "x": xml, "l": ttl,
                                         "s": time.time()}))
                return True
        self._down[host] = time.monotonic() + DOWN_FOR
        return False

    async def _pool(self, host: str) -> dict[str, list[_Out]]:
        endpoints = await self.endpoints_of(host)
        pool = self._pools.setdefault(host, {})
        for endpoint in list(pool):
            if endpoint not in endpoints:
                # No longer advertised: no new stanza goes there; closed by ``collect``
                # (connections.disabled_gc_interval) once what it carries is acknowledged.
                self._disabled.extend(pool.pop(endpoint))
        for endpoint in endpoints:
            if endpoint not in pool:
                pool[endpoint] = [_Out(endpoint) for _ in range(self.per_endpoint)]
        return pool

    async def _open(self, host: str, conn: _Out) -> bool:
        if conn.writer is not None and not conn.writer.is_closing():
            return True
        async with conn.opening:
            if conn.writer is not None and not conn.writer.is_closing():
                return True
            address, _, port = conn.endpoint.rpartition(":")
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(
                    address.strip("[]"), int(port), ssl=self.client_ctx,
                    server_hostname=address.strip("[]") if self.client_ctx else None), 5)
            except (TimeoutError, OSError, ssl.SSLError, ValueError) as exc:
                log.info("global_distrib_connect_failed host=%s endpoint=%s error=%s", host,
                         conn.endpoint, exc)
                self.emit_("OUTGOING_ERRORED", {"host": host})
                return False
            writer.write(frame({"h": self.local_host}))
            conn.writer = writer
            conn.task = asyncio.get_running_loop().create_task(self._acks(host, conn, reader))
            self.emit_("OUTGOING_ESTABLISHED", {"host": host})
            return True

    async def _acks(self, host: str, conn: _Out, reader: asyncio.StreamReader) -> None:
        acked = 0
        errored = False
        try:
            while True:
                obj = await read_frame(reader)
                count = int(obj["a"])
                while acked < count and conn.unacked:
                    conn.unacked.popleft()
                    acked += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except (ValueError, KeyError, TypeError, ssl.SSLError, OSError) as exc:
            log.warning("global_distrib_outgoing_failed host=%s error=%s", host, exc)
            errored = True
        finally:
            self.emit_("OUTGOING_ERRORED" if errored else "OUTGOING_CLOSED", {"host": host})
            writer, conn.writer = conn.writer, None
            if writer is not None:
                with contextlib.suppress(Exception):
                    writer.close()
            lost = list(conn.unacked)
            conn.unacked.clear()
            if lost and not self._closing:
                # The other side died with these unrouted: §8 here (at least once).
                self._down[host] = time.monotonic() + DOWN_FOR
                self.on_lost(host, lost)

    def collect(self) -> None:
        """``disabled_gc_interval``: close connections to endpoints no longer advertised once
        nothing they carried waits for its acknowledgement."""
        keep: list[_Out] = []
        for conn in self._disabled:
            if conn.unacked:
                keep.append(conn)
            elif conn.writer is not None:
                conn.writer.close()
        self._disabled = keep

    async def close(self) -> None:
        self._closing = True
        for server in self._servers:
            server.close()
        conns = [c for pool in self._pools.values() for cs in pool.values() for c in cs]
        for conn in conns + self._disabled:
            if conn.writer is not None:
                conn.writer.close()
            if conn.task is not None:
                conn.task.cancel()
        for writer in list(self._incoming):
            # Its reader ends (IncompleteReadError) and acknowledges what it routed.
            writer.transport.abort()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)
