"""mod_pubsub's store on SQLite, PostgreSQL and MariaDB (the storage suite's backends)."""

from __future__ import annotations

from suricate.core.module import open_module_store
from suricate.modules.mod_pubsub.store import Item, PubsubStore
from suricate.storage.sql import SqlStorage
from tests.storage.conftest import backend, make_storage, my_database, pg_database, storage

__all__ = ["backend", "make_storage", "my_database", "pg_database", "storage"]  # fixtures

PEP = ("localhost", "alice")
SERVICE = ("pubsub.localhost", "")


async def _store(storage: SqlStorage) -> PubsubStore:
    store = await open_module_store(storage, "mod_pubsub", PubsubStore)
    assert isinstance(store, PubsubStore)
    return store


def _item(item_id: str, at: int) -> Item:
    return Item(item_id, "alice@localhost", f"<v xmlns='urn:x'>{item_id}</v>", at)


async def test_nodes_items_order_replacement_and_trim(storage: SqlStorage) -> None:
    store = await _store(storage)
    assert await store.create_node(PEP, "n", {"max_items": 2}, "alice@localhost")
    assert not await store.create_node(PEP, "n", {}, "alice@localhost")
    assert await store.get_node(PEP, "n") == {"max_items": 2}
    for n, item_id in enumerate(["a", "b", "c"]):
        await store.publish(PEP, "n", _item(item_id, n), keep=2)
    assert [i.id for i in await store.get_items(PEP, "n")] == ["b", "c"]
    await store.publish(PEP, "n", _item("b", 10), keep=2)  # republished: now the newest
    assert [i.id for i in await store.get_items(PEP, "n")] == ["c", "b"]
    assert [i.id for i in await store.get_items(PEP, "n", max_items=1)] == ["b"]
    assert [i.id for i in await store.get_items(PEP, "n", ids=["c", "zz"])] == ["c"]
    assert (await store.last_item(PEP, "n")).id == "b"  # type: ignore[union-attr]
    assert await store.retract(PEP, "n", "c") and not await store.retract(PEP, "n", "c")
    await store.purge(PEP, "n")
    assert await store.get_items(PEP, "n") == []
    await store.set_config(PEP, "n", {"title": "t"})
    assert await store.get_node(PEP, "n") == {"title": "t"}
    assert [n for n, _ in await store.list_nodes(PEP)] == ["n"]
    assert await store.delete_node(PEP, "n") and await store.get_node(PEP, "n") is None


async def test_affiliations_subscriptions_and_account_removal(storage: SqlStorage) -> None:
    store = await _store(storage)
    await store.create_node(SERVICE, "news", {}, "alice@localhost")
    await store.create_node(PEP, "tune", {}, "alice@localhost")
    assert await store.get_affiliation(SERVICE, "news", "alice@localhost") == "owner"
    await store.set_affiliation(SERVICE, "news", "b_b@localhost", "publisher")
    assert await store.user_affiliations(SERVICE, "b_b@localhost") == [("news", "publisher")]
    await store.set_subscription(SERVICE, "news", "b_b@localhost/phone", "s1", "pending")
    await store.set_subscription(SERVICE, "news", "b_b@localhost/phone", "s1", "subscribed")
    # '_' in the bare JID is not a LIKE wildcard: bxb's subscription is not b_b's.
    await store.set_subscription(SERVICE, "news", "bxb@localhost/x", "s2", "subscribed")
    assert await store.user_subscriptions(SERVICE, "b_b@localhost") == [
        ("news", "b_b@localhost/phone", "s1", "subscribed")]
    assert await store.remove_subscription(SERVICE, "news", "bxb@localhost/x", "nope") == 0
    await store.forget_jid("b_b@localhost")
    assert await store.get_affiliation(SERVICE, "news", "b_b@localhost") == "none"
    assert [s[0] for s in await store.subscriptions(SERVICE, "news")] == ["bxb@localhost/x"]
    # The account's own (PEP) rows go with the account; the service's stay.
    await storage.remove_user("localhost", "alice", PubsubStore.user_tables)
    assert await store.list_nodes(PEP) == []
    assert [n for n, _ in await store.list_nodes(SERVICE)] == ["news"]


async def test_subscription_options(storage: SqlStorage) -> None:
    """XEP-0060 §6.3: options stay with their subscription (migration 0002)."""
    store = await _store(storage)
    assert await store.create_node(SERVICE, "n", {}, "alice@localhost")
    await store.set_subscription(SERVICE, "n", "bob@localhost", "s1", "subscribed")
    await store.set_subscription(SERVICE, "n", "carol@localhost", "s2", "pending")
    assert await store.subscription_options(SERVICE, "n", "bob@localhost", "s1") == {}
    await store.set_subscription_options(SERVICE, "n", "bob@localhost", "s1",
                                         {"deliver": False, "show-values": ["chat"]})
    assert await store.subscription_options(SERVICE, "n", "bob@localhost", "s1") == {
        "deliver": False, "show-values": ["chat"]}
    assert await store.subscription_options(SERVICE, "n", "bob@localhost", "nope") is None
    # Only subscribed ones are delivered to; a state change keeps the options.
    assert await store.active_subscriptions(SERVICE, "n") == [
        ("bob@localhost", {"deliver": False, "show-values": ["chat"]})]
    await store.set_subscription(SERVICE, "n", "bob@localhost", "s1", "subscribed")
    assert (await store.active_subscriptions(SERVICE, "n"))[0][1]["deliver"] is False
