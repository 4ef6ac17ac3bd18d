"""Traffic limits of a room (MongooseIM 6.4's mod_muc ``min_message_interval``,
``min_presence_interval``, ``room_shaper``, ``user_message_shaper``, ``user_presence_shaper``).

Off by default: a room then has no limiter (``Room.limiter is None``) and its message path pays
one attribute test. With a limit on, each sending session (full JID) has an ``Activity``:

- **Groupchat messages.** A message that comes before ``min_message_interval`` has passed
  since the session's previous processed one, or that its ``user_message_shaper`` says is
  early, waits for its time. While one message of the session waits, the next one is refused
  with ``resource-constraint`` ("Traffic rate limit is exceeded", as MongooseIM's room says):
  a flooding client gets errors, the room gets one message per interval. A message on time
  then passes the ``room_shaper`` (all senders together): over it, or behind messages already
  waiting for it, it waits in the room's queue, in order.
- **Presences.** A presence before ``min_presence_interval`` (or over the
  ``user_presence_shaper``) waits; a newer presence of the session replaces the waiting one
  (only the newest matters), never an error. Leaving (``unavailable``) and presence errors
  are never held: a session that goes is out at once (it drops what it had waiting).

Shapers are the ``[shaper]`` entries every listener uses: ``max_rate`` bytes per second, here
the bytes of the stanza as serialized (MongooseIM's room measures its stanzas in bytes too),
with a burst of one second (``suricate.net.shaper.TokenBucket``).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from suricate.jid import JID
from suricate.net.shaper import NO_SHAPER, TokenBucket
from suricate.xml.element import Element

if TYPE_CHECKING:
    from suricate.modules.mod_muc.room import Room

RATE_EXCEEDED = "Traffic rate limit is exceeded"


@dataclass(frozen=True, slots=True)
class Limits:
    """The service's limits, from mod_muc's options (None: all off)."""

    message_interval: float  # seconds
    presence_interval: float
    room_rate: int | None  # bytes per second
    user_message_rate: int | None
    user_presence_rate: int | None

    @classmethod
    def from_options(cls, opts: Mapping[str, Any],
                     shapers: Mapping[str, Mapping[str, Any]]) -> Limits | None:
        def rate(option: str) -> int | None:
            name = opts.get(option, NO_SHAPER)
            if not name or name == NO_SHAPER:
                return None
            return int(shapers[name]["max_rate"])

        limits = cls(float(opts.get("min_message_interval", 0)),
                     float(opts.get("min_presence_interval", 0)),
                     rate("room_shaper"), rate("user_message_shaper"),
                     rate("user_presence_shaper"))
        if not (limits.message_interval or limits.presence_interval or limits.room_rate
                or limits.user_message_rate or limits.user_presence_rate):
            return None
        return limits

    @property
    def window(self) -> float:
        """How long a session's activity matters after its last stanza."""
        return max(self.message_interval, self.presence_interval, 1.0)


class Activity:
    """One session's recent traffic to the room."""

    __slots__ = ("message_time", "presence_time", "held_message", "held_presence",
                 "message_bucket", "presence_bucket", "message_timer", "presence_timer")

    def __init__(self, limits: Limits) -> None:
        self.message_time = float("-inf")
        self.presence_time = float("-inf")
        self.held_message: Element | None = None
        self.held_presence: tuple[JID, Element] | None = None
        self.message_bucket = TokenBucket(limits.user_message_rate) \
            if limits.user_message_rate else None
        self.presence_bucket = TokenBucket(limits.user_presence_rate) \
            if limits.user_presence_rate else None
        self.message_timer: asyncio.TimerHandle | None = None
        self.presence_timer: asyncio.TimerHandle | None = None

    def drop_held(self) -> None:
        for timer in (self.message_timer, self.presence_timer):
            if timer is not None:
                timer.cancel()
        self.message_timer = self.presence_timer = None
        self.held_message = None
        self.held_presence = None

    def last(self) -> float:
        return max(self.message_time, self.presence_time)


