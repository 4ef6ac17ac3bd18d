"""This process as a member of the cluster: its ``RedisNode`` (the session table, the links
to other nodes) and its ``ClusterAdmin`` (admin requests and module casts between nodes).

One sequence for both ways a node runs: ``suricate serve`` with ``sm_backend = "redis"`` and
each worker of ``suricate serve --workers N`` (docs/cluster.md, "One mechanism")."""

from __future__ import annotations

from typing import TYPE_CHECKING

from suricate.cluster.admin import ClusterAdmin
from suricate.cluster.redis_sm import RedisNode

if TYPE_CHECKING:
    from suricate.core.server import Server


class Membership:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.node = RedisNode(server)
        self.control: ClusterAdmin | None = None

    async def start(self) -> None:
        """Join: register with Redis (raises when Redis cannot be reached), then open the
        control channel the other nodes' admin requests and casts come through."""
        await self.node.start()
        self.control = ClusterAdmin(self.server, self.node.redis, self.node.store)
        await self.control.start()

    async def stop(self) -> None:
        """Leave now (sessions removed, links closed) rather than be reaped later."""
        if self.control is not None:
            await self.control.stop()
            self.control = None
        await self.node.stop()
