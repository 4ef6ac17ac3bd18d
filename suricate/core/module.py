"""The module API: a module declares what it provides as class data; the loader wires it.

A module is one feature, named like MongooseIM's (``mod_ping``), in one place: a file of
``suricate/modules/`` or a package for a big one (``mod_muc/``), or an operator's own package
registered under the entry-point group ``suricate.modules`` (see docs/modules.md). It declares:

- ``options``: the spec of its ``[modules.<name>]`` table; ``check-config`` validates it with
  the TOML path of every problem and ``docs/configuration.md`` is generated from it. The
  module receives the validated, defaulted table as ``self.opts``;
- ``store``: its storage (a ``ModuleStore`` subclass with its own numbered migrations), built
  over the server's database as ``self.store`` when the module starts;
- its XEPs, the modules it needs (``deps``), hooks (hook, method name, priority), IQ handlers
  (scope, namespace, method name), disco features, and per-session state through
  ``SessionSlot``; instrumentation events are declared next to the code that emits them
  (``suricate.instrument.events.declare``);
- ``start``/``stop`` for anything else (timers, caches).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from suricate.config.loader import References
from suricate.config.spec import ConfigError, Context, Section
from suricate.core import hooks as H
from suricate.core.component_table import ServiceHandler
from suricate.storage.base import Storage
from suricate.storage.module_store import ModuleStore, load_module_migrations, migrate_module
from suricate.storage.sql import SqlStorage

if TYPE_CHECKING:
    from suricate.core.iq import Scope
    from suricate.core.server import Server

log = logging.getLogger("suricate.modules")

T = TypeVar("T")


class SessionSlot(Generic[T]):
    """Per-session state a module owns, kept in ``session.module_state`` under ``key`` (the
    module's name, or ``"<module>.<what>"`` for a module with several), never as a new
    attribute of the c2s object. One dict lookup: cheap enough for the delivery path."""

    __slots__ = ("key", "factory")

    def __init__(self, key: str, factory: Callable[[], T] | None = None) -> None:
        self.key = key
        self.factory = factory

    def get(self, session: Any) -> T | None:
        return session.module_state.get(self.key)  # type: ignore[no-any-return]

    def setdefault(self, session: Any) -> T:
        state: dict[str, Any] = session.module_state
        value = state.get(self.key)
        if value is None:
            if self.factory is None:
                raise LookupError(f"session slot {self.key} has no value and no factory")
            value = state[self.key] = self.factory()
        return value  # type: ignore[no-any-return]

    def set(self, session: Any, value: T) -> None:
        session.module_state[self.key] = value

    def pop(self, session: Any) -> T | None:
        return session.module_state.pop(self.key, None)  # type: ignore[no-any-return]


class Module:
    name: ClassVar[str]
    #: The spec of ``[modules.<name>]`` (its ``doc`` is the module's line in the reference).
    options: ClassVar[Section] = Section({})
    #: The module's storage, or None; an instance is ``self.store`` once the module started.
    store_class: ClassVar[type[ModuleStore] | None] = None
    #: The ``store_class`` instance, set by the loader before ``start`` (modules with one only).
    store: Any
    xeps: ClassVar[tuple[str, ...]] = ()
    deps: ClassVar[tuple[str, ...]] = ()
    hooks: ClassVar[tuple[tuple[H.Hook, str, int], ...]] = ()
    iq_handlers: ClassVar[tuple[tuple[Scope, str, str], ...]] = ()
    features: ClassVar[tuple[str, ...]] = ()  # disco#info features of the server
    sm_features: ClassVar[tuple[str, ...]] = ()  # disco#info features of an account

    def __init__(self, server: Server, opts: Mapping[str, Any]) -> None:
        self.server = server
        self.opts = opts

    @classmethod
    def check_config(cls, opts: Mapping[str, Any], path: str, refs: References) -> None:
        """Check what the options refer to elsewhere in the configuration (access rules,
        shapers, pools), with ``refs.access_defined(path, name)`` and the like. Runs at
        ``check-config`` and start-up, after ``options`` validated the table itself."""

    async def start(self) -> None:
        """Anything beyond the declared wiring (timers, caches)."""

    async def stop(self) -> None:
        """Undo ``start``."""

    # -- wiring, done by the loader -------------------------------------------------------
    def wire(self) -> None:
        for hook, method, priority in self.hooks:
            self.server.hooks.add(hook, getattr(self, method), priority)
        for scope, xmlns, method in self.iq_handlers:
            self.server.iq.register(scope, xmlns, getattr(self, method))
        if self.features:
            self.server.hooks.add(H.DISCO_LOCAL_FEATURES, self._add_features, 50)
        if self.sm_features:
            self.server.hooks.add(H.DISCO_SM_FEATURES, self._add_sm_features, 50)

    def serve_subdomains(self, pattern: str, handler: ServiceHandler) -> list[str]:
        """Serve MongooseIM's subdomain ``pattern`` (``"conference.@HOST@"``) for each served
        domain with ``handler`` (from, to, stanza), routed like a component and listed in the
        domain's disco#items; undone by ``unwire``. Returns the domains now served."""
        served = []
        for host in sorted(self.server.domains.served):
            domain = pattern.replace("@HOST@", host)
            service = self.server.components.serve(domain, handler)
            self.__dict__.setdefault("_services", []).append(service)
            served.append(domain)
        return served

    def unwire(self) -> None:
        for service in self.__dict__.pop("_services", []):
            self.server.components.unserve(service)
        for hook, method, _ in self.hooks:
            self.server.hooks.remove(hook, getattr(self, method))
        for scope, xmlns, _ in self.iq_handlers:
            self.server.iq.unregister(scope, xmlns)
        self.server.hooks.remove(H.DISCO_LOCAL_FEATURES, self._add_features)
        self.server.hooks.remove(H.DISCO_SM_FEATURES, self._add_sm_features)

    def _add_features(self, acc: set[str], domain: str) -> set[str]:
        return acc | set(self.features)

    def _add_sm_features(self, acc: set[str], jid: Any) -> set[str]:
        return acc | set(self.sm_features)


def load_order(selected: Mapping[str, Any], registry: Mapping[str, type[Module]]) -> list[str]:
    """Modules in dependency order; a dependency that is not configured is added with its
    defaults (as MongooseIM does), and a cycle is our bug."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            raise RuntimeError(f"module dependency cycle at {name}")
        visiting.add(name)
        for dep in registry[name].deps:
            visit(dep)
        visiting.discard(name)
        order.append(name)

    for name in selected:
        visit(name)
    return order


def module_defaults(options: Section, name: str, base_dir: Path) -> dict[str, Any]:
    """The options of a module enabled without a table of its own (a dependency)."""
    ctx = Context(base_dir)
    opts = options.normalize({}, f"modules.{name}", ctx)
    if ctx.problems:  # a required option: the config check names the dependency
        raise ConfigError(ctx.problems)
    return opts  # type: ignore[no-any-return]


async def open_module_store(storage: Storage, name: str,
                            store_class: type[ModuleStore]) -> ModuleStore:
    """Build a module's store over the server's database, applying its migrations first."""
    if not isinstance(storage, SqlStorage):
        raise TypeError(f"{name}: module stores need an SQL backend, not {storage!r}")
    if store_class.migrations is not None:
        await migrate_module(
            storage, name, load_module_migrations(store_class.migrations, storage.dialect))
    return store_class(storage)
