"""Direct TCP links between nodes: how a stanza for another node's session travels.

Chosen over Redis pub/sub by measurement (bench/cluster_transport.py, docs/cluster.md): a
frame written on an open connection costs no round trip and no Redis CPU, and the writes of
one loop turn leave in one segment. Each node listens on ``[general] cluster_address`` /
``cluster_port`` and advertises ``host:port`` in Redis (the ``nodes`` hash, next to its
membership); a node opens one connection to each node it sends to, on first use, and writes
``wire.frame`` frames on it. Links are one-way (A writes on A->B, B writes on B->A), so what
A sends to B arrives in order.

Every connection starts with the cluster cookie (random bytes kept in Redis, as Erlang
distribution's cookie): a peer without it is dropped before any frame is decoded (``marshal``
is never run on bytes from outside the cluster).

"Never silently lost": ``send`` answers False when the node cannot be reached (refused,
reset, timed out), and the caller routes the stanza again by RFC 6121 §8. A link whose peer
closes (the node stopped or died: its kernel closes the socket) is dropped at once, so the
next stanza finds the node gone rather than writing into a dead socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Callable
from typing import Any

from suricate.cluster import wire

log = logging.getLogger("suricate.cluster")

COOKIE_SIZE = 32
CONNECT_TIMEOUT = 2.0


class _Link:
    """One outgoing connection. The frames of one loop turn leave in one write (one system
    call, one segment) rather than one each."""

    __slots__ = ("reader", "writer", "closed", "_pending")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.closed = False
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        self._pending.append(data)

    def _flush(self) -> None:
        data, self._pending = b"".join(self._pending), []
        if not self.closed:
            self.writer.write(data)


class NodeLinks:
    def __init__(self, on_item: Callable[[tuple[Any, ...]], None], host: str,
                 port: int) -> None:
        self.on_item = on_item
        self.host = host
        self.port = port
        self.cookie = b""
        self._server: asyncio.Server | None = None
        self._links: dict[str, _Link] = {}
        self._connecting: dict[str, asyncio.Future[_Link | None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        # the incoming connections' writers: closed at stop, which ends their readers (their
        # handler tasks belong to asyncio's stream protocol: cancelling them logs errors)
        self._incoming: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[Any]] = set()

    async def start(self, cookie: bytes) -> str:
        """Listen; the address to advertise (``host:port``)."""
        self.cookie = cookie
        self._server = await asyncio.start_server(self._accepted, self.host, self.port)
        port = self._server.sockets[0].getsockname()[1]
        return f"{self.host}:{port}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in self._links.values():
            link.closed = True
            link.writer.close()
        for writer in list(self._incoming):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=2)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    # -- sending -------------------------------------------------------------------------
    async def send(self, node: str, address: str, item: tuple[Any, ...]) -> bool:
        """Write ``item`` toward ``node``; False when it cannot be reached."""
        link = self._links.get(node)
        if link is None or link.closed:
            link = await self._connect(node, address)
            if link is None:
                return False
        link.write(wire.frame(*item))
        return True

    def send_now(self, node: str, item: tuple[Any, ...]) -> bool:
        """Write ``item`` if a link to ``node`` is open (no await: the router's fast path);
        False otherwise, and the caller takes the slow path (``send``)."""
        link = self._links.get(node)
        if link is None or link.closed:
            return False
        link.write(wire.frame(*item))
        return True

    async def _connect(self, node: str, address: str) -> _Link | None:
        pending = self._connecting.get(node)
        if pending is not None:
            return await pending
        future: asyncio.Future[_Link | None] = asyncio.get_running_loop().create_future()
        self._connecting[node] = future
        link = None
        try:
            host, _, port = address.rpartition(":")
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, int(port)), CONNECT_TIMEOUT)
            writer.write(self.cookie)
            link = _Link(reader, writer)
            self._links[node] = link
            self._spawn(self._watch(node, link))
        except (TimeoutError, OSError, ValueError) as exc:
            log.info("cluster_link_failed node=%s address=%s error=%s", node, address, exc)
        finally:
            del self._connecting[node]
            future.set_result(link)
        return link

    async def _watch(self, node: str, link: _Link) -> None:
        """Nothing is read on an outgoing link but its end: the peer stopped or died."""
        with contextlib.suppress(Exception):
            while await link.reader.read(4096):
                pass
        link.closed = True
        if self._links.get(node) is link:
            del self._links[node]
        link.writer.close()
        log.info("cluster_link_closed node=%s", node)

    def forget(self, node: str) -> None:
        """``node`` was reaped: drop its link (a later node never reuses the name)."""
        link = self._links.pop(node, None)
        if link is not None:
            link.closed = True
            link.writer.close()

    # -- receiving -----------------------------------------------------------------------
    async def _accepted(self, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        self._incoming.add(writer)
        try:
            cookie = await asyncio.wait_for(reader.readexactly(COOKIE_SIZE), CONNECT_TIMEOUT)
            if not hmac.compare_digest(cookie, self.cookie):
                log.warning("cluster_link_refused peer=%s: wrong cookie",
                            writer.get_extra_info("peername"))
                return
            deframer = wire.Deframer()
            while data := await reader.read(1 << 16):
                for item in deframer.feed(data):
                    try:
                        self.on_item(item)
                    except Exception:
                        log.exception("cluster_frame_failed kind=%r", item[0])
        except (TimeoutError, OSError, asyncio.IncompleteReadError, wire.FrameError):
            pass
        finally:
            writer.close()
            self._incoming.discard(writer)
            if task is not None:
                self._handlers.discard(task)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
