"""Domains and host types: the static ``general.hosts`` and the dynamic domains an operator
adds at run time under one of ``general.host_types`` (MongooseIM's ``mongoose_domain_core``
with ``service_domain_db``).

A static host is its own host type. A dynamic domain lives in the database
(``domain_settings``) and is served as soon as it is added and enabled, with no restart;
another process sharing the database (a node of the same cluster) is told to re-read the
table as soon as a change is made here (``after_change``), and re-reads it every
``REFRESH_INTERVAL`` anyway (a node that was unreachable, or changes made by hand). ``served`` is the one set the router asks on every stanza, so it is kept ready
rather than computed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from suricate.storage.base import DomainRecord

if TYPE_CHECKING:
    from suricate.storage import Storage

log = logging.getLogger("suricate.domains")

#: How often the table is re-read for changes made by another process.
REFRESH_INTERVAL = 10.0


class DomainError(Exception):
    """An operation the operator asked for cannot be done; the message says why, ``code`` what
    kind of refusal it is, as MongooseIM names it (the admin API's ``extensions.code``)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Domain:
    name: str
    host_type: str
    enabled: bool
    static: bool


class DomainRegistry:
    def __init__(self, hosts: frozenset[str], host_types: list[str], storage: Storage,
                 module_tables: Callable[[], Sequence[str]] = tuple,
                 erase_in_batches: Callable[[str, str], Awaitable[None]] | None = None
                 ) -> None:
        self.static = hosts
        #: The account-keyed tables of the enabled modules: a removed domain takes their rows.
        self.module_tables = module_tables
        #: Erases first (domain, host type), in transactions of their own, what modules keep
        #: for the domain beyond its accounts' rows and the rows they asked to remove in
        #: batches (``delete_domain_limit``); the rest go in the domain's one transaction.
        self.erase_in_batches = erase_in_batches
        self.host_types = list(host_types)
        self.storage = storage
        self.dynamic: dict[str, DomainRecord] = {}
        self.served: set[str] = set(hosts)
        #: Called after a change (instrumentation label caches, session kicks).
        self.listeners: list[Callable[[str, Domain | None], None]] = []
        #: Awaited after a change made here (add, remove, enable/disable), not after a
        #: refresh: the server asks the cluster's other nodes to refresh now.
        self.after_change: Callable[[], Awaitable[None]] | None = None
        #: Why a name cannot become a domain although no domain has it (a module's service
        #: domain such as conference.<host>, a component's), None when it can.
        self.taken: Callable[[str], str | None] = lambda _name: None
        self._task: asyncio.Task[None] | None = None

    # -- reading ------------------------------------------------------------------------------
    def host_type(self, domain: str) -> str:
        record = self.dynamic.get(domain)
        return record.host_type if record is not None else domain

    def get(self, domain: str) -> Domain | None:
        if domain in self.static:
            return Domain(domain, domain, True, True)
        record = self.dynamic.get(domain)
        if record is None:
            return None
        return Domain(record.domain, record.host_type, record.enabled, False)

    def by_host_type(self, host_type: str) -> list[str]:
        """Enabled domains of ``host_type`` (a static host is the host type of itself)."""
        found = [d for d in self.static if d == host_type]
        found += [r.domain for r in self.dynamic.values() if r.host_type == host_type
                  and r.enabled]
        return sorted(found)

    def all(self) -> list[Domain]:
        names = sorted(self.static | set(self.dynamic))
        return [d for d in (self.get(n) for n in names) if d is not None]

    # -- loading -----------------------------------------------------------------------------
    async def load(self) -> None:
        if not self.host_types:
            return  # no host types: nothing dynamic can exist
        records = {r.domain: r for r in await self.storage.list_domains()}
        changed = [d for d in set(records) | set(self.dynamic)
                   if records.get(d) != self.dynamic.get(d)]
        self.dynamic = records
        self._recompute()
        for name in changed:
            self._notify(name)

    def start(self) -> None:
        if self.host_types:
            self._task = asyncio.get_running_loop().create_task(self._refresh_loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_INTERVAL)
            try:
                await self.load()
            except Exception:
                log.exception("domains_refresh_failed")

    # -- changing ----------------------------------------------------------------------------
    def _check_dynamic(self, domain: str) -> DomainRecord:
        if domain in self.static:
            raise DomainError(f"{domain} is a static domain (general.hosts): it can only be "
                              "changed in the configuration", "domain_static")
        record = self.dynamic.get(domain)
        if record is None:
            raise DomainError(f"domain {domain} not found", "domain_not_found")
        return record

    async def add(self, domain: str, host_type: str) -> Domain:
        if host_type not in self.host_types:
            raise DomainError(f"unknown host type {host_type!r} (general.host_types = "
                              f"{self.host_types})", "unknown_host_type")
        if domain in self.static:
            raise DomainError(f"{domain} is a static domain (general.hosts)", "domain_static")
        taken = self.taken(domain)
        if taken is not None:
            # Its stanzas would go to the service (routed first), its users nowhere.
            raise DomainError(f"{domain} is already served by this server: {taken}",
                              "domain_duplicate")
        if not await self.storage.insert_domain(domain, host_type):
            existing = self.dynamic.get(domain)
            if existing is not None and existing.host_type != host_type:
                raise DomainError(f"domain {domain} already exists with host type "
                                  f"{existing.host_type}", "domain_duplicate")
            raise DomainError(f"domain {domain} already exists", "domain_duplicate")
        self.dynamic[domain] = DomainRecord(domain, host_type, True)
        self._changed(domain)
        log.info("domain_added domain=%s host_type=%s", domain, host_type)
        await self._tell_others()
        return Domain(domain, host_type, True, False)

    async def remove(self, domain: str, host_type: str) -> Domain:
        record = self._check_dynamic(domain)
        if record.host_type != host_type:
            raise DomainError(f"domain {domain} has host type {record.host_type}, "
                              f"not {host_type}", "wrong_host_type")
        # Out of `served` first: no new login while its data goes away.
        del self.dynamic[domain]
        self._changed(domain)
        if self.erase_in_batches is not None:
            await self.erase_in_batches(domain, host_type)
        await self.storage.delete_domain(domain, self.module_tables())
        log.info("domain_removed domain=%s", domain)
        await self._tell_others()  # once the row is gone: what the other nodes re-read
        return Domain(domain, host_type, False, False)

    async def set_enabled(self, domain: str, enabled: bool) -> Domain:
        record = self._check_dynamic(domain)
        await self.storage.set_domain_enabled(domain, enabled)
        self.dynamic[domain] = DomainRecord(domain, record.host_type, enabled)
        self._changed(domain)
        log.info("domain_%s domain=%s", "enabled" if enabled else "disabled", domain)
        await self._tell_others()
        return Domain(domain, record.host_type, enabled, False)

    async def _tell_others(self) -> None:
        if self.after_change is not None:
            await self.after_change()

    def _changed(self, domain: str) -> None:
        self._recompute()
        self._notify(domain)

    def _recompute(self) -> None:
        self.served = set(self.static) | {d for d, r in self.dynamic.items() if r.enabled}

    def _notify(self, domain: str) -> None:
        current = self.get(domain)
        for listener in self.listeners:
            listener(domain, current)
