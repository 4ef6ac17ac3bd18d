"""``max_user_conferences`` counted across the nodes of a cluster (``sm_backend = "redis"``).

One node alone counts an account's rooms in memory (``ModMuc.user_rooms``). On a cluster the
account's rooms live on several nodes, so the count is kept in Redis:

- ``muc:in:<bare JID>``: a set, one member per room and resource of the account in it,
  ``"<room's node>\\t<room JID>\\t<full JID>"``; the limit counts the distinct rooms (two
  sessions of the account in one room, multi-session, are one room).

A join takes its place with one Lua script (atomic, so two joins on two nodes at once cannot
both take the last place): it counts the rooms of the members whose node still beats (``alive:<node>``;
the members of a node that died or stopped are removed on the way, so nobody needs to sweep
them), and adds the new one only under the limit. Leaving removes the member. When Redis lost
its data (restarted empty) or a Sentinel failover happened, each node writes its rooms'
members back with the room claims (``placement.Placement._reclaim``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from suricate.jid import JID

log = logging.getLogger("suricate.mod_muc")

# KEYS: muc:in:<bare>. ARGV: member, limit, key prefix, room JID. 1: in (or already in),
# 0: full. The limit counts rooms, not members: several sessions of the account in one room
# (multi-session) are one room, and another session of a room already counted always enters.
_ENTER = """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 1 end
local rooms, n, here = {}, 0, false
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local tab = string.find(m, '\\t', 1, true)
  if tab and redis.call('EXISTS', ARGV[3] .. 'alive:' .. string.sub(m, 1, tab - 1)) == 1 then
    local rest = string.sub(m, tab + 1)
    local tab2 = string.find(rest, '\\t', 1, true)
    local room = tab2 and string.sub(rest, 1, tab2 - 1) or rest
    if room == ARGV[4] then here = true end
    if not rooms[room] then
      rooms[room] = true
      n = n + 1
    end
  else
    redis.call('SREM', KEYS[1], m)
  end
end
if not here and n >= tonumber(ARGV[2]) then return 0 end
redis.call('SADD', KEYS[1], ARGV[1])
return 1
"""


class Conferences:
    """The account's rooms across the cluster, for ``max_user_conferences``."""

    def __init__(self, redis: Any, prefix: str, node: str, limit: int) -> None:
        self.redis = redis
        self.prefix = prefix
        self.node = node
        self.limit = limit
        self._enter = redis.register_script(_ENTER)

    def _key(self, jid: JID) -> str:
        return f"{self.prefix}muc:in:{jid.bare}"

    def _member(self, jid: JID, room: JID) -> str:
        return f"{self.node}\t{room}\t{jid}"

    async def enter(self, jid: JID, room: JID) -> bool:
        """Take a place for ``jid`` in ``room``; False when the account is in ``limit``
        rooms already. Redis unreachable: allowed (the limit is a courtesy, a join is not
        refused for an outage), logged."""
        try:
            return bool(await self._enter(keys=[self._key(jid)],
                                          args=[self._member(jid, room), self.limit,
                                                self.prefix, str(room)]))
        except Exception:
            log.warning("muc_conferences_unavailable jid=%s", jid, exc_info=True)
            return True

    async def leave(self, jid: JID, room: JID) -> None:
        try:
            await self.redis.srem(self._key(jid), self._member(jid, room))
        except Exception:
            # Left behind: counted until this node stops beating (then _ENTER drops it).
            log.warning("muc_conferences_leave_failed jid=%s", jid, exc_info=True)

    async def write_back(self, occupancies: list[tuple[JID, JID]]) -> None:
        """(full JID, room) of every occupant of this node's rooms, written again."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for jid, room in occupancies:
                pipe.sadd(self._key(jid), self._member(jid, room))
            await pipe.execute()
