"""The Server object: it owns everything (DESIGN §2.7 — no module-level mutable state).

Start-up order: storage (migrations), modules, listeners. Shutdown reverses it: stop accepting,
ask XEP-0198 clients what they received (at most ``ACK_WAIT``), end every stream with
``system-shutdown`` (after which messages still in flight are stored offline by the normal
delivery rules), wait for pending work, stop modules, close storage.

Start-up time is mostly imports, so subsystems a configuration does not use are imported when
first needed: federation (``server.s2s`` is made on first use: the first stanza to a remote
domain, an s2s listener, or a non-default ``[s2s]`` section at start), component streams (the
``ComponentTable`` itself is light), instrumentation handlers and probes, HTTP.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from suricate.auth.failures import AuthFailures
from suricate.auth.service import AuthService
from suricate.config.host_config import host_view, overridden
from suricate.core import hooks as H
from suricate.core.acl import AccessControl
from suricate.core.c2s import C2S
from suricate.core.c2s.session import SAME_CLIENT_TOPIC, same_client_bound
from suricate.core.cluster import Cluster
from suricate.core.component_table import ComponentTable, LocalService
from suricate.core.domains import Domain, DomainRegistry
from suricate.core.eager import finish
from suricate.core.hibernation import HibernationSweep
from suricate.core.hooks import Hooks
from suricate.core.iq import IqDispatcher
from suricate.core.module import Module, module_defaults, module_plans, open_module_store
from suricate.core.router import Router
from suricate.core.sessions import SessionTable
from suricate.instrument import Instrumentation
from suricate.jid import JID
from suricate.net.listener import Listener
from suricate.net.tls import CertKey, TLSConfig
from suricate.protocol.errors import StanzaError, StreamError
from suricate.protocol.stanza import message_type
from suricate.storage import Storage, create_storage
from suricate.storage.module_store import ModuleStore
from suricate.xml.element import Element

if TYPE_CHECKING:
    from suricate.core.component import Component
    from suricate.core.s2s import S2SService
    from suricate.instrument.handler import Handler
    from suricate.instrument.probes import Prober
    from suricate.net.connection import Connection
    from suricate.net.http.message import HttpHandler

log = logging.getLogger("suricate.server")

def awaiting(coro: Any) -> list[str]:
    """Where a suspended coroutine waits: each coroutine of its await chain as
    ``function file:line``, outermost first."""
    chain: list[str] = []
    while coro is not None and len(chain) < 30:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            chain.append(f"{frame.f_code.co_name} {frame.f_code.co_filename}:{frame.f_lineno}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return chain


#: The cluster operation that makes a node re-read the dynamic domains now.
DOMAINS_REFRESH_OP = "domains.refresh"
# How long a stop waits for XEP-0198 clients to acknowledge what they received
# (``Server._collect_acknowledgements``): a client that does not answer delays it this much.
ACK_WAIT = 1.0

#: Makes the handler of one ``[[listen.http.handlers.<kind>]]`` entry. The server makes its
#: own (``mongoose_prometheus_handler``); handlers of higher layers come from whoever builds
#: the server (``mongoose_graphql_handler``: ``suricate.admin.HTTP_HANDLERS``), as modules do.
HttpHandlerFactory = Callable[["Server", Mapping[str, Any]], "HttpHandler"]



class UserCache(Protocol):
    """What ``Server.user_exists`` asks of a cache of existing accounts (mod_cache_users)."""

    def __contains__(self, key: str) -> bool: ...

    def add(self, key: str) -> None: ...

class Server:
    def __init__(self, cfg: Mapping[str, Any], base_dir: Path,
                 module_registry: Mapping[str, type[Module]],
                 sni_certs: Mapping[str, CertKey] | None = None,
                 http_handlers: Mapping[str, HttpHandlerFactory] | None = None) -> None:
        self.cfg = cfg
        self.base_dir = base_dir
        general = cfg["general"]
        self.hosts: frozenset[str] = frozenset(h.lower() for h in general["hosts"])
        self.default_domain: str = general["default_server_domain"]
        self.storage: Storage = create_storage(self._rdbms_connection(), base_dir)
        self.domains = DomainRegistry(self.hosts, general.get("host_types") or [], self.storage,
                                      self.module_user_tables, self._erase_domain_batches)
        self.domains.listeners.append(self._domain_changed)
        self.domains.after_change = self._domains_changed_here
        # [instrumentation]: the no-op base without handlers (DESIGN §3: nothing on the hot
        # path but a method call); labels carry the host type of a dynamic domain.
        self.handlers: list[Handler] = []
        self.instrument: Instrumentation = Instrumentation()
        if cfg.get("instrumentation"):
            from suricate.instrument.labels import HostTypeLabel
            from suricate.instrument.setup import build_handlers, combine
            label = HostTypeLabel(self.domains, self.domains.host_types)
            self.handlers = build_handlers(cfg["instrumentation"], label)
            self.instrument = combine(self.handlers)
        # Hooks: the plain class without instrumentation handlers, so no fold pays anything
        # for 6.4's hook_<name> events; with them, counters sit in the handler lists of the
        # instrumented hooks (suricate.core.hook_events).
        self.hooks: Hooks = Hooks()
        if self.handlers:
            from suricate.core.hook_events import CountingHooks  # declares ~50 events

            self.hooks = CountingHooks(self.instrument, self.is_local_domain)
        self._prober: Prober | None = None
        self.sessions = SessionTable()
        self.iq = IqDispatcher(self)
        self.router = Router(self)
        # What spans nodes (sm_backend = "redis"); nothing but a table of handlers otherwise.
        self.cluster = Cluster()
        # XEP-0386 §3: a client bound on another node ends its earlier sessions here.
        self.cluster.on(SAME_CLIENT_TOPIC, functools.partial(same_client_bound, self))
        # XEP-0198 §5: a bare-JID message an unresumed session of another node handed back.
        self.cluster.on(MISSED_TOPIC, self._missed_here)
        self.cluster.answer_on(DOMAINS_REFRESH_OP, self._refresh_domains)
        #: The secret every node of the cluster reads from Redis when it joins (None on a
        #: single node): what the nodes must derive alike, such as the dialback secret.
        self.cluster_cookie: bytes | None = None
        self._own_fake_salt_secret: bytes | None = None
        # mod_cache_users' set of accounts known to exist (user_exists); None without it.
        self.user_cache: UserCache | None = None
        self.components = ComponentTable(self)
        self.domains.taken = self._service_domain_taken
        self._s2s: S2SService | None = None
        if cfg["listen"].get("s2s") or _s2s_configured(cfg["s2s"]):
            self._s2s = self._make_s2s()  # its configuration is checked (files read) at start
        self.access = AccessControl(cfg["acl"], cfg["access"], sorted(self.hosts))
        for host_type in {*overridden(cfg, "acl"), *overridden(cfg, "access")}:
            view = host_view(cfg, host_type)
            self.access.by_host_type[host_type] = AccessControl(view["acl"], view["access"],
                                                                sorted(self.hosts))
        self.access.host_type_of = self.domains.host_type
        #: Recent failed logins per address and per account: later attempts wait.
        self.auth_failures = AuthFailures()
        self.auth = AuthService(cfg["auth"], self.storage, self.spawn,
                                registered=self._user_registered, removed=self._user_removed,
                                password_changed=self.password_changed,
                                account_removed=self.account_removed,
                                removing=self._user_removing,
                                module_tables=self.module_user_tables,
                                http_pools=cfg.get("outgoing_pools", {}).get("http", {}),
                                ldap_pools=cfg.get("outgoing_pools", {}).get("ldap", {}),
                                instrument=self.instrument)
        # [[host_config]] auth tables: a service of their own, chosen by the domain's host
        # type (MongooseIM 6.4 keeps auth options per host type).
        for host_type, auth_cfg in overridden(cfg, "auth").items():
            self.auth.hosts[host_type] = AuthService(
                auth_cfg, self.storage, self.spawn, registered=self._user_registered,
                removed=self._user_removed, password_changed=self.password_changed,
                account_removed=self.account_removed, removing=self._user_removing,
                module_tables=self.module_user_tables,
                http_pools=cfg.get("outgoing_pools", {}).get("http", {}),
                ldap_pools=cfg.get("outgoing_pools", {}).get("ldap", {}),
                instrument=self.instrument)
        self.auth.host_type_of = self.domains.host_type
        self.module_registry = module_registry
        self.http_handlers = dict(http_handlers or {})
        self.modules: dict[str, Module] = {}
        #: Every started module instance: more than one per module when [[host_config]]
        #: gives domains different modules or options.
        self.module_instances: list[Module] = []
        self.module_stores: dict[str, ModuleStore] = {}
        self.listeners: list[Listener] = []
        self._sweeps: list[HibernationSweep] = []
        self._sni_certs = dict(sni_certs or {})
        # general.domain_certfile: a certificate per host or host type, chosen by SNI.
        for entry in general.get("domain_certfile") or ():
            self._sni_certs[entry["domain"]] = CertKey(entry["certfile"], entry["keyfile"])
        self._tasks: set[asyncio.Task[Any]] = set()
        # What stop() ends with system-shutdown: C2S, and Component once a listener exists.
        self._stream_types: tuple[type[C2S | Component], ...] = (C2S,)
        self.started_at = time.time()
        self.stopping = False
        self.stop_requested: asyncio.Event | None = None
        self.http_listeners: list[Any] = []
        self.counters: dict[str, int] = {
            "sessions_opened": 0, "sessions_closed": 0, "c2s_auth_failed": 0,
        }

    @property
    def s2s(self) -> S2SService:
        """Federation: made on first use when nothing configures it (the default ``[s2s]``
        cannot fail to load, and the dialback secret is per process either way)."""
        s2s = self._s2s
        if s2s is None:
            s2s = self._s2s = self._make_s2s()
        return s2s

    def _make_s2s(self) -> S2SService:
        from suricate.core.s2s import S2SService
        return S2SService(self)

    def _rdbms_connection(self) -> Mapping[str, Any]:
        pools = self.cfg.get("outgoing_pools", {}).get("rdbms", {})
        pool = pools.get("default")
        if pool is None:
            # No pool configured: the embedded default, next to the configuration.
            return {"driver": "sqlite", "database": "suricate.db"}
        conn = dict(pool["connection"])
        conn.setdefault("workers", pool.get("workers", 10))
        return conn

    # -- life cycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        self.stop_requested = asyncio.Event()
        await self.storage.open()
        await self.domains.load()
        self.domains.start()
        await self.auth.start()
        for instrument_handler in self.handlers:
            await instrument_handler.start()
        await self._start_modules()
        if self.handlers:
            self._set_up_series()
        for opts in self.cfg["listen"].get("c2s", []):
            tls = self._c2s_tls_config(opts.get("tls"))
            listener = Listener("c2s", opts, self._c2s_factory(opts, tls), tls, self.instrument,
                                shapers=self.cfg["shaper"])
            await listener.start()
            self.listeners.append(listener)
            sweep = HibernationSweep(listener)
            sweep.start()
            self._sweeps.append(sweep)
        for opts in self.cfg["listen"].get("s2s", []):
            from suricate.core.s2s import ALPN_S2S
            # s2s: the peer's certificate is asked for but judged after the handshake
            # (SASL EXTERNAL when it proves the domain, dialback otherwise).
            tls = self._tls_config(opts.get("tls"), alpn=[ALPN_S2S], verify_after_handshake=True)
            listener = Listener("s2s", opts, self.s2s.incoming_factory(opts, tls), tls,
                                self.instrument, shapers=self.cfg["shaper"])
            await listener.start()
            self.listeners.append(listener)
        for opts in self.cfg["listen"].get("component", []):
            from suricate.core.component import Component
            self._stream_types = (C2S, Component)
            tls_opts = opts.get("tls")
            if tls_opts and tls_opts.get("mode") != "tls":
                # XEP-0114 has no STARTTLS: TLS for components is direct TLS (MongooseIM 6.4).
                log.warning("component_tls_mode port=%s mode=%s: components use direct TLS",
                            opts.get("port"), tls_opts.get("mode"))
                tls_opts = dict(tls_opts, mode="tls")
            tls = self._tls_config(tls_opts, alpn=[])
            listener = Listener("component", opts, self._component_factory(opts), tls,
                                self.instrument, shapers=self.cfg["shaper"])
            await listener.start()
            self.listeners.append(listener)
        for opts in self.cfg["listen"].get("http", []):
            # Imported only when configured: a server without HTTP pays nothing for it.
            from suricate.net.http.listener import HttpListener
            http = HttpListener(opts, self._http_factories(), self.spawn, self.is_local_domain,
                                self.cfg["general"].get("http_server_name"))
            await http.start()
            self.http_listeners.append(http)
            for route in http.routes:
                swept = getattr(route.handler, "swept", None)  # mod_websockets' and mod_bosh's sessions
                if swept is not None:
                    sweep = HibernationSweep(swept)
                    sweep.start()
                    self._sweeps.append(sweep)
        self.started_at = time.time()
        if self.handlers:
            from suricate.instrument.probes import Prober
            interval = self.cfg["instrumentation"]["probe_interval"]
            self._prober = Prober(self, self.instrument, interval)
            self._prober.start()
        log.info("server_started hosts=%s", ",".join(sorted(self.hosts)))

    def _set_up_series(self) -> None:
        """The series 6.4 declares at start-up exist at zero before their first event
        (suricate.instrument.initial says why): per host type, per connection type, per
        running module."""
        from suricate.instrument.initial import initial_series
        host_types = sorted(self.domains.static) + self.domains.host_types
        connection_types = ["c2s", "s2s"]  # s2s: outgoing streams need no listener
        if self.cfg["listen"].get("component"):
            connection_types.append("component")
        from suricate.core.hook_events import HOOK_EVENTS
        hooked = [spec for hook, spec in HOOK_EVENTS.items() if self.hooks.has(hook)]
        for event, labels in initial_series(host_types, self.module_instances,
                                            connection_types, hooked):
            self.instrument.set_up(event, labels)
        # The web transports' byte counters (no label), for the endpoints configured.
        kinds = {kind for opts in self.cfg["listen"].get("http", [])
                 for kind, entries in opts.get("handlers", {}).items() if entries}
        if "mod_websockets" in kinds:
            from suricate.net.http.websocket import WS_DATA_RECEIVED, WS_DATA_SENT
            self.instrument.set_up(WS_DATA_RECEIVED, {})
            self.instrument.set_up(WS_DATA_SENT, {})
        if "mod_bosh" in kinds:
            from suricate.net.http.bosh import BOSH_DATA_RECEIVED, BOSH_DATA_SENT
            self.instrument.set_up(BOSH_DATA_RECEIVED, {})
            self.instrument.set_up(BOSH_DATA_SENT, {})

    def _http_factories(self) -> dict[str, Callable[[Mapping[str, Any]], HttpHandler]]:
        # Imported only when an HTTP listener is configured (start-up time).
        from suricate.net.http.bosh import BoshEndpoint
        from suricate.net.http.conversejs import ConverseEndpoint
        from suricate.net.http.websocket import WebSocketEndpoint

        factories: dict[str, Callable[[Mapping[str, Any]], HttpHandler]] = {
            "mongoose_prometheus_handler": self._prometheus_endpoint,
            "mod_websockets": functools.partial(WebSocketEndpoint, self),
            "mod_bosh": lambda opts: BoshEndpoint(self, opts, self._bosh_options()),
            "mod_conversejs": functools.partial(ConverseEndpoint, self),
        }
        for kind, make in self.http_handlers.items():
            factories[kind] = functools.partial(make, self)
        return factories

    def _bosh_options(self) -> Mapping[str, Any]:
        module = self.modules.get("mod_bosh")
        if module is not None:
            return module.opts
        # MongooseIM 6.4 needs both the handler and the module; without the module its
        # defaults apply, and the operator is told.
        log.warning("bosh_without_module: [modules.mod_bosh] is not configured, its defaults "
                    "apply")
        return module_defaults(self.module_registry["mod_bosh"].options, "mod_bosh",
                               self.base_dir)

    def _prometheus_endpoint(self, opts: Mapping[str, Any]) -> HttpHandler:
        from suricate.instrument.prometheus import PrometheusHandler
        from suricate.instrument.setup import find_handler
        from suricate.net.http.prometheus import PrometheusEndpoint

        handler = find_handler(self.instrument, "prometheus")
        if handler is None:
            log.warning("prometheus_handler_without_instrumentation: add "
                        "[instrumentation.prometheus] to measure anything")
        return PrometheusEndpoint(handler if isinstance(handler, PrometheusHandler) else None)

    def _c2s_tls_config(self, opts: Mapping[str, Any] | None) -> TLSConfig | None:
        if opts and opts.get("certfile") and opts.get("early_data") \
                and opts.get("session_tickets") == "stateless":
            # TLS 1.3 0-RTT for FAST logins (XEP-0484 §3.4), see suricate.net.early_data
            from suricate.net.early_data import EarlyDataTLSConfig
            config: TLSConfig = EarlyDataTLSConfig(opts, alpn=[b"xmpp-client"],
                                                   certs_by_name=self._sni_certs)
            config.host_type_of = self.domains.host_type
            return config
        return self._tls_config(opts, alpn=[b"xmpp-client"])

    def _tls_config(self, opts: Mapping[str, Any] | None, alpn: list[bytes],
                    verify_after_handshake: bool = False) -> TLSConfig | None:
        if not opts or not opts.get("certfile"):
            return None
        config = TLSConfig(opts, alpn=alpn, certs_by_name=self._sni_certs,
                           verify_after_handshake=verify_after_handshake)
        config.host_type_of = self.domains.host_type
        return config

    def _component_factory(self, opts: Mapping[str, Any]) -> Any:
        from suricate.core.component import Component

        def factory(conn: Connection) -> Component:
            return Component(self, conn, opts)
        return factory

    def make_c2s(self, conn: Any, opts: Mapping[str, Any]) -> C2S:
        """A c2s session over another transport (WebSocket, BOSH): the same engine as TCP,
        ``conn`` being the transport adapter (TLS, if any, is the transport's)."""
        return C2S(self, conn, opts, None)

    def _c2s_factory(self, opts: Mapping[str, Any], tls: TLSConfig | None) -> Any:
        def factory(conn: Connection) -> C2S:
            return C2S(self, conn, opts, tls)
        return factory

    async def _start_modules(self) -> None:
        plans = module_plans(self.cfg, self.module_registry, self.domains.host_types,
                             self.base_dir)
        default_type = self.domains.host_type(self.default_domain)
        for plan in plans:
            cls = self.module_registry[plan.name]
            module = cls(self, plan.opts)
            module.host_types = plan.host_types
            if cls.store_class is not None:
                module.store = await self.open_module_store(plan.name, cls.store_class)
            # server.modules[name]: the instance of the default domain when it has the
            # module, else the first one (the primary, for stanzas of no served domain).
            if plan.name not in self.modules or (
                    plan.host_types is not None and default_type in plan.host_types):
                self.modules[plan.name] = module
            self.module_instances.append(module)
        for module in self.module_instances:
            module.wire()
            await module.start()
            log.debug("module_started name=%s host_types=%s", module.name, module.host_types)

    async def stop(self) -> None:
        """Graceful shutdown: nothing accepted is lost."""
        if self.stopping:
            return
        self.stopping = True
        for sweep in self._sweeps:
            sweep.stop()
        for listener in self.listeners:
            listener.stop_accepting()
        for http in self.http_listeners:
            await http.stop()
        if self._prober is not None:
            await self._prober.stop()
        await self.domains.stop()
        # What modules must say while every stream is still up (the s2s streams close
        # below, before the modules stop): e.g. rooms telling remote occupants they go.
        for module in reversed(self.module_instances):
            await module.announce_stop()
        await self._collect_acknowledgements()
        for session in list(self.sessions):
            if isinstance(session, C2S):
                session.tell_handled()
                session.stream_error(StreamError("system-shutdown"))
        # The sessions' close hooks (spawned) send their unavailable presence (RFC 6121
        # §4.6.3), to components too: a gateway (biboumi) must hear its users leave its
        # rooms, or they stay on the other network, so components are told before they go.
        await self.drain()
        for listener in self.listeners:
            for conn in list(listener.connections):
                handler = conn.handler
                if isinstance(handler, self._stream_types):
                    handler.stream_error(StreamError("system-shutdown"))
        await self.drain()
        if self._s2s is not None:  # never made: no stream and nothing queued
            self._s2s.stop()  # incoming: system-shutdown; outgoing: closed, queued ones bounced
        await self.drain()
        for module in reversed(self.module_instances):
            await module.stop()
            module.unwire()
        self.module_instances.clear()
        self.modules.clear()
        await self.drain()
        for instrument_handler in self.handlers:
            await instrument_handler.stop()
        await self.auth.stop()
        await self.storage.close()
        log.info("server_stopped")

    async def _collect_acknowledgements(self) -> None:
        """Before system-shutdown: each XEP-0198 client with stanzas it has not acknowledged
        is asked for its count (<r/>, §4), and the stop waits for the answers, at most
        ``ACK_WAIT``; meanwhile what is routed to these sessions is kept for offline storage,
        not written (``C2S.hold_for_stop``). What a client acknowledges is done with; the
        rest is stored offline when its session ends (or goes to its other resources) and
        reaches it at its next login. Without the question, everything written in the last
        round trip before the stop (with a phone's latency, several messages) came twice."""
        waiting = []
        for session in list(self.sessions):
            if isinstance(session, C2S):
                count = session.hold_for_stop()
                if count is not None:
                    waiting.append((session, count))
        deadline = time.monotonic() + ACK_WAIT
        while waiting and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
            waiting = [(session, count) for session, count in waiting
                       if not session.acknowledged(count)]
        if waiting:
            log.info("stop_unacknowledged sessions=%d", len(waiting))

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait for spawned work (offline storage, IQ handlers) to finish."""
        deadline = time.monotonic() + timeout
        while self._tasks and time.monotonic() < deadline:
            await asyncio.wait(list(self._tasks), timeout=deadline - time.monotonic())
        for task in list(self._tasks):
            # Still waiting after ``timeout``: the shutdown goes on without it, and the log
            # says where it waits (a stop that takes long is otherwise a mystery).
            log.warning("drain_task_pending task=%s awaiting=%s", task.get_name(),
                        " <- ".join(awaiting(task.get_coro())))

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def spawn_eager(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any] | None:
        """``spawn``, but run at once up to the first real suspension; only the rest (if the
        coroutine waits for something) becomes a task (suricate/core/eager.py), returned
        (None: the coroutine is over). Its failure is logged as a task's would be."""
        try:
            yielded = coro.send(None)
        except StopIteration:
            return None
        except Exception:
            log.exception("task_failed")
            return None
        return self.spawn(finish(coro, yielded))

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task_failed", exc_info=task.exception())

    # -- facts used by the rest -------------------------------------------------------------
    def is_local_domain(self, domain: str) -> bool:
        return domain in self.domains.served

    def request_stop(self) -> None:
        """Ask ``suricate serve`` to shut down (GraphQL ``server.stop``), as SIGTERM does."""
        if self.stop_requested is not None:
            self.stop_requested.set()

    # -- administration (suricate.admin) --------------------------------------------------
    def kick_session(self, jid: JID, reason: str, condition: str = "policy-violation") -> bool:
        """End the session of a full JID with a stream error that carries ``reason``."""
        session = self.sessions.lookup(jid)
        if session is None:
            return False
        replaced = getattr(session, "replaced", None)
        if condition == "conflict" and replaced is not None:
            # Replaced by a session elsewhere (max_user_sessions): also a session waiting
            # for its resumption (XEP-0198) ends now, its stanzas go back to the router.
            replaced()
            return True
        # A client's stream, or a GraphQL SSE subscription of the account (admin/sse.py).
        session.stream_error(StreamError(condition, reason or "kicked"))
        return True

    async def end_account_sessions(self, bare: JID, condition: str, reason: str,
                                   spare: JID | None = None) -> int:
        """End every session of the account ``bare`` but ``spare``, on every node of a cluster
        (sm_backend = "redis": the others through the owning node, ``ClusterBackend.kick``),
        each with the stream error ``condition`` and ``reason``, once; how many ended."""
        ended = 0
        for session in list(self.sessions.resources(bare)):
            # Client streams and the account's GraphQL SSE subscriptions alike.
            if session.jid != spare:
                session.stream_error(StreamError(condition, reason or "kicked"))
                ended += 1
        backend = self.cluster.backend
        if backend is not None:
            # The other nodes' sessions of the account (this node's ended above).
            for info in await backend.user_sessions(bare):
                full = JID.parse(info["user"])
                if info.get("node") != backend.node and full != spare:
                    ended += await backend.kick(full, reason, condition)
        return ended

    async def password_changed(self, bare: JID, by: JID | None) -> None:
        """The account's password changed: its sessions opened with the old one end, but for
        ``by``, the session that changed it in band (XEP-0077 §3.3). What Prosody does
        (mod_c2s, "user-password-changed"), and what someone changing a password that may
        have leaked expects: a device that knew the old one is logged out. The condition is
        'reset' (RFC 6120 §4.9.3.19: the credentials of the stream were revoked), as
        Prosody's; clients log in again, and ask for the new password if they lack it.
        (MongooseIM 6.4 and ejabberd leave the sessions open; docs/auth.md.)"""
        await self.end_account_sessions(bare, "reset", "password changed", spare=by)

    async def account_removed(self, bare: JID, by: JID | None) -> None:
        """The account is gone: its sessions end on every node with 'not-authorized'
        (XEP-0077 §3.2), but for ``by``, the session that asked in band: mod_register ends
        it once its answer is written."""
        await self.end_account_sessions(bare, "not-authorized", "account removed", spare=by)

    def _domain_changed(self, domain: str, now: Domain | None) -> None:
        self.instrument.labels_changed()
        self.access.set_hosts(self.domains.served)
        if now is None or not now.enabled:
            # A removed or disabled domain serves nobody: its sessions end now.
            text = "domain removed" if now is None else "domain disabled"
            for session in list(self.sessions):
                if isinstance(session, C2S) and session.jid.domain == domain:
                    session.stream_error(StreamError("host-unknown", text))

    def _service_domain_taken(self, name: str) -> str | None:
        service = self.components.lookup(name)
        if service is None:
            return None
        if not isinstance(service, LocalService):
            return "a connected component's domain"
        parent = self.components.parent_domain(name)
        return f"a module's service domain (of {parent})" if parent else \
            "a module's service domain"

    async def _domains_changed_here(self) -> None:
        """A domain was added, removed, enabled or disabled on this node: the other nodes
        re-read the table now, so a new domain is served (and a removed one ends its
        sessions) on every node when the operation returns, not at their next refresh."""
        for node in await self.cluster.ask_others(DOMAINS_REFRESH_OP):
            log.warning("domains_refresh_unreachable node=%s", node)  # it refreshes later

    async def _refresh_domains(self) -> bool:
        await self.domains.load()
        return True

    def module_for(self, name: str, domain: str) -> Module | None:
        """The instance of module ``name`` serving ``domain`` (its ``[[host_config]]`` may
        enable it with other options, or not at all: then None)."""
        for module in self.module_instances:
            if module.name == name and module.host_types is None:
                return module
        host_type = self.domains.host_type(domain)
        for module in self.module_instances:
            if module.name == name and module.host_types is not None \
                    and host_type in module.host_types:
                return module
        return None

    async def open_module_store(self, name: str, store_class: type[ModuleStore]) -> ModuleStore:
        store = self.module_stores.get(name)
        if store is None:
            store = self.module_stores[name] = await open_module_store(
                self.storage, name, store_class)
        return store

    async def open_module_stores(self) -> None:
        """The stores of the configured modules without starting them: what account commands
        of the CLI need so that removing an account removes the modules' data too."""
        for plan in module_plans(self.cfg, self.module_registry, self.domains.host_types,
                                 self.base_dir):
            store_class = self.module_registry[plan.name].store_class
            if store_class is not None:
                await self.open_module_store(plan.name, store_class)

    def module_user_tables(self) -> tuple[str, ...]:
        """The account-keyed tables of the open module stores (removed with an account)."""
        return tuple(t for store in self.module_stores.values() for t in store.user_tables)

    async def _erase_domain_batches(self, domain: str, host_type: str) -> None:
        """What the modules keep for a removed domain beyond its accounts' rows (the
        ``remove_domain`` hook: its services' rooms...), then its rows of the stores with a
        ``delete_domain_limit``, in batches."""
        await self.hooks.fold_async(H.REMOVE_DOMAIN, None, host_type, domain)
        for name, store in self.module_stores.items():
            erased = await store.delete_domain_batches(domain)
            if erased:
                log.info("domain_rows_erased domain=%s store=%s rows=%d", domain, name, erased)

    async def _user_registered(self, jid: JID) -> None:
        await self.hooks.fold_async(H.REGISTER_USER, None, jid)

    async def _user_removing(self, jid: JID) -> list[H.AfterRemoval]:
        after: list[H.AfterRemoval] = await self.hooks.fold_async(H.REMOVING_USER, [], jid)
        return after

    async def _user_removed(self, jid: JID) -> None:
        await self.hooks.fold_async(H.REMOVE_USER, None, jid)
        # Stores opened without their module (the CLI's account commands): their rows naming
        # the account go too (a running module's REMOVE_USER handler erased them).
        for name, store in self.module_stores.items():
            if name not in self.modules:
                await store.remove_account(str(jid.bare))

    async def user_exists(self, jid: JID) -> bool:
        if jid.local is None or not self.is_local_domain(jid.domain):
            return False
        cache = self.user_cache
        if cache is None:
            return await self.auth.user_exists(jid)
        # mod_cache_users: accounts found are remembered (never a "no": an account
        # registered a moment ago must not be refused).
        key = str(jid.bare)
        if key in cache:
            return True
        exists = await self.auth.user_exists(jid)
        if exists:
            cache.add(key)
        return exists

    def access_allows(self, rule: str, user: JID, domain: str | None = None) -> bool:
        """Access rule ``rule`` for ``user``, checked for ``domain`` (the current domain of
        ``match = "current_domain"``, whose [[host_config]] rules apply): by default the
        user's own; a service checks its own host's, as 6.4's acl:match_rule(HostType,
        ServerHost, ...) does, so that "local" there means that domain's users."""
        return self.access.allows(rule, user.local, user.domain, user.resource,
                                  domain or user.domain)

    def max_user_sessions(self, user: JID) -> int | None:
        value = self.access.evaluate("max_user_sessions", user.local, user.domain, None,
                                     user.domain, default="infinity")
        return value if isinstance(value, int) else None

    def undeliverable(self, stanza: Element, session: Any, sent_at: float | None = None,
                      heir: Any = None) -> None:
        """A stanza reached a session that is going away: deliver it elsewhere or store it
        (a message the server accepted is never dropped silently). ``sent_at``: when it
        reached the session (XEP-0198: when it went into the unacknowledged buffer); now
        when not given. ``heir``: the new session of the same full JID that replaces it
        (``EstablishedSession.replaced_by``), which takes its chat and normal messages."""
        if stanza.name == "message":
            to = session.jid.bare if session.jid is not None else None
            if heir is not None and to is not None \
                    and message_type(stanza) in ("chat", "normal"):
                # Its other resources that came since get their copy of one to the bare JID.
                self._others_had_it(stanza, session, to, sent_at, heir)
                heir.inherit(stanza)
                return
            if to is not None:
                if self._others_had_it(stanza, session, to, sent_at):
                    return
                frm = JID.parse(stanza.attrs["from"]) if stanza.attrs.get("from") else to
                self.router.route(frm, to, stanza)
        elif stanza.name == "iq" and stanza.attrs.get("type") in ("get", "set"):
            self.router.bounce(stanza, StanzaError("service-unavailable"))

    def _others_had_it(self, stanza: Element, session: Any, bare: JID,
                       sent_at: float | None, heir: Any = None) -> bool:
        """A message to the bare JID went to every available resource of non-negative
        priority (RFC 6121 §8.5.2.1.1), ``session`` one of them. Those that were there then
        have it: routing it to the bare JID again would give them a second copy (a phone's
        unresumed session, XEP-0198 §5, handing back what it held). Only resources that came
        since get it now; with none left at all, it is routed (offline storage). False when
        it is not such a message (the caller routes it).

        With other nodes (``sm_backend = "redis"``) their resources count too: the session
        table says which nodes hold one (a Redis read, hence a task), and each gives the
        message to its own resources that came since (``MISSED_TOPIC``); with none anywhere,
        it is routed (offline storage).

        ``heir`` (the session replacing ``session``, which takes the message anyway) gets no
        copy here, and with no other resource anywhere the message is not routed at all."""
        addressed = stanza.attrs.get("to")
        if not addressed or "/" in addressed \
                or message_type(stanza) not in ("chat", "normal"):
            # An error to the bare JID went to one resource only, a headline may have (a
            # PEP last item): routed again as before.
            return False
        when = time.time() if sent_at is None else sent_at
        others = [s for s in self.sessions.available(bare)
                  if s is not session and s is not heir and s.priority >= 0]
        if self.cluster.spans_nodes:
            self.spawn(self._others_on_nodes_had_it(stanza, bare, when, others,
                                                    taken=heir is not None))
            return True
        if not others:
            return False
        _came_since(others, stanza, when)
        return True

    async def _others_on_nodes_had_it(self, stanza: Element, bare: JID, when: float,
                                      others: list[Any], taken: bool = False) -> None:
        nodes = await self.cluster.nodes_of(bare, reached=True)
        if not others and not nodes:
            if taken:
                return  # the session that replaced the one going away has it
            frm = JID.parse(stanza.attrs["from"]) if stanza.attrs.get("from") else bare
            self.router.route(frm, bare, stanza)
            return
        _came_since(others, stanza, when)
        if nodes:
            # Listed nodes that find no resource store it (``_missed_here``); with the
            # message taken by an heir, none is listed: it is not lost, and stored it would
            # come twice.
            self.cluster.cast(bare, MISSED_TOPIC, stanza, repr(when),
                              *([] if taken else sorted(nodes)))

    def _missed_here(self, bare: JID, stanza: Element, args: tuple[str, ...]) -> None:
        """``MISSED_TOPIC``: the account's resources here that came since the message reached
        the unresumed session of another node get it. A node the session table showed with
        a resource that has none now routes it here (RFC 6121 §8.5.2: offline storage): the
        resource may have come and gone since, and a message shown twice beats one lost."""
        when = float(args[0])
        others = [s for s in self.sessions.available(bare) if s.priority >= 0]
        if others:
            _came_since(others, stanza, when)
        elif self.cluster.node in args[1:]:
            frm = JID.parse(stanza.attrs["from"]) if stanza.attrs.get("from") else bare
            self.router.route_here(frm, bare, stanza)

    # -- events (suricate.instrument; handlers come with [instrumentation]) -----------------
    def sm_session_opened(self, session: Any) -> None:
        self.counters["sessions_opened"] += 1
        self.instrument.sm_session(session.jid.domain, logins=1)

    def sm_session_closed(self, session: Any, reason: str) -> None:
        self.counters["sessions_closed"] += 1
        self.instrument.sm_session(session.jid.domain, logouts=1)

    @property
    def fake_salt_secret(self) -> bytes:
        """The secret the fake SCRAM salts of unknown users derive from (RFC 5802 §5.1). It
        must not change where a real account's salt does not: a salt that differs between
        two nodes behind one name, or before and after a restart, tells that the name has
        no account. The nodes of a cluster derive it from the cluster cookie; a single node
        from its c2s private key (the same after a restart, and on every machine serving
        the certificate); without a TLS listener, a secret drawn at start."""
        cookie = self.cluster_cookie
        if cookie is not None:
            return hmac.new(cookie, b"suricate scram fake salt", hashlib.sha256).digest()
        if self._own_fake_salt_secret is None:
            self._own_fake_salt_secret = self._secret_from_private_key() or secrets.token_bytes(32)
        return self._own_fake_salt_secret

    def _secret_from_private_key(self) -> bytes | None:
        for opts in self.cfg["listen"].get("c2s", []):
            tls = opts.get("tls") or {}
            keyfile = tls.get("keyfile") or tls.get("certfile")
            if keyfile:
                try:
                    key = Path(self.base_dir, keyfile).read_bytes()
                except OSError:
                    continue
                return hmac.new(hashlib.sha256(key).digest(), b"suricate scram fake salt",
                                hashlib.sha256).digest()
        return None

    def reload_certificates(self) -> int:
        """Read every TLS listener's certificate, key, CA and CRL files again, and the s2s
        client certificate (SIGHUP, ``suricate serve``): a renewed certificate serves the next
        handshakes, without a restart; established connections keep theirs. A listener whose
        files cannot be used keeps its certificate and is logged. Returns how many failed."""
        from suricate.net.tls import TLSError

        targets: list[tuple[str, Any, Callable[[], Any]]] = [
            (lst.kind, lst.port, lst.tls.reload) for lst in self.listeners
            if lst.tls is not None]
        targets += [("http", http.port, http.reload_tls) for http in self.http_listeners]
        if self._s2s is not None and self._s2s.tls_client.has_certificate:
            targets.append(("s2s_out", "-", self._s2s.tls_client.reload))
        failed = reloaded = 0
        for kind, port, reload in targets:
            try:
                if reload() is not False:
                    reloaded += 1
            except TLSError as exc:
                failed += 1
                log.error("tls_reload_failed kind=%s port=%s reason=%s (the certificate "
                          "in use stays)", kind, port, exc)
        log.info("tls_reloaded reloaded=%d failed=%d", reloaded, failed)
        return failed

    def metrics_auth_failed(self, session: Any) -> None:
        self.counters["c2s_auth_failed"] += 1
        self.instrument.auth_failed("c2s", session.domain or "")


# The cast of a bare-JID message an unresumed session handed back (XEP-0198 §5) to the
# account's other nodes; arguments: when it reached that session (Unix time), then the nodes
# the session table showed with a resource it reaches.
MISSED_TOPIC = "c2s.bare_message_missed"


def _came_since(sessions: list[Any], stanza: Element, when: float) -> None:
    """A copy of ``stanza`` to each of ``sessions`` that started after ``when``."""
    for other in sessions:
        # A session without a start (a GraphQL SSE subscription) was there all along.
        if getattr(other, "started_at", 0.0) > when:
            other.deliver(stanza.copy())


def _s2s_configured(cfg: Mapping[str, Any]) -> bool:
    """Whether ``[s2s]`` says more than its defaults (then S2SService is made at start, so a
    bad certificate or CA file is reported there, not at the first remote stanza)."""
    out = cfg["outgoing"]
    return bool(cfg.get("shared") or cfg.get("host_policy") or out.get("tls")
                or out.get("address"))
