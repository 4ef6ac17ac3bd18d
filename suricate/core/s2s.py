"""The federation service: policy (``[s2s] default_policy`` / ``host_policy``), the dialback
secret (``[s2s] shared``, or a random one per start), the outgoing connection pool and the
routing entry the router calls for domains that are neither ours nor a component's.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from suricate.config.host_config import overridden
from suricate.core.acl import ALLOW, allowed
from suricate.core.s2s_in import S2SIn
from suricate.core.s2s_out import OutgoingLink, Target
from suricate.jid import JID
from suricate.net import dns
from suricate.net.peer_cert import TrustStore, names_domain
from suricate.net.shaper import bucket_factory
from suricate.net.tls import TLSClientConfig, TLSConfig, TLSLayer
from suricate.protocol.errors import StanzaError, error_reply
from suricate.xml.element import Element

if TYPE_CHECKING:
    import asyncio

    from suricate.core.server import Server
    from suricate.net.connection import Connection

log = logging.getLogger("suricate.s2s")

ALPN_S2S = b"xmpp-server"  # XEP-0368 §3


class S2SService:
    def __init__(self, server: Server) -> None:
        self.server = server
        cfg: Mapping[str, Any] = server.cfg["s2s"]
        self.opts: Mapping[str, Any] = cfg["outgoing"]
        # [s2s] stream_management: XEP-0198 acknowledgements on s2s streams, both ways
        self.stream_management: bool = cfg.get("stream_management", True)
        self.default_policy: str = cfg.get("default_policy") or ALLOW
        self.host_policy = {p["host"].lower(): p["policy"] for p in cfg.get("host_policy", [])}
        # XEP-0185: keys derive from a secret: ``[s2s] shared``, else the cluster's (see
        # ``secret``), else one made per start (keys then only verify while this process
        # runs, which is what dialback needs of a single node).
        self._shared: str | None = cfg.get("shared") or None
        self._own_secret = secrets.token_hex(32)
        # [[host_config]] s2s tables (6.4: default_policy, host_policy host by host, shared),
        # by host type of the local domain.
        self.by_host_type: dict[str, tuple[str, dict[str, str], str | None]] = {}
        for host_type, host_cfg in overridden(server.cfg, "s2s").items():
            self.by_host_type[host_type] = (
                host_cfg.get("default_policy") or ALLOW,
                {p["host"].lower(): p["policy"] for p in host_cfg.get("host_policy", [])},
                host_cfg.get("shared") or None)
        # general.route_subdomains = "s2s" (top level, or per host): subdomains of our
        # domains that nothing here serves go over s2s instead of being bounced.
        self.route_subdomains = server.cfg["general"].get("route_subdomains") == "s2s"
        self.route_subdomains_by_host_type = {
            host_type: general.get("route_subdomains") == "s2s"
            for host_type, general in overridden(server.cfg, "general").items()}
        dns_opts = self.opts.get("dns") or {}
        self.resolver = dns.Resolver(dns_opts.get("timeout", 10), dns_opts.get("retries", 2))
        # s2s.outgoing.shaper: the traffic each outgoing connection may receive
        self.new_bucket = bucket_factory(self.opts.get("shaper"), server.cfg["shaper"])
        self.overrides = {a["host"].lower(): (a["ip_address"], a.get("port") or self.opts["port"])
                          for a in self.opts.get("address", [])}
        tls_opts: Mapping[str, Any] | None = self.opts.get("tls")
        # No [s2s.outgoing.tls]: STARTTLS when offered, no client certificate, and the peer's
        # certificate is not judged (dialback authenticates it).
        self.tls_mode = (tls_opts or {}).get("mode") or "starttls"
        self.verify_mode = (tls_opts or {}).get("verify_mode", "peer") if tls_opts else "none"
        self.tls_client = TLSClientConfig(tls_opts or {}, alpn=[ALPN_S2S])
        self.trust: TrustStore | None = None
        if self.verify_mode != "none":
            self.trust = TrustStore((tls_opts or {}).get("cacertfile"))
        self.links: dict[tuple[str, str], OutgoingLink] = {}
        self.incoming: set[S2SIn] = set()
        self.stopping = False

    # -- policy ---------------------------------------------------------------------------
    def _host(self, local: str | None) -> tuple[str, dict[str, str], str | None] | None:
        if local is None or not self.by_host_type:
            return None
        return self.by_host_type.get(self.server.domains.host_type(local.lower()))

    def allows(self, domain: str, local: str | None = None) -> bool:
        """Whether federation with the remote ``domain`` is allowed (for the local domain
        ``local``, whose ``[[host_config]]`` may have its own policy)."""
        host = self._host(local)
        if host is not None:
            return allowed(host[1].get(domain.lower(), host[0]))
        return allowed(self.host_policy.get(domain.lower(), self.default_policy))

    @property
    def secret(self) -> str:
        """The dialback secret (XEP-0185) of domains without one of their own.

        A peer checks a key by connecting to our domain (XEP-0220 §2.1.2, the authoritative
        server), and with several nodes behind that domain (``sm_backend = "redis"``,
        ``suricate serve --workers N``) it may reach another node than the one that made the
        key: every node must derive the same keys. Without ``[s2s] shared`` the nodes derive
        the secret from the cluster cookie they all read from Redis (``server.cluster_cookie``,
        set when the node joins), as MongooseIM keeps its generated secret in the cluster's
        shared store."""
        if self._shared is not None:
            return self._shared
        cookie = self.server.cluster_cookie
        if cookie is not None:
            return hmac.new(cookie, b"suricate xep-0185 dialback secret",
                            hashlib.sha256).hexdigest()
        return self._own_secret

    @secret.setter
    def secret(self, value: str) -> None:  # tests: as [s2s] shared would set it
        self._shared = value

    def secret_for(self, local: str) -> str:
        """The dialback secret (XEP-0185) of the local domain ``local``."""
        host = self._host(local)
        return (host[2] if host is not None else None) or self.secret

    def serves(self, domain: str) -> bool:
        """A domain an incoming stream may address: ours, or a connected component's."""
        return self.server.is_local_domain(domain) \
            or self.server.components.lookup(domain) is not None

    def routes_subdomains(self, local: str) -> bool:
        """general.route_subdomains = "s2s" for the sending domain ``local`` (MongooseIM
        looks the option up for the sender's domain)."""
        if self.route_subdomains_by_host_type:
            host_type = self.server.domains.host_type(local.lower())
            if host_type in self.route_subdomains_by_host_type:
                return self.route_subdomains_by_host_type[host_type]
        return self.route_subdomains

    def is_local_subdomain(self, domain: str) -> bool:
        """``domain`` is a subdomain (at any depth) of a domain this server serves."""
        rest = domain
        while "." in rest:
            rest = rest.split(".", 1)[1]
            if self.server.is_local_domain(rest):
                return True
        return False

    # -- routing --------------------------------------------------------------------------
    def route(self, frm: JID, to: JID, stanza: Element) -> bool:
        """Send ``stanza`` to a remote domain; False when federation cannot take it (the
        sender is not one of our domains: we relay for nobody)."""
        local = frm.domain
        if not self.serves(local):
            return False
        remote = to.domain
        if self.is_local_subdomain(remote) and not self.routes_subdomains(local):
            # RFC 3920 §10.3, MongooseIM's default: a subdomain of one of our domains is one
            # of our services; none serves this one (the router asked the components first).
            self.server.router.bounce(stanza, StanzaError(
                "service-unavailable", f"no service of this server answers at {remote}"))
            return True
        known = self.server.domains.get(remote)
        if known is not None and not known.enabled:
            # One of our dynamic domains, disabled (disableDomain): its users are ours and
            # unavailable, not another server's; federation would only reach this server
            # again (or retry a name with no address) while the sender waits.
            self.server.router.bounce(stanza, StanzaError(
                "service-unavailable", f"{remote} is disabled on this server"))
            return True
        if not self.allows(remote, local):
            # RFC 6120 §8.3.3.12: not-allowed, e.g. "sending to entities at a blacklisted
            # domain" ([s2s] default_policy / host_policy).
            self.server.router.bounce(stanza, StanzaError(
                "not-allowed", f"federation with {remote} is not allowed"))
            return True
        if self.stopping:
            self.bounce(stanza, "remote-server-timeout", "server shutting down")
            return True
        self.link(local, remote).send(stanza)
        return True

    def link(self, local: str, remote: str) -> OutgoingLink:
        key = (local, remote)
        link = self.links.get(key)
        if link is None:
            link = self.links[key] = OutgoingLink(self, local, remote)
        return link

    def peer_authenticated(self, remote: str) -> None:
        """An incoming stream from ``remote`` authenticated: its server is reachable again,
        whichever of our domains our outgoing links to it speak for."""
        for (_, other), link in self.links.items():
            if other == remote:
                link.peer_is_back()

    def bounce_refused(self, stanza: Element, remote: str, size: int) -> None:
        """A stanza the remote server refused for its size (it ended the stream with
        policy-violation): the sender learns it (RFC 6120 §8.3.3.12)."""
        self.server.router.bounce(stanza, StanzaError(
            "policy-violation", f"{remote} refused a stanza of {size} bytes as too big"))

    def bounce_over_limit(self, stanza: Element, remote: str, size: int, limit: int) -> None:
        """A stanza bigger than the remote server's advertised limit (XEP-0478), not sent."""
        self.server.router.bounce(stanza, StanzaError(
            "policy-violation", f"{remote} takes stanzas up to {limit} bytes; this one has "
            f"{size}"))

    def bounce_for_gone_service(self, stanza: Element, local: str, remote: str) -> None:
        """``stanza`` came from ``remote`` over a stream authenticated for ``local``, which
        nothing serves any more (a component that went away): service-unavailable goes back
        (RFC 6120 §8.3.3.19) over the outgoing link of that pair. The router would not send
        it: ``local`` is not ours now, and we relay for no domain we do not serve."""
        if stanza.attrs.get("type") in ("error", "result"):
            return  # RFC 6120 §8.3.1: never answer an error (or a result) with an error
        self.link(local, remote).send(error_reply(stanza, StanzaError(
            "service-unavailable", f"no service of this server answers at {local}")))

    def bounce(self, stanza: Element, condition: str, reason: str) -> None:
        self.server.router.bounce(stanza, StanzaError(
            condition, f"server-to-server connection failed: {reason}"))

    # -- dialback -------------------------------------------------------------------------
    def verify_dialback(self, local: str, remote: str, stream_id: str,
                        key: str) -> asyncio.Future[bool]:
        """XEP-0220 §2.3: ask ``remote``'s authoritative server about ``key``."""
        return self.link(local, remote).verify(stream_id, key)

    # -- DNS (RFC 6120 §3.2, XEP-0368) ----------------------------------------------------
    async def targets(self, domain: str) -> list[Target]:
        direct = self.tls_mode == "tls"
        override = self.overrides.get(domain.lower())
        if override is not None:
            return [Target(override[0], int(override[1]), direct)]
        records: list[tuple[dns.SRVRecord, bool]] = []
        for service, is_direct in (("xmpps-server", True), ("xmpp-server", False)):
            try:
                found = await self.resolver.srv(service, domain)
            except dns.DNSError as exc:
                log.info("s2s_dns_failed connection_type=s2s domain=%s service=%s reason=%s",
                         domain, service, exc)
                continue
            if dns.service_unavailable(found):
                continue
            records.extend((r, is_direct) for r in found)
        if records:
            ordered = dns.srv_order([r for r, _ in records])
            kinds = {id(r): d for r, d in records}
            # XEP-0368 §3: among equal priorities, direct TLS first.
            ordered.sort(key=lambda r: (r.priority, not kinds[id(r)]))
            return [Target(r.target, r.port, kinds[id(r)] or direct) for r in ordered]
        # RFC 6120 §3.2.2: no SRV record, fall back to the domain itself.
        return [Target(domain, int(self.opts["port"]), direct)]

    # -- certificates ---------------------------------------------------------------------
    def server_cert_problem(self, tls: TLSLayer, domain: str) -> str | None:
        """Why the certificate of an outgoing connection's peer is refused, or None."""
        if self.trust is None:
            return None
        chain = tls.peer_chain()
        if not self.trust.verifies(chain, self.verify_mode == "selfsigned_peer"):
            return "certificate not trusted"
        if not names_domain(chain[0], domain):
            return f"certificate does not name {domain}"
        return None

    # -- incoming -------------------------------------------------------------------------
    def incoming_factory(self, opts: Mapping[str, Any], tls: TLSConfig | None) -> Any:
        trust = None
        tls_opts = opts.get("tls") or {}
        if tls is not None and tls_opts.get("verify_mode", "peer") != "none":
            trust = TrustStore(tls_opts.get("cacertfile"), tls_opts.get("crl_files") or ())

        def factory(conn: Connection) -> S2SIn:
            stream = S2SIn(self, conn, opts, tls, trust)
            self.incoming.add(stream)
            return stream
        return factory

    def stop(self) -> None:
        """Server stop: incoming streams end with system-shutdown, outgoing ones close,
        stanzas that never left are bounced."""
        self.stopping = True
        for stream in list(self.incoming):
            stream.shutdown()
        for link in list(self.links.values()):
            link.shutdown()
