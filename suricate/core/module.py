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
from dataclasses import dataclass
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
    from suricate.jid import JID

log = logging.getLogger("suricate.modules")

T = TypeVar("T")


#: ``module_state`` key of a counter that modules bump (``session_state_changed``) when
#: per-session state a resumed session must keep has changed.
STATE_GEN = "session.state_gen"


def session_state_changed(session: Any) -> None:
    """What a module gives ``SESSION_SNAPSHOT`` for ``session`` changed: the session's Redis
    copy takes it again at its next write (mod_stream_management, copy_to_redis)."""
    state = session.module_state
    state[STATE_GEN] = state.get(STATE_GEN, 0) + 1


class SessionSlot(Generic[T]):
    """Per-session state a module owns, kept in c2s.module_state under the module's key.

    DESIGN §7: a module's per-session state belongs to the module, never to a new attribute
    on the c2s. The slot is declared once (at module level, next to its owner) and is the only
    way to reach that entry, so the key and the type are written in one place. Each access is
    one dict operation on ``session.module_state``: cheap enough for the delivery path.

    The key is the owning module's name; a module keeping more than one independent piece
    uses ``"<module>.<piece>"`` (``"mod_roster.cache"``). Sessions of other workers
    (``cluster.remote.RemoteSession``) have a ``module_state`` too, holding what is replicated.
    """

    __slots__ = ("key", "factory")

    def __init__(self, key: str, factory: Callable[[], T] | None = None) -> None:
        self.key = key
        self.factory = factory

    def get(self, session: Any) -> T | None:
        value: T | None = session.module_state.get(self.key)
        return value

    def setdefault(self, session: Any) -> T:
        """The session's value, created with the factory on first use."""
        state = session.module_state
        value: T | None = state.get(self.key)
        if value is None:
            if self.factory is None:
                raise TypeError(f"session slot {self.key!r} has no factory")
            value = state[self.key] = self.factory()
        return value

    def set(self, session: Any, value: T) -> None:
        session.module_state[self.key] = value

    def pop(self, session: Any) -> T | None:
        value: T | None = session.module_state.pop(self.key, None)
        return value

    def __repr__(self) -> str:
        return f"SessionSlot({self.key!r})"


class CarriedSlot(Generic[T]):
    """A session slot whose value follows a session resumed on another node (XEP-0198 §5
    across nodes, docs/cluster.md) as plain data: a module's ``session_handover`` and
    ``session_snapshot`` hooks delegate to ``handover`` and ``snapshot``. Whoever changes the
    value calls ``session_state_changed`` so that the session's Redis copy takes it again."""

    __slots__ = ("slot", "dump", "load")

    def __init__(self, slot: SessionSlot[T], dump: Callable[[T], Any],
                 load: Callable[[Any], T]) -> None:
        self.slot = slot
        self.dump = dump  # the value as plain data (it travels marshalled)
        self.load = load

    def handover(self, state: dict[str, Any], session: Any, moved_in: bool) -> dict[str, Any]:
        """On the old node: the value goes into ``state`` and leaves the session; on the
        new node: it comes back from ``state``."""
        if moved_in:
            plain = state.get(self.slot.key)
            if plain:
                self.slot.set(session, self.load(plain))
                session_state_changed(session)  # the new node's copy takes it
            return state
        state = self.snapshot(state, session)
        self.slot.pop(session)
        return state

    def snapshot(self, state: dict[str, Any], session: Any) -> dict[str, Any]:
        """The value into ``state``, kept by the session (its Redis copy)."""
        value = self.slot.get(session)
        if value:
            state[self.slot.key] = self.dump(value)
        return state


@dataclass(frozen=True, slots=True)
class GraphQLCategory:
    """A module's part of the GraphQL API, collected by ``suricate.admin.schema``.

    ``resolvers`` names a Python module (imported only when a GraphQL schema is built, so a
    server without an admin endpoint does not load GraphQL) defining ``ADMIN_RESOLVERS`` and
    ``USER_RESOLVERS``, maps of (GraphQL type, field) to ``fn(ctx, args)``. Its package holds the
    SDL: ``common.graphql`` (types of every endpoint), ``admin.graphql`` (admin and domain admin)
    and ``user.graphql``, each adding its categories with ``extend type AdminQuery {...}``.
    The category exists whether the module is enabled or not (the schema does not depend on the
    configuration); its resolvers answer ``module_not_loaded`` when it is not.
    """

    resolvers: str

    @property
    def package(self) -> str:
        return self.resolvers.rpartition(".")[0]


