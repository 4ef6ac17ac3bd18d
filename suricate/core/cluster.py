"""What spans nodes, as modules and the admin API see it (``server.cluster``).

With one node (the default ``sm_backend``) there is no backend: ``cast`` does nothing and the
admin API reads this process's session table. With ``sm_backend = "redis"`` the cluster layer
(``suricate.cluster.admin``) plugs a backend in: the admin API then answers for every node
(the Redis session table, and the owning node for what only it knows or can do), and a module
reaches its account's sessions on other nodes with ``cast``: the other nodes run the handler
the module registered under the same topic, for their own sessions of the account; and it
runs an operation on one given node with ``ask`` (the handler registered with ``answer_on``,
its result coming back: mod_muc runs the admin API's room operations on the room's node).

The seam lives here, below the modules and the admin API, because they must not import the
cluster layer (the import-linter layers in pyproject.toml).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from suricate.jid import JID
from suricate.xml.element import Element

log = logging.getLogger(__name__)

# handler(bare JID of the account, stanza, extra arguments): runs on each other node holding
# a session of the account, for that node's sessions only (it must not cast again: no loop).
CastHandler = Callable[[JID, Element, tuple[str, ...]], None]
# handler(arguments of the request): runs on the node asked with ``Cluster.ask``; its result
# goes back to the asker, so it and the arguments are plain data (str, int, bool, None, and
# lists, tuples and dicts of them: they travel marshalled).
AskHandler = Callable[..., Awaitable[Any]]


class NodeUnreachable(Exception):
    """The node asked does not listen (it died or stopped) or did not answer in time."""


class ClusterBackend(Protocol):
    """Implemented by ``suricate.cluster.admin.ClusterAdmin``."""

    node: str

    def cast(self, bare: JID, topic: str, stanza: Element, args: tuple[str, ...]) -> None:
        """To every other node holding a session of ``bare``: run ``topic``'s handler there."""

    def cast_many(self, bares: list[JID], topic: str, stanza: Element,
                  args: tuple[str, ...]) -> None:
        """``cast`` to each of ``bares``, their rows read in one round trip."""

    async def available(self, bares: list[JID], routable: bool = False) -> set[JID]:
        """Those of ``bares`` with an available session on any node (with ``routable``, of
        non-negative priority: one a message to the bare JID reaches, RFC 6121 §8.5.2.1)."""

    async def nodes_of(self, bare: JID, reached: bool = False) -> set[str]:
        """The other nodes holding a session of ``bare`` (with ``reached``: an available
        one of non-negative priority)."""

    async def ask(self, node: str, op: str, args: tuple[Any, ...]) -> Any:
        """Run ``op``'s handler on ``node`` and return its result (``NodeUnreachable``)."""

    async def nodes(self) -> list[str]:
        """The nodes of the cluster, this one included."""

    async def sessions(self, domain: str | None) -> list[dict[str, Any]]:
        """Every session of the cluster (of ``domain``), as the GraphQL ``Session`` type."""

    async def count_sessions(self, domain: str | None) -> int:
        """How many sessions the cluster holds (of ``domain``), from the table alone."""

    async def user_sessions(self, bare: JID) -> list[dict[str, Any]]:
        """The account's sessions on every node, sorted by resource."""

    async def users_with_status(self, domain: str | None, status: str) -> list[dict[str, Any]]:
        """Sessions of every node whose presence show is ``status`` (``UserStatus``)."""

    async def kick(self, full: JID, reason: str, condition: str = "policy-violation") -> bool:
        """End the session ``full`` on whichever node holds it, with the stream error
        ``condition`` and ``reason``; whether there was one."""

    async def set_presence(self, full: JID, args: dict[str, Any]) -> bool:
        """Set the presence of ``full`` on its node (GraphQL ``setPresence``' arguments)."""


