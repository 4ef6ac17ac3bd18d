"""Outgoing federation: one ``OutgoingLink`` per (local domain, remote domain) pair (the
connection pool), and ``S2SOut``, the stream of one connection attempt.

A link queues stanzas while it connects, tries every address the remote domain resolves to
(RFC 6120 §3.2.1: SRV targets in order, then the domain itself; XEP-0368 direct TLS targets
first among equals), and when nothing works bounces every queued stanza with
``remote-server-not-found`` or ``remote-server-timeout`` (RFC 6120 §8.3.3.16-17) — nothing is
dropped silently. After a failure the link backs off (1 s doubling up to
``s2s.outgoing.max_retry_delay``); meanwhile stanzas to that domain are bounced at once with the
same error instead of hammering an unreachable server, until the remote domain authenticates
an incoming stream to us (``peer_is_back``): then it is up and the next stanza connects.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from suricate.core.stream import XmppStream
from suricate.net.connection import Connection
from suricate.protocol import s2s as P
from suricate.protocol.errors import StreamError
from suricate.protocol.fsm import StateMachine
from suricate.protocol.s2s import S2SOutState as Out
from suricate.protocol.sm import HandledCountTooHigh
from suricate.protocol.stanza import to_wire
from suricate.xml import ns
from suricate.xml.element import Element
from suricate.xml.parser import StreamOpen

if TYPE_CHECKING:
    from suricate.core.s2s import S2SService

log = logging.getLogger("suricate.s2s")


@dataclass(frozen=True, slots=True)
class Target:
    host: str
    port: int
    direct_tls: bool


Failure = tuple[str, str]  # (stanza error condition for the bounces, reason)

# The stanzas an established stream wrote lately, kept for a peer that ends the stream with
# <policy-violation/> because one was bigger than it takes (Prosody: s2s_stanza_size_limit,
# 512 KiB by default; ejabberd: max_stanza_size): see S2SOut.too_big.
RECENT_SECONDS = 10.0
RECENT_MAX = 256
# Smaller stanzas are never the reason (Prosody refuses limits below 10000 bytes).
TOO_BIG_FLOOR = 10000
ERRORS_NS = "urn:xmpp:errors"


def _says_too_big(error: Element) -> bool:
    """A <policy-violation/> stream error about a stanza's size: Prosody adds
    <stanza-too-big xmlns='urn:xmpp:errors'/>, ejabberd says "XML stanza is too big",
    Suricate "stanza too large"."""
    if error.find("stanza-too-big", ERRORS_NS) is not None:
        return True
    text = error.find("text", ns.STREAMS_ERRORS)
    said = text.text.lower() if text is not None else ""
    return "too big" in said or "too large" in said


class OutgoingLink:
    __slots__ = ("service", "local", "remote", "queue", "stream", "attempt", "_task",
                 "failures", "retry_at", "last_failure", "verify_waiting", "verify_queue",
                 "closed", "resending")

    def __init__(self, service: S2SService, local: str, remote: str) -> None:
        self.service = service
        self.local = local
        self.remote = remote
        self.queue: list[Element] = []
        self.stream: S2SOut | None = None  # the established stream
        self.attempt: S2SOut | None = None  # the stream being negotiated
        self._task: asyncio.Task[None] | None = None
        self.failures = 0
        self.retry_at = 0.0
        self.last_failure: Failure | None = None
        # dialback verification requests (XEP-0220 §2.3) we make for our incoming streams
        self.verify_queue: list[tuple[str, str]] = []
        self.verify_waiting: dict[str, list[asyncio.Future[bool]]] = {}
        self.closed = False
        # ids of the queued stanzas an earlier stream wrote but the peer never acknowledged
        self.resending: set[int] = set()

    @property
    def established(self) -> bool:
        return self.stream is not None and self.stream.state == Out.STREAM_ESTABLISHED

    # -- what the service uses ------------------------------------------------------------
    def send(self, stanza: Element) -> None:
        if self.established:
            assert self.stream is not None
            self.stream.send_stanza(stanza)
            return
        loop = asyncio.get_running_loop()
        if self._task is None and self.last_failure is not None and loop.time() < self.retry_at:
            condition, reason = self.last_failure
            self.service.bounce(stanza, condition, f"{reason} (next attempt in "
                                f"{self.retry_at - loop.time():.0f} s)")
            return
        self.queue.append(stanza)
        self._ensure_connecting()

    def verify(self, stream_id: str, key: str) -> asyncio.Future[bool]:
        """Ask the remote domain (authoritative server) whether ``key`` is its key for
        ``stream_id``; the future says valid or not."""
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.verify_waiting.setdefault(stream_id, []).append(fut)
        stream = self.stream or self.attempt
        if stream is not None and stream.can_verify:
            stream.send_verify(stream_id, key)
        else:
            self.verify_queue.append((stream_id, key))
            self._ensure_connecting()
        return fut

    def _ensure_connecting(self) -> None:
        if self._task is None and not self.closed and self.stream is None:
            self._task = self.service.server.spawn(self._connect())

    # -- connecting -----------------------------------------------------------------------
    async def _connect(self) -> None:
        failure: Failure = ("remote-server-not-found", "no address")
        try:
            targets = await self.service.targets(self.remote)
            for target in targets:
                addresses = await self.service.resolver.addresses(
                    target.host, target.port, self.service.opts["ip_versions"])
                if not addresses:
                    failure = ("remote-server-not-found", f"{target.host} has no address")
                for family, address in addresses:
                    if self.closed:
                        return
                    outcome = await self._attempt(target, family, address)
                    if outcome is None:
                        return
                    failure = outcome
        except Exception as exc:  # our bug: still bounce, never strand the queue
            log.exception("s2s_out_internal_error connection_type=s2s remote=%s", self.remote)
            failure = ("remote-server-not-found", f"internal error: {exc}")
        finally:
            self._task = None
        self._failed(failure)

    async def _attempt(self, target: Target, family: int, address: str) -> Failure | None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Failure | None] = loop.create_future()
        service = self.service
        tls = service.tls_client.for_server(self.remote) if target.direct_tls else None

        def factory(conn: Connection) -> S2SOut:
            self.attempt = S2SOut(self, conn, done)
            return self.attempt

        timeout = service.opts["connection_timeout"]
        log.info("s2s_out_connecting connection_type=s2s local=%s remote=%s host=%s "
                 "address=%s port=%s direct_tls=%s", self.local, self.remote, target.host,
                 address, target.port, target.direct_tls)
        try:
            await asyncio.wait_for(
                loop.create_connection(
                    lambda: Connection(factory, tls, connection_type="s2s",
                                       instrument=service.server.instrument,
                                       shaper=service.new_bucket() if service.new_bucket
                                       else None),
                    host=address, port=target.port, family=family),
                None if timeout == "infinity" else timeout / 1000)
        except TimeoutError:
            return ("remote-server-timeout", f"connecting to {address}:{target.port} timed out")
        except OSError as exc:
            return ("remote-server-not-found",
                    f"connecting to {address}:{target.port} failed: {exc.strerror or exc}")
        return await done

    def _failed(self, failure: Failure) -> None:
        if self.established:
            return
        condition, reason = failure
        loop = asyncio.get_running_loop()
        self.failures += 1
        delay = min(float(self.service.opts["max_retry_delay"]), 2.0 ** (self.failures - 1))
        self.retry_at = loop.time() + delay
        self.last_failure = failure
        log.info("s2s_out_failed connection_type=s2s local=%s remote=%s condition=%s "
                 "reason=%s queued=%d retry_in=%.0f", self.local, self.remote, condition,
                 reason, len(self.queue), delay)
        queue, self.queue = self.queue, []
        resending, self.resending = self.resending, set()
        for stanza in queue:
            if id(stanza) in resending:
                # written to a stream that died before the peer acknowledged it
                self.service.bounce(stanza, "remote-server-timeout",
                                    f"not acknowledged by the peer before its stream ended, "
                                    f"and it cannot be reached again: {reason}")
            else:
                self.service.bounce(stanza, condition, reason)
        self._fail_verifications()

    def _fail_verifications(self) -> None:
        self.verify_queue.clear()
        waiting, self.verify_waiting = self.verify_waiting, {}
        for futures in waiting.values():
            for fut in futures:
                if not fut.done():
                    fut.set_result(False)

    def peer_is_back(self) -> None:
        """The remote domain just authenticated a stream of its own to us: it is up again,
        so the back-off of an earlier failure no longer holds and the next stanza connects
        at once. Without this, a peer that restarted reaches our users while our users'
        replies bounce with the stale error for up to ``max_retry_delay`` (300 s by
        default): with SASL EXTERNAL nothing else makes us connect out (with dialback, the
        verification does)."""
        if self.last_failure is None:
            return
        log.info("s2s_out_backoff_reset connection_type=s2s local=%s remote=%s",
                 self.local, self.remote)
        self.failures = 0
        self.retry_at = 0.0
        self.last_failure = None

    # -- called by the stream -------------------------------------------------------------
    def stream_established(self, stream: S2SOut) -> None:
        self.stream = stream
        self.failures = 0
        self.last_failure = None
        log.info("s2s_out_established connection_type=s2s local=%s remote=%s auth=%s tls=%s",
                 self.local, self.remote, stream.auth_method, stream.conn.tls is not None)
        queue, self.queue = self.queue, []
        self.resending.clear()
        for stanza in queue:
            stream.send_stanza(stanza)
        stream.flush_verifications()

    def stream_closed(self, stream: S2SOut) -> None:
        if self.attempt is stream:
            self.attempt = None
        if self.stream is stream:
            self.stream = None
            unacked = stream.take_unacked()
            if unacked and not self.closed:
                # XEP-0198: the peer never confirmed these (it crashed, the network broke, it
                # did not answer <r/>): they go again over a new stream, or bounce with
                # remote-server-timeout if the peer cannot be reached (RFC 6120 §8.3.3.17).
                log.info("s2s_out_resend connection_type=s2s local=%s remote=%s unacked=%d",
                         self.local, self.remote, len(unacked))
                self.resending.update(map(id, unacked))
                self.queue[:0] = unacked
            if self.verify_waiting and not self.closed:
                self._fail_verifications()
            if self.queue and not self.closed:
                self._ensure_connecting()

    def verification_answer(self, stream_id: str, valid: bool) -> None:
        for fut in self.verify_waiting.pop(stream_id, []):
            if not fut.done():
                fut.set_result(valid)

    def shutdown(self) -> None:
        """Server stop: close the stream; bounce what never left."""
        self.closed = True
        if self._task is not None:
            self._task.cancel()
        for stream in (self.stream, self.attempt):
            if stream is not None:
                stream.close()
        queue, self.queue = self.queue, []
        for stanza in queue:
            self.service.bounce(stanza, "remote-server-timeout", "server shutting down")
        self._fail_verifications()


class S2SOut(XmppStream):
    """One outgoing connection's stream (MongooseIM: mongoose_s2s_out)."""

    connection_type = "s2s"
    content_ns = ns.SERVER

    def __init__(self, link: OutgoingLink, conn: Connection,
                 done: asyncio.Future[Failure | None]) -> None:
        opts: Mapping[str, Any] = link.service.opts
        super().__init__(link.service.server, conn, StateMachine(P.OUT_TRANSITIONS, Out.CONNECT),
                         P.OUT_TIMED_STATES, Out.CLOSED, opts.get("max_stanza_size"),
                         opts.get("state_timeout", 5000))
        self.link = link
        self.opts = opts
        self.done = done
        self.peer_stream_id = ""
        self.sasl_done = False
        self.dialback_offered = False
        self.can_verify = False
        self.auth_method = ""
        self.failure: Failure | None = None
        self.cert_checked = False
        self._idle: asyncio.TimerHandle | None = None
        self._last_active = conn.loop.time()
        # (time written, bytes, stanza) of the stanzas written lately, oldest first
        self._recent: deque[tuple[float, int, Element]] = deque(maxlen=RECENT_MAX)
        # XEP-0198 (acknowledgements only, no resumption on s2s): the peer offered <sm/>
        # where it authenticated us; ``acks`` from our <enable/> on; ``sm_enabled`` once it
        # answered <enabled/>.
        self.sm_offered = False
        self.acks: P.S2SAcks | None = None
        self.sm_enabled = False
        self._ack_timer: asyncio.TimerHandle | None = None
        # XEP-0478: the largest stanza the peer says it reads on this stream
        self.peer_max_bytes: int | None = None
        self._open()

    @property
    def host_type(self) -> str:
        return self.link.local

    def opening_header(self) -> bytes:
        return P.stream_header(self.link.local, self.link.remote)

    def _open(self) -> None:
        # RFC 6120 §4.7.1: the initiating server names itself and the peer.
        self.stream_id = "out"  # our header is always written first
        self.conn.write(self.opening_header())
        self.goto(Out.WAIT_FOR_STREAM, restart=True)

    # -- failure --------------------------------------------------------------------------
    def fail(self, condition: str, reason: str) -> None:
        if self.failure is None:
            self.failure = (condition, reason)
        self.close()

    def on_timeout(self) -> None:
        self.fail("remote-server-timeout", f"no answer in state {self.state.value}")

    def on_closed(self, exc: Exception | None) -> None:
        if self._idle is not None:
            self._idle.cancel()
        if self._ack_timer is not None:
            self._ack_timer.cancel()
        if not self.done.done():
            failure = self.failure
            if failure is None:
                if self.conn.tls_failure:
                    failure = ("remote-server-not-found", f"TLS failed: {self.conn.tls_failure}")
                else:
                    failure = ("remote-server-not-found",
                               f"connection closed in state {self.state.value}")
            self.done.set_result(failure)
        self.link.stream_closed(self)

    # -- negotiation ----------------------------------------------------------------------
    def handle_stream_open(self, header: StreamOpen) -> None:
        if self.state != Out.WAIT_FOR_STREAM:
            raise StreamError("not-well-formed")
        if header.name != "stream" or header.xmlns != ns.STREAM \
                or header.content_ns != ns.SERVER:
            raise StreamError("invalid-namespace")
        self.peer_stream_id = header.attrs.get("id", "")
        self.dialback_offered = header.prefixes.get("db") == P.DIALBACK
        tls = self.conn.tls
        if tls is not None and not self.cert_checked:
            self.cert_checked = True
            problem = self.link.service.server_cert_problem(tls, self.link.remote)
            if problem is not None:
                # RFC 6120 §13.7.2: a certificate that does not prove the peer ends the
                # attempt (s2s.outgoing.tls.verify_mode decides how strict we are).
                self.fail("remote-server-not-found", problem)
                return
        if not header.attrs.get("version", "").startswith("1."):
            # A pre-1.0 peer: no features, dialback only (XEP-0220 §2.1).
            self._dialback()
            return
        self.goto(Out.WAIT_FOR_FEATURES)

    def handle_element(self, el: Element) -> None:
        if el.xmlns == ns.STREAM and el.name == "error":
            condition = next((c.name for c in el.elements() if c.xmlns == ns.STREAMS_ERRORS),
                             "undefined-condition")
            if condition == "policy-violation" and self.state == Out.STREAM_ESTABLISHED \
                    and _says_too_big(el):
                self.too_big()
            self.fail("remote-server-not-found", f"stream error from peer: {condition}")
            return
        if el.xmlns == P.DIALBACK:
            self._dialback_answer(el)
            return
        if el.xmlns == ns.SM:
            self._sm(el)
            return
        state = self.state
        if state == Out.WAIT_FOR_FEATURES and el.xmlns == ns.STREAM and el.name == "features":
            self._features(el)
        elif state == Out.WAIT_FOR_TLS_PROCEED and el.xmlns == ns.TLS:
            if el.name != "proceed":
                self.fail("remote-server-not-found", "STARTTLS refused")
                return
            self.conn.start_tls(self.link.service.tls_client.for_server(self.link.remote))
            self._open()
        elif state == Out.WAIT_FOR_SASL_RESULT and el.xmlns == ns.SASL:
            if el.name == "success":
                self.sasl_done = True
                self.auth_method = "external"
                self._open()  # XEP-0178 §2: restart the stream after SASL success
            elif self.dialback_offered:
                log.info("s2s_out_external_refused connection_type=s2s remote=%s; trying "
                         "dialback", self.link.remote)
                self._dialback()
            else:
                self.fail("remote-server-not-found", "SASL EXTERNAL refused")
        else:
            log.debug("s2s_out_ignored connection_type=s2s element=%s state=%s", el.name,
                      state.value)

    def _features(self, features: Element) -> None:
        service = self.link.service
        self.peer_max_bytes = P.max_bytes(features) or self.peer_max_bytes
        starttls = features.find("starttls", ns.TLS)
        mode = service.tls_mode
        if self.conn.tls is None:
            if starttls is not None and mode != "none":
                self.send_element(Element("starttls", ns.TLS))
                self.goto(Out.WAIT_FOR_TLS_PROCEED)
                return
            if mode in ("starttls_required", "tls"):
                self.fail("remote-server-not-found", "the peer does not offer STARTTLS")
                return
        # XEP-0198: enabled once authenticated, i.e. on the features after the SASL
        # restart, or (dialback does not restart the stream) on those we authenticate on.
        self.sm_offered = features.find("sm", ns.SM) is not None
        if self.sasl_done:
            self._established()
            return
        if features.find("dialback", P.DIALBACK_FEATURE) is not None:
            self.dialback_offered = True
        mechanisms = features.find("mechanisms", ns.SASL)
        names = {m.text.strip() for m in mechanisms.find_all("mechanism")} if mechanisms \
            is not None else set()
        if self.conn.tls is not None and "EXTERNAL" in names and service.tls_client.has_certificate:
            # XEP-0178 §2: our certificate names our domain; the authzid says which.
            auth = Element("auth", ns.SASL, {"mechanism": "EXTERNAL"},
                           [base64.b64encode(self.link.local.encode()).decode()])
            self.send_element(auth)
            self.goto(Out.WAIT_FOR_SASL_RESULT)
            return
        if self.dialback_offered:
            self._dialback()
            return
        self.fail("remote-server-not-found", "no authentication method in common")

    def _dialback(self) -> None:
        # XEP-0220 §2.1.1: <db:result> with the key for the stream id the peer gave us.
        key = P.dialback_key(self.link.service.secret_for(self.link.local), self.link.remote,
                             self.link.local, self.peer_stream_id)
        self.send_element(P.db_element("result", self.link.local, self.link.remote, key=key),
                          P.PREFIXES)
        self.auth_method = "dialback"
        self.goto(Out.WAIT_FOR_DIALBACK_RESULT)
        # The stream will not restart any more: verification requests can go now.
        self.flush_verifications()

    def _dialback_answer(self, el: Element) -> None:
        type_ = el.attrs.get("type")
        if el.name == "verify":
            self.link.verification_answer(el.attrs.get("id", ""), type_ == "valid")
            return
        if el.name != "result" or self.state != Out.WAIT_FOR_DIALBACK_RESULT:
            return
        if el.attrs.get("from") != self.link.remote or el.attrs.get("to") != self.link.local:
            return
        if type_ == "valid":
            self._established()
        else:
            self.fail("remote-server-not-found", f"dialback {type_ or 'refused'}")

    def _established(self) -> None:
        if self.sm_offered and self.link.service.stream_management:
            # Counting starts with <enable/> (XEP-0198 §4): the stanzas that follow are kept
            # until acknowledged, without waiting for <enabled/>.
            self.send_element(P.sm_element("enable"))
            self.acks = P.S2SAcks()
        self.goto(Out.STREAM_ESTABLISHED)
        self.can_verify = True
        if not self.done.done():
            self.done.set_result(None)
        self._schedule_idle()
        self.link.stream_established(self)

    # -- verification requests on behalf of our incoming streams --------------------------
    def flush_verifications(self) -> None:
        self.can_verify = True
        queue, self.link.verify_queue = self.link.verify_queue, []
        for stream_id, key in queue:
            self.send_verify(stream_id, key)

    def send_verify(self, stream_id: str, key: str) -> None:
        self.send_element(P.db_element("verify", self.link.local, self.link.remote,
                                       stream_id=stream_id, key=key), P.PREFIXES)

    # -- established ----------------------------------------------------------------------
    def send_stanza(self, stanza: Element) -> int:
        now = self._last_active = self.conn.loop.time()
        data = to_wire(stanza)
        size = len(data)
        limit = self.peer_max_bytes
        if limit is not None and size > limit:
            # XEP-0478: the peer would end the stream (and lose what follows); the sender
            # gets policy-violation (RFC 6120 §8.3.3.12) and the stream stays up.
            self.link.service.bounce_over_limit(stanza, self.link.remote, size, limit)
            return 0
        self.server.instrument.xmpp_element_out(self.connection_type, self.host_type, stanza,
                                                size)
        self.conn.write(data)
        acks = self.acks
        if acks is not None:
            # XEP-0198: kept until the peer's <a/> covers it; one <r/> at the end of this
            # loop tick for the whole batch, none while one is out.
            acks.unacked.append(data)
            if not (acks.scheduled or acks.awaiting):
                acks.scheduled = True
                self.conn.loop.call_soon(self._request_ack)
            return size
        recent = self._recent
        while recent and now - recent[0][0] > RECENT_SECONDS:
            recent.popleft()
        recent.append((now, size, stanza))
        return size

    def too_big(self) -> None:
        """The peer ended the established stream with <policy-violation/> (RFC 6120
        §4.9.3.12) because a stanza exceeded its size limit (``_says_too_big``). The peer
        handles stanzas in order and stops at that one: without this the stanza and every
        one written after it were lost without a word. The biggest stanza written lately,
        when it is big enough to be the reason, bounces with policy-violation (RFC 6120
        §8.3.3.12); those written after it go back to the link, which sends them over a new
        stream."""
        if self.acks is not None:
            # XEP-0198: exactly the stanzas the peer did not acknowledge (those before the
            # culprit were handled: the peer reads in order); none is sent again on close.
            unacked = self.acks.unacked
            recent = [(0.0, len(data), stanza)
                      for data, stanza in zip(unacked, P.from_wire(unacked), strict=True)]
        else:
            recent, self._recent = list(self._recent), deque(maxlen=RECENT_MAX)
        if not recent:
            return
        culprit = max(range(len(recent)), key=lambda i: recent[i][1])
        size = recent[culprit][1]
        if size < TOO_BIG_FLOOR:
            return
        log.info("s2s_out_stanza_too_big connection_type=s2s remote=%s bytes=%d resent=%d",
                 self.link.remote, size, len(recent) - culprit - 1)
        if self.acks is not None:
            self.acks.unacked.clear()  # the culprit bounces, the rest is requeued below
        self.link.service.bounce_refused(recent[culprit][2], self.link.remote, size)
        self.link.queue[:0] = [stanza for _, _, stanza in recent[culprit + 1:]]

    # -- XEP-0198 acknowledgements --------------------------------------------------------
    def _sm(self, el: Element) -> None:
        acks = self.acks
        name = el.name
        if name == "r":
            # Nothing is handled on an outgoing stream (stanzas come on the peer's own).
            self.send_element(P.sm_element("a", 0))
        elif acks is None:
            return
        elif name == "a":
            h = P.parse_h(el)
            if h is None:
                raise StreamError("undefined-condition", "<a/> without a valid h")
            try:
                acks.ack(h)
            except HandledCountTooHigh as exc:
                # XEP-0198 §4: the peer acknowledged stanzas we never sent
                raise StreamError("undefined-condition", "h attribute too high", Element(
                    "handled-count-too-high", ns.SM,
                    {"h": str(exc.h), "send-count": str(exc.send_count)})) from None
            acks.awaiting = False
            if self._ack_timer is not None:
                self._ack_timer.cancel()
                self._ack_timer = None
            if acks.unacked and not acks.scheduled:
                self._send_r()  # written since our <r/>
        elif name == "enabled":
            self.sm_enabled = True
            if acks.unacked and not acks.awaiting:
                self._send_r()
        elif name == "failed":
            log.info("s2s_out_sm_refused connection_type=s2s remote=%s", self.link.remote)
            self.acks = None

    def _request_ack(self) -> None:
        acks = self.acks
        if acks is None or self.closed or self._closing:
            return
        acks.scheduled = False
        if self.sm_enabled and not acks.awaiting and acks.unacked:
            self._send_r()

    def _send_r(self) -> None:
        assert self.acks is not None
        self.acks.awaiting = True
        self.send_element(P.sm_element("r"))
        timeout = self.opts.get("ack_timeout")
        if self._ack_timer is None and timeout not in (None, "infinity"):
            self._ack_timer = self.conn.loop.call_later(timeout / 1000, self._ack_timed_out)

    def _ack_timed_out(self) -> None:
        self._ack_timer = None
        pending = len(self.acks.unacked) if self.acks is not None else 0
        log.info("s2s_out_ack_timeout connection_type=s2s remote=%s unacked=%d",
                 self.link.remote, pending)
        # s2s.outgoing.ack_timeout: the stream closes; what it holds goes over a new one
        self.fail("remote-server-timeout", "no acknowledgement from the peer")

    def take_unacked(self) -> list[Element]:
        """The stanzas the peer never acknowledged (none without XEP-0198)."""
        return self.acks.take() if self.acks is not None else []

    def _schedule_idle(self) -> None:
        timeout = self.opts.get("stream_timeout")
        if timeout in (None, "infinity"):
            return
        remaining = timeout / 1000 - (self.conn.loop.time() - self._last_active)
        if remaining <= 0:
            # s2s.outgoing.stream_timeout: an idle outgoing stream is closed; the next
            # stanza opens a new one.
            log.info("s2s_out_idle_close connection_type=s2s remote=%s", self.link.remote)
            self.close()
            return
        self._idle = self.conn.loop.call_later(remaining, self._schedule_idle)

