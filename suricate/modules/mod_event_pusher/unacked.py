"""The `push` backend's watch on sessions that stop acknowledging: a phone app frozen with its
socket open.

iOS freezes an app in the background without closing its TCP connection: the server writes
messages into a socket nobody reads, the session looks connected (no XEP-0198 §5 resumption
state, so no notification), and the phone stays silent until iOS or a TCP timeout kills the
socket, minutes later. XEP-0198 §4 gives the server a way to tell: it asks (`<r/>`) and a
living client answers (`<a h=.../>`). So, for a session with stream management on that enabled
push (XEP-0357 §5), a message worth a notification that the client has not acknowledged
``wake_unacked_after`` seconds after it was written is notified as if the session were
waiting to be resumed (Prosody's mod_cloud_notify does the same on mod_smacks'
`smacks-ack-delayed`). From then on the device counts as asleep: each new such message is
notified at once, until the client acknowledges anything (it is back) or its session ends.

Cost: nothing for a session that did not enable push. A watched session's XEP-0198 counters
(``StreamManagement``, which every stanza written to the session passes through) become an
instance of a subclass with the same layout, whose ``stanza_out``, ``ack`` and
``take_unacked`` also tell this watch; no router, no c2s code is involved. One timer per
session at most, and only while a message is unacknowledged; one `<r/>` per burst (with the
default ``ack_freq = 1`` one follows every stanza anyway).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from suricate.core.c2s import STREAM_MANAGEMENT as SM
from suricate.jid import JID
from suricate.protocol.c2s import C2SState
from suricate.protocol.sm import MOD, StreamManagement
from suricate.xml import ns
from suricate.xml.element import Element

from .push import PushBackend, notifiable

if TYPE_CHECKING:
    from suricate.core.server import Server

log = logging.getLogger("suricate.mod_event_pusher")

_REQUEST = Element("r", ns.SM)


class _Watch:
    """One watched session: its full JID (the same after a resumption, which moves the
    counters to the new stream), and while a message is unacknowledged, the count the
    client must acknowledge (``target``) and the timer; ``asleep`` once it was notified."""

    __slots__ = ("asleep", "jid", "target", "timer")

    def __init__(self, jid: JID) -> None:
        self.jid = jid
        self.target: int | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.asleep = False

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.target = None


class UnackedWatch:
    def __init__(self, server: Server, backend: PushBackend, delay: float) -> None:
        self.server = server
        self.backend = backend
        self.delay = delay
        self._watches: dict[StreamManagement, _Watch] = {}
        # A subclass per counters class (plain, or copied to Redis): made once per server.
        self._classes: dict[type[StreamManagement], type] = {}

    # -- which sessions ---------------------------------------------------------------------
    def watch(self, session: Any) -> None:
        """``session`` (a c2s) enabled push: watch its acknowledgements if it counts them."""
        sm = SM.get(session)
        if sm is None or sm in self._watches or session.jid is None:
            return
        base = type(sm)
        watched = self._classes.get(base)
        if watched is None:
            watched = self._classes[base] = _watched_class(base, self)
        # Same layout (no slot of its own), so the instance can change class in place.
        sm.__class__ = watched
        self._watches[sm] = _Watch(session.jid)

    def session_closed(self, session: Any) -> None:
        sm = SM.get(session)
        watch = self._watches.pop(sm, None) if sm is not None else None
        if watch is not None:
            watch.disarm()

    def stop(self) -> None:
        """The backend stops (the module is reconfigured or the server stops): the counters
        of live sessions go back to their own class."""
        for sm, watch in self._watches.items():
            watch.disarm()
            sm.__class__ = type(sm).__mro__[1]
        self._watches.clear()

    def _session(self, sm: StreamManagement, watch: _Watch) -> Any:
        """The session whose counters ``sm`` are, or None once it is gone."""
        session = self.server.sessions.local(watch.jid)
        if session is None or SM.get(session) is not sm:
            return None
        return session

    # -- from the counters (``_watched_class``) ----------------------------------------------
    def sent(self, sm: StreamManagement, stanza: Element) -> bool:
        """``stanza`` was just counted as sent; True when an <r/> should follow it."""
        watch = self._watches.get(sm)
        if watch is None or watch.timer is not None or not notifiable(stanza):
            return False
        session = self._session(sm, watch)
        if session is None or session.state is not C2SState.SESSION_ESTABLISHED:
            # Waiting to be resumed: the backend's user_receive_packet notifies it at once.
            return False
        if watch.asleep:
            sender = stanza.get("from")
            if sender:
                self.backend.messages_missed(watch.jid.bare, [(JID.parse(sender), stanza)],
                                             watch.jid.resource)
            return False
        self._arm(sm, watch)
        return True

    def acked(self, sm: StreamManagement) -> None:
        """The client acknowledged (XEP-0198 §4 <a/>): it reads its socket."""
        watch = self._watches.get(sm)
        if watch is None:
            return
        if watch.asleep:
            watch.asleep = False
            log.info("push_unacked_back jid=%s", watch.jid)
            self.backend.device_back(watch.jid)
        elif watch.target is None or (sm.acked - watch.target) % MOD >= MOD // 2:
            return  # nothing waited for, or what armed the timer is still unacknowledged
        watch.disarm()
        if any(notifiable(stanza) for stanza in sm.buffer):
            # Later messages of the burst are still out: they get their own wait.
            session = self._session(sm, watch)
            if session is not None and session.state is C2SState.SESSION_ESTABLISHED:
                self._arm(sm, watch)
                session.send(_REQUEST)

    def emptied(self, sm: StreamManagement) -> None:
        """The buffer was taken: sent again after a resumption (counted afresh as they are
        written), or handed elsewhere as the session ends."""
        watch = self._watches.get(sm)
        if watch is not None:
            watch.disarm()
            watch.asleep = False

    # -- the wait ---------------------------------------------------------------------------
    def _arm(self, sm: StreamManagement, watch: _Watch) -> None:
        watch.target = sm.h_out
        watch.timer = asyncio.get_running_loop().call_later(self.delay, self._expired, sm)

    def _expired(self, sm: StreamManagement) -> None:
        watch = self._watches.get(sm)
        if watch is None:
            return
        watch.timer = None
        target, watch.target = watch.target, None
        if target is None or (sm.acked - target) % MOD < MOD // 2:
            return
        if self._session(sm, watch) is None:
            return
        missed = [(JID.parse(sender), stanza) for stanza in sm.buffer
                  if notifiable(stanza) and (sender := stanza.get("from"))]
        if not missed:
            return
        # Still connected but silent (or its connection lost since: waiting to be resumed,
        # where only what arrives afterwards is notified): wake the device for everything
        # it has not acknowledged, in one notification.
        watch.asleep = True
        log.info("push_unacked jid=%s unacked=%d after=%ss", watch.jid, len(sm.buffer),
                 self.delay)
        self.backend.messages_missed(watch.jid.bare, missed, watch.jid.resource)


def _watched_class(base: type[StreamManagement], watch: UnackedWatch) -> type:
    """``base`` (a StreamManagement class) that also tells ``watch`` what it counts."""

    def stanza_out(self: StreamManagement, stanza: Element) -> bool:
        request: bool = base.stanza_out(self, stanza)
        return watch.sent(self, stanza) or request

    def ack(self: StreamManagement, h: int) -> None:
        base.ack(self, h)
        watch.acked(self)

    def take_unacked(self: StreamManagement, delay_from: str | None = None) -> list[Element]:
        pending: list[Element] = base.take_unacked(self, delay_from)
        watch.emptied(self)
        return pending

    return type(f"PushWatched{base.__name__}", (base,), {
        "__slots__": (), "stanza_out": stanza_out, "ack": ack, "take_unacked": take_unacked})
