"""The session table: where each connected full JID lives.

The router only talks to this table through ``lookup``/``resources``/``count_user``, so the
answer may be "elsewhere" without the router changing (DESIGN §2.9): with several worker
processes (``suricate serve --workers N``, see ``suricate.cluster``) the table also holds a
replica of the other workers' sessions, as proxies that forward what they are given. Local
sessions shadow remote ones of the same full JID; iterating and ``len`` see local sessions only
(what this process can end, count in its metrics or shut down).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from suricate.jid import JID
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


class TableObserver(Protocol):
    """Told when a local session enters or leaves the table (the cluster announces it)."""

    def registered(self, session: Session) -> None: ...

    def unregistered(self, session: Session) -> None: ...


async def _none_elsewhere(full: JID) -> int:
    return 0


class SessionTable:
    __slots__ = ("_by_bare", "_remote", "observer", "count_elsewhere")

    def __init__(self) -> None:
        # bare JID -> resource -> session
        self._by_bare: dict[JID, dict[str, Session]] = {}
        # the same for sessions of other worker processes (empty with one worker)
        self._remote: dict[JID, dict[str, Session]] = {}
        self.observer: TableObserver | None = None
        # How many sessions of the account of a full JID being bound live on other nodes,
        # other than that full JID (max_user_sessions across nodes; sm_backend = "redis").
        self.count_elsewhere: Callable[[JID], Awaitable[int]] = _none_elsewhere

    def register(self, session: Session) -> Session | None:
        """Add ``session``; return the session it replaces (RFC 6120 §7.7.2.2), if any,
        here or in another worker."""
        jid = session.jid
        assert jid.resource is not None
        resources = self._by_bare.setdefault(jid.bare, {})
        old = resources.get(jid.resource)
        resources[jid.resource] = session
        if old is session:
            old = None
        if old is None and self._remote:
            old = self._pop(self._remote, jid)
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
        if self._remote:
            resources = self._remote.get(jid.bare)
            if resources is not None:
                return resources.get(resource)
        return None

    def local(self, jid: JID) -> Session | None:
        """The session of ``jid`` in this process, never a proxy."""
        resources = self._by_bare.get(jid.bare)
        if resources is None or jid.resource is None:
            return None
        return resources.get(jid.resource)

    def resources(self, bare: JID) -> list[Session]:
        resources = self._by_bare.get(bare)
        found = list(resources.values()) if resources else []
        if self._remote:
            remote = self._remote.get(bare)
            if remote:
                found += [s for r, s in remote.items() if not resources or r not in resources]
        return found

    def count_user(self, bare: JID) -> int:
        if self._remote:
            return len(self.resources(bare))
        resources = self._by_bare.get(bare)
        return len(resources) if resources else 0

    # -- the replica of other workers' sessions (suricate.cluster) ---------------------------
    def add_remote(self, session: Session) -> None:
        jid = session.jid
        assert jid.resource is not None
        self._remote.setdefault(jid.bare, {})[jid.resource] = session

    def remove_remote(self, session: Session) -> None:
        self._pop(self._remote, session.jid, session)

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