@dataclass(frozen=True, slots=True)
class PersonalData:
    """One table of what a module keeps about an account, for GDPR retrieval (GraphQL
    ``gdpr.retrievePersonalData`` writes each as ``<name>.csv`` in a zip, as MongooseIM does):
    ``name`` (the module's data kind: ``roster``, ``vcard``, ``mam_pm``...), column names and rows
    of plain values (strings, numbers)."""

    name: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]


class Module:
    name: ClassVar[str]
    #: The spec of ``[modules.<name>]`` (its ``doc`` is the module's line in the reference).
    options: ClassVar[Section] = Section({})
    #: The module's storage, or None; an instance is ``self.store`` once the module started.
    store_class: ClassVar[type[ModuleStore] | None] = None
    #: The ``store_class`` instance, set by the loader before ``start`` (modules with one only).
    store: Any
    #: Its categories of the GraphQL admin and user APIs (GraphQLCategory), if any.
    graphql: ClassVar[GraphQLCategory | None] = None
    xeps: ClassVar[tuple[str, ...]] = ()
    deps: ClassVar[tuple[str, ...]] = ()
    hooks: ClassVar[tuple[tuple[H.Hook, str, int], ...]] = ()
    iq_handlers: ClassVar[tuple[tuple[Scope, str, str], ...]] = ()
    features: ClassVar[tuple[str, ...]] = ()  # disco#info features of the server
    sm_features: ClassVar[tuple[str, ...]] = ()  # disco#info features of an account
    #: The option naming a port the module listens on itself, outside ``[[listen]]`` (not
    #: shared between `serve --workers` processes: worker i takes that port + i), or None.
    own_port_option: ClassVar[str | None] = None

    #: The host types this instance serves, or None for all (set by the loader when a
    #: ``[[host_config]]`` gives some domains other modules or other options: then one
    #: instance per distinct options runs, each seeing only its own domains' stanzas).
    host_types: frozenset[str] | None = None

    def __init__(self, server: Server, opts: Mapping[str, Any]) -> None:
        self.server = server
        self.opts = opts

    def serves_domain(self, domain: str) -> bool:
        """Whether this instance is the one for ``domain`` (a served domain; for any other
        domain, the server's primary instance of the module answers)."""
        if self.host_types is None:
            return True
        if self.server.is_local_domain(domain):
            return self.server.domains.host_type(domain) in self.host_types
        return self.server.modules.get(self.name) is self

    def serves_host_type(self, host_type: str) -> bool:
        """Whether this instance is the one for the domains of ``host_type``."""
        return self.host_types is None or host_type in self.host_types

    @classmethod
    def check_config(cls, opts: Mapping[str, Any], path: str, refs: References) -> None:
        """Check what the options refer to elsewhere in the configuration (access rules,
        shapers, pools), with ``refs.access_defined(path, name)`` and the like. Runs at
        ``check-config`` and start-up, after ``options`` validated the table itself."""

    async def start(self) -> None:
        """Anything beyond the declared wiring (timers, caches)."""

    def listening(self) -> list[tuple[str, int]]:
        """The ports the module listens on itself, outside ``[[listen]]`` (kind, port), once
        started: named in the start-up line with the listeners'."""
        return []

    async def announce_stop(self) -> None:
        """The server is stopping and its streams are still up (client sessions and s2s):
        tell others what only this module knows, e.g. mod_muc's occupants on other servers
        that the room is going (XEP-0045 §15.6, 332). ``stop`` runs after the s2s streams
        closed, too late for that. In reverse dependency order, like ``stop``."""

    async def stop(self) -> None:
        """Undo ``start``."""

    async def personal_data(self, jid: JID) -> list[PersonalData]:
        """What this module keeps about the account ``jid`` (bare), for GDPR retrieval: one
        ``PersonalData`` per kind of data, empty when it keeps nothing. A module that stores
        anything about an account overrides it (see docs/modules.md, "Personal data")."""
        return []

    # -- wiring, done by the loader -------------------------------------------------------
    def _handler(self, hook: H.Hook[Any], method: str) -> Callable[..., Any]:
        """The bound method, or (for an instance serving some host types only) a wrapper
        that leaves the accumulator alone for the other domains' stanzas. Made once per
        hook and method, so ``unwire`` removes the same object."""
        fn = getattr(self, method)
        if self.host_types is None:
            return fn
        wrappers: dict[tuple[str, str], Callable[..., Any]] = self.__dict__.setdefault(
            "_gated", {})
        key = (hook.name, method)
        if key not in wrappers:
            def gated(acc: Any, *args: Any) -> Any:
                domain = H.host_of(hook, args)
                if domain is not None and not self.serves_domain(domain):
                    return acc
                return fn(acc, *args)
            wrappers[key] = gated
        return wrappers[key]

    def wire(self) -> None:
        for hook, method, priority in self.hooks:
            self.server.hooks.add(hook, self._handler(hook, method), priority)
        serves = self.serves_domain if self.host_types is not None else None
        for scope, xmlns, method in self.iq_handlers:
            self.server.iq.register(scope, xmlns, getattr(self, method), serves)
        if self.features:
            self.server.hooks.add(H.DISCO_LOCAL_FEATURES,
                                  self._handler(H.DISCO_LOCAL_FEATURES, "_add_features"), 50)
        if self.sm_features:
            self.server.hooks.add(H.DISCO_SM_FEATURES,
                                  self._handler(H.DISCO_SM_FEATURES, "_add_sm_features"), 50)

    def serve_subdomains(self, pattern: str, handler: ServiceHandler) -> dict[str, str]:
        """Serve MongooseIM's subdomain ``pattern`` (``"conference.@HOST@"``) for each served
        domain this instance serves with ``handler`` (from, to, stanza), routed like a
        component and listed in the domain's disco#items; undone by ``unwire``. Returns each
        service domain now served with its domain (``{"conference.a.test": "a.test"}``): a
        domain whose ``[[host_config]]`` leaves the module out gets none."""
        served: dict[str, str] = {}
        for host in sorted(self.server.domains.served):
            if self.host_types is not None and \
                    self.server.domains.host_type(host) not in self.host_types:
                continue  # another instance (other options, or none) for that domain
            domain = pattern.replace("@HOST@", host)
            # A pattern without @HOST@ is one fixed domain, nobody's subdomain (MongooseIM).
            service = self.server.components.serve(
                domain, handler, parent=host if "@HOST@" in pattern else None)
            self.__dict__.setdefault("_services", []).append(service)
            served[domain] = host
        return served

    def unwire(self) -> None:
        for service in self.__dict__.pop("_services", []):
            self.server.components.unserve(service)
        for hook, method, _ in self.hooks:
            self.server.hooks.remove(hook, self._handler(hook, method))
        for scope, xmlns, method in self.iq_handlers:
            self.server.iq.unregister(scope, xmlns, getattr(self, method))
        self.server.hooks.remove(H.DISCO_LOCAL_FEATURES,
                                 self._handler(H.DISCO_LOCAL_FEATURES, "_add_features"))
        self.server.hooks.remove(H.DISCO_SM_FEATURES,
                                 self._handler(H.DISCO_SM_FEATURES, "_add_sm_features"))

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


