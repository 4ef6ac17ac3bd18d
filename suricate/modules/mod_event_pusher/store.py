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
    # The resource of the session that enabled it: the device it wakes ('' when unknown,
    # a row kept from before the column existed).
    device: str = ""


class PushStore(ModuleStore):
    migrations = __package__
    user_tables = ("push_registrations",)

    async def enable(self, server: str, user: str, reg: PushRegistration) -> None:
        # XEP-0357 §5: enabling the same (jid, node) again replaces its publish-options; the
        # device enabling it is now the one behind it.
        await self.execute(
            "INSERT INTO push_registrations"
            " (server, username, service, node, form, device, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (server, username, service, node)"
            " DO UPDATE SET form = excluded.form, device = excluded.device",
            server, user, reg.service, reg.node, reg.form, reg.device, time.time())

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
            "SELECT service, node, form, device FROM push_registrations"
            " WHERE server = ? AND username = ? ORDER BY service, node", server, user)
        return [PushRegistration(row[0], row[1], row[2], row[3]) for row in rows]
