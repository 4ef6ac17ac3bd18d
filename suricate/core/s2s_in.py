"""An incoming server-to-server stream (MongooseIM: mongoose_s2s_in).

The peer proves its domain either with its certificate (SASL EXTERNAL, XEP-0178; offered only
when the certificate chains to a CA we trust and names the domain of the stream header,
RFC 6120 §13.7.1.2) or with Server Dialback (XEP-0220), where we ask the domain's
authoritative server about the key. Every stanza's ``from`` must then belong to a domain this
stream proved (RFC 6120 §8.1.1.2 / §4.9.3.9 ``invalid-from``), and its ``to`` to a domain we
serve (``host-unknown``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from suricate.core.stream import XmppStream
from suricate.jid import JID, InvalidJID
from suricate.net.peer_cert import names_domain
from suricate.protocol import s2s as P
from suricate.protocol.errors import StanzaError, StreamError
from suricate.protocol.fsm import StateMachine
from suricate.protocol.s2s import S2SInState as In
from suricate.protocol.sm import MOD
from suricate.protocol.stanza import STANZA_NAMES, to_internal
from suricate.protocol.stream import (
    features_element,
    mechanisms_feature,
    sasl_failure,
    starttls_feature,
)
from suricate.xml import ns
from suricate.xml.element import Element
from suricate.xml.parser import StreamOpen

if TYPE_CHECKING:
    from suricate.core.s2s import S2SService
    from suricate.net.connection import Connection
    from suricate.net.peer_cert import TrustStore
    from suricate.net.tls import TLSConfig

log = logging.getLogger("suricate.s2s")


class S2SIn(XmppStream):
    connection_type = "s2s"
    content_ns = ns.SERVER

    def __init__(self, service: S2SService, conn: Connection, opts: Mapping[str, Any],
                 tls_config: TLSConfig | None, trust: TrustStore | None) -> None:
        super().__init__(service.server, conn, StateMachine(P.IN_TRANSITIONS, In.CONNECT),
                         P.IN_TIMED_STATES, In.CLOSED, opts.get("max_stanza_size"),
                         opts.get("state_timeout", 5000))
        self.service = service
        self.opts = opts
        self.tls_config = tls_config
        self.trust = trust
        self.local = ""  # the 'to' of the stream header: one of our domains
        self.claimed = ""  # the 'from' of the stream header
        self.version = True
        self.sasl_domain: str | None = None
        self.external_offered = False
        # (local domain, remote domain) pairs this stream may carry stanzas for
        self.pairs: set[tuple[str, str]] = set()
        self.remote_domains: set[str] = set()
        self.auth_methods: dict[str, str] = {}  # remote domain -> "external" | "dialback"
        self.pending_verifications = 0
        # XEP-0198 (acknowledgements, no resumption on s2s): offered once the peer is
        # authenticated or dialback, which does not restart the stream, is all that is left;
        # ``handled`` counts the stanzas handled since the peer's <enable/>, None before.
        self.sm_offered = False
        self.handled: int | None = None
        self.goto(In.WAIT_FOR_STREAM)

    @property
    def host_type(self) -> str:
        return self.local

    def opening_header(self) -> bytes:
        return P.stream_header(self.local or self.server.default_domain, self.claimed or None,
                               self.stream_id)

    def on_closed(self, exc: Exception | None) -> None:
        self.service.incoming.discard(self)
        if self.pairs:
            log.info("s2s_in_closed connection_type=s2s local=%s remote=%s", self.local,
                     ",".join(sorted(self.remote_domains)))

    def shutdown(self) -> None:
        self.stream_error(StreamError("system-shutdown"))

    # -- the stream header ----------------------------------------------------------------
    def handle_stream_open(self, header: StreamOpen) -> None:
        if self.state != In.WAIT_FOR_STREAM:
            raise StreamError("not-well-formed")
        restart = bool(self.local)
        to, frm = header.attrs.get("to", ""), header.attrs.get("from", "")
        try:
            local = JID.parse(to).domain if to else self.server.default_domain
        except (InvalidJID, ValueError):
            local = ""
        self.local = self.local or (local if local and self.service.serves(local) else "")
        self.version = header.attrs.get("version", "").startswith("1.")
        if header.name != "stream" or header.xmlns != ns.STREAM \
                or header.content_ns != ns.SERVER:
            raise StreamError("invalid-namespace")
        if not local or not self.service.serves(local) or (restart and local != self.local):
            # RFC 6120 §4.9.3.6: the 'to' is not a domain we serve
            raise StreamError("host-unknown")
        if frm:
            try:
                claimed = JID.parse(frm)
            except (InvalidJID, ValueError):
                raise StreamError("invalid-from") from None
            if claimed.local is not None or claimed.resource is not None \
                    or self.server.is_local_domain(claimed.domain):
                raise StreamError("invalid-from")
            if restart and self.claimed and claimed.domain != self.claimed:
                raise StreamError("invalid-from", "the domain changed on stream restart")
            self.claimed = claimed.domain
            # The policy of the local domain addressed ([[host_config]] s2s, 6.4's per-host
            # default_policy/host_policy), before any authentication: SASL EXTERNAL
            # (XEP-0178) has no later check of its own.
            if not self.service.allows(self.claimed, self.local):
                raise StreamError("policy-violation",
                                  f"federation with {self.claimed} is not allowed")
        self.stream_id = secrets.token_hex(8)
        self.conn.write(P.stream_header(self.local, self.claimed or None, self.stream_id,
                                        version=self.version))
        if self.sasl_domain is not None:
            # XEP-0178 §2: after SASL success the restarted stream has nothing left to
            # negotiate.
            self.send_element(features_element(self._limits() + self._sm_feature()))
            self.goto(In.STREAM_ESTABLISHED)
            return
        self.goto(In.WAIT_FOR_FEATURE_BEFORE_AUTH)
        if self.version:
            self.send_element(features_element(self._features()))

    def _tls_mode(self) -> str | None:
        return self.tls_config.mode if self.tls_config is not None else None

    def _starttls_offered(self) -> bool:
        return self.conn.tls is None and self._tls_mode() in ("starttls", "starttls_required")

    def _tls_missing(self) -> bool:
        return self.conn.tls is None and self._tls_mode() == "starttls_required"

    def _features(self) -> list[Element]:
        features: list[Element] = self._limits()
        if self._starttls_offered():
            features.append(starttls_feature(self._tls_mode() == "starttls_required"))
        if self._tls_missing():
            return features  # listen.s2s.tls.mode = "starttls_required": nothing else yet
        self.external_offered = self._certificate_proves(self.claimed)
        if self.external_offered:
            features.append(mechanisms_feature(["EXTERNAL"]))
        features.append(P.dialback_feature())
        if not self.external_offered and not self._starttls_offered():
            # dialback only from here (no TLS to start, no SASL restart to come)
            features.extend(self._sm_feature())
        return features

    def _limits(self) -> list[Element]:
        # XEP-0478: the peer learns listen.s2s max_stanza_size, and can refuse a bigger
        # stanza to its sender instead of losing the stream to our policy-violation.
        limit = self.opts.get("max_stanza_size")
        return [P.limits_feature(limit)] if isinstance(limit, int) else []

    def _sm_feature(self) -> list[Element]:
        if not self.service.stream_management:
            return []
        self.sm_offered = True
        return [P.sm_element("sm")]

    def _certificate_proves(self, domain: str) -> bool:
        tls = self.conn.tls
        if not domain or tls is None or self.trust is None:
            return False
        chain = tls.peer_chain()
        if not chain:
            return False
        verify_mode = (self.opts.get("tls") or {}).get("verify_mode", "peer")
        return self.trust.verifies(chain, verify_mode == "selfsigned_peer") \
            and names_domain(chain[0], domain)

    # -- elements -------------------------------------------------------------------------
    def handle_element(self, el: Element) -> None:
        if el.xmlns == P.DIALBACK:
            self._dialback(el)
            return
        state = self.state
        if state == In.STREAM_ESTABLISHED or (self.pairs and el.name in STANZA_NAMES):
            if el.xmlns == ns.SM:
                self._sm(el)
                return
            self._stanza(el)
            if self.handled is not None:
                self.handled = (self.handled + 1) % MOD
            return
        if el.xmlns == ns.SM:
            self._sm(el)
            return
        if state == In.WAIT_FOR_FEATURE_BEFORE_AUTH:
            if el.xmlns == ns.TLS and el.name == "starttls":
                self._starttls()
                return
            if el.xmlns == ns.SASL and el.name == "auth":
                self._sasl_external(el)
                return
        raise StreamError("not-authorized")

    # -- XEP-0198 -------------------------------------------------------------------------
    def _sm(self, el: Element) -> None:
        name = el.name
        if name == "enable":
            if not self.sm_offered or self.handled is not None:
                self.send_element(P.sm_failed())
                return
            # no resumption on s2s: no id, no resume='true' (XEP-0198 §5 is for clients)
            self.handled = 0
            self.send_element(P.sm_element("enabled"))
        elif name == "r" and self.handled is not None:
            self.send_element(P.sm_element("a", self.handled))
        # <a/>: we write no stanzas on an incoming stream, there is nothing to forget

    def close(self) -> None:
        if not self._closing and self.handled is not None and self.stream_id:
            # XEP-0198 §4 (1.5.2): the last count before the closing tag, so that the peer
            # sends again only what we did not handle
            self.send_element(P.sm_element("a", self.handled))
        super().close()

    def _starttls(self) -> None:
        if not self._starttls_offered() or self.tls_config is None:
            # RFC 6120 §5.4.2.2: STARTTLS not offered -> <failure/> and close
            self.send_element(Element("failure", ns.TLS))
            self.close()
            return
        self.send_element(Element("proceed", ns.TLS))
        self.conn.start_tls(self.tls_config)
        self.goto(In.WAIT_FOR_STREAM, restart=True)

    def _sasl_external(self, el: Element) -> None:
        if el.attrs.get("mechanism") != "EXTERNAL" or not self.external_offered:
            self.send_element(sasl_failure("invalid-mechanism"))
            return
        text = el.text.strip()
        try:
            authzid = "" if text in ("", "=") else base64.b64decode(text, validate=True).decode()
        except (binascii.Error, ValueError):
            self.send_element(sasl_failure("incorrect-encoding"))
            return
        # XEP-0178 §3: an empty authzid means the domain of the stream header.
        domain = (authzid or self.claimed).lower()
        if domain != self.claimed or not self._certificate_proves(domain):
            self.server.instrument.auth_failed("s2s", self.local)
            log.info("s2s_in_auth_failed connection_type=s2s mech=EXTERNAL local=%s "
                     "claimed=%s authzid=%s peer=%s", self.local, self.claimed, authzid,
                     self.conn.peer)
            self.send_element(sasl_failure("invalid-authzid" if domain != self.claimed
                                           else "not-authorized"))
            return
        self.sasl_domain = domain
        self._authenticated(self.local, domain, "external")
        self.send_element(Element("success", ns.SASL))
        self.goto(In.WAIT_FOR_STREAM, restart=True)

    def _authenticated(self, local: str, remote: str, method: str) -> None:
        self.pairs.add((local, remote))
        self.remote_domains.add(remote)
        self.auth_methods[remote] = method
        self.service.peer_authenticated(remote)
        log.info("s2s_in_authenticated connection_type=s2s local=%s remote=%s auth=%s "
                 "tls=%s peer=%s", local, remote, method, self.conn.tls is not None,
                 self.conn.peer)

    # -- dialback (XEP-0220) --------------------------------------------------------------
    def _dialback(self, el: Element) -> None:
        frm, to = el.attrs.get("from", ""), el.attrs.get("to", "")
        if el.name == "verify" and el.attrs.get("type") is None:
            self._answer_verify(el, frm, to)
        elif el.name == "result" and el.attrs.get("type") is None:
            self._dialback_request(el, frm, to)
        else:
            raise StreamError("not-authorized")

    def _answer_verify(self, el: Element, frm: str, to: str) -> None:
        """We are the authoritative server: is this our key for that stream (§2.3.2)?"""
        stream_id = el.attrs.get("id", "")
        valid = False
        if self.server.is_local_domain(to) or self.service.serves(to):
            expected = P.dialback_key(self.service.secret_for(to), frm, to, stream_id)
            # bytes: compare_digest refuses non-ASCII str, and a peer may send anything
            valid = secrets.compare_digest(expected.encode(), el.text.strip().encode())
        self.send_element(P.db_element("verify", to, frm, "valid" if valid else "invalid",
                                       stream_id=stream_id), P.PREFIXES)

    def _dialback_request(self, el: Element, frm: str, to: str) -> None:
        if self._tls_missing():
            raise StreamError("policy-violation", "STARTTLS is required first")
        try:
            remote = JID.parse(frm).domain if frm else ""
        except (InvalidJID, ValueError):
            remote = ""
        if not remote:
            raise StreamError("invalid-from")
        if not self.service.serves(to):
            # XEP-0220 §2.4: a domain we do not serve -> item-not-found
            self.send_element(P.db_element("result", to, frm, "error",
                                           error="item-not-found"), P.PREFIXES)
            return
        if not self.service.allows(remote, to):
            self.send_element(P.db_element("result", to, frm, "error",
                                           error="policy-violation"), P.PREFIXES)
            return
        if self.state == In.WAIT_FOR_FEATURE_BEFORE_AUTH:
            self.goto(In.WAIT_FOR_DIALBACK_VERIFICATION)
        self.pending_verifications += 1
        fut = self.service.verify_dialback(to, remote, self.stream_id, el.text.strip())
        self.server.spawn(self._verification(fut, to, remote))

    async def _verification(self, fut: asyncio.Future[bool], local: str, remote: str) -> None:
        # An authoritative server that never answers must not pin this stream: the answer is
        # due within the time an outgoing connection may take to connect and negotiate.
        opts = self.service.opts
        connect = opts.get("connection_timeout")
        limit = (10000 if connect in (None, "infinity") else connect) \
            + 4 * (opts.get("state_timeout") or 5000)
        try:
            valid = await asyncio.wait_for(fut, limit / 1000)
        except TimeoutError:
            valid = False
        finally:
            self.pending_verifications -= 1
        if self.closed or self._closing:
            return
        self.send_element(P.db_element("result", local, remote,
                                       "valid" if valid else "invalid"), P.PREFIXES)
        if valid:
            if not self.local:
                self.local = local
            self._authenticated(local, remote, "dialback")
            if self.state == In.WAIT_FOR_DIALBACK_VERIFICATION:
                self.goto(In.STREAM_ESTABLISHED)
            return
        self.server.instrument.auth_failed("s2s", local)
        log.info("s2s_in_auth_failed connection_type=s2s mech=dialback local=%s remote=%s "
                 "peer=%s", local, remote, self.conn.peer)
        if not self.pairs and self.pending_verifications == 0:
            self.stream_error(StreamError("not-authorized", "dialback key not valid"))

    # -- stanzas --------------------------------------------------------------------------
    def _stanza(self, el: Element) -> None:
        if el.name not in STANZA_NAMES or el.xmlns != ns.SERVER:
            raise StreamError("unsupported-stanza-type")
        frm_attr, to_attr = el.attrs.get("from"), el.attrs.get("to")
        if not frm_attr or not to_attr:
            # RFC 6120 §8.1.1.1-2: both addresses are required on a server-to-server stream
            raise StreamError("improper-addressing")
        try:
            frm = JID.parse(frm_attr)
        except (InvalidJID, ValueError):
            raise StreamError("invalid-from") from None
        if frm.domain not in self.remote_domains:
            # RFC 6120 §4.9.3.9: a domain this stream has not proved
            raise StreamError("invalid-from")
        try:
            to = JID.parse(to_attr)
        except (InvalidJID, ValueError):
            to_internal(el, ns.SERVER)
            self.server.router.bounce(el, StanzaError("jid-malformed"))
            return
        if not self.service.serves(to.domain):
            if (to.domain, frm.domain) in self.pairs:
                # A domain this stream was authenticated for, no longer served: a component
                # (XEP-0114) that went away. The domain is still ours, only its service is
                # missing: the stanza comes back (RFC 6120 §8.3.3.19) and the stream, which
                # may carry other stanzas already sent, stays up. Ending it with host-unknown
                # lost the stanza silently (ejabberd does not bounce what it already sent).
                to_internal(el, ns.SERVER)
                self.service.bounce_for_gone_service(el, to.domain, frm.domain)
                return
            raise StreamError("host-unknown", f"{to.domain} is not served here")
        to_internal(el, ns.SERVER)
        self.server.router.route(frm, to, el)