class Cluster:
    """``server.cluster``: the backend when there is one, and the modules' cast handlers."""

    __slots__ = ("answers", "backend", "handlers")

    def __init__(self) -> None:
        self.backend: ClusterBackend | None = None
        self.handlers: dict[str, CastHandler] = {}
        self.answers: dict[str, AskHandler] = {}

    @property
    def node(self) -> str:
        """This node's name as the session table records it; "local" without a cluster."""
        return self.backend.node if self.backend is not None else "local"

    def on(self, topic: str, handler: CastHandler) -> None:
        self.handlers[topic] = handler

    def off(self, topic: str) -> None:
        self.handlers.pop(topic, None)

    def cast(self, bare: JID, topic: str, stanza: Element, *args: str) -> None:
        """Hand ``stanza`` to the account's sessions on other nodes (nothing on one node)."""
        if self.backend is not None:
            self.backend.cast(bare, topic, stanza, args)

    def cast_many(self, bares: list[JID], topic: str, stanza: Element, *args: str) -> None:
        """``cast`` to each of ``bares`` (a PEP notification to an owner's contacts), their
        session rows read in one round trip."""
        if self.backend is not None and bares:
            self.backend.cast_many(bares, topic, stanza, args)

    @property
    def spans_nodes(self) -> bool:
        """Whether sessions may live on other nodes (``sm_backend = "redis"``)."""
        return self.backend is not None

    async def available(self, bares: list[JID], routable: bool = False) -> set[JID]:
        """Those of ``bares`` with an available session on any node (``routable``: of
        non-negative priority, RFC 6121 §8.5.2.1), as the session table says; nothing
        without a cluster (a module asks its own sessions first). Redis out of reach:
        nothing, logged."""
        if self.backend is None or not bares:
            return set()
        try:
            return await self.backend.available(bares, routable)
        except Exception:
            log.warning("cluster_available_failed count=%d", len(bares), exc_info=True)
            return set()

    async def nodes_of(self, bare: JID, reached: bool = False) -> set[str]:
        """The other nodes holding a session of ``bare``; with ``reached``, those where a
        message to the bare JID reaches a resource (available, of non-negative priority:
        RFC 6121 §8.5.2.1). As the session table says; nothing without a cluster. Redis out
        of reach: nothing, logged."""
        if self.backend is None:
            return set()
        try:
            return await self.backend.nodes_of(bare, reached)
        except Exception:
            log.warning("cluster_nodes_of_failed bare=%s", bare, exc_info=True)
            return set()

    def received(self, topic: str, bare: JID, stanza: Element, args: tuple[str, ...]) -> bool:
        """A cast from another node; False when no module here handles ``topic``."""
        handler = self.handlers.get(topic)
        if handler is None:
            return False
        handler(bare, stanza, args)
        return True

    # -- requests to one node, answered (a module's operation run where its data lives) ----
    def answer_on(self, op: str, handler: AskHandler) -> None:
        self.answers[op] = handler

    def answer_off(self, op: str) -> None:
        self.answers.pop(op, None)

    async def ask(self, node: str, op: str, *args: Any) -> Any:
        """``op``'s handler run on ``node`` (here when it is this node), its result."""
        if self.backend is None or node == self.backend.node:
            handler = self.answers.get(op)
            if handler is None:
                raise NodeUnreachable(f"no handler for {op} here")
            return await handler(*args)
        return await self.backend.ask(node, op, args)

    async def ask_others(self, op: str, *args: Any) -> list[str]:
        """``op``'s handler run on every other node at once (nothing without a cluster);
        the nodes that did not answer (``NodeUnreachable``), for the caller to log."""
        backend = self.backend
        if backend is None:
            return []
        others = [node for node in await backend.nodes() if node != backend.node]
        results = await asyncio.gather(*(backend.ask(node, op, args) for node in others),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, NodeUnreachable):
                raise result
        return [node for node, result in zip(others, results, strict=True)
                if isinstance(result, NodeUnreachable)]

    async def end_oldest_sessions(self, bare: JID, count: int, keep: JID,
                                  here: list[tuple[float, Callable[[], None]]]) -> None:
        """End the ``count`` longest-lived sessions of ``bare`` but ``keep`` with <conflict/>
        (max_user_sessions reached by ``keep``): ``here`` are this node's, as (age in
        seconds, how to end it); with several nodes, the others' are asked for their uptime
        and compete with them."""
        candidates: list[tuple[float, Callable[[], Awaitable[Any] | None]]] = list(here)
        backend = self.backend
        if backend is not None:
            try:
                for session in await backend.user_sessions(bare):
                    if session.get("node") == backend.node or session.get("user") == str(keep):
                        continue
                    full = JID.parse(str(session["user"]))
                    # A node that did not answer gives no uptime: counted as the oldest.
                    age = float(session["uptime"]) if session.get("uptime") is not None \
                        else float("inf")
                    candidates.append((age, _kicker(backend, full)))
            except Exception:
                log.warning("cluster_sessions_failed user=%s", bare, exc_info=True)
        candidates.sort(key=lambda pair: -pair[0])
        for _, end in candidates[:count]:
            ending = end()
            if ending is not None:
                try:
                    await ending
                except Exception:
                    log.warning("cluster_end_session_failed user=%s", bare, exc_info=True)

    async def nodes(self) -> list[str]:
        """Every node of the cluster (this one alone without a cluster)."""
        if self.backend is None:
            return [self.node]
        return await self.backend.nodes()


def _kicker(backend: ClusterBackend, full: JID) -> Callable[[], Awaitable[Any]]:
    def kick() -> Awaitable[Any]:
        return backend.kick(full, "replaced by a new connection", "conflict")
    return kick
