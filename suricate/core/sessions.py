"""The session table: where each connected full JID lives.

Today every session is in this process. The router only talks to this table through
``lookup``/``resources``, so a later backend (worker processes, Redis) can answer "elsewhere"
without the router changing (DESIGN §2.9).
"""

from __future__ import annotations

from collections.abc import Iterator
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


class SessionTable:
    __slots__ = ("_by_bare",)

    def __init__(self) -> None:
        # bare JID -> resource -> session
        self._by_bare: dict[JID, dict[str, Session]] = {}

    def register(self, session: Session) -> Session | None:
        """Add ``session``; return the session it replaces (RFC 6120 §7.7.2.2), if any."""
        jid = session.jid
        assert jid.resource is not None
        resources = self._by_bare.setdefault(jid.bare, {})
        old = resources.get(jid.resource)
        resources[jid.resource] = session
        return old if old is not session else None

    def unregister(self, session: Session) -> None:
        jid = session.jid
        resources = self._by_bare.get(jid.bare)
        if resources is None or jid.resource is None:
            return
        if resources.get(jid.resource) is session:
            del resources[jid.resource]
            if not resources:
                del self._by_bare[jid.bare]

    def lookup(self, jid: JID) -> Session | None:
        resources = self._by_bare.get(jid.bare)
        if resources is None or jid.resource is None:
            return None
        return resources.get(jid.resource)

    def resources(self, bare: JID) -> list[Session]:
        resources = self._by_bare.get(bare)
        return list(resources.values()) if resources else []

    def count_user(self, bare: JID) -> int:
        resources = self._by_bare.get(bare)
        return len(resources) if resources else 0

    def __len__(self) -> int:
        return sum(len(r) for r in self._by_bare.values())

    def __iter__(self) -> Iterator[Session]:
        for resources in list(self._by_bare.values()):
            yield from list(resources.values())
