"""The local bus between worker processes: Unix sockets carrying frames (``wire.py``).

Worker ``i`` listens on ``<run_dir>/w<i>.sock`` and opens one link to every other worker's
socket; it only writes on its own links and only reads on the connections others opened, so
what worker ``i`` says to worker ``j`` arrives in the order it was said (announcements and
stanzas alike). The run directory is created by the supervisor with mode 0700: only our own
user can connect.

Writes are coalesced: one transport write per link per loop tick (DESIGN §3).
A link that is down keeps stanzas (up to ``PENDING_LIMIT``) for when it comes back, but not
announcements: on (re)connecting, the link first sends a snapshot of every local session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from suricate.cluster import wire

if TYPE_CHECKING:
    from collections.abc import Iterable

log = logging.getLogger("suricate.cluster")

PENDING_LIMIT = 100_000
RECONNECT_DELAY = 0.05
RECONNECT_MAX_DELAY = 1.0


def socket_path(run_dir: Path, index: int) -> Path:
    return run_dir / f"w{index}.sock"


class BusHandler(Protocol):
    """What the bus tells the worker (``suricate.cluster.node.ClusterNode``)."""

    def link_up(self, link: Link) -> Iterable[bytes]:
        """The frames to send first on a new link (the snapshot of local sessions)."""
        ...

    def peer_joined(self, peer: int) -> None: ...

    def peer_left(self, peer: int) -> None: ...

    def frame_received(self, peer: int, frame: tuple[Any, ...]) -> None: ...


class Bus:
    __slots__ = ("run_dir", "index", "count", "handler", "links", "_server", "_inbound",
                 "_linked", "closed")

    def __init__(self, run_dir: Path, index: int, count: int, handler: BusHandler) -> None:
        self.run_dir = run_dir
        self.index = index
        self.count = count
        self.handler = handler
        self.links: dict[int, Link] = {}
        self._server: asyncio.AbstractServer | None = None
        # peer -> the connection it currently talks on (a restarted peer opens a new one
        # before we notice the old one is gone)
        self._inbound: dict[int, _Inbound] = {}
        self._linked: asyncio.Event | None = None
        self.closed = False

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        path = socket_path(self.run_dir, self.index)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # left by a worker of ours that died
        self._server = await loop.create_unix_server(lambda: _Inbound(self), str(path))
        self._linked = asyncio.Event()
        for peer in range(self.count):
            if peer != self.index:
                link = self.links[peer] = Link(self, peer)
                link.start()
        self.link_changed()

    async def wait_linked(self, timeout: float) -> bool:
        """Wait until a link to every other worker is up."""
        assert self._linked is not None
        try:
            await asyncio.wait_for(self._linked.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def link_changed(self) -> None:
        if self._linked is not None and all(lk.up for lk in self.links.values()):
            self._linked.set()

    def broadcast(self, data: bytes) -> None:
        """An announcement to every other worker (dropped for a link that is down)."""
        for link in self.links.values():
            link.send(data, stanza=False)

    async def stop(self) -> None:
        self.closed = True
        if self._server is not None:
            self._server.close()
        for link in self.links.values():
            link.close()
        for conn in list(self._inbound.values()):
            conn.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path(self.run_dir, self.index))

    # -- inbound connections -------------------------------------------------------------------
    def _hello(self, peer: int, conn: _Inbound) -> None:
        old = self._inbound.get(peer)
        self._inbound[peer] = conn
        if old is not None:
            old.close()
            self.handler.peer_left(peer)
        self.handler.peer_joined(peer)

    def _lost(self, peer: int, conn: _Inbound) -> None:
        if self._inbound.get(peer) is conn:
            del self._inbound[peer]
            self.handler.peer_left(peer)


class Link:
    """The outgoing half towards one peer: connects (and reconnects) and writes frames."""

    __slots__ = ("bus", "peer", "transport", "_out", "_pending", "_flush_scheduled", "_task",
                 "_lost", "_closing")

    def __init__(self, bus: Bus, peer: int) -> None:
        self.bus = bus
        self.peer = peer
        self.transport: asyncio.WriteTransport | None = None
        self._out: list[bytes] = []
        self._pending: list[bytes] = []
        self._flush_scheduled = False
        self._task: asyncio.Task[None] | None = None
        self._lost: asyncio.Event | None = None
        self._closing = False

    @property
    def up(self) -> bool:
        return self.transport is not None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def send(self, data: bytes, stanza: bool) -> None:
        if self.transport is None:
            if stanza and not self._closing:
                if len(self._pending) < PENDING_LIMIT:
                    self._pending.append(data)
                else:
                    log.warning("cluster_link_pending_full peer=%d", self.peer)
            return
        self._out.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._out and self.transport is not None:
            data = b"".join(self._out) if len(self._out) > 1 else self._out[0]
            self._out.clear()
            self.transport.write(data)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        path = str(socket_path(self.bus.run_dir, self.peer))
        delay = RECONNECT_DELAY
        while not self._closing:
            try:
                transport, _ = await loop.create_unix_connection(lambda: _Outbound(self), path)
            except OSError:
                await asyncio.sleep(delay)  # the peer is not listening yet (or restarting)
                delay = min(delay * 2, RECONNECT_MAX_DELAY)
                continue
            delay = RECONNECT_DELAY
            self._lost = asyncio.Event()
            # Hello and the snapshot go before anything queued while the link was down.
            first = [wire.frame(wire.HELLO, self.bus.index), *self.bus.handler.link_up(self)]
            transport.write(b"".join([*first, *self._pending]))
            self._pending.clear()
            self.transport = transport  # type: ignore[assignment]
            self.bus.link_changed()
            log.info("cluster_link_up worker=%d peer=%d", self.bus.index, self.peer)
            await self._lost.wait()

    def connection_lost(self) -> None:
        self.transport = None
        self._out.clear()
        if self._lost is not None:
            self._lost.set()
        if not self._closing:
            log.warning("cluster_link_down worker=%d peer=%d", self.bus.index, self.peer)

    def close(self) -> None:
        self._closing = True
        self._flush()
        if self.transport is not None:
            self.transport.close()  # what is buffered is written first
        if self._task is not None:
            self._task.cancel()


class _Outbound(asyncio.Protocol):
    """We only write on a link; the peer never answers on it."""

    def __init__(self, link: Link) -> None:
        self.link = link

    def connection_lost(self, exc: Exception | None) -> None:
        self.link.connection_lost()


class _Inbound(asyncio.Protocol):
    """A link another worker opened to us: its frames, in order."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.peer: int | None = None
        self.deframer = wire.Deframer()
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.deframer.feed(data)
        except wire.FrameError as exc:
            log.error("cluster_bad_frame peer=%s error=%s", self.peer, exc)
            self.close()
            return
        handler = self.bus.handler
        for item in frames:
            if self.peer is None:
                if item[0] != wire.HELLO:
                    log.error("cluster_no_hello frame=%r", item[0])
                    self.close()
                    return
                self.peer = int(item[1])
                self.bus._hello(self.peer, self)
                continue
            try:
                handler.frame_received(self.peer, item)
            except Exception:
                # Our bug: logged with its trace; the link and the other frames carry on.
                log.exception("cluster_frame_failed peer=%s kind=%r", self.peer, item[0])

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None:
            self.bus._lost(self.peer, self)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
