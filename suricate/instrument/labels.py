"""The ``host_type`` label of a domain: what every handler puts in its series.

A label must be a host type, never a domain name: a series per domain would grow with the
domains (and with remote ones), and a session's logout must count where its login did. So:
a static host is its own host type (6.4), a dynamic domain has the host type it was added
with, and a dynamic domain that was removed keeps the last host type it was seen with (its
sessions end after it is gone: their logouts and closing stream errors count under the same
host type as their logins, so ``sm_session_count`` comes back down). A subdomain of a served
domain (``muc.example.com`` speaking over s2s) has that domain's host type, as 6.4's
subdomains do. Any other domain (a remote server's) is "" (6.4: unknown host type).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol


class _Domain(Protocol):
    @property
    def host_type(self) -> str: ...

    @property
    def static(self) -> bool: ...


class DomainLookup(Protocol):
    def get(self, domain: str) -> _Domain | None: ...


class HostTypeLabel:
    """Callable: domain -> its ``host_type`` label. Called once per (connection type, domain)
    on the message path (the Prometheus handler keeps the series it found), and per call for
    the rarer events (sessions, module events)."""

    def __init__(self, domains: DomainLookup, host_types: Iterable[str]) -> None:
        self._domains = domains
        self._host_types = frozenset(host_types)
        #: Dynamic domains seen, with their host type: bounded by the domains ever served.
        self._last: dict[str, str] = {}

    def __call__(self, domain: str) -> str:
        if not domain or domain in self._host_types:
            return domain  # "" (unknown), or already a host type (a caller that has one)
        found = self._domains.get(domain)
        if found is None:
            last = self._last.get(domain)
            if last is not None:
                return last
            parent = self._domains.get(domain.partition(".")[2])
            return parent.host_type if parent is not None else ""
        if not found.static:
            self._last[domain] = found.host_type
        return found.host_type
