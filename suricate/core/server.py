"""The Server object: it owns everything (DESIGN §2.7 — no module-level mutable state).

Start-up order: storage (migrations), modules, listeners. Shutdown reverses it: stop accepting,
end every stream with ``system-shutdown`` (after which messages still in flight are stored
offline by the normal delivery rules), wait for pending work, stop modules, close storage.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from suricate.auth.service import AuthService
from suricate.core.acl import AccessControl
from suricate.core.c2s import C2S
from suricate.core.hooks import Hooks
from suricate.core.iq import IqDispatcher
from suricate.core.module import Module, load_order
from suricate.core.router import Router
from suricate.core.sessions import SessionTable
from suricate.instrument import Instrumentation
from suricate.jid import JID
from suricate.net.listener import Listener
from suricate.net.tls import CertKey, TLSConfig
from suricate.protocol.errors import StanzaError, StreamError
from suricate.storage import Storage, create_storage
from suricate.xml.element import Element

if TYPE_CHECKING:
    from suricate.net.connection import Connection

log = logging.getLogger("suricate.server")


class Server:
    def __init__(self, cfg: Mapping[str, Any], base_dir: Path,
                 module_registry: Mapping[str, type[Module]],
                 sni_certs: Mapping[str, CertKey] | None = None) -> None:
        self.cfg = cfg
        self.base_dir = base_dir
        general = cfg["general"]
        self.hosts: frozenset[str] = frozenset(h.lower() for h in general["hosts"])
        self.default_domain: str = general["default_server_domain"]
        self.hooks = Hooks()
        self.instrument = Instrumentation()
        self.sessions = SessionTable()
        self.iq = IqDispatcher(self)
        self.router = Router(self)
        self.access = AccessControl(cfg["acl"], cfg["access"], sorted(self.hosts))
        self.storage: Storage = create_storage(self._rdbms_connection(), base_dir)
        self.auth = AuthService(self)
        self.module_registry = module_registry
        self.modules: dict[str, Module] = {}
        self.listeners: list[Listener] = []
        self._sni_certs = dict(sni_certs or {})
        self._tasks: set[asyncio.Task[Any]] = set()
        self.started_at = time.time()
        self.stopping = False
        self.counters: dict[str, int] = {
            "sessions_opened": 0, "sessions_closed": 0, "c2s_auth_failed": 0,
        }

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
        await self.storage.open()
        await self._start_modules()
        for opts in self.cfg["listen"].get("c2s", []):
            tls = self._tls_config(opts.get("tls"), alpn=[b"xmpp-client"])
            listener = Listener("c2s", opts, self._c2s_factory(opts, tls), tls, self.instrument)
            await listener.start()
            self.listeners.append(listener)
        for kind in ("s2s", "component", "http"):
            for opts in self.cfg["listen"].get(kind, []):
                log.warning("listener_not_available kind=%s port=%s: accepted by the "
                            "configuration, served by a later version", kind, opts.get("port"))
        self.started_at = time.time()
        log.info("server_started hosts=%s", ",".join(sorted(self.hosts)))

    def _tls_config(self, opts: Mapping[str, Any] | None, alpn: list[bytes]) -> TLSConfig | None:
        if not opts or not opts.get("certfile"):
            return None
        return TLSConfig(opts, alpn=alpn, certs_by_name=self._sni_certs)

    def _c2s_factory(self, opts: Mapping[str, Any], tls: TLSConfig | None) -> Any:
        def factory(conn: Connection) -> C2S:
            return C2S(self, conn, opts, tls)
        return factory

    async def _start_modules(self) -> None:
        selected = self.cfg.get("modules", {})
        for name in load_order(selected, self.module_registry):
            cls = self.module_registry[name]
            module = cls(self, selected.get(name, {}))
            module.wire()
            await module.start()
            self.modules[name] = module
            log.debug("module_started name=%s", name)

    async def stop(self) -> None:
        """Graceful shutdown: nothing accepted is lost."""
        if self.stopping:
            return
        self.stopping = True
        for listener in self.listeners:
            listener.stop_accepting()
        for session in list(self.sessions):
            if isinstance(session, C2S):
                session.stream_error(StreamError("system-shutdown"))
        for listener in self.listeners:
            for conn in list(listener.connections):
                handler = conn.handler
                if isinstance(handler, C2S):
                    handler.stream_error(StreamError("system-shutdown"))
        await self.drain()
        for name in reversed(list(self.modules)):
            module = self.modules.pop(name)
            await module.stop()
            module.unwire()
        await self.drain()
        await self.storage.close()
        log.info("server_stopped")

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait for spawned work (offline storage, IQ handlers) to finish."""
        deadline = time.monotonic() + timeout
        while self._tasks and time.monotonic() < deadline:
            await asyncio.wait(list(self._tasks), timeout=deadline - time.monotonic())

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task_failed", exc_info=task.exception())

    # -- facts used by the rest -------------------------------------------------------------
    def is_local_domain(self, domain: str) -> bool:
        return domain in self.hosts

    async def user_exists(self, jid: JID) -> bool:
        if jid.local is None or not self.is_local_domain(jid.domain):
            return False
        return await self.auth.user_exists(jid)

    def access_allows(self, rule: str, user: JID) -> bool:
        if rule == "all":
            return True
        value = self.access.evaluate(rule, user.local, user.domain, user.resource, user.domain)
        return value == "allow"

    def max_user_sessions(self, user: JID) -> int | None:
        value = self.access.evaluate("max_user_sessions", user.local, user.domain, None,
                                     user.domain, default="infinity")
        return value if isinstance(value, int) else None

    def undeliverable(self, stanza: Element, session: Any) -> None:
        """A stanza reached a session that is going away: deliver it elsewhere or store it
        (a message the server accepted is never dropped silently)."""
        if stanza.name == "message":
            to = session.jid.bare if session.jid is not None else None
            if to is not None:
                frm = JID.parse(stanza.attrs["from"]) if stanza.attrs.get("from") else to
                self.router.route(frm, to, stanza)
        elif stanza.name == "iq" and stanza.attrs.get("type") in ("get", "set"):
            self.router.bounce(stanza, StanzaError("service-unavailable"))

    # -- events (suricate.instrument; handlers come with [instrumentation]) -----------------
    def sm_session_opened(self, session: Any) -> None:
        self.counters["sessions_opened"] += 1
        self.instrument.sm_session(session.jid.domain, logins=1)

    def sm_session_closed(self, session: Any, reason: str) -> None:
        self.counters["sessions_closed"] += 1
        self.instrument.sm_session(session.jid.domain, logouts=1)

    def metrics_auth_failed(self, session: Any) -> None:
        self.counters["c2s_auth_failed"] += 1
        self.instrument.auth_failed("c2s", session.domain or "")
