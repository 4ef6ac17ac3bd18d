"""mod_event_pusher's storage: the XEP-0357 push registrations of each account."""

from __future__ import annotations

import time
from dataclasses import dataclass

from suricate.storage.module_store import ModuleStore


@dataclass(frozen=True, slots=True)
class PushRegistration:
    service: str  # the app server's JID (XEP-0357 `jid`)
    node: str  # its PubSub node for this device
    form: str  # serialized publish-options form, '' when the client gave none


class PushStore(ModuleStore):
    migrations = __package__
    user_tables = ("push_registrations",)

    async def enable(self, server: str, user: str, reg: PushRegistration) -> None:
        # XEP-0357 §5: enabling the same (jid, node) again replaces its publish-options.
        await self.execute(
            "INSERT INTO push_registrations (server, username, service, node, form, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (server, username, service, node)"
            " DO UPDATE SET form = excluded.form",
            server, user, reg.service, reg.node, reg.form, time.time())

    async def disable(self, server: str, user: str, service: str, node: str | None) -> int:
        # XEP-0357 §6: without a node, every registration with that app server goes.
        if node is None:
            return await self.execute(
                "DELETE FROM push_registrations WHERE server = ? AND username = ? AND service = ?",
                server, user, service)
        return await self.execute(
            "DELETE FROM push_registrations"
            " WHERE server = ? AND username = ? AND service = ? AND node = ?",
            server, user, service, node)

    async def registrations(self, server: str, user: str) -> list[PushRegistration]:
        rows = await self.fetch(
            "SELECT service, node, form FROM push_registrations"
            " WHERE server = ? AND username = ? ORDER BY service, node", server, user)
        return [PushRegistration(row[0], row[1], row[2]) for row in rows]
