"""A client connection: the c2s state machine driven by parsed stream events, and the bound
session it becomes (RFC 6120 §4-§8, RFC 6121 for presence state kept per session).

Processing is strictly ordered per connection. Most elements are handled synchronously; when a
step needs the database (SASL credentials, binding, an account lookup) the connection stops
reading until that step is done, then carries on with what was already parsed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import secrets
import time
import types
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from suricate import sasl
from suricate.core import hooks as H
from suricate.jid import JID, InvalidJID
from suricate.protocol import c2s as P
from suricate.protocol.c2s import C2SState as S
from suricate.protocol.errors import StanzaError, StreamError, error_reply
from suricate.protocol.sm import BufferOverflow, StreamManagement
from suricate.storage import StorageError
from suricate.xml import ns
from suricate.xml.element import Element
from suricate.xml.parser import StreamClose, StreamOpen, StreamParser, XMLStreamError

if TYPE_CHECKING:
    from suricate.core.server import Server
    from suricate.net.connection import Connection
    from suricate.net.tls import TLSConfig

log = logging.getLogger("suricate.c2s")

MAX_AUTH_FAILURES = 3  # RFC 6120 §6.4.5: "at least 2 and no more than 5" retries
STANZA_NAMES = frozenset({"message", "presence", "iq"})
_SM_REQUEST = Element("r", ns.SM).to_bytes(ns.CLIENT)
# What a re-made parser is fed before the bytes that woke the session (the header's 'to',
# 'version' and language were checked when the client sent it).
_HIBERNATION_HEADER = (
    f"<stream:stream xmlns='{ns.CLIENT}' xmlns:stream='{ns.STREAM}'>".encode())

# A mechanism's own source of credentials (FAST tokens): (c2s, username) -> the next result.
CredentialSource = Callable[["C2S", str], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class UserAgent:
    """XEP-0388 §2.4 <user-agent/>: a stable id per client installation (FAST tokens are kept
    per user and agent id), and what the client says it is."""

    id: str | None
    software: str | None = None
    device: str | None = None


class C2S:
    """One client stream; after binding, also the session the router delivers to."""

    __slots__ = (
        "server", "conn", "opts", "tls_config", "fsm", "parser", "stream_id", "domain", "lang",
        "jid", "user", "auth_failures", "mechanism", "mechanism_name", "_timer", "_busy",
        "_backlog", "priority", "presence", "anonymous", "started_at", "module_state", "_closing", "_ended",
        # mobile sessions (XEP-0388, XEP-0386, XEP-0484, XEP-0198)
        "sasl2", "user_agent", "credential_source", "sm", "_sasl2_offered", "_sasl2_inline",
        "early_data_auth", "_resend",
        # hibernation (DESIGN §3): was data seen since the last sweep; may the parser go
        "_active", "_hibernatable",
    )

    def __init__(self, server: Server, conn: Connection, opts: Mapping[str, Any],
                 tls_config: TLSConfig | None) -> None:
        self.server = server
        self.conn = conn
        self.opts = opts
        self.tls_config = tls_config
        self.fsm = P.C2SStateMachine()
        self.parser: StreamParser | None = None
        self.stream_id = ""
        self.domain: str | None = None
        self.lang = "en"
        # Set at bind; None before (typed as JID because only bound sessions are routed to).
        self.jid: JID = None  # type: ignore[assignment]
        self.user: JID | None = None  # authenticated bare JID
        self.auth_failures = 0
        self.mechanism: Any = None
        self.mechanism_name = ""
        self._timer: asyncio.TimerHandle | None = None
        self._busy = False
        self._backlog: list[Any] = []
        self._closing = False
        self._ended = False
        # session state (RFC 6121)
        self.priority = 0
        self.presence: Element | None = None
        self.anonymous = False
        self.started_at = time.time()
        self.module_state: dict[str, Any] = {}
        # SASL2: the <authenticate/> being processed (its inline requests are answered in
        # <success/>), None for legacy SASL.
        self.sasl2: Element | None = None
        self.user_agent: UserAgent | None = None
        self.credential_source: CredentialSource | None = None
        self.sm: StreamManagement | None = None
        self._sasl2_offered = False
        self._sasl2_inline: frozenset[str] = frozenset()
        # The authentication arrived as TLS 1.3 early data (RFC 8446 §2.3): FAST insists on
        # a replay counter then (XEP-0484 §3.4).
        self.early_data_auth = False
        self._resend: list[Element] = []
        self._active = True
        self._hibernatable = True
        self._goto(S.WAIT_FOR_STREAM)

    # -- state machine plumbing ---------------------------------------------------------------
    @property
    def state(self) -> S:
        return self.fsm.state

    def _goto(self, new: S) -> None:
        self.fsm.goto(new)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if new in P.TIMED_STATES:
            if self.parser is None or new == S.WAIT_FOR_STREAM:
                # A new stream (first, or restart after TLS/SASL) needs a new parser
                # (RFC 6120 §4.3.3, §6.4.6).
                old_parser = self.parser
                self.parser = StreamParser(self.opts.get("max_stanza_size"))
                if old_parser is not None:
                    old_parser.release()
            # state_timeout is in milliseconds; 0 means no deadline, as on every stream.
            timeout = self.opts.get("state_timeout", 5000)
            if timeout:
                self._timer = self.conn.loop.call_later(timeout / 1000, self._state_timeout)

    def _state_timeout(self) -> None:
        self._timer = None
        if self.state in P.TIMED_STATES:
            log.info("c2s_state_timeout state=%s peer=%s", self.state.value, self.conn.peer)
            self.stream_error(StreamError("connection-timeout"))

    @property
    def is_tls(self) -> bool:
        return self.conn.tls is not None

    @property
    def available(self) -> bool:
        return self.presence is not None

    @property
    def in_early_data(self) -> bool:
        """Bytes are being read before the TLS handshake finished: TLS 1.3 0-RTT data, which an
        attacker may replay (RFC 8446 §8)."""
        tls = self.conn.tls
        return tls is not None and not tls.established

    @property
    def sasl2_offered_inline(self) -> frozenset[str]:
        """Namespaces of the SASL2 inline features offered to this stream."""
        return self._sasl2_inline

    # -- driver callbacks ---------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self._busy:
            self._backlog.append(data)
            return
        self._active = True
        parser = self.parser
        if parser is None:
            if self.state != S.SESSION_ESTABLISHED:
                return
            # Waking from hibernation: a parser inside the stream the client opened.
            parser = self.parser = StreamParser.primed(self.opts.get("max_stanza_size"),
                                                       _HIBERNATION_HEADER)
        elif self.state == S.CLOSED:
            return
        try:
            events = parser.feed(data)
        except XMLStreamError as exc:
            # Stanzas completed before the bad bytes are handled first, so the outcome does
            # not depend on how the peer's bytes were split into reads.
            done = exc.events
            if done:
                self._process(done)
                if self._busy:
                    self._backlog.append(exc)  # the error follows the step now running
                    return
            if self.state != S.CLOSED:
                self.stream_error(StreamError(exc.condition, exc.text))
            return
        if events:
            self._process(events)

    def _process(self, events: list[Any]) -> None:
        for index, event in enumerate(events):
            if self.state == S.CLOSED:
                return
            parser = self.parser
            try:
                pending = self._handle_event(event)
            except StreamError as err:
                self.stream_error(err)
                return
            except Exception:
                log.exception("c2s_internal_error state=%s", self.state.value)
                self.stream_error(StreamError("internal-server-error"))
                return
            if pending is not None:
                # Run the step right away: most never really suspend (SQLite answers inline),
                # and then the connection needs no task, no pause and no resume.
                rest_of_step = (self._step_now(pending) if self.server.storage.inline
                                else pending)
                if rest_of_step is not None:
                    rest = events[index + 1:] if self.parser is parser else []
                    self._busy = True
                    self.conn.pause_reading()
                    self.server.spawn(self._await_step(rest_of_step, rest))
                    return
                if self.state == S.CLOSED:
                    return
            if self.parser is not parser:
                return  # stream restarted: later events belonged to the old stream

    def _step_now(self, pending: Awaitable[None]) -> Awaitable[None] | None:
        """Run ``pending`` up to its first real suspension; None when it finished (errors
        handled as ``_await_step`` does), else what is left of it to await."""
        steps = pending.__await__()
        try:
            yielded = steps.send(None)
        except StopIteration:
            return None
        except StreamError as err:
            self.stream_error(err)
            return None
        except Exception:
            log.exception("c2s_internal_error state=%s", self.state.value)
            self.stream_error(StreamError("internal-server-error"))
            return None
        return _resume(steps, yielded)

    async def _await_step(self, pending: Awaitable[None], rest: list[Any]) -> None:
        try:
            await pending
        except StreamError as err:
            self.stream_error(err)
        except Exception:
            log.exception("c2s_internal_error state=%s", self.state.value)
            self.stream_error(StreamError("internal-server-error"))
        self._busy = False
        if self.state == S.CLOSED:
            return
        if rest:
            self._process(rest)
        if not self._busy:
            backlog, self._backlog = self._backlog, []
            for index, chunk in enumerate(backlog):
                if self._busy:
                    self._backlog.extend(backlog[index:])
                    break
                if isinstance(chunk, XMLStreamError):
                    self.stream_error(StreamError(chunk.condition, chunk.text))
                    return
                self.data_received(chunk)
            if not self._busy:
                self.conn.resume_reading()

    def eof_received(self) -> None:
        # The client half-closed without </stream:stream>: nothing more can arrive, so the
        # session ends; our pending output is still flushed before the socket closes.
        if self.state == S.SESSION_ESTABLISHED and self.sm is not None and self.sm.resume:
            # XEP-0198 §5: no </stream:stream>, so not a clean end: the session stays
            # resumable (connection_lost follows the abort).
            self.conn.abort()
            return
        self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        was_state = self.state
        if was_state == S.SESSION_ESTABLISHED and not self._closing and self.sm is not None \
                and self.sm.resume and not self._ended \
                and self.server.hooks.fold(H.SESSION_SUSPEND, False, self):
            # XEP-0198 §5: the session outlives its connection for resume_timeout.
            self.fsm.goto(S.RESUME_SESSION)
            log.info("c2s_session_suspended jid=%s", self.jid)
            return
        if was_state != S.CLOSED:
            self.fsm.goto(S.CLOSED)
        self._end_session("connection lost" if exc is None else f"connection lost: {exc}")

    def resume_timed_out(self) -> None:
        """mod_stream_management: nobody resumed this session in time; it ends now and its
        unacknowledged stanzas go elsewhere (XEP-0198 §5)."""
        if self.state != S.RESUME_SESSION:
            return
        self.fsm.goto(S.CLOSED)
        self._end_session("resumption timed out")

    def write_overflow(self) -> None:
        self.stream_error(StreamError("policy-violation", "client does not read its socket"))

    # -- output -------------------------------------------------------------------------------
    def send(self, element: Element) -> None:
        sm = self.sm
        request = False
        if sm is not None and element.name in STANZA_NAMES and element.xmlns == ns.CLIENT:
            try:
                request = sm.stanza_out(element)
            except BufferOverflow:
                # XEP-0198 §4 leaves the limit to the server; past buffer_max the session
                # ends, and what the client did not acknowledge is delivered elsewhere.
                self.stream_error(StreamError("resource-constraint",
                                              "too many unacknowledged stanzas"))
                return
        data = element.to_bytes(ns.CLIENT, P.STREAM_PREFIXES)
        self.server.instrument.xmpp_element_out("c2s", self.domain or "", element, len(data))
        self.conn.write(data)
        if request:
            self.conn.write(_SM_REQUEST)

    def stream_error(self, err: StreamError) -> None:
        if self.state == S.CLOSED or self._closing:
            return
        log.info("c2s_stream_error condition=%s text=%s peer=%s jid=%s", err.condition, err.text,
                 self.conn.peer, self.jid)
        if not self.stream_id:
            if self.server.cfg["general"].get("hide_service_name"):
                self._vanish()  # general.hide_service_name: no header, no error
                return
            # RFC 6120 §4.9.1.1: an error before our header still opens the stream first.
            self.stream_id = secrets.token_hex(8)
            self.conn.write(P.stream_header(self.stream_id, self.domain or
                                            self.server.default_domain))
        self.send(err.to_element())
        self.close()

    def _vanish(self) -> None:
        """Close at once: nothing more is written (no stream error, no </stream:stream>)."""
        self._closing = True
        self.fsm.goto(S.CLOSED)
        self.conn.abort()

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if self.stream_id:
            self.conn.write(P.STREAM_CLOSE)
        if self.state != S.CLOSED:
            self.fsm.goto(S.CLOSED)
        self._end_session("closed")
        self.conn.close()

    # -- events -------------------------------------------------------------------------------
    def _handle_event(self, event: Any) -> Awaitable[None] | None:
        if isinstance(event, Element):
            self.server.instrument.xmpp_element_in("c2s", self.domain or "", event)
            return self._handle_element(event)
        if isinstance(event, StreamOpen):
            self._stream_open(event)
            return None
        if isinstance(event, StreamClose):
            self.close()
            return None
        return None

    def hibernate(self) -> bool:
        """Drop the parser of an idle established session (it is most of an idle connection's
        memory, DESIGN §3); ``data_received`` makes a primed one when bytes arrive. Called by
        the listener's periodic sweep: a session is idle if no byte came since the last one."""
        parser = self.parser
        if self._active:
            self._active = False
            return False
        if (parser is None or not parser.idle or not self._hibernatable
                or self.state != S.SESSION_ESTABLISHED or self._busy):
            return False
        self.parser = None
        parser.release()
        return True

    def _stream_open(self, header: StreamOpen) -> None:
        if self.state != S.WAIT_FOR_STREAM:
            raise StreamError("not-well-formed")
        if set(header.prefixes) - {"stream"}:
            # Prefixes we would not re-declare when re-making the parser: keep this one.
            self._hibernatable = False
        to = header.attrs.get("to")
        self.lang = header.attrs.get("xml:lang") or "en"
        domain = None
        if to:
            try:
                domain = JID.parse(to).domain
            except (InvalidJID, ValueError):
                domain = None
        if self.domain is None:
            self.domain = domain if domain and self.server.is_local_domain(domain) else None
        error = self._check_header(header, to, domain)
        if error is not None and self.server.cfg["general"].get("hide_service_name") \
                and self.user is None:
            # general.hide_service_name: a peer that cannot open a valid stream learns
            # nothing about what listens here (no header, no stream error, RFC 6120 §4.9.1.1
            # notwithstanding): the connection just closes.
            self._vanish()
            return
        self.stream_id = secrets.token_hex(8)
        self.conn.write(P.stream_header(self.stream_id, self.domain or self.server.default_domain,
                                        "en"))
        if error is not None:
            raise error
        if self.user is None:
            self._goto(S.WAIT_FOR_FEATURE_BEFORE_AUTH)
            self.send(P.features_element(self._features_before_auth()))
        else:
            self._goto(S.WAIT_FOR_FEATURE_AFTER_AUTH)
            self.send(P.features_element(self._features_after_auth()))

    def _check_header(self, header: StreamOpen, to: str | None,
                      domain: str | None) -> StreamError | None:
        """RFC 6120 §4.9.3: the stream error a bad header deserves, in the order a peer would
        want to hear about them."""
        if header.name != "stream" or header.xmlns != ns.STREAM:
            return StreamError("invalid-namespace")
        if header.content_ns != ns.CLIENT:
            return StreamError("invalid-namespace")
        if not to:
            return StreamError("host-unknown", "no 'to' in the stream header")
        if domain is None or not self.server.is_local_domain(domain):
            return StreamError("host-unknown")
        if self.domain != domain:
            return StreamError("host-unknown", "the domain changed on stream restart")
        version = header.attrs.get("version", "0.9")
        try:
            major = int(version.split(".")[0])
        except ValueError:
            major = 0
        if major < 1:
            return StreamError("unsupported-version")
        return None

    # -- before authentication ----------------------------------------------------------------
    def _tls_mode(self) -> str | None:
        return self.tls_config.mode if self.tls_config is not None else None

    def _starttls_offered(self) -> bool:
        return self._tls_mode() in ("starttls", "starttls_required") and not self.is_tls

    def _tls_required_but_missing(self) -> bool:
        return self._tls_mode() == "starttls_required" and not self.is_tls

    def sasl_mechanisms(self) -> list[str]:
        """The SASL mechanisms this stream offers now (legacy and SASL2 alike)."""
        if self._tls_required_but_missing():
            return []
        cb_types = self.conn.tls.channel_binding_types() if self.conn.tls is not None else []
        names = self.server.auth.mechanisms(tls=self.is_tls, cb_types=cb_types,
                                            listener=self.opts)
        if not self.is_tls and self._tls_mode() is not None:
            # PLAIN sends the password itself: never before TLS on a listener that offers TLS
            # (a listener without any TLS table is the operator's explicit choice).
            names = [n for n in names if n != "PLAIN"]
        return names

    def _features_before_auth(self) -> list[Element]:
        features: list[Element] = []
        if self._starttls_offered():
            features.append(P.starttls_feature(self._tls_mode() == "starttls_required"))
        mechs = self.sasl_mechanisms()
        if mechs:
            features.append(P.mechanisms_feature(mechs))
            if self.conn.tls is not None:
                features.append(P.channel_binding_feature(self.conn.tls.channel_binding_types()))
        result: list[Element] = self.server.hooks.fold(H.C2S_PREAUTH_FEATURES, features, self)
        for el in result:
            if el.name == "authentication" and el.xmlns == ns.SASL2:
                # XEP-0388: <authenticate/> is only valid when offered; remember which
                # inline features (Bind 2, FAST, SM) the client may use with it.
                self._sasl2_offered = True
                inline = el.find("inline", ns.SASL2)
                self._sasl2_inline = frozenset(
                    child.xmlns for child in (inline.elements() if inline is not None else ()))
        return result

    def _handle_element(self, el: Element) -> Awaitable[None] | None:
        state = self.state
        if state == S.SESSION_ESTABLISHED:
            return self._handle_stanza(el)
        if state == S.WAIT_FOR_FEATURE_BEFORE_AUTH:
            if el.xmlns == ns.TLS and el.name == "starttls":
                self._starttls()
                return None
            if el.xmlns == ns.SASL and el.name == "auth":
                return self._sasl_auth(el)
            if el.xmlns == ns.SASL2 and el.name == "authenticate" and self._sasl2_offered:
                return self._sasl2_authenticate(el)
            if el.name == "iq" and el.xmlns == ns.CLIENT:
                return self._preauth_iq(el)
            raise StreamError("not-authorized")
        if state == S.WAIT_FOR_SASL_RESPONSE:
            sasl_ns = ns.SASL2 if self.sasl2 is not None else ns.SASL
            if el.xmlns == sasl_ns and el.name == "response":
                return self._sasl_response(el)
            if el.xmlns == sasl_ns and el.name == "abort":
                self.mechanism = None
                self.send(self._failure_element("aborted"))
                self.sasl2 = None
                self._goto(S.WAIT_FOR_FEATURE_BEFORE_AUTH)
                return None
            raise StreamError("not-authorized")
        if state == S.WAIT_FOR_FEATURE_AFTER_AUTH:
            if el.name == "iq" and el.xmlns == ns.CLIENT and el.find("bind", ns.BIND) is not None:
                return self._bind(el)
            if el.xmlns != ns.CLIENT and self.server.hooks.fold(H.C2S_STREAM_ELEMENT, False,
                                                                 self, el):
                return None  # XEP-0198 <resume/> after legacy authentication
            raise StreamError("not-authorized")
        raise StreamError("not-authorized")

    def _starttls(self) -> None:
        if not self._starttls_offered() or self.tls_config is None:
            # RFC 6120 §5.4.2.2: STARTTLS not offered -> <failure/> and close.
            self.send(Element("failure", ns.TLS))
            self.close()
            return
        self.send(Element("proceed", ns.TLS))
        self.conn.start_tls(self.tls_config)
        self._goto(S.WAIT_FOR_STREAM)

    async def _preauth_iq_async(self, iq: Element) -> None:
        handled = await self.server.hooks.fold_async(H.C2S_PREAUTH_IQ, False, self, iq)
        if not handled:
            self.stream_error(StreamError("not-authorized"))

    def _preauth_iq(self, iq: Element) -> Awaitable[None]:
        return self._preauth_iq_async(iq)

    def sasl_context(self) -> sasl.SaslContext:
        return sasl.SaslContext(
            server=self.domain or self.server.default_domain,
            channel_binding=self.conn.tls if self.conn.tls is not None else None,
            advertised_mechanisms=self.sasl_mechanisms(),
            advertised_cb_types=(self.conn.tls.channel_binding_types()
                                 if self.conn.tls is not None else []),
            scram_iterations=self.server.auth.scram_iterations,
        )

    def _sasl_auth(self, el: Element) -> Awaitable[None] | None:
        if self._tls_required_but_missing():
            self.send(P.sasl_failure("encryption-required"))
            return None
        name = el.attrs.get("mechanism", "")
        self.mechanism_name = name
        if name not in self.sasl_mechanisms():
            # RFC 6120 §6.4.6: a mechanism we did not offer; counts as a failed attempt
            self._sasl_fail(sasl.Failure("invalid-mechanism"))
            return None
        try:
            data = _b64decode(el.text)
        except ValueError:
            self._sasl_fail(sasl.Failure("incorrect-encoding"))
            return None
        self.mechanism = sasl.create_mechanism(name, self.sasl_context())
        self._goto(S.WAIT_FOR_SASL_RESPONSE)
        return self._sasl_step(data)

    def _sasl_response(self, el: Element) -> Awaitable[None] | None:
        try:
            data = _b64decode(el.text)
        except ValueError:
            self._sasl_fail(sasl.Failure("incorrect-encoding"))
            return None
        return self._sasl_step(data)

    def _sasl_step(self, data: bytes) -> Awaitable[None] | None:
        result = self.mechanism.step(data)
        return self._sasl_result(result)

    def _sasl_result(self, result: Any) -> Awaitable[None] | None:
        if isinstance(result, sasl.NeedCredentials):
            return self._sasl_fetch(result.username)
        if isinstance(result, sasl.Challenge):
            sasl_ns = ns.SASL2 if self.sasl2 is not None else ns.SASL
            self.send(Element("challenge", sasl_ns, {}, [_b64encode(result.data)]))
            return None
        if isinstance(result, sasl.Success):
            return self._sasl_success(result)
        assert isinstance(result, sasl.Failure)
        self._sasl_fail(result)
        return None

    async def _sasl_fetch(self, username: str) -> None:
        if self.credential_source is not None:
            # A mechanism with its own credentials (FAST: the user's tokens).
            result = await self.credential_source(self, username)
        else:
            try:
                record = await self.server.auth.credentials(username, self.domain or "")
            except StorageError:
                # RFC 6120 §6.5.12: the database is down; the client may try again later
                # and the stream stays up.
                log.warning("c2s_auth_storage_unavailable domain=%s", self.domain)
                self._sasl_fail(sasl.Failure("temporary-auth-failure"))
                return
            result = self.mechanism.credentials(record)
        nxt = self._sasl_result(result)
        if nxt is not None:
            await nxt

    def _failure_element(self, condition: str, text: str | None = None) -> Element:
        if self.sasl2 is not None:
            return P.sasl2_failure(condition, text)
        return P.sasl_failure(condition, text)

    def _sasl_fail(self, failure: Any) -> None:
        self.mechanism = None
        self.auth_failures += 1
        self.server.metrics_auth_failed(self)
        log.info("c2s_auth_failed mech=%s condition=%s peer=%s domain=%s", self.mechanism_name,
                 failure.condition, self.conn.peer, self.domain)
        self.send(self._failure_element(failure.condition, failure.text))
        self.sasl2 = None
        self.credential_source = None
        if self.auth_failures >= MAX_AUTH_FAILURES:
            self.stream_error(StreamError("policy-violation", "too many authentication failures"))
            return
        if self.state == S.WAIT_FOR_SASL_RESPONSE:
            self._goto(S.WAIT_FOR_FEATURE_BEFORE_AUTH)

    async def _sasl_success(self, result: Any) -> None:
        domain = self.domain or self.server.default_domain
        try:
            user = JID(result.username, domain, None)
        except (InvalidJID, ValueError):
            self._sasl_fail(sasl.Failure("not-authorized"))
            return
        anonymous = self.mechanism_name == "ANONYMOUS"
        if self.server.access.evaluate("c2s", user.local, domain, None, domain) != "allow" \
                or not self.server.access_allows(self.opts.get("access") or "all", user):
            self._sasl_fail(sasl.Failure("not-authorized", "access denied"))
            return
        self.user = user
        self.anonymous = anonymous
        if anonymous:
            self.server.auth.anonymous_login(user)
        log.info("c2s_auth_success user=%s mech=%s peer=%s", user, self.mechanism_name,
                 self.conn.peer)
        if self.sasl2 is not None:
            await self._sasl2_success(result)
            return
        self.mechanism = None
        extra = result.additional_data
        self.send(Element("success", ns.SASL, {}, [_b64encode(extra)] if extra else []))
        self._goto(S.WAIT_FOR_STREAM)

    # -- SASL2 (XEP-0388) ---------------------------------------------------------------------
    def _sasl2_authenticate(self, el: Element) -> Awaitable[None] | None:
        self.sasl2 = el
        self.credential_source = None
        agent = el.find("user-agent", ns.SASL2)
        if agent is not None:
            self.user_agent = UserAgent(agent.attrs.get("id"), agent.find_text("software"),
                                        agent.find_text("device"))
        if self._tls_required_but_missing():
            self._sasl_fail(sasl.Failure("encryption-required"))
            return None
        name = el.attrs.get("mechanism", "")
        self.mechanism_name = name
        self.early_data_auth = self.in_early_data
        mechanism = None
        if name in self.sasl_mechanisms():
            mechanism = sasl.create_mechanism(name, self.sasl_context())
        else:
            # Mechanisms offered only inline (FAST's HT-*, XEP-0484 §3.1) come from modules,
            # which then also provide the credentials.
            mechanism = self.server.hooks.fold(H.SASL2_MECHANISM, None, self, name, el)
        if mechanism is None:
            self._sasl_fail(sasl.Failure("invalid-mechanism"))
            return None
        initial = el.find("initial-response", ns.SASL2)
        try:
            # XEP-0388 §2.5: no <initial-response/> is not the same as an empty one; a
            # mechanism that needs one then answers with an (empty) challenge.
            data = _b64decode(initial.text) if initial is not None else b""
        except ValueError:
            self._sasl_fail(sasl.Failure("incorrect-encoding"))
            return None
        self.mechanism = mechanism
        self._goto(S.WAIT_FOR_SASL_RESPONSE)
        return self._sasl_step(data)

    async def _sasl2_success(self, result: Any) -> None:
        """XEP-0388 §2.6.3: one <success/> says who the client is, carries what the inline
        requests produced (XEP-0198 resumption, XEP-0386 binding, XEP-0484 token), and the
        stream goes on without a restart."""
        request = self.sasl2
        assert request is not None and self.user is not None
        self.mechanism = None
        self.credential_source = None
        # Modules act on their inline requests first: FAST issues or rotates tokens, stream
        # management may take over a waiting session (then we are bound already).
        extra: list[Element] = await self.server.hooks.fold_async(H.SASL2_SUCCESS, [], self,
                                                                  request)
        if self.state == S.CLOSED:
            return
        resumed = self.state == S.SESSION_ESTABLISHED
        bound: Element | None = None
        bind = request.find("bind", ns.BIND2)
        if not resumed and bind is not None and ns.BIND2 in self._sasl2_inline:
            bound = await self._bind2(bind)
            if bound is None:
                return  # refused: the stream is gone
        success = Element("success", ns.SASL2)
        if result.additional_data:
            success.add("additional-data", text=_b64encode(result.additional_data))
        identity = self.jid if self.jid is not None else self.user
        success.add("authorization-identifier", text=str(identity))
        if bound is not None:
            success.append(bound)
        success.children.extend(extra)
        self.sasl2 = None
        if resumed:
            # XEP-0198 inline resumption: the session exists already; what the client had
            # not acknowledged follows the <success/>.
            self.send(success)
            self.after_takeover()
            return
        if bound is not None:
            self._goto(S.SESSION_ESTABLISHED)
            self.send(success)
            self._session_ready()
            return
        self.send(success)
        # XEP-0388 §2.6.3: no restart; the post-authentication features come right away.
        self._goto(S.WAIT_FOR_FEATURE_AFTER_AUTH)
        self.send(P.features_element(self._features_after_auth()))

    # -- after authentication -----------------------------------------------------------------
    def _features_after_auth(self) -> list[Element]:
        features = [P.bind_feature()]
        if self.opts.get("backwards_compatible_session", True):
            features.append(P.session_feature())
        result: list[Element] = self.server.hooks.fold(H.C2S_STREAM_FEATURES, features, self)
        return result

    async def _bind(self, iq: Element) -> None:
        bind = iq.find("bind", ns.BIND)
        assert bind is not None and self.user is not None
        if iq.attrs.get("type") != "set":
            self.send(error_reply(iq, StanzaError("bad-request")))
            return
        requested = (bind.find_text("resource", ns.BIND) or "").strip()
        if requested:
            try:
                full = self.user.with_resource(requested)
            except (InvalidJID, ValueError):
                # RFC 6120 §7.7.2.1: a resource that cannot be prepared
                self.send(error_reply(iq, StanzaError("bad-request", "invalid resource")))
                return
        else:
            # RFC 6120 §7.6.2.1: the server generates a resource
            full = self.user.with_resource(f"{int(time.time())}-{secrets.token_hex(8)}")
        error = self._open_session(full)
        if error is not None:
            self.send(error_reply(iq, error))
            return
        self._goto(S.SESSION_ESTABLISHED)
        await self.server.hooks.fold_async(H.SESSION_OPENED, None, self)
        reply = Element("iq", ns.CLIENT, {"type": "result"})
        if "id" in iq.attrs:
            reply.attrs["id"] = iq.attrs["id"]
        reply.add("bind", ns.BIND).add("jid", text=str(full))
        self.send(reply)
        self._session_ready()

    def _open_session(self, full: JID) -> StanzaError | None:
        """Enter the session table as ``full`` (RFC 6120 §7), within max_user_sessions."""
        assert self.user is not None
        limit = self.server.max_user_sessions(self.user)
        existing = self.server.sessions.lookup(full)
        current = self.server.sessions.count_user(self.user) - (1 if existing else 0)
        if limit is not None and current >= limit:
            return StanzaError("resource-constraint", "too many sessions for this account")
        self.jid = full
        old = self.server.sessions.register(self)
        if old is not None:
            # RFC 6120 §7.7.2.2: the new session wins; the old one gets <conflict/>.
            old.replaced()
        return None

    def _session_ready(self) -> None:
        self.server.sm_session_opened(self)
        log.info("c2s_session_opened jid=%s peer=%s", self.jid, self.conn.peer)

    async def _bind2(self, bind: Element) -> Element | None:
        """XEP-0386 §3: bind inside the SASL2 <authenticate/>; the resource is the client's
        <tag/> plus a unique suffix (§3.2: the server picks the resource, the tag only makes
        it readable). Returns <bound/>, or None when the stream ended."""
        assert self.user is not None
        tag = (bind.find_text("tag", ns.BIND2) or "").strip()
        suffix = secrets.token_hex(6)
        full: JID | None = None
        if tag:
            try:
                full = self.user.with_resource(f"{tag[:64]}.{suffix}")
            except (InvalidJID, ValueError):
                full = None  # a tag that cannot be a resource is just not used
        if full is None:
            full = self.user.with_resource(f"{int(time.time())}-{suffix}")
        error = self._open_session(full)
        if error is not None:
            self.stream_error(StreamError("policy-violation", error.text))
            return None
        await self.server.hooks.fold_async(H.SESSION_OPENED, None, self)
        children: list[Element] = await self.server.hooks.fold_async(H.BIND2_BIND, [], self,
                                                                     bind)
        return Element("bound", ns.BIND2, {}, list(children))

    def take_over(self, old: C2S, client_h: int) -> None:
        """XEP-0198 §5: this stream continues ``old``'s session. The old stream, connected or
        not, leaves without ending the session; what the client had not acknowledged is sent
        again once the caller has answered <resumed/> (``after_takeover``)."""
        sm = old.sm
        assert sm is not None and self.user is not None
        sm.ack(client_h)  # may raise HandledCountTooHigh: the caller answers <failed/>
        self._resend = sm.take_unacked()
        for name in ("jid", "priority", "presence", "anonymous", "started_at", "module_state", "sm", "lang"):
            setattr(self, name, getattr(old, name))
        old.sm = None
        old._ended = True  # its session continues here: no close hooks, nothing re-routed
        if old.state == S.RESUME_SESSION:
            old.fsm.goto(S.CLOSED)
        elif old.state != S.CLOSED:
            # The client came back before we noticed its old connection was dead.
            old._vanish()
        self.server.sessions.register(self)
        self._goto(S.SESSION_ESTABLISHED)
        self.server.hooks.fold(H.SESSION_RESUMED, None, self, old)
        log.info("c2s_session_resumed jid=%s peer=%s unacked=%d", self.jid, self.conn.peer,
                 len(self._resend))

    def after_takeover(self) -> None:
        """Send what the resumed session had not had acknowledged (after <resumed/>)."""
        resend, self._resend = self._resend, []
        for stanza in resend:
            self.send(stanza)

    def replaced(self) -> None:
        if self.state == S.RESUME_SESSION:
            self.fsm.goto(S.CLOSED)
            self._end_session("replaced")
            return
        self.stream_error(StreamError("conflict", "replaced by a new connection"))

    # -- session established: stanzas ----------------------------------------------------------
    def _handle_stanza(self, el: Element) -> Awaitable[None] | None:
        if el.name not in STANZA_NAMES or el.xmlns != ns.CLIENT:
            if self.server.hooks.fold(H.C2S_STREAM_ELEMENT, False, self, el):
                return None  # XEP-0198 <r/> <a/> <enable/>, XEP-0352 <active/> ...
            raise StreamError("unsupported-stanza-type")
        if self.sm is not None:
            self.sm.stanza_in()  # XEP-0198 §4: handled, whatever the outcome
        attrs = el.attrs
        frm = attrs.get("from")
        if frm is not None and frm != str(self.jid):
            try:
                claimed = JID.parse(frm)
            except (InvalidJID, ValueError):
                raise StreamError("invalid-from") from None
            # RFC 6120 §8.1.2.1: a from other than our full or bare JID is a spoof.
            if claimed != self.jid and claimed != self.jid.bare:
                raise StreamError("invalid-from")
        attrs["from"] = str(self.jid)
        to_attr = attrs.get("to")
        if to_attr:
            try:
                to = JID.parse(to_attr)
            except (InvalidJID, ValueError):
                self._reply_error(el, StanzaError("jid-malformed"))
                return None
        else:
            to = None
        if el.name == "iq":
            child = el.first_element()
            if child is not None and child.xmlns == ns.SESSION and child.name == "session":
                self._reply_result(el)
                return None
            if child is not None and child.xmlns == ns.BIND:
                self._reply_error(el, StanzaError("not-allowed", "already bound"))
                return None
        filtered = self.server.hooks.fold(H.USER_SEND_PACKET, el, self)
        if filtered is None:
            return None
        if to is None:
            if el.name == "presence":
                return None  # only mod_presence acts on broadcast presence
            # RFC 6120 §10.3: no 'to' means the account itself.
            to = self.jid.bare
        else:
            filtered.attrs["to"] = str(to)
        self.server.router.route(self.jid, to, filtered)
        return None

    def _reply_result(self, iq: Element) -> None:
        reply = Element("iq", ns.CLIENT, {"type": "result", "to": str(self.jid)})
        if "id" in iq.attrs:
            reply.attrs["id"] = iq.attrs["id"]
        self.send(reply)

    def _reply_error(self, stanza: Element, err: StanzaError) -> None:
        if stanza.attrs.get("type") == "error":
            return
        reply = error_reply(stanza, err)
        reply.attrs["to"] = str(self.jid)
        reply.attrs.pop("from", None)
        self.send(reply)

    def deliver(self, stanza: Element) -> None:
        """The router hands us a stanza for this session."""
        # XEP-0198 §5: a waiting session keeps it for the client that resumes (or re-routes
        # it if none does).
        waiting = self.sm if self.state == S.RESUME_SESSION else None
        if waiting is None and (self.state != S.SESSION_ESTABLISHED or self._closing):
            self.server.undeliverable(stanza, self)
            return
        filtered = self.server.hooks.fold(H.USER_RECEIVE_PACKET, stanza, self)
        if filtered is None:
            return
        if waiting is None:
            self.send(filtered)
            return
        try:
            waiting.stanza_out(filtered)
        except BufferOverflow:
            self.fsm.goto(S.CLOSED)
            self._end_session("stream management buffer full")

    # -- end ------------------------------------------------------------------------------------
    def _end_session(self, reason: str) -> None:
        jid = self.jid
        if jid is None or self._ended:
            if jid is None and self.anonymous and self.user is not None and not self._ended:
                self._ended = True
                self.server.auth.anonymous_logout(self.user)
            return
        self._ended = True
        self.server.sessions.unregister(self)
        if self.sm is not None:
            # XEP-0198 §5 (and our rule that nothing accepted is lost): stanzas the client
            # never acknowledged go to the account's other resources or offline storage.
            sm, self.sm = self.sm, None
            for stanza in sm.take_unacked():
                if _is_carbon_copy(stanza):
                    continue  # a copy: the original reached its own recipient
                self.server.undeliverable(stanza, self)
        self.server.sm_session_closed(self, reason)
        if self.anonymous:
            self.server.auth.anonymous_logout(jid.bare)
        self.server.spawn(self._run_close_hooks(reason))

    async def _run_close_hooks(self, reason: str) -> None:
        # The session has left the table already; modules still see its JID and presence.
        if self.presence is not None:
            # The connection ended while available: no unavailable presence carried a status.
            await self.server.hooks.fold_async(H.UNSET_PRESENCE, None, self, "")
        await self.server.hooks.fold_async(H.SESSION_CLOSED, None, self, reason)
        log.info("c2s_session_closed jid=%s reason=%s", self.jid, reason)


@types.coroutine
def _resume(steps: Generator[Any, Any, Any], yielded: Any) -> Generator[Any, Any, Any]:
    """Await the rest of a coroutine that already ran up to ``yielded`` (a future for the
    task to wait on): what ``await`` would have done from there on."""
    try:
        while True:
            try:
                sent = yield yielded
            except BaseException as exc:  # cancellation included: it goes to the step
                yielded = steps.throw(exc)
            else:
                yielded = steps.send(sent)
    except StopIteration as stop:
        return stop.value


def _is_carbon_copy(stanza: Element) -> bool:
    return stanza.name == "message" and any(
        child.xmlns == ns.CARBONS for child in stanza.elements())


def _b64decode(text: str) -> bytes:
    text = text.strip()
    if text in ("", "="):  # RFC 6120 §6.4.2: "=" is an empty initial response
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("bad base64") from None


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode() if data else "="