@dataclass(frozen=True)
class ModulePlan:
    """One instance to start: its options, and the host types it serves (None: all)."""

    name: str
    opts: Mapping[str, Any]
    host_types: frozenset[str] | None


def module_plans(cfg: Mapping[str, Any], registry: Mapping[str, type[Module]],
                 host_types: list[str], base_dir: Path) -> list[ModulePlan]:
    """The module instances a configuration asks for, in dependency order. Without a
    ``[[host_config]]`` giving ``modules``: one instance per enabled module, for every
    domain. With one (6.4: it replaces ``[modules]`` for its host or host type): one instance
    per distinct options of a module, serving the host types that have them."""
    from suricate.config.host_config import host_configs

    top: Mapping[str, Any] = cfg.get("modules", {})
    entries = {k: e for k, e in host_configs(cfg).items() if "modules" in e}

    def expanded(selected: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
        out: dict[str, Mapping[str, Any]] = {}
        for name in load_order(selected, registry):
            opts = selected.get(name)
            # A dependency nobody configured runs with its declared defaults (MongooseIM).
            out[name] = opts if opts is not None else module_defaults(
                registry[name].options, name, base_dir)
        return out

    if not entries:
        return [ModulePlan(name, opts, None) for name, opts in expanded(top).items()]
    keys = sorted(set(cfg["general"].get("hosts") or []) | set(host_types))
    per_key = {k: expanded(entries[k]["modules"] if k in entries else top) for k in keys}
    names: list[str] = []
    for modules in [expanded(top), *per_key.values()]:
        names += [n for n in modules if n not in names]
    plans: list[ModulePlan] = []
    for name in names:
        groups: list[tuple[Mapping[str, Any], set[str]]] = []
        for key in keys:
            if name not in per_key[key]:
                continue
            opts = per_key[key][name]
            for seen, members in groups:
                if seen == opts:
                    members.add(key)
                    break
            else:
                groups.append((opts, {key}))
        if len(groups) == 1 and groups[0][1] == set(keys):
            plans.append(ModulePlan(name, groups[0][0], None))
        else:
            plans += [ModulePlan(name, opts, frozenset(members)) for opts, members in groups]
    return plans


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