class RoomLimiter:
    """One room's limits: each session's activity and the room's shaper queue.

    ``groupchat(frm, stanza)`` and ``presence(frm, to, stanza)`` of the room are called for
    what passes, now or later (a held stanza goes when its time comes, if the session is still
    there and the room still in memory)."""

    __slots__ = ("room", "limits", "activity", "bucket", "queue", "timer", "clock")

    def __init__(self, room: Room, limits: Limits,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.room = room
        self.limits = limits
        self.activity: dict[JID, Activity] = {}
        self.bucket = TokenBucket(limits.room_rate) if limits.room_rate else None
        self.queue: deque[JID] = deque()  # sessions whose held message waits for room_shaper
        self.timer: asyncio.TimerHandle | None = None
        self.clock = clock

    def _activity(self, jid: JID) -> Activity:
        act = self.activity.get(jid)
        if act is None:
            if len(self.activity) > 2 * len(self.room.by_jid) + 16:
                self._prune()
            act = self.activity[jid] = Activity(self.limits)
        return act

    def _prune(self) -> None:
        """Forget sessions that are not in the room and sent nothing for a while."""
        horizon = self.clock() - self.limits.window
        for jid in [j for j, a in self.activity.items()
                    if j not in self.room.by_jid and a.held_message is None
                    and a.held_presence is None and a.last() < horizon]:
            del self.activity[jid]

    def left(self, jid: JID) -> None:
        """Session ``jid`` left the room: what it had waiting goes; its times are kept for
        the window (joining again at once does not reset the interval)."""
        act = self.activity.get(jid)
        if act is None:
            return
        act.drop_held()
        if act.last() < self.clock() - self.limits.window:
            del self.activity[jid]

    def close(self) -> None:
        """The room stops (server shutdown): nothing waiting goes any more."""
        for act in self.activity.values():
            act.drop_held()
        self.activity.clear()
        self.queue.clear()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    # -- groupchat messages ------------------------------------------------------------------
    def message(self, frm: JID, stanza: Element) -> bool:
        """True: the room processes ``stanza`` now; False: it waits or was refused (the
        sender got ``resource-constraint``)."""
        act = self._activity(frm)
        if act.held_message is not None:
            self.room._error(stanza, "resource-constraint", RATE_EXCEEDED)
            return False
        now = self.clock()
        size = len(stanza.serialize()) if act.message_bucket or self.bucket else 0
        wait = act.message_time + self.limits.message_interval - now
        if act.message_bucket is not None:
            wait = max(wait, act.message_bucket.consume(size))
        if wait > 0:
            act.held_message = stanza
            act.message_timer = asyncio.get_running_loop().call_later(
                wait, self._message_due, frm)
            return False
        return self._through_room(frm, act, stanza, size, now)

    def _through_room(self, frm: JID, act: Activity, stanza: Element, size: int,
                      now: float) -> bool:
        if self.bucket is None:
            act.message_time = now
            return True
        if not self.queue:
            wait = self.bucket.consume(size)
            if wait <= 0:
                act.message_time = now
                return True
            self.timer = asyncio.get_running_loop().call_later(wait, self._drain)
        act.held_message = stanza  # behind the others (the head's tokens are taken)
        self.queue.append(frm)
        return False

    def _message_due(self, frm: JID) -> None:
        act = self.activity.get(frm)
        if self.room.gone or act is None or act.held_message is None:
            return
        act.message_timer = None
        stanza, act.held_message = act.held_message, None
        now = self.clock()
        size = len(stanza.serialize()) if self.bucket is not None else 0
        if self._through_room(frm, act, stanza, size, now):
            self.room.groupchat_released(frm, stanza)

    def _drain(self) -> None:
        """The room's shaper lets the head of the queue go; the next one waits for its
        own tokens."""
        self.timer = None
        if self.room.gone:
            return
        while self.queue:
            frm = self.queue.popleft()
            act = self.activity.get(frm)
            if act is None or act.held_message is None:
                continue  # the session left meanwhile
            stanza, act.held_message = act.held_message, None
            act.message_time = self.clock()
            self.room.groupchat_released(frm, stanza)
            break
        while self.queue:
            head = self.activity.get(self.queue[0])
            if head is None or head.held_message is None:
                self.queue.popleft()
                continue
            assert self.bucket is not None
            wait = self.bucket.consume(len(head.held_message.serialize()))
            self.timer = asyncio.get_running_loop().call_later(max(wait, 0.0), self._drain)
            break

    # -- presences ---------------------------------------------------------------------------
    def presence(self, frm: JID, to: JID, stanza: Element) -> bool:
        """True: the room processes the presence now; False: it waits (a newer one
        replaces it)."""
        act = self._activity(frm)
        if act.held_presence is not None:
            act.held_presence = (to, stanza)  # only the newest presence matters
            return False
        now = self.clock()
        wait = act.presence_time + self.limits.presence_interval - now
        if act.presence_bucket is not None:
            wait = max(wait, act.presence_bucket.consume(len(stanza.serialize())))
        if wait > 0:
            act.held_presence = (to, stanza)
            act.presence_timer = asyncio.get_running_loop().call_later(
                wait, self._presence_due, frm)
            return False
        act.presence_time = now
        return True

    def _presence_due(self, frm: JID) -> None:
        act = self.activity.get(frm)
        if self.room.gone or act is None or act.held_presence is None:
            return
        act.presence_timer = None
        (to, stanza), act.held_presence = act.held_presence, None
        act.presence_time = self.clock()
        self.room.presence_released(frm, to, stanza)
