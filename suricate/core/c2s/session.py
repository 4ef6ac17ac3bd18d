"""The established session: what the client sends once bound, and how the session ends.

- Stanza checks (RFC 6120 §8.1.2.1: a 'from' other than the session's full or bare JID is a
  spoof, ``invalid-from``; §8.3.3.8 ``jid-malformed`` for a bad 'to'), 'from' stamping, the
  ``user_send_packet`` filters, then routing (§10.3: no 'to' means the account itself).
- Top-level elements that are not stanzas go to the modules (``c2s_stream_element``:
  XEP-0198 <r/> <a/> <enable/>, XEP-0352 <active/> ...), else ``unsupported-stanza-type``.
- A session another stream takes over (XEP-0198 §5 resumption, driven by
  mod_stream_management through ``adopt``), one replaced by a new login (RFC 6120 §7.7.2.2),
  and the end: the session leaves the table, what the client never acknowledged goes back to
  the router, the close hooks run.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable
from time import perf_counter_ns
from typing import Any

from suricate.core import hooks as H
from suricate.core.c2s.negotiation import Negotiation
from suricate.core.c2s.stream import SM_KEY
from suricate.jid import JID, InvalidJID
from suricate.protocol.c2s import C2SState as S
from suricate.protocol.errors import StanzaError, StreamError, error_reply
from suricate.protocol.sm import StreamManagement
from suricate.protocol.stanza import STANZA_NAMES
from suricate.xml import ns
from suricate.xml.element import Element

log = logging.getLogger("suricate.c2s")

# What a session keeps when another stream takes it over (its per-module state included).
_SESSION_FIELDS = ("jid", "priority", "presence", "anonymous", "started_at", "module_state",
                   "lang")


class EstablishedSession(Negotiation):
    __slots__ = ("priority", "presence", "started_at", "_heir", "_inherited")

    priority: int  # RFC 6121 §4.7.2.3, of the last available presence
    presence: Element | None  # the last available presence broadcast, None when unavailable
    started_at: float
    # While this session ends replaced by a new one (same full JID, or same client): that
    # session, which takes the messages this one never had acknowledged (``replaced_by``).
    _heir: Any
    # On that new session: those messages, written right after its bind result.
    _inherited: list[Element] | None

    @property
    def available(self) -> bool:
        return self.presence is not None

    def _open_session(self, full: JID, elsewhere: int = 0,
                      same_client: bool = False) -> StanzaError | None:
        """Enter the session table as ``full`` (RFC 6120 §7), within max_user_sessions;
        ``elsewhere``: the account's other sessions on other nodes (sm_backend = "redis").
        ``same_client`` (Bind 2): this node's sessions of the same client are about to end
        (``_end_earlier_sessions_of_client``) and do not count: a phone logging in again
        while its dead session waits for resumption is not a second session."""
        assert self.user is not None
        limit = self.server.max_user_sessions(self.user)
        existing = self.server.sessions.lookup(full)
        current = self.server.sessions.count_user(self.user) - (1 if existing else 0) \
            + elsewhere
        if same_client and limit is not None and current >= limit:
            current -= self._earlier_sessions_of_client_here(existing)
        if limit is not None and current >= limit:
            if limit <= 0:
                return StanzaError("resource-constraint", "no session allowed for this account")
            self._end_oldest_sessions(current - limit + 1, existing, full)
        self.jid = full
        old = self.server.sessions.register(self)
        if old is not None:
            # RFC 6120 §7.7.2.2: the new session wins; the old one gets <conflict/>.
            replaced_by = getattr(old, "replaced_by", None)
            if replaced_by is not None:
                replaced_by(self)
            else:
                old.replaced()
        return None

    def _end_oldest_sessions(self, count: int, replaced: Any, full: JID) -> None:
        """max_user_sessions reached: the account's ``count`` oldest other sessions end with
        <conflict/> so that this one opens, as MongooseIM 6.4 (and ejabberd) do. RFC 6120
        §7.6.2.1 also allows refusing the new one (resource-constraint), but then a client
        that binds a new resource at each connection is locked out while its dead sessions
        wait for their resumption (XEP-0198), and the user cannot log in at all. The oldest
        of the whole account: this node's by ``started_at``, other nodes' by their uptime
        (``sm_backend = "redis"``: asked of them, hence a task)."""
        assert self.user is not None
        agent = self.user_agent
        same = agent.id if agent is not None and agent.id else None
        now = time.time()
        here = [(now - getattr(other, "started_at", now), other.replaced)
                for other in self.server.sessions.resources(self.user)
                if other is not replaced and other is not self
                # Bind 2 ends the same client's sessions anyway (_end_earlier_sessions_of_client)
                and not (same is not None
                         and getattr(getattr(other, "user_agent", None), "id", None) == same)]
        log.info("c2s_session_limit jid=%s ending=%d", full, count)
        self.server.spawn(self.server.cluster.end_oldest_sessions(self.user, count, full, here))

    def _earlier_sessions_of_client_here(self, replaced: Any) -> int:
        """This node's sessions of this account from the same client (its SASL2 user-agent
        id), but ``replaced`` (the session of the same full JID, already not counted)."""
        agent = self.user_agent
        if agent is None or not agent.id or self.user is None:
            return 0
        return sum(1 for other in self.server.sessions.resources(self.user)
                   if other is not replaced and other is not self
                   and (other_agent := getattr(other, "user_agent", None)) is not None
                   and other_agent.id == agent.id)

    def _end_earlier_sessions_of_client(self) -> None:
        """XEP-0386 §3: "Upon successful binding of a resource, the server SHOULD terminate
        any earlier sessions from the same client (identified by the <user-agent> 'id'
        attribute in its SASL2 authentication request)". A phone that logs in afresh after
        its connection died (its app restarted, or it could not resume) would otherwise leave
        its old session waiting ``resume_timeout`` for a <resume/> that never comes: shown to
        contacts and rooms as a second device, holding what was sent to it meanwhile. Ended
        as replaced (<conflict/>, or at once when it waits for resumption), its
        unacknowledged stanzas go back to the router.

        On this node, and on the account's other nodes (``sm_backend = "redis"``: the phone
        may have reached another node through the load balancer): a cast asks each of them to
        do the same for its own sessions (``SAME_CLIENT_TOPIC``). The cast carries a digest
        of the id, not the id (a per-installation identifier the client gave this node)."""
        agent = self.user_agent
        if agent is None or not agent.id or self.user is None or self.jid is None:
            return
        digest = client_digest(self.user, agent.id)
        end_sessions_of_client(self.server, self.user, digest, self.jid, heir=self)
        self.server.cluster.cast(self.user, SAME_CLIENT_TOPIC, Element("bound", ns.BIND2),
                                 digest, str(self.jid))

    # -- what the client sends ------------------------------------------------------------------
    def _timed_stanza(self, el: Element) -> Awaitable[None] | None:
        """``_process_stanza`` timed: the handler of an established session when an
        instrumentation handler is on (``DISPATCH_COUNTED``). 6.4's c2s_message_processed: the
        time the server spends on each element the client sends once its session is
        established (the synchronous part: a stanza held toward another node is finished
        later, by the router)."""
        start = perf_counter_ns()
        try:
            return self._process_stanza(el)
        finally:
            self.server.instrument.c2s_message_processed(
                self.jid.domain, (perf_counter_ns() - start) // 1000)

    def _process_stanza(self, el: Element) -> Awaitable[None] | None:
        if el.name not in STANZA_NAMES or el.xmlns != ns.CLIENT:
            if self.server.hooks.fold(H.C2S_STREAM_ELEMENT, False, self, el):
                return None  # XEP-0198 <r/> <a/> <enable/>, XEP-0352 <active/> ...
            raise StreamError("unsupported-stanza-type")
        sm: StreamManagement | None = self.module_state.get(SM_KEY)
        if sm is not None:
            sm.stanza_in()  # XEP-0198 §4: handled, whatever the outcome
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
            if "id" not in attrs:
                # RFC 6120 §8.1.3/§8.2.3: 'id' is REQUIRED on an IQ; without it no answer can
                # be correlated, so neither answer nor route it: bad-request (§8.3.3.1), which
                # then carries no 'id' (§8.3.1 copies the request's). A stanza error: the
                # stream stays up. An error is never answered (§8.3.1), only dropped.
                self._reply_error(el, StanzaError("bad-request", "an IQ needs an 'id'"))
                return None
            child = el.first_element()
            if child is not None and child.xmlns == ns.SESSION and child.name == "session":
                self._reply_result(el)  # RFC 3921 §3: kept for old clients
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
        # The next stanza of this client waits while this one is on a slow path toward
        # another node (RFC 6120 §10.1, Router.route_held).
        return self.server.router.route_held(self.jid, to, filtered)

    # The default of session_established (protocol.c2s). Without instrumentation the stanza
    # goes straight here: no wrapper call, no check per stanza (client.py's DISPATCH).
    _on_stanza = _process_stanza

    def _reply_result(self, iq: Element) -> None:
        reply = Element("iq", ns.CLIENT, {"type": "result", "to": str(self.jid)})
        if "id" in iq.attrs:
            reply.attrs["id"] = iq.attrs["id"]
        self.send(reply)

    def _reply_error(self, stanza: Element, err: StanzaError) -> None:
        if stanza.attrs.get("type") == "error":
            return  # RFC 6120 §8.3.1: never an error about an error
        reply = error_reply(stanza, err)
        reply.attrs["to"] = str(self.jid)
        reply.attrs.pop("from", None)
        self.send(reply)

    # -- another stream takes over, a new login replaces ----------------------------------------
    def adopt(self, old: Any) -> None:
        """XEP-0198 §5: this (authenticated) stream continues ``old``'s session, connected or
        not; ``old`` leaves without ending it (no close hooks, nothing re-routed). The
        per-module state moves along. mod_stream_management decides and does the rest."""
        for name in _SESSION_FIELDS:
            setattr(self, name, getattr(old, name))
        old.module_state = {}
        old._ended = True  # its session continues here
        if old.fsm.state is S.RESUME_SESSION:
            old.fsm.goto(S.CLOSED)
        elif old.fsm.state is not S.CLOSED:
            # The client came back before we noticed its old connection was dead.
            old.resumed_elsewhere()
        self.server.sessions.register(self)
        self._goto(S.SESSION_ESTABLISHED)
        self.server.hooks.fold(H.SESSION_RESUMED, None, self, old)

    def moved_away(self) -> None:
        """XEP-0198 §5 across nodes: this session continues on another node, which a client
        resumed it on (mod_stream_management handed its state over). It leaves this node as
        ``adopt`` leaves the old stream: no close hooks, nothing re-routed (what the client
        had not acknowledged went with the state); a connection still open is dropped."""
        self.module_state = {}
        self._ended = True
        if self.fsm.state is S.RESUME_SESSION:
            self.fsm.goto(S.CLOSED)
        elif self.fsm.state is not S.CLOSED:
            self.resumed_elsewhere()
        if self.jid is not None and self.server.sessions.local(self.jid) is self:
            self.server.sessions.unregister(self)
        log.info("c2s_session_moved_away jid=%s", self.jid)

    def resumed_elsewhere(self) -> None:
        """XEP-0198 §5: "If the former stream is resumed and the server still has the stream
        for the previously-identified session open at this time, the server SHOULD send a
        'conflict' stream error and close that stream." The connection may well be alive
        (a phone that moved from Wi-Fi to mobile data, a second instance of the app): told,
        its client stops rather than reconnecting to resume the session again. Nothing of
        the session is left here (``adopt``/``moved_away`` took it): no stanza is written
        before the error, nothing is re-routed."""
        self.stream_error(StreamError("conflict", "the session was resumed by another stream"))

    async def enter_moved(self, full: JID, priority: int, presence: Element | None) -> None:
        """XEP-0198 §5 across nodes: this authenticated stream continues a session of
        another node (handed over, or rebuilt from its Redis copy after that node died).
        The session opens here as a bind would (modules load their per-session state:
        roster cache, blocking list), keeping the presence it had; mod_stream_management
        put the counters in place and answers <resumed/>.

        The session is in the table from now on, but its stream is established only once
        <resumed/> is written (``Negotiation._resumed``): what the router delivers meanwhile
        (while the hooks below run, and until the answer is written) waits in the XEP-0198
        buffer (``deliver``), after the stanzas sent again, and follows them (§5: the client
        sees <resumed/> first, and counts in the order sent)."""
        self.jid = full
        self.priority = priority
        self.presence = presence
        old = self.server.sessions.register(self)
        if old is not None and old is not self:
            old.replaced()
        await self.server.hooks.run_together(H.SESSION_OPENED, None, self)
        self.server.sm_session_opened(self)

    def replaced_by(self, heir: EstablishedSession) -> None:
        """``replaced``, by ``heir``, a new session of the same full JID (RFC 6120 §7.7.2.2)
        or of the same client (its SASL2 user-agent id, XEP-0386 §3): a phone that lost its
        connection and logged in afresh rather than resuming (XEP-0198 §5), while its old
        session waited (or before its dead connection was noticed).

        The chat and normal messages the old session never had acknowledged go to ``heir``
        (``undeliverable``), ahead of anything routed to it afterwards: XEP-0198 §5 treats
        them as never delivered, and delivered now, those to the full JID reach its session
        (RFC 6121 §8.5.3.1); a client that binds a new resource is still the same one.
        Routed the usual way, they went to offline storage (the new session is not available
        yet), came out at its initial presence, and what contacts sent right after the login
        overtook them all. A message to the bare JID, which the client already had, goes to
        it again with the others (the account's other resources that came since get a copy as
        well, as without an heir)."""
        if heir._inherited is None:
            heir._inherited = []  # several earlier sessions of one client: all of theirs
        self._heir = heir
        try:
            self.replaced()
        finally:
            self._heir = None

    def deliver_inherited(self) -> None:
        """Right after the bind result (or SASL2 <success/>): what the session this one
        replaced had not had acknowledged (``replaced_by``), before anything else routed to this one. Nothing
        is awaited between the registration and this call, so nothing overtakes them.

        Written as they are, as after a resumption (XEP-0198 §5): they passed the
        ``user_receive_packet`` filters when they first reached this resource (privacy,
        blocking, the carbon copies to the other resources, push), which must not act twice."""
        inherited, self._inherited = self._inherited, None
        for stanza in inherited or ():
            self.send(stanza)

    def inherit(self, stanza: Element) -> None:
        """A message of the session this one replaced, for ``deliver_inherited``."""
        if self._inherited is None:
            self.server.undeliverable(stanza, self)  # not an heir (never the case today)
        else:
            self._inherited.append(stanza)

    def replaced(self) -> None:
        if self.fsm.state is S.RESUME_SESSION:
            self.fsm.goto(S.CLOSED)
            self._end_session("replaced")
            return
        self.stream_error(StreamError("conflict", "replaced by a new connection"))

    def resume_timed_out(self) -> None:
        """mod_stream_management: nobody resumed this session in time; it ends now and its
        unacknowledged stanzas go elsewhere (XEP-0198 §5)."""
        if self.fsm.state is not S.RESUME_SESSION:
            return
        self.fsm.goto(S.CLOSED)
        self._end_session("resumption timed out")

    # -- the end ----------------------------------------------------------------------------------
    def _end_session(self, reason: str) -> None:
        jid = self.jid
        if jid is None or self._ended:
            if jid is None and self.anonymous and self.user is not None and not self._ended:
                self._ended = True
                self.server.auth.anonymous_logout(self.user)
            return
        self._ended = True
        self.server.sessions.unregister(self)
        inherited, self._inherited = self._inherited, None
        for stanza in inherited or ():
            # Ended before its bind result went out: its predecessor's messages go on.
            self.server.undeliverable(stanza, self)
        sm: StreamManagement | None = self.module_state.get(SM_KEY)
        if sm is not None:
            # XEP-0198 §5 (and our rule that nothing accepted is lost): stanzas the client
            # never acknowledged go to the account's other resources or offline storage.
            sent = list(sm.sent_at)  # when each reached the session (take_unacked's order)
            for stanza, when in zip(sm.take_unacked(delay_from=jid.domain), sent, strict=True):
                if _is_carbon_copy(stanza):
                    continue  # a copy: the original reached its own recipient
                self.server.undeliverable(stanza, self, when, self._heir)
        self.server.sm_session_closed(self, reason)
        # Run at once up to a real suspension (a database write): a task for each session's
        # end cost a task and a loop turn more per login (suricate/core/eager.py).
        self.server.spawn_eager(self._run_close_hooks(reason))

    async def _run_close_hooks(self, reason: str) -> None:
        # The session has left the table already; modules still see its JID and presence.
        try:
            if self.presence is not None:
                # The connection ended while available: no unavailable presence carried a
                # status.
                await self.server.hooks.fold_async(H.UNSET_PRESENCE, None, self, "")
            await self.server.hooks.fold_async(H.SESSION_CLOSED, None, self, reason)
            log.info("c2s_session_closed jid=%s reason=%s", self.jid, reason)
        finally:
            if self.anonymous and self.jid is not None:
                # After the hooks: the account's data (roster, last activity) must not be
                # written back by them once it is purged; and whatever they did.
                self.server.auth.anonymous_logout(self.jid.bare)


def _is_carbon_copy(stanza: Element) -> bool:
    return stanza.name == "message" and any(
        child.xmlns == ns.CARBONS for child in stanza.elements())


# The cast of a Bind 2 bind to the account's other nodes (XEP-0386 §3), arguments: the digest
# of the client's user-agent id (``client_digest``), the new session's full JID.
SAME_CLIENT_TOPIC = "c2s.same_client_bound"


def client_digest(bare: JID, agent_id: str) -> str:
    """What identifies a client (its SASL2 <user-agent id/>, XEP-0388 §2.4) between nodes: a
    digest, bound to the account, so that the id itself travels nowhere."""
    return hashlib.sha256(f"{bare}\0{agent_id}".encode()).hexdigest()


def end_sessions_of_client(server: Any, bare: JID, digest: str, keep: JID,
                           heir: EstablishedSession | None = None) -> int:
    """End this node's sessions of ``bare`` whose client's user-agent id has ``digest``,
    but ``keep`` (the new session), as replaced; how many (XEP-0386 §3). ``heir``: the new
    session when it is on this node; it takes what they had not had acknowledged
    (``replaced_by``)."""
    ended = 0
    for other in list(server.sessions.resources(bare)):
        agent = getattr(other, "user_agent", None)
        if other.jid == keep or agent is None or not agent.id \
                or client_digest(bare, agent.id) != digest:
            continue
        log.info("c2s_session_replaced_by_same_client jid=%s by=%s", other.jid, keep)
        replaced_by = getattr(other, "replaced_by", None)
        if heir is not None and replaced_by is not None:
            replaced_by(heir)
        else:
            other.replaced()
        ended += 1
    return ended


def same_client_bound(server: Any, bare: JID, _stanza: Element, args: tuple[str, ...]) -> None:
    """``SAME_CLIENT_TOPIC``'s handler: a client bound on another node; its earlier sessions
    here end."""
    digest, keep = args
    end_sessions_of_client(server, bare, digest, JID.parse(keep))
