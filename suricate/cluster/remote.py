"""A session of another worker, as this worker's router and modules see it.

It carries the replicated facts (priority, presence, the module flags and blocklist that
other resources' code reads) and forwards every action to the owning worker over the bus,
where the real session acts on it (``suricate.cluster.node``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from suricate.cluster import wire

if TYPE_CHECKING:
    from suricate.cluster.bus import Link
    from suricate.cluster.node import ClusterNode
    from suricate.jid import JID
    from suricate.protocol.errors import StreamError
    from suricate.xml.element import Element


class RemoteSession:
    """Implements ``suricate.core.sessions.Session`` by forwarding to worker ``link.peer``."""

    __slots__ = ("jid", "priority", "presence", "module_state", "node", "link")

    # What modules read on a local C2S and must find here too: never anonymous from our side.
    # Modules' session slots (suricate.core.module.SessionSlot) find only what is replicated:
    # no roster cache (they fall back to storage), no directed presence of ours.
    anonymous = False

    def __init__(self, jid: JID, node: ClusterNode, link: Link) -> None:
        self.jid = jid
        self.priority = 0
        self.presence: Element | None = None
        # The owner's boolean module flags (mod_roster "interested", mod_carboncopy enabled)
        # and its blocklist (mod_blocking's slot).
        self.module_state: dict[str, Any] = {}
        self.node = node
        self.link = link

    @property
    def available(self) -> bool:
        return self.presence is not None

    def deliver(self, stanza: Element) -> None:
        self.link.send(wire.frame(wire.STANZA, self.node.hops, str(self.jid),
                                  wire.pack(stanza)), stanza=True)

    def send(self, stanza: Element) -> None:
        """Straight to the client, as ``C2S.send`` (roster pushes)."""
        self.link.send(wire.frame(wire.SEND, str(self.jid), wire.pack(stanza)), stanza=True)

    def replaced(self) -> None:
        self.link.send(wire.frame(wire.REPLACE, str(self.jid)), stanza=True)

    def stream_error(self, err: StreamError) -> None:
        self.link.send(wire.frame(wire.KICK, str(self.jid), err.condition, err.text or ""),
                       stanza=True)

    def __repr__(self) -> str:
        return f"<RemoteSession {self.jid} on worker {self.link.peer}>"
