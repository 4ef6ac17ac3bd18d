"""Where a resumable session lives, and its copy in Redis (``sm_backend = "redis"``).

Keys (under the cluster's prefix, ``suricate:``), written by the node holding the session:

- ``sm:<id>``: hash: ``node`` (who holds the session: a <resume/> on another node asks it,
  handover.py), ``jid``, ``copy`` (1 when the fields below are kept), and with
  ``copy_to_redis``: ``h_in``, ``acked``, ``priority``, ``presence``, ``modules`` (the
  modules' per-session state, ``SESSION_SNAPSHOT``: directed presences, the client's caps);
- ``smbuf:<id>``: list: the stanzas sent and not acknowledged, after ``acked``, oldest first,
  each with the time it was sent (``state.dumps_sent``): a session rebuilt from the copy
  sends its messages again with that time as their XEP-0203 delay, as a session resumed on
  its own node does (entries written without the time load without it);
- ``node:<node>:sm``: set of the ids a node holds: when it leaves the cluster dead, the
  survivors give its keys ``resume_timeout`` to live (a client resumes from them) instead of
  keeping them for ever.

Writes leave in batches, one pipeline every ``BATCH`` seconds for the sessions whose
counters moved (``MirroredSM`` marks them): the stream's hot path costs a set insertion per
stanza, never a Redis round trip. What a batch writes is the difference since the last one:
the new stanzas appended, the acknowledged ones trimmed from the head. Each write is one Lua
script that gives up when another node holds the id now (the session moved on): an old
batch never overwrites the new holder's copy.

A session waiting for its client (``resume_session``) is copied at once instead: what
arrives for it then reached nobody else, so the copy must not lag. The window: a node that
dies loses what a connected session sent after its last batch, up to ``BATCH`` seconds of
stanzas already written to the client's socket (docs/cluster.md, "Stream management across
nodes", says what becomes of them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import marshal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from suricate.core.c2s.stream import SM_KEY
from suricate.core.module import STATE_GEN
from suricate.jid import JID
from suricate.modules.mod_stream_management.state import (
    SessionState,
    dumps,
    dumps_sent,
    loads,
    loads_sent,
)
from suricate.protocol.sm import MOD, StreamManagement, delayed
from suricate.xml.element import Element

if TYPE_CHECKING:
    from suricate.core.c2s import C2S

log = logging.getLogger("suricate.mod_stream_management")

BATCH = 0.25
STOP_WITHIN = 2.0  # the last batch at a stop

# The sessions of one batch in one call (per command, the client's own cost is some tens
# of microseconds: one per session would cost more than the copy itself). No KEYS: the
# keys are made from the ids, as Redis allows outside Redis Cluster (docs/cluster.md).
# ARGV: me, key prefix, then per session: its fields in one argument (fewer arguments cost
# less to send), "id jid copy h_in acked priority rewrite trim n" separated by tabs (neither
# ids nor JIDs hold one); its presence ('-': unchanged; '': unavailable); the modules' state
# (SESSION_SNAPSHOT, marshalled; '-': unchanged; '': none); its n new stanzas.
# rewrite 1: the list is written anew; trim: how many were acknowledged since the last
# batch. A session another node holds now is left alone (it moved on). Returns how many
# were written.
_WRITE = """
local me, prefix = ARGV[1], ARGV[2]
local held = prefix .. 'node:' .. me .. ':sm'
local i, written = 3, 0
while i <= #ARGV do
  local f = {}
  for field in string.gmatch(ARGV[i], '[^\t]+') do f[#f + 1] = field end
  local id, n = f[1], tonumber(f[9])
  local key, buf = prefix .. 'sm:' .. id, prefix .. 'smbuf:' .. id
  local owner = redis.call('HGET', key, 'node')
  if (not owner) or owner == me then
    redis.call('HSET', key, 'node', me, 'jid', f[2], 'copy', f[3])
    if f[3] == '1' then
      redis.call('HSET', key, 'h_in', f[4], 'acked', f[5], 'priority', f[6])
      if ARGV[i + 1] ~= '-' then redis.call('HSET', key, 'presence', ARGV[i + 1]) end
      if ARGV[i + 2] ~= '-' then redis.call('HSET', key, 'modules', ARGV[i + 2]) end
      if f[7] == '1' then
        redis.call('DEL', buf)
      elseif tonumber(f[8]) > 0 then
        redis.call('LTRIM', buf, f[8], -1)
      end
      for j = 1, n do redis.call('RPUSH', buf, ARGV[i + 2 + j]) end
    end
    -- a node taken for dead while paused is back: its keys live on
    redis.call('PERSIST', key)
    redis.call('PERSIST', buf)
    redis.call('SADD', held, id)
    written = written + 1
  end
  i = i + 3 + n
end
return written
"""
# Sessions per call: one call runs alone in Redis, so a huge batch is cut in pieces.
PER_CALL = 500

# KEYS: sm:<id>, smbuf:<id>, node:<me>:sm. ARGV: me, id. The session ended here.
_DROP = """
if redis.call('HGET', KEYS[1], 'node') == ARGV[1] then redis.call('DEL', KEYS[1], KEYS[2]) end
redis.call('SREM', KEYS[3], ARGV[2])
return 1
"""

# KEYS: sm:<id>, smbuf:<id>, node:<me>:sm. ARGV: the holder expected, me, id, key prefix.
# The session becomes ours if ``ARGV[1]`` still holds it (exactly one of two racing resumes
# gets it); its copy then, else nil.
_TAKE = """
if redis.call('HGET', KEYS[1], 'node') ~= ARGV[1] then return false end
redis.call('HSET', KEYS[1], 'node', ARGV[2])
redis.call('PERSIST', KEYS[1])
redis.call('PERSIST', KEYS[2])
redis.call('SREM', ARGV[4] .. 'node:' .. ARGV[1] .. ':sm', ARGV[3])
redis.call('SADD', KEYS[3], ARGV[3])
return {redis.call('HGETALL', KEYS[1]), redis.call('LRANGE', KEYS[2], 0, -1)}
"""

# KEYS: node:<dead>:sm. ARGV: key prefix, seconds. A dead node's sessions wait that long.
_EXPIRE = """
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  redis.call('EXPIRE', ARGV[1] .. 'sm:' .. id, ARGV[2])
  redis.call('EXPIRE', ARGV[1] .. 'smbuf:' .. id, ARGV[2])
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""


class MirroredSM(StreamManagement):
    """The XEP-0198 counters of a session copied to Redis: every change marks it for the
    next batch (one set insertion; the batch computes what changed)."""

    __slots__ = ("dirty", "wake", "waiting", "m_out", "m_acked", "m_presence", "m_gen",
                 "rewrite")

    def __init__(self, sm_id: str, resume: bool, buffer_max: int | None,
                 ack_freq: int | None, dirty: set[str], wake: asyncio.Event) -> None:
        super().__init__(sm_id, resume, buffer_max, ack_freq)
        self.dirty = dirty
        self.wake = wake
        # The connection is gone (resume_session): what arrives now is copied at once,
        # not at the next batch: nothing reached the client, only the copy keeps it.
        self.waiting = False
        self.m_out = 0  # h_out and acked as the last batch wrote them
        self.m_acked = 0
        self.m_presence: Any = None  # the presence element last written (by identity)
        self.m_gen = 0  # the modules' state as last written (module.STATE_GEN)
        self.rewrite = True  # the list in Redis is written anew at the next batch

    def stanza_in(self) -> None:
        self.h_in = (self.h_in + 1) % MOD
        self.dirty.add(self.id)

    def stanza_out(self, stanza: Element) -> bool:
        self.dirty.add(self.id)
        if self.waiting:
            self.wake.set()
        return super().stanza_out(stanza)

    def ack(self, h: int) -> None:
        super().ack(h)
        self.dirty.add(self.id)

    def take_unacked(self, delay_from: str | None = None) -> list[Element]:
        self.rewrite = True
        self.dirty.add(self.id)
        return super().take_unacked(delay_from)

    def requeue(self, stanzas: list[Element]) -> None:
        self.rewrite = True
        self.dirty.add(self.id)
        super().requeue(stanzas)


class Mirror:
    """The ``sm:<id>`` records of this node's resumable sessions, written in batches."""

    def __init__(self, redis: Any, node: str, prefix: str, copy: bool,
                 sessions: Callable[[str], C2S | None],
                 snapshot: Callable[[C2S], dict[str, Any]] = lambda c2s: {}) -> None:
        self.redis = redis
        self._snapshot = snapshot  # the modules' state of a session (SESSION_SNAPSHOT)
        self.node = node
        self.prefix = prefix
        self.copy = copy  # copy_to_redis: the counters and the buffer too
        self._session = sessions
        self.dirty: set[str] = set()
        self._drops: set[str] = set()
        self._write = redis.register_script(_WRITE)
        self._drop = redis.register_script(_DROP)
        self._take = redis.register_script(_TAKE)
        self._expire = redis.register_script(_EXPIRE)
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()  # a batch now (a waiting session's stanza, stop)
        self._stopped = False

    def _keys(self, sm_id: str, node: str | None = None) -> list[str]:
        return [f"{self.prefix}sm:{sm_id}", f"{self.prefix}smbuf:{sm_id}",
                f"{self.prefix}node:{node or self.node}:sm"]

    def new_sm(self, sm_id: str, buffer_max: int | None,
               ack_freq: int | None) -> StreamManagement:
        if self.copy:
            return MirroredSM(sm_id, True, buffer_max, ack_freq, self.dirty, self._wake)
        return StreamManagement(sm_id, True, buffer_max, ack_freq)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._batches())

    async def stop(self) -> None:
        # A flag, not only a cancellation: Python 3.11's wait_for can turn a cancellation
        # into a timeout (seen here: a stop that never ended), so the loop is told.
        self._stopped = True
        self._wake.set()
        if self._task is not None:
            done, _ = await asyncio.wait({self._task}, timeout=5)
            if not done:
                self._task.cancel()
        # Bounded, as the node's own leave (a paused Redis must not keep a stop waiting).
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.flush(), STOP_WITHIN)

    # -- what the module tells ----------------------------------------------------------
    def held(self, sm_id: str) -> None:
        """This node holds ``sm_id`` now (enabled here, or resumed here): recorded at once
        (a resume on another node looks for it there)."""
        self._drops.discard(sm_id)
        self.dirty.add(sm_id)
        self._wake.set()

    def ended(self, sm_id: str) -> None:
        """The session ended here (closed, timed out): its record goes."""
        self.dirty.discard(sm_id)
        self._drops.add(sm_id)

    def rewrite(self, sm_ids: list[str]) -> None:
        """Redis lost (or may have lost) this node's records (it came back empty, a
        Sentinel failover): each is written again whole at the next batch."""
        for sm_id in sm_ids:
            c2s = self._session(sm_id)
            sm = c2s.module_state.get(SM_KEY) if c2s is not None else None
            if isinstance(sm, MirroredSM):
                sm.rewrite = True
                sm.m_presence = None
            self.dirty.add(sm_id)
        self._wake.set()

    def moved(self, sm_id: str) -> None:
        """The session went to another node, which writes its record from now on."""
        self.dirty.discard(sm_id)

    # -- batches ------------------------------------------------------------------------
    async def _batches(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopped:
            timer = loop.call_later(BATCH, self._wake.set)
            await self._wake.wait()
            timer.cancel()
            self._wake.clear()
            if self._stopped:
                return
            try:
                await self.flush()
            except Exception:
                log.warning("sm_mirror_failed node=%s", self.node, exc_info=True)

    async def flush(self) -> None:
        # MirroredSM instances hold this very set: emptied, never replaced.
        dirty = set(self.dirty)
        self.dirty.clear()
        drops, self._drops = self._drops, set()
        if not dirty and not drops:
            return
        writes: list[tuple[str, StreamManagement | None]] = []
        calls: list[list[Any]] = []
        args: list[Any] = []
        for sm_id in dirty:
            c2s = self._session(sm_id)
            if c2s is None or c2s.jid is None:
                continue
            sm = c2s.module_state.get(SM_KEY)
            writes.append((sm_id, sm))
            args.extend(self._write_args(sm_id, c2s, sm))
            if len(writes) % PER_CALL == 0:
                calls.append(args)
                args = []
        if args:
            calls.append(args)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for call in calls:
                    await self._write(keys=[], args=[self.node, self.prefix, *call],
                                      client=pipe)
                for sm_id in drops:
                    await self._drop(keys=self._keys(sm_id), args=[self.node, sm_id],
                                     client=pipe)
                await pipe.execute()
        except Exception:
            # Written again at the next batch, whole.
            for sm_id, sm in writes:
                if isinstance(sm, MirroredSM):
                    sm.rewrite = True
                    sm.m_presence = None
                self.dirty.add(sm_id)
            self._drops |= drops
            raise

    def _write_args(self, sm_id: str, c2s: C2S, sm: Any) -> list[Any]:
        """One session's part of a ``_WRITE`` call: what changed since the last batch."""
        if not isinstance(sm, MirroredSM):
            return [f"{sm_id}\t{c2s.jid}\t0\t0\t0\t0\t0\t0\t0", "-", "-"]
        presence: Any = "-"
        if sm.m_presence is not c2s.presence or sm.rewrite:
            presence = dumps(c2s.presence) if c2s.presence is not None else b""
            sm.m_presence = c2s.presence
        # The modules' state only when one of them said it changed (a directed presence, the
        # client's caps learnt): the hook is not run for every batch of a busy session.
        modules: Any = "-"
        gen = c2s.module_state.get(STATE_GEN, 0)
        if gen != sm.m_gen or sm.rewrite:
            modules = marshal.dumps(self._snapshot(c2s)) if gen else b""
            sm.m_gen = gen
        new = (sm.h_out - sm.m_out) % MOD
        trim = (sm.acked - sm.m_acked) % MOD
        # Stanzas sent and acknowledged between two batches are never written.
        rewrite = sm.rewrite or new > len(sm.buffer)
        buffer, sent_at = sm.buffer, sm.sent_at
        first = 0 if rewrite else len(buffer) - new
        stanzas = [dumps_sent(buffer[i], sent_at[i]) for i in range(first, len(buffer))]
        sm.m_out, sm.m_acked, sm.rewrite = sm.h_out, sm.acked, False
        fields = (f"{sm_id}\t{c2s.jid}\t1\t{sm.h_in}\t{sm.acked}\t{c2s.priority}\t"
                  f"{1 if rewrite else 0}\t{0 if rewrite else trim}\t{len(stanzas)}")
        return [fields, presence, modules, *stanzas]

    # -- reading ------------------------------------------------------------------------
    async def holder(self, sm_id: str) -> tuple[str | None, str | None, bool]:
        """Who holds ``sm_id``, for which full JID, and whether a copy is kept."""
        node, jid, copy = await self.redis.hmget(f"{self.prefix}sm:{sm_id}",
                                                 ["node", "jid", "copy"])
        return _text(node), _text(jid), _text(copy) == "1"

    async def take(self, sm_id: str, holder: str) -> SessionState | None:
        """The session is ours if ``holder`` still holds it: its copy then (None: another
        resume took it first, or no copy). Its messages come with the time they were first
        sent as their delay (XEP-0203 §2), whether they are sent again on resumption or
        routed elsewhere (RFC 6121 §8) when nobody resumes the session."""
        found = await self._take(keys=self._keys(sm_id),
                                 args=[holder, self.node, sm_id, self.prefix])
        if not found:
            return None
        flat, stanzas = found
        fields = {_text(flat[i]) or "": flat[i + 1] for i in range(0, len(flat), 2)}
        if _text(fields.get("copy")) != "1":
            return SessionState(_jid(fields), 0, None, 0, 0, [])
        presence = fields.get("presence") or b""
        modules = fields.get("modules") or b""
        jid = _jid(fields)
        unacked = []
        for raw in stanzas:
            stanza, when = loads_sent(raw)
            if when is not None and stanza.name == "message":
                stanza = delayed(stanza, jid.domain, when)
            unacked.append(stanza)
        return SessionState(jid, int(fields.get("priority") or 0),
                            loads(presence) if presence else None,
                            int(fields.get("h_in") or 0), int(fields.get("acked") or 0),
                            unacked, marshal.loads(modules) if modules else {})

    async def held_by(self, node: str) -> list[str]:
        return [_text(m) or "" for m in await self.redis.smembers(
            f"{self.prefix}node:{node}:sm")]

    async def expire_node(self, node: str, seconds: int) -> None:
        await self._expire(keys=[f"{self.prefix}node:{node}:sm"], args=[self.prefix, seconds])


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def _jid(fields: dict[str, Any]) -> JID:
    return JID.parse(_text(fields.get("jid")) or "")

