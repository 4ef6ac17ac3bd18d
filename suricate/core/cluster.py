"""What spans nodes, as modules and the admin API see it (``server.cluster``).

With one node (the default ``sm_backend``) there is no backend: ``cast`` does nothing and the
admin API reads this process's session table. With ``sm_backend = "redis"`` the cluster layer
(``suricate.cluster.admin``) plugs a backend in: the admin API then answers for every node
(the Redis session table, and the owning node for what only it knows or can do), and a module
reaches its account's sessions on other nodes with ``cast``: the other nodes run the handler
the module registered under the same topic, for their own sessions of the account.

The seam lives here, below the modules and the admin API, because they must not import the
cluster layer (the import-linter layers in pyproject.toml).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from suricate.jid import JID
from suricate.xml.element import Element

# handler(bare JID of the account, stanza, extra arguments): runs on each other node holding
# a session of the account, for that node's sessions only (it must not cast again: no loop).
CastHandler = Callable[[JID, Element, tuple[str, ...]], None]


class ClusterBackend(Protocol):
    """Implemented by ``suricate.cluster.admin.ClusterAdmin``."""

    node: str

    def cast(self, bare: JID, topic: str, stanza: Element, args: tuple[str, ...]) -> None:
        """To every other node holding a session of ``bare``: run ``topic``'s handler there."""

    async def sessions(self, domain: str | None) -> list[dict[str, Any]]:
        """Every session of the cluster (of ``domain``), as the GraphQL ``Session`` type."""

    async def count_sessions(self, domain: str | None) -> int:
        """How many sessions the cluster holds (of ``domain``), from the table alone."""

    async def user_sessions(self, bare: JID) -> list[dict[str, Any]]:
        """The account's sessions on every node, sorted by resource."""

    async def users_with_status(self, domain: str | None, status: str) -> list[dict[str, Any]]:
        """Sessions of every node whose presence show is ``status`` (``UserStatus``)."""

    async def kick(self, full: JID, reason: str) -> bool:
        """End the session ``full`` on whichever node holds it; whether there was one."""

    async def set_presence(self, full: JID, args: dict[str, Any]) -> bool:
        """Set the presence of ``full`` on its node (GraphQL ``setPresence``' arguments)."""


class Cluster:
    """``server.cluster``: the backend when there is one, and the modules' cast handlers."""

    __slots__ = ("backend", "handlers")

    def __init__(self) -> None:
        self.backend: ClusterBackend | None = None
        self.handlers: dict[str, CastHandler] = {}

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

    def received(self, topic: str, bare: JID, stanza: Element, args: tuple[str, ...]) -> bool:
        """A cast from another node; False when no module here handles ``topic``."""
        handler = self.handlers.get(topic)
        if handler is None:
            return False
        handler(bare, stanza, args)
        return True
