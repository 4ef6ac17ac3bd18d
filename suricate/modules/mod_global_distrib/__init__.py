"""mod_global_distrib: one XMPP domain (``global_host``) served by several data centres, each
a Suricate service of its own (one node, or a cluster with ``sm_backend = "redis"``), as in
MongooseIM 6.4 (docs/global_distrib.md).

- A global Redis (``redis.pool``) maps each connected full and bare JID of ``global_host`` to
  the ``local_host`` of the data centre holding it, and each data centre's service domains
  (``muc.example.com``) and endpoints (mapping.py).
- The router consults this module only where it would otherwise store a stanza offline,
  bounce it or try federation (``Router.beyond``): a recipient with a session in the local
  cluster is routed exactly as without the module.
- A stanza for a JID mapped elsewhere travels with its TTL (``message_ttl``) over a dedicated
  connection (connections.py) and is routed there as a local stanza; when its TTL is spent it
  is routed where it is (RFC 6121 §8: offline storage or an error), never forwarded again.
- Bounce: a stanza that reached a data centre its recipient just left is routed again after
  ``bounce.resend_after_ms``, the mapping read afresh, up to ``bounce.max_retries`` times,
  then by RFC 6121 §8 there. Never dropped silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
import uuid
from collections.abc import Coroutine, Mapping
from typing import TYPE_CHECKING, Any

from suricate.config.pool_tls import pool_client_context
from suricate.config.schema import outgoing_tls
from suricate.config.spec import (
    DEFAULTS,
    OMIT,
    Bool,
    Context,
    Int,
    ListOf,
    Option,
    Section,
    Spec,
    Str,
    join,
)
from suricate.core import hooks as H
from suricate.core.module import Module
from suricate.jid import JID
from suricate.modules.mod_global_distrib import metrics as M
from suricate.modules.mod_global_distrib.connections import Connections, Item
from suricate.modules.mod_global_distrib.mapping import JidCache
from suricate.modules.mod_global_distrib.mapping import Mapping as GlobalMapping
from suricate.protocol.errors import StanzaError
from suricate.xml import ns
from suricate.xml.element import Element
from suricate.xml.parser import parse_fragment

if TYPE_CHECKING:
    from suricate.config.loader import References
    from suricate.core.c2s import C2S
    from suricate.core.server import Server
    from suricate.instrument.events import EventSpec

log = logging.getLogger("suricate.mod_global_distrib")

#: How long a stanza keeps the TTL it came with (or its "route it here" mark) while the
#: router passes it around this node; far above any routing's duration.
MARK_FOR = 60.0
_STANZAS = frozenset({"message", "presence", "iq"})


def _endpoint() -> Section:
    return Section({
        "host": Option(Str(), doc="IP address or host name."),
        "port": Option(Int(min=0, max=65535), doc="TCP port (0: any free port)."),
    })


class _FalseOrEndpoints(Spec):
    """``advertised_endpoints``: an array of {host, port}, or ``false`` (6.4's default: the
    bound ``endpoints`` are advertised)."""

    def __init__(self) -> None:
        self.items = ListOf(_endpoint())

    def normalize(self, value: Any, path: str, ctx: Context) -> Any:
        if value is False:
            return False
        return self.items.normalize(value, path, ctx)

    def describe(self) -> str:
        return "false, or an array of tables {host, port}"


def _tls_post(out: dict[str, Any], raw: Mapping[str, Any], path: str, ctx: Context) -> None:
    # Each node listens too: its certificate is presented to the other data centres.
    if out.get("certfile") is None:
        ctx.error(join(path, "certfile"), "required: the endpoints present this certificate "
                  "to the other data centres' connections")


def _tls() -> Section:
    section = outgoing_tls(with_mode=False)
    post = section.post

    def both(out: dict[str, Any], raw: Mapping[str, Any], path: str, ctx: Context) -> None:
        if post is not None:
            post(out, raw, path, ctx)
        _tls_post(out, raw, path, ctx)
    return Section(section.options, doc="TLS of the connections between data centres (both "
                   "ways: the listener presents certfile and asks the connecting side for a "
                   "certificate issued by cacertfile). Absent: plain TCP.", post=both)


class ModGlobalDistrib(Module):
    name = "mod_global_distrib"
    options = Section(
        {
            "global_host": Option(Str(), doc="The XMPP domain shared by the data centres "
                                  "(one of general.hosts)."),
            "local_host": Option(Str(), doc="A domain naming this data centre uniquely (one "
                                 "of general.hosts), used for routing between them."),
            "message_ttl": Option(Int(min=0), 4, "How many times a stanza may be forwarded "
                                  "between data centres."),
            "hosts_refresh_interval": Option(
                Int(min=0, unit="milliseconds"), 3000,
                "How often the other data centres' service domains are read from Redis."),
            "connections": Option(Section({
                "endpoints": Option(ListOf(_endpoint()), [{"host": "127.0.0.1", "port": 5555}],
                                    "Where this node listens for the other data centres.",
                                    default_doc='[{host = "127.0.0.1", port = 5555}]'),
                "advertised_endpoints": Option(
                    _FalseOrEndpoints(), False,
                    "What is advertised in Redis for the others to connect to; false: the "
                    "bound endpoints."),
                "connections_per_endpoint": Option(
                    Int(min=0), 1, "Connections opened to each endpoint of another data "
                    "centre (a sender's stanzas always take the same one)."),
                "endpoint_refresh_interval": Option(
                    Int(min=1, unit="seconds"), 60,
                    "How long another data centre's endpoint list is used before it is read "
                    "again."),
                "endpoint_refresh_interval_when_empty": Option(
                    Int(min=1, unit="seconds"), 3,
                    "The same, while that list is empty."),
                "disabled_gc_interval": Option(
                    Int(min=0, unit="seconds"), 60,
                    "How often connections to endpoints no longer advertised are closed."),
                "tls": Option(_tls(), OMIT, "TLS between data centres."),
            }), DEFAULTS, "The connections between data centres."),
            "redis": Option(Section({
                "pool": Option(Str(), "global_distrib",
                               "The [outgoing_pools.redis.<pool>] of the global mapping."),
                "expire_after": Option(Int(min=1, unit="seconds"), 120,
                                       "Time to live of what this data centre writes."),
                "refresh_after": Option(Int(min=1, unit="seconds"), 60,
                                        "How often it is written again."),
            }), DEFAULTS, "The global session table."),
            "cache": Option(Section({
                "cache_missed": Option(Bool(), True, "Cache look-ups that found nothing too."),
                "domain_lifetime_seconds": Option(
                    Int(min=0, unit="seconds"), 600,
                    "How long the other data centres' service domains stay known when Redis "
                    "cannot be read."),
                "jid_lifetime_seconds": Option(Int(min=0, unit="seconds"), 5,
                                               "How long a JID's mapping is cached."),
                "max_jids": Option(Int(min=0), 10000, "JID mappings cached at most."),
            }), DEFAULTS, "The cache of the global session table on each node."),
            "bounce": Option(Section({
                "enabled": Option(Bool(), True, "Route again a stanza that reached a data "
                                  "centre its recipient just left."),
                "resend_after_ms": Option(Int(min=0, unit="milliseconds"), 200,
                                          "Wait before each new attempt."),
                "max_retries": Option(Int(min=0), 4, "Attempts before RFC 6121 §8 here."),
            }), DEFAULTS, "Stanzas for a recipient who moved."),
        },
        doc="Several data centres serving one XMPP domain (docs/global_distrib.md).",
    )
    hooks = (
        (H.SESSION_OPENED, "_opened", 60),
        (H.SESSION_CLOSED, "_closed", 60),
    )

    @classmethod
    def check_config(cls, opts: Mapping[str, Any], path: str, refs: References) -> None:
        # Runs on the raw table too when it was refused: nothing here may assume a type.
        hosts = refs.general.get("hosts") or []
        for key in ("global_host", "local_host"):
            value = opts.get(key)
            if isinstance(value, str) and value not in hosts:
                refs.report.error(join(path, key), f"'{value}' is not one of general.hosts")
        if isinstance(opts.get("global_host"), str) and \
                opts.get("global_host") == opts.get("local_host"):
            refs.report.error(join(path, "local_host"), "must differ from global_host")
        redis = opts.get("redis")
        pool = redis.get("pool", "global_distrib") if isinstance(redis, dict) \
            else "global_distrib"
        refs.pool_defined(join(path, "redis.pool"), "redis", pool)

    def __init__(self, server: Server, opts: Mapping[str, Any]) -> None:
        super().__init__(server, opts)
        self.global_host: str = opts["global_host"]
        self.local_host: str = opts["local_host"]
        self.message_ttl = int(opts["message_ttl"])
        conns, cache, bounce = opts["connections"], opts["cache"], opts["bounce"]
        self.cache = JidCache(cache["jid_lifetime_seconds"], cache["max_jids"],
                              cache["cache_missed"])
        self.bounce_enabled = bool(bounce["enabled"])
        self.resend_after = bounce["resend_after_ms"] / 1000
        self.max_retries = int(bounce["max_retries"])
        self.node = f"{uuid.uuid4().hex[:12]}"
        self.mapping: GlobalMapping | None = None
        self.connections: Connections | None = None
        self.advertised: list[str] = []
        #: Service domain -> local_host of the data centre serving it.
        self.domains: dict[str, str] = {}
        self._domains_read = 0.0
        self._endpoints: dict[str, tuple[list[str], float]] = {}
        #: id(stanza) -> [stanza, ttl left (-1: route it here), attempts, until]
        self._marks: dict[int, list[Any]] = {}
        self._writes: asyncio.Queue[tuple[str, list[str]]] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._bouncing = 0
        self._chains: dict[JID, asyncio.Task[Any]] = {}
        self._conns_opts = conns

    # -- start and stop ---------------------------------------------------------------------
    async def start(self) -> None:
        from redis.asyncio import Redis
        from redis.exceptions import RedisError

        pool = self.server.cfg["outgoing_pools"]["redis"][self.opts["redis"]["pool"]]
        conn = pool["connection"]
        redis = Redis(host=conn["host"], port=conn["port"], db=conn["database"],
                      password=conn["password"] or None, socket_connect_timeout=5,
                      max_connections=pool["workers"])
        self.mapping = GlobalMapping(redis, self.local_host, self.node,
                                     self.opts["redis"]["expire_after"])
        server_ctx, client_ctx = _tls_contexts(self._conns_opts.get("tls"))
        self.connections = Connections(
            self.local_host, self._conns_opts["connections_per_endpoint"], server_ctx,
            client_ctx, self._received, self._lost, self._endpoints_of, self._emit)
        bound = await self.connections.listen(
            [(e["host"], e["port"]) for e in self._conns_opts["endpoints"]])
        advertised = self._conns_opts["advertised_endpoints"]
        self.advertised = (bound if advertised is False
                           else [f"{e['host']}:{e['port']}" for e in advertised])
        self._writes = asyncio.Queue()
        try:
            await self._advertise()
        except RedisError as exc:
            # Not serving clients it cannot map (as sm_backend = "redis" refuses to start);
            # an OSError is what `suricate serve` reports in one line.
            await self.connections.close()
            await redis.aclose()
            raise OSError(f"mod_global_distrib's Redis (outgoing_pools.redis."
                          f"{self.opts['redis']['pool']}): {exc}") from None
        await self._read_domains()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._writer()), loop.create_task(self._refresher()),
                       loop.create_task(self._domain_reader()),
                       loop.create_task(self._collector())]
        # The series without a label exist at zero from the start (those per other data
        # centre appear with its first connection).
        for event in (M.MAPPING_FETCHES, M.MAPPING_CACHE_MISSES, M.DELIVERED_WITH_TTL,
                      M.STOP_TTL_ZERO, M.INCOMING_ESTABLISHED):
            self.server.instrument.set_up(event, {})
        self._emit(M.BOUNCE_QUEUE, {}, {"size": 0})
        self.server.router.beyond = self

    async def stop(self) -> None:
        if self.server.router.beyond is self:
            self.server.router.beyond = None
        if self._writes is not None:
            # The entries of sessions that closed during the stop are deleted first.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._writes.join(), 2)
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        if self.connections is not None:
            await self.connections.close()
        if self.mapping is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.mapping.withdraw(), 2)
            with contextlib.suppress(Exception):
                await self.mapping.redis.aclose()

    def _emit(self, event: EventSpec, labels: dict[str, str],
              measurements: Mapping[str, float] | None = None) -> None:
        self.server.instrument.emit(event, labels, measurements or {"count": 1})

    # -- what this data centre writes -----------------------------------------------------------
    def _opened(self, acc: Any, c2s: C2S) -> Any:
        jid = c2s.jid
        if jid.domain == self.global_host and self._writes is not None:
            full, bare = str(jid), str(jid.bare)
            self.cache.put(full, self.local_host)
            self.cache.put(bare, self.local_host)
            self._writes.put_nowait(("put", [full, bare]))
        return acc

    def _closed(self, acc: Any, c2s: C2S, reason: str) -> Any:
        jid = c2s.jid
        if jid is None or jid.domain != self.global_host or self._writes is None:
            return acc
        full, bare = str(jid), str(jid.bare)
        self.cache.forget(full)
        gone = [full]
        if not [s for s in self.server.sessions.resources(jid.bare) if s is not c2s]:
            self.cache.forget(bare)
            gone.append(bare)  # if no other node of this data centre has one (_apply)
        self._writes.put_nowait(("del", gone))
        return acc

    async def _writer(self) -> None:
        """One task applies the writes in order: a quick log-in then log-out never leaves the
        log-in's entry behind. A failed write is retried (Redis restarting)."""
        assert self._writes is not None and self.mapping is not None
        while True:
            op, jids = await self._writes.get()
            await self._apply(op, jids)
            self._writes.task_done()

    async def _apply(self, op: str, jids: list[str]) -> None:
        assert self.mapping is not None
        for attempt in range(10):
            try:
                if op == "put":
                    await self.mapping.put_jids(jids)
                else:
                    await self.mapping.delete_jid(jids[0])
                    if len(jids) > 1 and await self._last_here(JID.parse(jids[0])):
                        await self.mapping.delete_jid(jids[1])
                return
            except Exception as exc:  # redis errors of any kind: retried
                log.warning("global_distrib_write_failed op=%s error=%s", op, exc)
                await asyncio.sleep(min(2.0, 0.1 * 2 ** attempt))
        # Given up (Redis away for minutes): the entries expire, or the next refresh
        # (redis.refresh_after) writes what is still true.

    async def _last_here(self, full: JID) -> bool:
        """Whether the account of ``full`` (a session that closed) has no other session in
        this data centre: on this node (it may have logged in again meanwhile) nor on the
        cluster's other nodes (sm_backend = "redis")."""
        if self.server.sessions.resources(full.bare):
            return False
        return await self.server.sessions.count_elsewhere(full) == 0

    def _local_jids(self) -> list[str]:
        jids: set[str] = set()
        for session in self.server.sessions:
            jid = session.jid
            if jid.domain == self.global_host:
                jids.add(str(jid))
                jids.add(str(jid.bare))
        return sorted(jids)

    def _service_domains(self) -> list[str]:
        suffix = "." + self.global_host
        return sorted({d for c in self.server.components for d in c.domains
                       if d.endswith(suffix)})

    async def _advertise(self) -> None:
        assert self.mapping is not None
        await self.mapping.advertise(self.advertised, self._service_domains())

    async def _refresher(self) -> None:
        """``redis.refresh_after``: everything this node wrote is written again before it
        expires (``expire_after``), so a data centre that died disappears by itself."""
        assert self._writes is not None
        while True:
            await asyncio.sleep(self.opts["redis"]["refresh_after"])
            try:
                await self._advertise()
            except Exception as exc:
                log.warning("global_distrib_refresh_failed error=%s", exc)
            jids = self._local_jids()
            for i in range(0, len(jids), 500):
                self._writes.put_nowait(("put", jids[i:i + 500]))

    async def _read_domains(self) -> None:
        assert self.mapping is not None
        try:
            self.domains = await self.mapping.domains()
            self._domains_read = time.monotonic()
        except Exception as exc:
            log.warning("global_distrib_hosts_refresh_failed error=%s", exc)
            if time.monotonic() - self._domains_read > \
                    self.opts["cache"]["domain_lifetime_seconds"]:
                self.domains = {}

    async def _domain_reader(self) -> None:
        interval = max(0.05, self.opts["hosts_refresh_interval"] / 1000)
        while True:
            await asyncio.sleep(interval)
            await self._read_domains()
            self._sweep_marks()

    async def _collector(self) -> None:
        interval = self._conns_opts["disabled_gc_interval"]
        if interval <= 0:
            return
        while True:
            await asyncio.sleep(interval)
            if self.connections is not None:
                self.connections.collect()

    async def _endpoints_of(self, host: str) -> list[str]:
        cached = self._endpoints.get(host)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        assert self.mapping is not None
        try:
            endpoints = await self.mapping.endpoints(host)
        except Exception as exc:
            log.warning("global_distrib_endpoints_failed host=%s error=%s", host, exc)
            return cached[0] if cached else []
        every = self._conns_opts["endpoint_refresh_interval" if endpoints
                                 else "endpoint_refresh_interval_when_empty"]
        self._endpoints[host] = (endpoints, now + every)
        return endpoints

    # -- the router's questions (Router.beyond) ---------------------------------------------------
    def _mark(self, stanza: Element) -> list[Any] | None:
        mark = self._marks.get(id(stanza))
        return mark if mark is not None and mark[0] is stanza else None

    def _set_mark(self, stanza: Element, ttl: int, attempts: int) -> None:
        self._marks[id(stanza)] = [stanza, ttl, attempts, time.monotonic() + MARK_FOR]

    def _sweep_marks(self) -> None:
        now = time.monotonic()
        for key in [k for k, m in self._marks.items() if m[3] < now]:
            del self._marks[key]

    def to_full(self, frm: JID, to: JID, stanza: Element) -> bool:
        return self._take(frm, to, stanza)

    def to_bare(self, frm: JID, to: JID, stanza: Element) -> bool:
        return self._take(frm, to, stanza)

    def to_domain(self, frm: JID, to: JID, stanza: Element) -> bool:
        host = self.domains.get(to.domain)
        if host is None:
            return False
        mark = self._mark(stanza)
        ttl = self.message_ttl if mark is None else mark[1]
        if ttl <= 0:
            if ttl == 0:
                self._emit(M.STOP_TTL_ZERO, {})
            return False
        self._in_order(frm, self._to_service(host, frm, to, stanza, ttl))
        return True

    async def _to_service(self, host: str, frm: JID, to: JID, stanza: Element,
                          ttl: int) -> None:
        if not await self._send(host, frm, to, stanza, ttl - 1):
            # RFC 6120 §8.3.3.16: the data centre serving the domain cannot be reached.
            self.server.router.bounce(stanza, StanzaError("remote-server-not-found"))

    def _take(self, frm: JID, to: JID, stanza: Element) -> bool:
        if to.domain != self.global_host or to.local is None:
            return False
        mark = self._mark(stanza)
        if mark is not None:
            ttl, attempts, incoming = mark[1], mark[2], True
            if ttl < 0:
                return False  # handed back: RFC 6121 §8 here
            if ttl == 0:
                # Forwarded as often as message_ttl allows: here it stays (no loop).
                self._emit(M.STOP_TTL_ZERO, {})
                return False
        else:
            ttl, attempts, incoming = self.message_ttl, 0, False
            if ttl <= 0:
                return False
            known, host = self._cached(to)
            if known and host in (None, self.local_host) and stanza.name == "presence":
                # A miss cached (cache.cache_missed): nowhere else. Presence only: presence
                # to offline contacts is what makes the volume, and a message or an IQ
                # must not be stored offline or bounced for jid_lifetime_seconds while its
                # recipient is online in another data centre: those are looked up again.
                # (A presence cached "here" is for another node of this cluster: asked next.)
                self._emit(M.MAPPING_FETCHES, {}, {"count": 1, "time": 0})
                return False
        self._in_order(frm, self._forward(frm, to, stanza, ttl, attempts, incoming))
        return True

    def _in_order(self, frm: JID, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` once the previous forwarding of ``frm``'s stanzas is done: a look-up
        answered late must not let a later stanza of the same sender overtake (RFC 6120
        §10.1). Within a cluster, the sender's stream also waits for it (``Router.hold``)."""
        previous = self._chains.get(frm)

        async def after() -> None:
            if previous is not None and not previous.done():
                await asyncio.wait([previous])
            await work

        task = self.server.spawn(after())
        self._chains[frm] = task
        self.server.router.hold(task)

        def done(t: asyncio.Task[Any]) -> None:
            if self._chains.get(frm) is t:
                del self._chains[frm]
        task.add_done_callback(done)

    def _cached(self, to: JID) -> tuple[bool, str | None]:
        """From the cache alone: the full JID's data centre, else the bare JID's."""
        keys = [str(to), str(to.bare)] if to.resource is not None else [str(to)]
        for key in keys:
            known, host = self.cache.get(key)
            if not known:
                return False, None
            if host is not None:
                return True, host
        return True, None

    async def _lookup(self, to: JID, fresh: bool) -> str | None:
        started = time.perf_counter()
        try:
            if not fresh:
                known, host = self._cached(to)
                # A cached "here" with no session here is stale (the user left): read again;
                # so is a cached miss (see _take).
                if known and host is not None and host != self.local_host:
                    return host
            assert self.mapping is not None
            self._emit(M.MAPPING_CACHE_MISSES, {})
            keys = [str(to), str(to.bare)] if to.resource is not None else [str(to)]
            values = await self.mapping.get_jids(keys)
            for key, value in zip(keys, values, strict=True):
                self.cache.put(key, value)
            return next((v for v in values if v is not None), None)
        finally:
            self._emit(M.MAPPING_FETCHES, {},
                       {"count": 1, "time": int((time.perf_counter() - started) * 1e6)})

    async def _forward(self, frm: JID, to: JID, stanza: Element, ttl: int, attempts: int,
                       incoming: bool) -> None:
        try:
            await self._forward_once(frm, to, stanza, ttl, attempts, incoming)
        except Exception:
            # Our bug: the stanza still gets RFC 6121 §8 here rather than vanishing.
            log.exception("global_distrib_forward_failed to=%s", to)
            self._here(frm, to, stanza)

    async def _forward_once(self, frm: JID, to: JID, stanza: Element, ttl: int,
                            attempts: int, incoming: bool) -> None:
        try:
            host = await self._lookup(to, fresh=attempts > 0)
        except Exception as exc:
            log.warning("global_distrib_lookup_failed to=%s error=%s", to, exc)
            host = None
        if host is not None and host != self.local_host:
            if await self._send(host, frm, to, stanza, ttl - 1):
                return
            # That data centre cannot be reached (it died; its entries live until they
            # expire): RFC 6121 §8 here, e.g. offline storage shared by the data centres.
        elif incoming and self.bounce_enabled and attempts < self.max_retries \
                and not (host == self.local_host and stanza.name == "presence"):
            # (A presence is asked before the cluster's other nodes, Router._to_bare: with
            # its entry naming this data centre, it is for one of them, not a bounce.)
            # It was sent here for a user who is gone (moved to another data centre whose
            # entry may not be written yet): try again later, the mapping read afresh.
            self._bouncing += 1
            self._emit(M.BOUNCE_QUEUE, {}, {"size": self._bouncing})
            try:
                await asyncio.sleep(self.resend_after)
            finally:
                self._bouncing -= 1
                self._emit(M.BOUNCE_QUEUE, {}, {"size": self._bouncing})
            self._set_mark(stanza, ttl, attempts + 1)
            # Routed from the start: the user may be back here meanwhile.
            self.server.router.route(frm, to, stanza)
            return
        self._here(frm, to, stanza)

    def _here(self, frm: JID, to: JID, stanza: Element) -> None:
        """RFC 6121 §8 in this data centre (offline storage, an error), never forwarded."""
        self._set_mark(stanza, -1, 0)
        if stanza.name == "presence":
            # Asked before the cluster's other nodes (Router._to_bare): they come next.
            self.server.router.route(frm, to, stanza)
        else:
            # Asked after them: they have none, so they are not asked again.
            self.server.router.route_here(frm, to, stanza)

    async def _send(self, host: str, frm: JID, to: JID, stanza: Element, ttl: int) -> bool:
        assert self.connections is not None
        item: Item = (str(frm), str(to), stanza.serialize(ns.CLIENT), ttl)
        if await self.connections.send(host, str(frm), item):
            self._emit(M.OUTGOING_MESSAGES, {"host": host})
            return True
        return False

    # -- from the other data centres ------------------------------------------------------------
    def _parse(self, item: Item) -> tuple[JID, JID, Element] | None:
        frm_text, to_text, xml, _ = item
        try:
            frm, to = JID.parse(frm_text), JID.parse(to_text)
            elements = parse_fragment(xml, ns.CLIENT)
        except Exception as exc:  # a malformed item from a peer: logged and left out
            log.warning("global_distrib_bad_stanza error=%s", exc)
            return None
        if len(elements) != 1 or elements[0].name not in _STANZAS \
                or elements[0].xmlns != ns.CLIENT:
            log.warning("global_distrib_bad_stanza xml=%.200s", xml)
            return None
        stanza = elements[0]
        stanza.attrs["from"], stanza.attrs["to"] = frm_text, to_text
        return frm, to, stanza

    def _received(self, origin: str, item: Item, sent: float) -> None:
        parsed = self._parse(item)
        if parsed is None:
            return
        frm, to, stanza = parsed
        ttl = max(0, item[3])
        self._emit(M.INCOMING_MESSAGES, {"host": origin})
        if sent:
            self._emit(M.INCOMING_TRANSFER, {"host": origin},
                       {"time": max(0, int((time.time() - sent) * 1e6))})
        self._emit(M.DELIVERED_WITH_TTL, {}, {"value": ttl})
        if frm.domain == self.global_host and frm.local is not None:
            # The sender is there (MongooseIM does the same): the answer goes back without a
            # look-up, even before that data centre's entry is written.
            self.cache.put(str(frm), origin)
            if not self.server.sessions.resources(frm.bare):
                self.cache.put(str(frm.bare), origin)
        self._set_mark(stanza, ttl, 0)
        self.server.router.route(frm, to, stanza)

    def _lost(self, host: str, items: list[Item]) -> None:
        """Written toward ``host`` and not acknowledged when its connection ended: RFC 6121
        §8 here (at least once: it may have been delivered there just before)."""
        for item in items:
            parsed = self._parse(item)
            if parsed is not None:
                self._here(*parsed)


def _tls_contexts(tls: Mapping[str, Any] | None
                  ) -> tuple[ssl.SSLContext | None, ssl.SSLContext | None]:
    """(listener's context, connecting side's context); (None, None) without TLS."""
    if not tls:
        return None, None
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(tls["certfile"], tls.get("keyfile") or tls["certfile"],
                           password=tls.get("password"))
    if (tls.get("verify_mode") or "peer") != "none":
        if tls.get("cacertfile"):
            server.load_verify_locations(tls["cacertfile"])
        server.verify_mode = ssl.CERT_REQUIRED  # the other data centre's certificate too
    if tls.get("ciphers"):
        server.set_ciphers(tls["ciphers"])
    # Endpoints are addresses: the chain is verified against cacertfile, not a name.
    client = pool_client_context(tls, check_hostname=False)
    return server, client

