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

What was written but not yet handled by the peer is not lost either: the receiver counts the
items it handled and writes the running count back on the same connection (one ``ACK`` frame
at most every ``ACK_EVERY`` seconds); the sender keeps the items not yet acknowledged, and
when the link ends (the peer died or stopped) or the peer is declared dead (``forget``, the
membership reaped it) it hands them to ``on_lost``, which routes them again by RFC 6121 §8 on
this node. An item handled but whose acknowledgement was not read yet is handed back too: at
least once, duplicates possible (docs/cluster.md). For ``GONE_FOR`` seconds after its peer
closed a link, sends to that node answer False at once (the sender's caches and lookups made
just before still name it; they must not open a link the dying node's kernel still accepts).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from suricate.cluster import wire

log = logging.getLogger("suricate.cluster")

COOKIE_SIZE = 32
CONNECT_TIMEOUT = 2.0
# How long a node whose link ended or that was reaped counts as gone for sends: the frames
# toward it were handed back, and stanzas still addressed to it (a row read just before the
# reaping, a cached node) are routed by §8 here rather than to a reconnect.
GONE_FOR = 5.0

# How long the receiver may wait before acknowledging what it handled: the sender keeps the
# items meanwhile (a few milliseconds of traffic), and one acknowledgement covers them all.
ACK_EVERY = 0.005

# What ``on_lost`` gets: the node and the items written to it that it did not acknowledge.
LostHandler = Callable[[str, list[tuple[Any, ...]]], None]
# What the receiving node gets: the items of one frame, in order (one call per frame, not per
# item: the per-batch checks are made once). It handles each item's failure itself: every
# item it is given counts as handled and is acknowledged.
ItemsHandler = Callable[[list[tuple[Any, ...]]], None]


class _Link:
    """One outgoing connection. The items of one loop turn leave in one ``BATCH`` frame (one
    marshal call, one system call, one segment) rather than a frame each; the items the peer
    did not acknowledge yet are kept (``unacked``: the batches, in the order written).

    The bookkeeping is per batch, not per item (issue 14: a crossing message pays for a list
    append only): the batch being filled is already in ``unacked``, and the receiver counts
    whole frames, so an acknowledgement ends on a batch boundary (a partial one is still
    handled, by cutting the batch)."""

    __slots__ = ("reader", "writer", "closed", "_pending", "unacked")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.closed = False
        self._pending: list[tuple[Any, ...]] | None = None
        self.unacked: deque[list[tuple[Any, ...]]] = deque()

    def write(self, item: tuple[Any, ...]) -> None:
        pending = self._pending
        if pending is None:
            pending = self._pending = [item]
            self.unacked.append(pending)
            asyncio.get_running_loop().call_soon(self._flush)
        else:
            pending.append(item)

    def _flush(self) -> None:
        items, self._pending = self._pending, None
        if self.closed or not items:
            return  # kept in ``unacked``: handed back with the rest
        if len(items) == 1:
            self.writer.write(wire.frame(*items[0]))
        else:
            self.writer.write(wire.frame(wire.BATCH, items))

    def acked(self, handled: int, total: list[int]) -> None:
        """The peer handled ``handled`` items since the link opened; ``total[0]``: how many
        of them were acknowledged before."""
        count = handled - total[0]
        unacked = self.unacked
        while count > 0 and unacked:
            batch = unacked[0]
            if len(batch) <= count:
                unacked.popleft()
                count -= len(batch)
            else:
                # Never the batch still being filled: the peer cannot have handled more
                # than was written.
                unacked[0] = batch[count:]
                count = 0
        total[0] = handled

    def take_unacked(self) -> list[tuple[Any, ...]]:
        """What the peer did not acknowledge, in the order written; forgotten here."""
        items = [item for batch in self.unacked for item in batch]
        self.unacked.clear()
        self._pending = None  # a batch not flushed yet is in there too
        return items


class NodeLinks:
    def __init__(self, on_items: ItemsHandler, host: str,
                 port: int, on_lost: LostHandler | None = None) -> None:
        self.on_items = on_items
        self.on_lost = on_lost
        self.host = host
        self.port = port
        self.cookie = b""
        self._server: asyncio.Server | None = None
        self._links: dict[str, _Link] = {}
        self._connecting: dict[str, asyncio.Future[_Link | None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        # the incoming connections: closed at stop, each acknowledging what it handled once
        # more as it closes (a peer does not route again what this node did handle)
        self._incoming: set[_Incoming] = set()
        # node -> until when (monotonic) it counts as gone (GONE_FOR)
        self._gone: dict[str, float] = {}
        self._stopping = False

    async def start(self, cookie: bytes) -> str:
        """Listen; the address to advertise (``host:port``)."""
        self.cookie = cookie
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._accepted, self.host, self.port)
        port = self._server.sockets[0].getsockname()[1]
        return f"{self.host}:{port}"

    async def stop(self) -> None:
        self._stopping = True  # our own stop: nothing is routed again here
        if self._server is not None:
            self._server.close()
        for link in self._links.values():
            link.closed = True
            link.writer.close()
        for incoming in list(self._incoming):
            incoming.close()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    # -- sending -------------------------------------------------------------------------
    async def send(self, node: str, address: str, item: tuple[Any, ...]) -> bool:
        """Write ``item`` toward ``node``; False when it cannot be reached."""
        link = self._links.get(node)
        if link is None or link.closed:
            if self.gone(node):
                return False
            link = await self._connect(node, address)
            if link is None:
                return False
        link.write(item)
        return True

    def send_now(self, node: str, item: tuple[Any, ...]) -> bool:
        """Write ``item`` if a link to ``node`` is open (no await: the router's fast path);
        False otherwise, and the caller takes the slow path (``send``)."""
        link = self._links.get(node)
        if link is None or link.closed:
            return False
        link.write(item)
        return True

    def gone(self, node: str) -> bool:
        """Whether ``node``'s link ended or it was reaped less than ``GONE_FOR`` ago."""
        until = self._gone.get(node)
        if until is None:
            return False
        if until > time.monotonic():
            return True
        del self._gone[node]
        return False

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
        """What comes back on an outgoing link: the peer's acknowledgements, then its end
        (the peer stopped or died)."""
        deframer = wire.Deframer()
        total = [0]
        with contextlib.suppress(Exception):
            while data := await link.reader.read(4096):
                for item in deframer.feed(data):
                    if item[0] == wire.ACK:
                        link.acked(item[1], total)
        log.info("cluster_link_closed node=%s", node)
        self._lost(node, link)

    def forget(self, node: str) -> None:
        """``node`` was reaped: drop its link (a later node never reuses the name) and hand
        back what it did not acknowledge."""
        link = self._links.get(node)
        if link is not None:
            # Not marked gone: a node reaped while paused (SIGSTOP) may rejoin and claim
            # its sessions back; a later stanza opens a new link to it (its kernel accepts).
            self._lost(node, link, gone=False)

    def _lost(self, node: str, link: _Link, gone: bool = True) -> None:
        if link.closed:
            return  # already handled (forget, stop): its watcher ends with it
        link.closed = True
        link.writer.close()
        if self._links.get(node) is link:
            del self._links[node]
        if self._stopping:
            return
        if gone:
            # The peer closed its end: its process stopped or died (a restarted node has a
            # new name), so nobody will ever read a new link to that name.
            self._gone[node] = time.monotonic() + GONE_FOR
        unacked = link.take_unacked()
        if unacked and self.on_lost is not None:
            log.warning("cluster_link_unacked node=%s items=%d", node, len(unacked))
            try:
                self.on_lost(node, unacked)
            except Exception:
                log.exception("cluster_lost_failed node=%s", node)

    # -- receiving -----------------------------------------------------------------------
    def _accepted(self) -> _Incoming:
        return _Incoming(self)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class _Incoming(asyncio.Protocol):
    """One incoming link: the cookie, then frames handed to ``on_items`` as they arrive, in
    the loop turn that reads them (a protocol rather than a stream reader: no task to wake
    per batch, one loop turn less between the peer's write and the sessions' sockets)."""

    def __init__(self, links: NodeLinks) -> None:
        self.links = links
        self.transport: asyncio.Transport | None = None
        self.cookie = b""
        self.trusted = False
        self.deframer = wire.Deframer()
        self.handled = 0
        self.ack_due: asyncio.TimerHandle | None = None
        self.cookie_due: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.links._incoming.add(self)
        self.cookie_due = asyncio.get_running_loop().call_later(CONNECT_TIMEOUT, self._abort)

    def data_received(self, data: bytes) -> None:
        if not self.trusted:
            self.cookie += data
            if len(self.cookie) < COOKIE_SIZE:
                return
            cookie, data = self.cookie[:COOKIE_SIZE], self.cookie[COOKIE_SIZE:]
            if not hmac.compare_digest(cookie, self.links.cookie):
                log.warning("cluster_link_refused peer=%s: wrong cookie",
                            self.transport.get_extra_info("peername") if self.transport
                            else None)
                self._abort()
                return
            self.trusted = True
            if self.cookie_due is not None:
                self.cookie_due.cancel()
                self.cookie_due = None
        try:
            frames = self.deframer.feed(data)
        except wire.FrameError:
            self._abort()
            return
        on_items = self.links.on_items
        for frame in frames:
            items = frame[1] if frame[0] == wire.BATCH else [frame]
            try:
                on_items(items)
            except Exception:
                # ``on_items`` guards each item; this is a bug of ours, logged loudly.
                log.exception("cluster_frame_failed kind=%r", items[0][0] if items else None)
            self.handled += len(items)
        # The running count of items handled (a stanza handed to a session is in its
        # connection's write buffer), at most once per ACK_EVERY: under load one
        # acknowledgement covers many batches (a write here and a wake-up on the sender each).
        if frames and self.ack_due is None:
            self.ack_due = asyncio.get_running_loop().call_later(ACK_EVERY, self._ack)

    def _ack(self) -> None:
        self.ack_due = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(wire.frame(wire.ACK, self.handled))

    def close(self) -> None:
        """Acknowledge what was handled, then close (a clean stop): ``close`` still sends
        what is buffered."""
        if self.transport is not None and not self.transport.is_closing():
            if self.handled:
                self.transport.write(wire.frame(wire.ACK, self.handled))
            self.transport.close()

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def eof_received(self) -> bool:
        self.close()  # the peer closed its end: the last acknowledgement, then ours
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self.ack_due, self.cookie_due):
            if timer is not None:
                timer.cancel()
        self.ack_due = self.cookie_due = None
        self.links._incoming.discard(self)
        self.transport = None
