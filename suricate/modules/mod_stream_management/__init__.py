"""mod_stream_management: XEP-0198 Stream Management.

The counting happens in the c2s stream (``suricate.protocol.sm``: every stanza in and out,
the buffer of what the client has not acknowledged), through the session slot
``STREAM_MANAGEMENT`` this module fills on <enable/>. This module is the policy around it:

- ``<enable/>`` after binding, or inline in Bind 2 (XEP-0198 §3, XEP-0386 §2.3);
- ``<r/>``/``<a/>`` (§4), with an ``<r/>`` after every ``ack_freq`` stanzas sent;
- resumption (§5): a session whose connection is lost waits ``resume_timeout`` seconds in
  the ``resume_session`` state, still receiving (buffered); ``<resume/>`` after
  authentication, or inline in the SASL2 <authenticate/>, hands it to the new stream
  (``_take_over``: the c2s ``adopt``s the session), which sends again what was not
  acknowledged once the client was told (``session_resumption_answered``);
- nothing lost: a session that ends unresumed gives its unacknowledged stanzas back to the
  router (other resources or offline storage, see ``C2S._end_session``);
- ``stale_h``: after a timeout the last 'h' is remembered for ``geriatric`` seconds, so a late
  <resume/> learns which of its stanzas the server handled (<failed h=.../>);
- several nodes (``sm_backend = "redis"``): a session resumes on any node. The node holding
  it hands it over (``handover.py``); with ``copy_to_redis`` its counters and unacknowledged
  stanzas are also copied to Redis in batches (``mirror.py``), so that a client whose node
  died resumes on a survivor (docs/cluster.md, "Stream management across nodes").
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

from suricate.config.spec import DEFAULTS, Bool, Int, IntOrInfinity, OneOf, Option, Section
from suricate.core import hooks as H
from suricate.core.c2s import STREAM_MANAGEMENT as SM
from suricate.core.module import Module, SessionSlot
from suricate.modules.mod_stream_management.handover import Handover, SmCluster
from suricate.modules.mod_stream_management.mirror import Mirror, MirroredSM
from suricate.modules.mod_stream_management.state import SessionState
from suricate.protocol.c2s import C2SState as S
from suricate.protocol.errors import StreamError
from suricate.protocol.sm import MOD, HandledCountTooHigh, StreamManagement
from suricate.xml import ns
from suricate.xml.element import Element

if TYPE_CHECKING:
    from suricate.core.c2s import C2S
    from suricate.core.server import Server

log = logging.getLogger("suricate.mod_stream_management")

# What a resumed session had not had acknowledged, sent again after <resumed/> (XEP-0198 §5).
RESEND: SessionSlot[list[Element]] = SessionSlot("mod_stream_management.resend")
# A session resumed from another node: what is sent again after <resumed/> is its buffer
# (the other node's unacknowledged stanzas, then what arrived while it opened here).
MOVED_IN: SessionSlot[bool] = SessionSlot("mod_stream_management.moved_in")


class ModStreamManagement(Module):
    name = "mod_stream_management"
    options = Section(
        {
            "buffer_max": Option(
                IntOrInfinity(min=1), 100, "Stanzas kept until the client acknowledges them."
            ),
            "ack_freq": Option(
                IntOrInfinity(min=1),
                1,
                'Ask for an acknowledgement after this many stanzas ("infinity": never ask).',
            ),
            "resume_timeout": Option(
                Int(min=1, unit="seconds"), 600, "How long a lost session waits to be resumed."
            ),
            "backend": Option(
                OneOf(["mnesia", "cets"]),
                "mnesia",
                "Where MongooseIM keeps its table of resumable sessions.",
                inert=True,
                inert_reason="Suricate keeps resumable sessions in its own process; with "
                'sm_backend = "redis" they are copied to Redis (copy_to_redis) so that a '
                "client resumes on another node",
            ),
            "copy_to_redis": Option(
                Bool(), True,
                'With sm_backend = "redis": copy each resumable session\'s counters and '
                "unacknowledged stanzas to Redis (in batches every 0.25 s), so a client "
                "resumes on another node after its node died.",
            ),
            "stale_h": Option(
                Section(
                    {
                        "enabled": Option(
                            Bool(), False, "Remember the counter of sessions that timed out."
                        ),
                        "repeat_after": Option(
                            Int(min=1, unit="seconds"), 1800, "How often old entries are removed."
                        ),
                        "geriatric": Option(
                            Int(min=1, unit="seconds"), 3600, "How long an entry is kept."
                        ),
                    }
                ),
                DEFAULTS,
                "Answer a late resumption with the last 'h' of the session (XEP-0198 §5).",
            ),
        },
        doc="XEP-0198 Stream Management.",
    )
    xeps = ("0198",)
    hooks = (
        (H.C2S_STREAM_FEATURES, "stream_features", 50),
        (H.SASL2_INLINE_FEATURES, "sasl2_inline", 60),
        (H.BIND2_INLINE_FEATURES, "bind2_inline", 50),
        (H.BIND2_BIND, "bind2_enable", 50),
        # Last of SASL2_SUCCESS (FAST's issue_token is 70): a resumption replaces the new
        # stream's module state with the session's (C2S.adopt), so what others noted on the
        # stream (FAST's token in use: invalidate, rotation) is read before; and nothing is
        # awaited between the take-over and the <success/>, so no stanza routed to the
        # resumed session is written before it.
        (H.SASL2_SUCCESS, "sasl2_resume", 90),
        (H.C2S_RESUME, "c2s_resume", 50),
        (H.C2S_STREAM_ELEMENT, "stream_element", 50),
        (H.SESSION_SUSPEND, "suspend", 50),
        (H.SESSION_CLOSED, "session_closed", 50),
        (H.SESSION_RESUMPTION_ANSWERED, "resend", 50),
    )

    def __init__(self, server: Server, opts: Any) -> None:
        super().__init__(server, opts)
        self.buffer_max: int | None = opts.get("buffer_max", 100)
        self.ack_freq: int | None = opts.get("ack_freq", 1)
        self.resume_timeout: int = opts.get("resume_timeout", 600)
        stale = opts.get("stale_h") or {}
        self.stale_enabled = bool(stale.get("enabled", False))
        self.stale_repeat: int = stale.get("repeat_after", 1800)
        self.stale_geriatric: int = stale.get("geriatric", 3600)
        # resumable sessions by their SM id, live or waiting
        self.sessions: dict[str, C2S] = {}
        # SM id -> the shorter wait its client asked for in <enable max=.../> (§5)
        self.max_wait: dict[str, int] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        # stale_h: SM id -> (last h, when the session timed out)
        self.stale: dict[str, tuple[int, float]] = {}
        self._stale_timer: asyncio.TimerHandle | None = None
        self.copy_to_redis = bool(opts.get("copy_to_redis", True))
        # several nodes (sm_backend = "redis"): who holds which session, and its copy
        self.mirror: Mirror | None = None
        self.handover: Handover | None = None

    async def start(self) -> None:
        cluster = self.server.router.elsewhere
        if isinstance(cluster, SmCluster):
            self.mirror = Mirror(cluster.redis, cluster.name, cluster.store.prefix,
                                 self.copy_to_redis, self.sessions.get, self._snapshot)
            self.mirror.start()
            self.handover = Handover(self, cluster, self.mirror)
            self.handover.start()
        if self.stale_enabled:
            self._stale_timer = asyncio.get_running_loop().call_later(
                self.stale_repeat, self._clean_stale)

    async def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._stale_timer is not None:
            self._stale_timer.cancel()
        if self.handover is not None:
            self.handover.stop()
            self.handover = None
        if self.mirror is not None:
            await self.mirror.stop()
            self.mirror = None

    # -- advertisement ------------------------------------------------------------------------
    def stream_features(self, acc: list[Element], c2s: C2S) -> list[Element]:
        return [*acc, Element("sm", ns.SM)]

    def sasl2_inline(self, acc: list[Element], c2s: C2S) -> list[Element]:
        return [*acc, Element("sm", ns.SM)]  # XEP-0198 §5 inline resumption (XEP-0388)

    def bind2_inline(self, acc: list[str], c2s: C2S) -> list[str]:
        return [*acc, ns.SM]

    # -- enabling (§3) --------------------------------------------------------------------------
    def _enable(self, c2s: C2S, request: Element) -> Element:
        if SM.get(c2s) is not None:
            return _failed("unexpected-request")
        resume = request.attrs.get("resume") in ("true", "1")
        sm_id = secrets.token_urlsafe(18)
        attrs = {"id": sm_id}
        if resume:
            SM.set(c2s, self.new_sm(sm_id))
            # §5: the client's 'max' is its preferred longest wait. A phone that asks for
            # less wants, past it, its messages stored offline (and pushed) rather than held
            # for a stream it will not resume; it never gets more than resume_timeout.
            wait = self.resume_timeout
            asked = parse_h(request.attrs.get("max"))
            if asked is not None and 0 < asked < wait:
                wait = self.max_wait[sm_id] = asked
            attrs.update({"resume": "true", "max": str(wait)})
            self.sessions[sm_id] = c2s
            if self.mirror is not None:
                self.mirror.held(sm_id)
        else:
            SM.set(c2s, StreamManagement(sm_id, resume, self.buffer_max, self.ack_freq))
        return Element("enabled", ns.SM, attrs)

    async def bind2_enable(self, acc: list[Element], c2s: C2S, bind: Element) -> list[Element]:
        request = bind.find("enable", ns.SM)
        if request is None:
            return acc
        return [*acc, self._enable(c2s, request)]

    # -- elements on the stream (§3, §4, §5) -------------------------------------------------
    def stream_element(self, handled: bool, c2s: C2S, el: Element) -> bool:
        if handled or el.xmlns != ns.SM:
            return handled
        state = c2s.state
        if state != S.SESSION_ESTABLISHED:
            if el.name == "enable" and state == S.WAIT_FOR_FEATURE_AFTER_AUTH:
                # §3: "the client MUST NOT attempt to enable stream management until after
                # it has completed Resource Binding ... The server SHALL enforce this order
                # and return a <failed/> element" (Example 5: unexpected-request); the
                # client may still bind, and enable then.
                c2s.send(_failed("unexpected-request"))
                return True
            return False
        if el.name == "enable":
            c2s.send(self._enable(c2s, el))
            return True
        if el.name == "resume":
            # §5: <resume/> takes the place of binding; this stream is bound already. A
            # <failed/> (as a second <enable/> gets), not an unsupported-stanza-type.
            c2s.send(_failed("unexpected-request"))
            return True
        sm = SM.get(c2s)
        if sm is None:
            return el.name in ("r", "a")  # §3: not enabled, nothing to count; ignored
        if el.name == "r":
            c2s.send(Element("a", ns.SM, {"h": str(sm.h_in)}))
            return True
        if el.name == "a":
            # The stream error is sent here, not raised: a hook handler's exception is
            # logged and skipped (the element would end as unsupported-stanza-type).
            h = parse_h(el.attrs.get("h"))
            if h is None:
                # Not an xs:unsignedInt (§9 schema): MongooseIM's policy-violation.
                c2s.stream_error(StreamError("policy-violation", "Invalid h attribute"))
                return True
            try:
                sm.ack(h)
            except HandledCountTooHigh as exc:
                c2s.stream_error(too_high(exc))
            return True
        return False

    # -- resumption (§5) --------------------------------------------------------------------------
    def new_sm(self, sm_id: str) -> StreamManagement:
        """The counters of a resumable session (copied to Redis with copy_to_redis)."""
        if self.mirror is not None:
            return self.mirror.new_sm(sm_id, self.buffer_max, self.ack_freq)
        return StreamManagement(sm_id, True, self.buffer_max, self.ack_freq)

    async def c2s_resume(self, acc: Element | None, c2s: C2S,
                         request: Element) -> Element | None:
        if acc is not None:
            return acc
        return await self._resume(c2s, request)

    async def _resume(self, c2s: C2S, request: Element) -> Element:
        previd = request.attrs.get("previd", "")
        h = parse_h(request.attrs.get("h"))
        if h is None:
            return _failed("bad-request")
        old = self.sessions.get(previd)
        if old is None and self.handover is not None and c2s.user is not None \
                and previd not in self.stale:
            # Not here: maybe held by another node, or left by a dead one (handover.py).
            # In a task of its own: the stream may run this step outside any task, and the
            # Redis pool's wait for a free connection (asyncio.timeout) needs one.
            return await asyncio.ensure_future(self.handover.resume(c2s, previd, h))
        old_sm = SM.get(old) if old is not None else None
        if old is None or old is c2s or c2s.user is None or old.jid is None \
                or old.jid.bare != c2s.user.bare or old_sm is None:
            stale = self.stale.get(previd)
            if stale is not None and c2s.user is not None:
                return _failed("item-not-found", stale[0])
            return _failed("item-not-found")
        try:
            self._take_over(c2s, old, old_sm, h)
        except HandledCountTooHigh as exc:
            # §6: the client claims more than the session sent it. Its counters cannot be
            # trusted to resend the right stanzas: this stream ends with the error (as
            # MongooseIM's does); the session stays as it was, waiting, and its stanzas go
            # elsewhere when it times out or the client binds afresh.
            c2s.stream_error(too_high(exc))
            return _failed("unexpected-request")  # not sent: the stream is closed
        timer = self._timers.pop(previd, None)
        if timer is not None:
            timer.cancel()
        self.sessions[previd] = c2s
        return Element("resumed", ns.SM, {"h": str(old_sm.h_in), "previd": previd})

    async def continue_here(self, c2s: C2S, sm_id: str, state: SessionState,
                            unacked: list[Element],
                            sm: StreamManagement | None = None) -> Element:
        """§5 across nodes: ``c2s`` continues a session that another node held (handed
        over, or rebuilt from its Redis copy). ``unacked`` is sent again after <resumed/>."""
        if c2s.state == S.CLOSED:
            # The client left while the session travelled: it ends here, unresumed, and
            # what it had not acknowledged goes elsewhere (other resources, offline), as
            # for a session whose resumption timed out.
            c2s.jid = state.jid
            for stanza in unacked:
                self.server.undeliverable(stanza, c2s)
            if self.mirror is not None:
                self.mirror.ended(sm_id)
            return failed("item-not-found")
        if sm is None:
            sm = self.new_sm(sm_id)
            sm.h_in = state.h_in
            sm.acked = sm.h_out = state.acked
        # In the buffer, not written yet: what the router delivers until <resumed/> is
        # written goes after them (C2S.enter_moved), and all are sent after it (resend);
        # if the stream ends first, they go elsewhere with the rest (C2S._end_session).
        sm.requeue(unacked)
        MOVED_IN.set(c2s, True)
        SM.set(c2s, sm)
        self.sessions[sm_id] = c2s
        if self.mirror is not None:
            self.mirror.held(sm_id)
        await c2s.enter_moved(state.jid, state.priority, state.presence)
        self.server.hooks.fold(H.SESSION_HANDOVER, state.modules, c2s, True)
        log.info("c2s_session_resumed jid=%s peer=%s unacked=%d from=another-node", c2s.jid,
                 c2s.conn.peer, len(unacked))
        return Element("resumed", ns.SM, {"h": str(state.h_in), "previd": sm_id})

    def _snapshot(self, c2s: C2S) -> dict[str, Any]:
        """The modules' per-session state for the session's Redis copy (plain data, as a
        handover carries it)."""
        state: dict[str, Any] = self.server.hooks.fold(H.SESSION_SNAPSHOT, {}, c2s)
        return state

    def forget(self, sm_id: str) -> None:
        """``sm_id`` is no longer held here (it moved to another node; a shorter wait its
        client asked for does not travel: the other node waits resume_timeout)."""
        self.sessions.pop(sm_id, None)
        self.max_wait.pop(sm_id, None)
        timer = self._timers.pop(sm_id, None)
        if timer is not None:
            timer.cancel()

    @staticmethod
    def _take_over(c2s: C2S, old: C2S, sm: StreamManagement, client_h: int) -> None:
        """§5: ``c2s`` continues ``old``'s session. What the client acknowledges in its
        <resume/> is forgotten; the rest is sent again once the client has been told."""
        sm.ack(client_h)  # may raise HandledCountTooHigh: the caller answers <failed/>
        # Messages come back with the time they were first sent as their delay (XEP-0203).
        unacked = sm.take_unacked(delay_from=old.jid.domain if old.jid is not None else None)
        if isinstance(sm, MirroredSM):
            sm.waiting = False
        c2s.adopt(old)  # the session (its module state, these counters included) moves
        RESEND.set(c2s, unacked)
        log.info("c2s_session_resumed jid=%s peer=%s unacked=%d", c2s.jid, c2s.conn.peer,
                 len(unacked))

    def resend(self, acc: Any, c2s: C2S) -> Any:
        """§5: after <resumed/> (or the SASL2 <success/> carrying it), what the old stream
        had not had acknowledged; for a session resumed from another node, its buffer: that
        node's unacknowledged stanzas, then what arrived here before the answer, counted
        again as they are written."""
        stanzas = RESEND.pop(c2s)
        if stanzas is None and MOVED_IN.pop(c2s):
            sm = SM.get(c2s)
            stanzas = sm.take_unacked() if sm is not None else []
        for stanza in stanzas or ():
            c2s.send(stanza)
        return acc

    async def sasl2_resume(self, acc: list[Element], c2s: C2S,
                           request: Element) -> list[Element]:
        resume = request.find("resume", ns.SM)
        if resume is None or ns.SM not in c2s.sasl2_offered_inline:
            return acc
        return [*acc, await self._resume(c2s, resume)]

    def suspend(self, kept: bool, c2s: C2S) -> bool:
        sm = SM.get(c2s)
        if kept or sm is None or self.sessions.get(sm.id) is not c2s:
            return kept
        if isinstance(sm, MirroredSM):
            # Copied at once from now on (mirror.py), what the last batch missed included.
            sm.waiting = True
            sm.dirty.add(sm.id)
            sm.wake.set()
        self._timers[sm.id] = asyncio.get_running_loop().call_later(
            self.max_wait.get(sm.id, self.resume_timeout), self._expire, sm.id, c2s)
        return True

    def _expire(self, sm_id: str, c2s: C2S) -> None:
        self._timers.pop(sm_id, None)
        if self.sessions.get(sm_id) is not c2s or c2s.state != S.RESUME_SESSION:
            return
        del self.sessions[sm_id]
        self.max_wait.pop(sm_id, None)
        if self.mirror is not None:
            self.mirror.ended(sm_id)
        sm = SM.get(c2s)
        if self.stale_enabled and sm is not None:
            self.stale[sm_id] = (sm.h_in, time.monotonic())
        log.info("sm_resume_timeout jid=%s", c2s.jid)
        c2s.resume_timed_out()

    def session_closed(self, acc: Any, c2s: C2S, reason: str) -> Any:
        sm = SM.get(c2s)
        sm_id = sm.id if sm is not None else None
        if sm_id is not None and self.sessions.get(sm_id) is c2s:
            del self.sessions[sm_id]
            self.max_wait.pop(sm_id, None)
            if self.mirror is not None:
                self.mirror.ended(sm_id)
            timer = self._timers.pop(sm_id, None)
            if timer is not None:
                timer.cancel()
        return acc

    def _clean_stale(self) -> None:
        cutoff = time.monotonic() - self.stale_geriatric
        for sm_id, (_, when) in list(self.stale.items()):
            if when < cutoff:
                del self.stale[sm_id]
        self._stale_timer = asyncio.get_running_loop().call_later(
            self.stale_repeat, self._clean_stale)


def parse_h(value: str | None) -> int | None:
    """An 'h' attribute: an xs:unsignedInt (XEP-0198 §9), else None. Stricter than int(),
    which takes '1_0', '-1', other scripts' digits and values past 2^32."""
    if value is None:
        return None
    value = value.strip()
    if value.startswith("+"):
        value = value[1:]
    if not value or not value.isascii() or not value.isdigit():
        return None
    h = int(value)
    return h if h < MOD else None


def too_high(exc: HandledCountTooHigh) -> StreamError:
    """§6 (Error Handling): the peer acknowledged stanzas never sent to it: an
    undefined-condition stream error carrying <handled-count-too-high/>, with the 'h' it
    claimed and how many were sent."""
    return StreamError("undefined-condition",
                       "You acknowledged more stanzas than were sent to you",
                       Element("handled-count-too-high", ns.SM,
                               {"h": str(exc.h), "send-count": str(exc.send_count)}))


def failed(condition: str, h: int | None = None) -> Element:
    attrs = {"h": str(h)} if h is not None else {}
    el = Element("failed", ns.SM, attrs)
    el.add(condition, ns.STANZAS_ERRORS)
    return el


_failed = failed
