"""mod_pubsub's storage: nodes, items, affiliations and subscriptions, keyed by the node's host.

A host is ``(server, username)``: an account for PEP (so its rows are erased with the account,
``user_tables``) or ``(service domain, "")`` for the pubsub service.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from suricate.storage.module_store import ModuleStore

Host = tuple[str, str]


@dataclass(slots=True)
class Item:
    id: str
    publisher: str
    payload: str  # serialized XML of the payload element ("" for none)
    published_at: int  # ns since the epoch


class PubsubStore(ModuleStore):
    migrations = __package__
    user_tables = ("pubsub_nodes", "pubsub_items", "pubsub_affiliations", "pubsub_subscriptions")

    # -- nodes -----------------------------------------------------------------------------
    async def get_node(self, host: Host, node: str) -> dict[str, Any] | None:
        row = await self.fetch_one(
            "SELECT config FROM pubsub_nodes WHERE server = ? AND username = ? AND node = ?",
            *host, node)
        return None if row is None else dict(json.loads(row[0]))

    async def list_nodes(self, host: Host) -> list[tuple[str, dict[str, Any]]]:
        rows = await self.fetch(
            "SELECT node, config FROM pubsub_nodes WHERE server = ? AND username = ? "
            "ORDER BY node", *host)
        return [(r[0], dict(json.loads(r[1]))) for r in rows]

    async def create_node(self, host: Host, node: str, config: dict[str, Any],
                          owner: str) -> bool:
        """False when the node exists already."""
        async with self.session(transaction=True) as ex:
            # ON CONFLICT DO NOTHING rather than check-then-insert: two publishes that
            # auto-create the same node at once (a client storing two bookmarks) both saw
            # no node when the database was a few ms away, and the second insert failed
            # the primary key (internal-server-error; docs/delivery.md).
            created = await ex.execute(
                "INSERT INTO pubsub_nodes (server, username, node, config) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (server, username, node) DO NOTHING",
                *host, node, json.dumps(config))
            if created != 1:
                return False
            await ex.execute(
                "INSERT INTO pubsub_affiliations (server, username, node, jid, affiliation) "
                "VALUES (?, ?, ?, ?, 'owner')", *host, node, owner)
        return True

    async def set_config(self, host: Host, node: str, config: dict[str, Any]) -> None:
        await self.execute(
            "UPDATE pubsub_nodes SET config = ? WHERE server = ? AND username = ? AND node = ?",
            json.dumps(config), *host, node)

    async def delete_node(self, host: Host, node: str) -> bool:
        async with self.session(transaction=True) as ex:
            found = await ex.execute(
                "DELETE FROM pubsub_nodes WHERE server = ? AND username = ? AND node = ?",
                *host, node)
            for table in ("pubsub_items", "pubsub_affiliations", "pubsub_subscriptions"):
                await ex.execute(
                    f"DELETE FROM {table} WHERE server = ? AND username = ? AND node = ?",
                    *host, node)
        return found > 0

    # -- items -----------------------------------------------------------------------------
    async def publish(self, host: Host, node: str, item: Item, keep: int) -> None:
        """Store ``item`` (replacing one with its id, which then counts as the newest) and keep
        the ``keep`` newest items of the node."""
        async with self.session(transaction=True) as ex:
            await ex.execute(
                "INSERT INTO pubsub_items (server, username, node, item_id, publisher, payload,"
                " published_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (server, username, "
                "node, item_id) DO UPDATE SET publisher = excluded.publisher, "
                "payload = excluded.payload, published_at = excluded.published_at",
                *host, node, item.id, item.publisher, item.payload, item.published_at)
            rows = await ex.fetch(
                "SELECT item_id FROM pubsub_items WHERE server = ? AND username = ? AND node = ?"
                " ORDER BY published_at DESC LIMIT ? OFFSET ?",
                *host, node, self.no_limit, keep)
            for row in rows:
                await ex.execute(
                    "DELETE FROM pubsub_items WHERE server = ? AND username = ? AND node = ? "
                    "AND item_id = ?", *host, node, row[0])

    async def get_items(self, host: Host, node: str, ids: list[str] | None = None,
                        max_items: int | None = None) -> list[Item]:
        """The node's items, oldest first; ``max_items``: the newest N (XEP-0060 §6.5.7)."""
        if ids is not None:
            # In the order of ``ids``; one query (an RSM page asks for up to its size).
            found: dict[str, Item] = {}
            for start in range(0, len(ids), 100):
                chunk = ids[start:start + 100]
                rows = await self.fetch(
                    "SELECT item_id, publisher, payload, published_at FROM pubsub_items WHERE "
                    "server = ? AND username = ? AND node = ? AND item_id IN ("
                    + ", ".join("?" * len(chunk)) + ")", *host, node, *chunk)
                found.update((r[0], Item(*r)) for r in rows)
            return [found[i] for i in dict.fromkeys(ids) if i in found]
        rows = await self.fetch(
            "SELECT item_id, publisher, payload, published_at FROM pubsub_items WHERE "
            "server = ? AND username = ? AND node = ? ORDER BY published_at DESC LIMIT ?",
            *host, node, self.no_limit if max_items is None else max_items)
        return [Item(*r) for r in reversed(rows)]

    async def item_ids(self, host: Host, node: str) -> list[str]:
        """The ids of the node's items, newest first (the order of a XEP-0059 page)."""
        rows = await self.fetch(
            "SELECT item_id FROM pubsub_items WHERE server = ? AND username = ? AND node = ? "
            "ORDER BY published_at DESC", *host, node)
        return [r[0] for r in rows]

    async def last_item(self, host: Host, node: str) -> Item | None:
        items = await self.get_items(host, node, max_items=1)
        return items[0] if items else None

    async def retract(self, host: Host, node: str, item_id: str) -> bool:
        return await self.execute(
            "DELETE FROM pubsub_items WHERE server = ? AND username = ? AND node = ? AND "
            "item_id = ?", *host, node, item_id) > 0

    async def purge(self, host: Host, node: str) -> None:
        await self.execute(
            "DELETE FROM pubsub_items WHERE server = ? AND username = ? AND node = ?",
            *host, node)

    # -- affiliations ----------------------------------------------------------------------
    async def get_affiliation(self, host: Host, node: str, jid: str) -> str:
        row = await self.fetch_one(
            "SELECT affiliation FROM pubsub_affiliations WHERE server = ? AND username = ? AND "
            "node = ? AND jid = ?", *host, node, jid)
        return "none" if row is None else str(row[0])

    async def affiliations(self, host: Host, node: str) -> list[tuple[str, str]]:
        rows = await self.fetch(
            "SELECT jid, affiliation FROM pubsub_affiliations WHERE server = ? AND "
            "username = ? AND node = ? ORDER BY jid", *host, node)
        return [(r[0], r[1]) for r in rows]

    async def user_affiliations(self, host: Host, jid: str) -> list[tuple[str, str]]:
        rows = await self.fetch(
            "SELECT node, affiliation FROM pubsub_affiliations WHERE server = ? AND "
            "username = ? AND jid = ? ORDER BY node", *host, jid)
        return [(r[0], r[1]) for r in rows]

    async def set_affiliation(self, host: Host, node: str, jid: str, affiliation: str) -> None:
        if affiliation == "none":
            await self.execute(
                "DELETE FROM pubsub_affiliations WHERE server = ? AND username = ? AND "
                "node = ? AND jid = ?", *host, node, jid)
            return
        await self.execute(
            "INSERT INTO pubsub_affiliations (server, username, node, jid, affiliation) VALUES "
            "(?, ?, ?, ?, ?) ON CONFLICT (server, username, node, jid) DO UPDATE SET "
            "affiliation = excluded.affiliation", *host, node, jid, affiliation)

    # -- subscriptions ---------------------------------------------------------------------
    async def subscriptions(self, host: Host, node: str) -> list[tuple[str, str, str]]:
        """(jid, subid, state) of the node."""
        rows = await self.fetch(
            "SELECT jid, subid, state FROM pubsub_subscriptions WHERE server = ? AND "
            "username = ? AND node = ? ORDER BY jid", *host, node)
        return [(r[0], r[1], r[2]) for r in rows]

    async def user_subscriptions(self, host: Host, bare: str) -> list[tuple[str, str, str, str]]:
        """(node, jid, subid, state) of ``bare`` and its full JIDs on the host."""
        rows = await self.fetch(
            "SELECT node, jid, subid, state FROM pubsub_subscriptions WHERE server = ? AND "
            "username = ? AND (jid = ? OR jid LIKE ? ESCAPE '\\') ORDER BY node",
            *host, bare, _like_prefix(bare + "/"))
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    async def set_subscription(self, host: Host, node: str, jid: str, subid: str,
                               state: str) -> None:
        await self.execute(
            "INSERT INTO pubsub_subscriptions (server, username, node, jid, subid, state) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (server, username, node, jid, subid) DO "
            "UPDATE SET state = excluded.state", *host, node, jid, subid, state)

    async def subscription_options(self, host: Host, node: str, jid: str,
                                   subid: str) -> dict[str, Any] | None:
        """The options of one subscription (XEP-0060 §6.3), None when there is none."""
        row = await self.fetch_one(
            "SELECT options FROM pubsub_subscriptions WHERE server = ? AND username = ? AND "
            "node = ? AND jid = ? AND subid = ?", *host, node, jid, subid)
        return None if row is None else dict(json.loads(row[0]))

    async def set_subscription_options(self, host: Host, node: str, jid: str, subid: str,
                                       options: dict[str, Any]) -> None:
        await self.execute(
            "UPDATE pubsub_subscriptions SET options = ? WHERE server = ? AND username = ? "
            "AND node = ? AND jid = ? AND subid = ?", json.dumps(options), *host, node, jid,
            subid)

    async def active_subscriptions(self, host: Host,
                                   node: str) -> list[tuple[str, dict[str, Any]]]:
        """(jid, options) of the node's subscriptions in state 'subscribed': who a
        notification goes to."""
        rows = await self.fetch(
            "SELECT jid, options FROM pubsub_subscriptions WHERE server = ? AND username = ? "
            "AND node = ? AND state = 'subscribed' ORDER BY jid", *host, node)
        return [(r[0], json.loads(r[1]) if r[1] != "{}" else {}) for r in rows]

    async def remove_subscription(self, host: Host, node: str, jid: str,
                                  subid: str | None) -> int:
        if subid is None:
            return await self.execute(
                "DELETE FROM pubsub_subscriptions WHERE server = ? AND username = ? AND "
                "node = ? AND jid = ?", *host, node, jid)
        return await self.execute(
            "DELETE FROM pubsub_subscriptions WHERE server = ? AND username = ? AND node = ? "
            "AND jid = ? AND subid = ?", *host, node, jid, subid)

    async def owned_and_published(self, bare: str) -> tuple[list[tuple[str, str]],
                                                              list[tuple[str, str, str]]]:
        """GDPR retrieval, as MongooseIM's pubsub_nodes and pubsub_payloads: (node, type) of
        the nodes ``bare`` owns (its PEP nodes, ``pep``; service nodes it is an owner of,
        ``pubsub``), and (node, item id, payload) of the items it published anywhere."""
        user, _, server = bare.partition("@")
        like = _like_prefix(bare + "/")
        pep = await self.fetch("SELECT node FROM pubsub_nodes WHERE server = ? AND username = ?"
                               " ORDER BY node", server, user)
        owned = await self.fetch(
            "SELECT server, node FROM pubsub_affiliations WHERE username = ''"
            " AND affiliation = 'owner' AND (jid = ? OR jid LIKE ? ESCAPE '\\')"
            " ORDER BY server, node", bare, like)
        items = await self.fetch(
            "SELECT node, item_id, payload FROM pubsub_items"
            " WHERE publisher = ? OR publisher LIKE ? ESCAPE '\\'"
            " ORDER BY server, username, node, published_at", bare, like)
        nodes = [(str(r[0]), "pep") for r in pep] + [(str(r[1]), "pubsub") for r in owned]
        return nodes, [(str(r[0]), str(r[1]), str(r[2])) for r in items]

    async def sole_owned(self, bare: str) -> list[tuple[str, str]]:
        """(service, node) of the service nodes whose only owner is ``bare``."""
        rows = await self.fetch(
            "SELECT a.server, a.node FROM pubsub_affiliations a WHERE a.username = ''"
            " AND a.affiliation = 'owner' AND a.jid = ? AND NOT EXISTS (SELECT 1 FROM"
            " pubsub_affiliations o WHERE o.server = a.server AND o.username = ''"
            " AND o.node = a.node AND o.affiliation = 'owner' AND o.jid <> a.jid)"
            " ORDER BY a.server, a.node", bare)
        return [(str(r[0]), str(r[1])) for r in rows]

    async def remove_account(self, bare: str) -> None:
        # As ModPubsub.remove_user, without telling the subscribers (nobody is connected).
        for service, node in await self.sole_owned(bare):
            await self.delete_node((service, ""), node)
        await self.forget_jid(bare)

    async def forget_jid(self, bare: str) -> None:
        """An account is gone: its subscriptions and affiliations on other hosts too."""
        for table in ("pubsub_subscriptions", "pubsub_affiliations"):
            await self.execute(f"DELETE FROM {table} WHERE jid = ? OR jid LIKE ? ESCAPE '\\'",
                               bare, _like_prefix(bare + "/"))


def _like_prefix(prefix: str) -> str:
    # A bare JID may hold '_' (a LIKE wildcard): escaped, so only the resource is matched.
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
