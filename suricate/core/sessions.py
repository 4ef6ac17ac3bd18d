"""The session table: where each connected full JID lives.

It holds this process's sessions only. With several nodes (``sm_backend = "redis"``, and
``suricate serve --workers N``, which runs N such nodes), the other nodes' sessions are in Redis
and the router asks ``Router.elsewhere`` when this table has no answer (DESIGN §2.9,
``suricate.cluster.redis_sm``); the table's ``observer`` mirrors it there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from suricate.jid import JID
    from suricate.protocol.errors import StreamError
    from suricate.xml.element import Element


class Session(Protocol):
    """What the router needs from a bound client session."""

    jid: JID
    priority: int
    presence: Element | None  # last available presence broadcast, None when unavailable

    @property
    def available(self) -> bool: ...

    def deliver(self, stanza: Element) -> None: ...

    def replaced(self) -> None: ...

    def stream_error(self, error: StreamError) -> None:
        """End the session (a kick, the account removed or its password changed): a client's
        stream with this error, a GraphQL SSE subscription's event stream."""
        ...


class TableObserver(Protocol):
    """Told when a local session enters or leaves the table (the cluster announces it)."""

    def registered(self, session: Session) -> None: ...

    def unregistered(self, session: Session) -> None: ...


async def _none_elsewhere(full: JID) -> int:
    return 0


class SessionTable:
    __slots__ = ("_by_bare", "observer", "count_elsewhere")

    def __init__(self) -> None:
        # bare JID -> resource -> session
        self._by_bare: dict[JID, dict[str, Session]] = {}
        self.observer: TableObserver | None = None
        # How many sessions of the account of a full JID being bound live on other nodes,
        # other than that full JID (max_user_sessions across nodes; sm_backend = "redis").
        self.count_elsewhere: Callable[[JID], Awaitable[int]] = _none_elsewhere

    def register(self, session: Session) -> Session | None:
        """Add ``session``; return the session it replaces (RFC 6120 §7.7.2.2), if any."""
        jid = session.jid
        assert jid.resource is not None
        resources = self._by_bare.setdefault(jid.bare, {})
        old = resources.get(jid.resource)
        resources[jid.resource] = session
        if old is session:
            old = None
        if self.observer is not None:
            self.observer.registered(session)
        return old

    def unregister(self, session: Session) -> None:
        if self._pop(self._by_bare, session.jid, session) is not None \
                and self.observer is not None:
            self.observer.unregistered(session)

    def lookup(self, jid: JID) -> Session | None:
        resource = jid.resource
        if resource is None:
            return None
        resources = self._by_bare.get(jid.bare)
        if resources is not None:
            session = resources.get(resource)
            if session is not None:
                return session
        return None

    def local(self, jid: JID) -> Session | None:
        """The session of ``jid`` in this process (what ``lookup`` answers too)."""
        resources = self._by_bare.get(jid.bare)
        if resources is None or jid.resource is None:
            return None
        return resources.get(jid.resource)

    def resources(self, bare: JID) -> list[Session]:
        resources = self._by_bare.get(bare)
        return list(resources.values()) if resources else []

    def available(self, bare: JID) -> list[Session]:
        """The account's available resources here, the highest priority first (RFC 6121
        §8.5.2.1.1: whom a message to the bare JID goes to)."""
        resources = self._by_bare.get(bare)
        if not resources:
            return []
        sessions = [s for s in resources.values() if s.available]
        sessions.sort(key=lambda s: -s.priority)
        return sessions

    def count_user(self, bare: JID) -> int:
        resources = self._by_bare.get(bare)
        return len(resources) if resources else 0

    @staticmethod
    def _pop(table: dict[JID, dict[str, Session]], jid: JID,
             only: Session | None = None) -> Session | None:
        """Remove ``jid`` from ``table`` (only if it is ``only``, when given)."""
        resources = table.get(jid.bare)
        if resources is None or jid.resource is None:
            return None
        session = resources.get(jid.resource)
        if session is None or (only is not None and session is not only):
            return None
        del resources[jid.resource]
        if not resources:
            del table[jid.bare]
        return session

    def __len__(self) -> int:
        return sum(len(r) for r in self._by_bare.values())

    def __iter__(self) -> Iterator[Session]:
        for resources in list(self._by_bare.values()):
            yield from list(resources.values())
