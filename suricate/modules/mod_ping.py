"""mod_ping: XEP-0199 XMPP Ping, answered for the served domains and for accounts, and sent by
the server to clients that have been quiet for ``ping_interval`` (``send_pings``).

Idle detection costs one timestamp write per stanza a client sends. The sessions wait in a
timer wheel of one-second slots, checked by a single call_later chain: a slot holds the
sessions whose deadline falls in it, and a session whose client was active in the meantime is
simply moved to its new deadline. No task or timer is made per connection.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from suricate.config.modules_spec import iqdisc
from suricate.config.spec import Bool, Int, OneOf, Option, Section
from suricate.core import hooks as H
from suricate.core.iq import IqRequest
from suricate.core.module import Module
from suricate.instrument.events import HISTOGRAM, SPIRAL, declare
from suricate.jid import JID
from suricate.protocol.errors import StanzaError, StreamError
from suricate.xml import ns
from suricate.xml.element import Element

if TYPE_CHECKING:
    from suricate.core.c2s import C2S
    from suricate.core.server import Server

log = logging.getLogger("suricate.mod_ping")

MOD_PING_RESPONSE = declare(
    "mod_ping_response", ("host_type",), {"count": SPIRAL, "time": HISTOGRAM},
    "Clients that answered a server ping; time in microseconds (as seen by the timer wheel, "
    "so at most one slot late)")
MOD_PING_RESPONSE_TIMEOUT = declare(
    "mod_ping_response_timeout", ("host_type",), {"count": SPIRAL},
    "Server pings left unanswered for ping_req_timeout")

SLOT = 1.0  # seconds per slot of the timer wheel: the precision of ping_interval


@dataclass(slots=True)
class PingState:
    """Per session, in ``c2s.module_state["mod_ping"]``."""

    last_active: float  # time.monotonic() of the last stanza from the client
    ping_sent: float | None = None  # when the outstanding ping left, None if none


class ModPing(Module):
    name = "mod_ping"
    options = Section(
        {
            "iqdisc": iqdisc("no_queue"),
            "send_pings": Option(Bool(), False, "Ping clients that have been idle."),
            "ping_interval": Option(
                Int(min=1, unit="seconds"), 60, "Idle time after which a ping is sent."
            ),
            "ping_req_timeout": Option(
                Int(min=1, unit="seconds"), 32, "How long to wait for the ping reply."
            ),
            "timeout_action": Option(
                OneOf(["none", "kill"]), "none", "What to do when a ping is not answered."
            ),
        },
        doc="XEP-0199 XMPP Ping.",
    )
    xeps = ("0199",)
    iq_handlers = (
        ("local", ns.PING, "ping_server"),
        ("sm", ns.PING, "ping_account"),
    )
    features = (ns.PING,)

    def __init__(self, server: Server, opts: Mapping[str, Any]) -> None:
        super().__init__(server, opts)
        self.interval = float(opts.get("ping_interval", 60))
        self.req_timeout = float(opts.get("ping_req_timeout", 32))
        self.kill = opts.get("timeout_action", "none") == "kill"
        self._wheel: dict[int, list[C2S]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._ids = itertools.count(1)

    @property
    def send_pings(self) -> bool:
        return bool(self.opts.get("send_pings", False))

    # -- answering pings (XEP-0199 §4.2, §4.3) ------------------------------------------------
    def ping_server(self, iq: IqRequest) -> None:
        if iq.type != "get":
            raise StanzaError("not-allowed", "a ping is an IQ of type get")
        return None  # §4.2: an empty result is the pong

    async def ping_account(self, iq: IqRequest) -> None:
        if iq.type != "get":
            raise StanzaError("not-allowed", "a ping is an IQ of type get")
        # An IQ to a bare JID is answered by the server on the account's behalf (RFC 6120
        # §10.3.3); for an account that does not exist, RFC 6121 §8.5.1 service-unavailable.
        if not await self.server.user_exists(iq.to.bare):
            raise StanzaError("service-unavailable")
        return None

    # -- server-to-client pings (XEP-0199 §4.1) -----------------------------------------------
    def wire(self) -> None:
        super().wire()
        if self.send_pings:
            self.server.hooks.add(H.SESSION_OPENED, self._session_opened, 50)
            # Any stanza from the client shows it is alive, the pong included; early so the
            # stamp happens even when a later handler consumes the stanza.
            self.server.hooks.add(H.USER_SEND_PACKET, self._client_sent, 1)

    def unwire(self) -> None:
        super().unwire()
        self.server.hooks.remove(H.SESSION_OPENED, self._session_opened)
        self.server.hooks.remove(H.USER_SEND_PACKET, self._client_sent)

    async def start(self) -> None:
        if self.send_pings:
            self._schedule_tick()

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._wheel.clear()

    def _session_opened(self, acc: Any, c2s: C2S) -> Any:
        now = time.monotonic()
        c2s.module_state[self.name] = PingState(now)
        self._enqueue(c2s, now + self.interval)
        return acc

    def _client_sent(self, stanza: Element | None, c2s: C2S) -> Element | None:
        state = c2s.module_state.get(self.name)
        if state is not None:
            state.last_active = time.monotonic()
        return stanza

    def _enqueue(self, c2s: C2S, deadline: float) -> None:
        self._wheel.setdefault(math.ceil(deadline / SLOT), []).append(c2s)

    def _schedule_tick(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(SLOT, self._tick)

    def _tick(self) -> None:
        self._schedule_tick()
        now = time.monotonic()
        current = math.floor(now / SLOT)
        due = [slot for slot in self._wheel if slot <= current]
        for slot in sorted(due):
            for c2s in self._wheel.pop(slot):
                try:
                    self._check(c2s, now)
                except Exception:
                    log.exception("ping_check_failed jid=%s", c2s.jid)

    def _check(self, c2s: C2S, now: float) -> None:
        state = c2s.module_state.get(self.name)
        if state is None or not self._is_live(c2s):
            return  # the session ended: it simply leaves the wheel
        if state.ping_sent is not None:
            if state.last_active >= state.ping_sent:
                self.server.instrument.emit(
                    MOD_PING_RESPONSE, {"host_type": c2s.jid.domain},
                    {"count": 1, "time": (state.last_active - state.ping_sent) * 1e6})
                state.ping_sent = None  # it answered (or said anything at all)
            elif now - state.ping_sent >= self.req_timeout:
                self._timed_out(c2s, state)
                return
            else:
                self._enqueue(c2s, state.ping_sent + self.req_timeout)
                return
        idle_until = state.last_active + self.interval
        if now < idle_until:
            self._enqueue(c2s, idle_until)
            return
        self._send_ping(c2s, state, now)
        self._enqueue(c2s, now + self.req_timeout)

    def _is_live(self, c2s: C2S) -> bool:
        jid = c2s.jid
        return jid is not None and self.server.sessions.lookup(jid) is c2s

    def _send_ping(self, c2s: C2S, state: PingState, now: float) -> None:
        state.ping_sent = now
        server_jid = JID(None, c2s.jid.domain, None)
        iq = Element("iq", ns.CLIENT, {"type": "get", "id": f"ping-{next(self._ids)}",
                                       "from": str(server_jid), "to": str(c2s.jid)})
        iq.add("ping", ns.PING)
        # The answer (a result, or an error from a client without ping support, which also
        # proves it is there, XEP-0199 §4.1) arrives as client activity: no future to keep.
        self.server.router.route(server_jid, c2s.jid, iq)

    def _timed_out(self, c2s: C2S, state: PingState) -> None:
        log.info("ping_timeout jid=%s action=%s", c2s.jid, "kill" if self.kill else "none")
        self.server.instrument.emit(MOD_PING_RESPONSE_TIMEOUT, {"host_type": c2s.jid.domain},
                                    {"count": 1})
        if self.kill:
            # XEP-0199 §4.1: no pong in time, the server may consider the client gone.
            if c2s.resumable:
                # Gone is not closed: a phone in a tunnel answers no ping, and its stream
                # management session is what lets it resume when it comes out (XEP-0198 §5).
                # A stream error would end the session (a clean close), and every stanza
                # sent to it since would go to offline storage or the other resources; the
                # connection is dropped instead, so the session waits for resume_timeout.
                c2s.conn.abort()
                return
            c2s.stream_error(StreamError("connection-timeout"))
            return
        state.ping_sent = None
        self._enqueue(c2s, time.monotonic() + self.interval)
