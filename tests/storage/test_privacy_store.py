"""mod_privacy's store on SQLite, PostgreSQL and MariaDB (conftest.py): lists created,
replaced (never a delta, XEP-0016 §2.6) and removed, the default list (§2.5), and every row
erased with the account."""

from __future__ import annotations

from suricate.core.module import open_module_store
from suricate.modules.mod_privacy.store import (
    IQ,
    MESSAGE,
    PRESENCE_OUT,
    PrivacyItem,
    PrivacyStore,
)
from suricate.storage.module_store import module_versions
from suricate.storage.sql import SqlStorage

S = "example.com"

PUBLIC = [PrivacyItem(1, "deny", "jid", "tybalt@example.com", MESSAGE | IQ),
          PrivacyItem(2, "allow", "group", "Friends", PRESENCE_OUT),
          PrivacyItem(3, "deny", "subscription", "none"),
          PrivacyItem(4294967295, "allow")]


async def open_store(storage: SqlStorage) -> PrivacyStore:
    store = await open_module_store(storage, "mod_privacy", PrivacyStore)
    assert isinstance(store, PrivacyStore)
    return store


async def test_lists_are_stored_replaced_and_removed(storage: SqlStorage) -> None:
    store = await open_store(storage)
    assert await store.list_names(S, "alice") == ([], None)
    assert await store.get_list(S, "alice", "public") is None
    await store.set_list(S, "alice", "public", list(reversed(PUBLIC)))
    await store.set_list(S, "alice", "private", [PrivacyItem(10, "deny")])
    await store.set_list(S, "bob", "public", [PrivacyItem(5, "allow")])
    assert await store.list_names(S, "alice") == (["private", "public"], None)
    # Items come back in ascending order (§2.2 rule 5), kinds and values as written.
    assert await store.get_list(S, "alice", "public") == PUBLIC
    # A set replaces the whole list.
    await store.set_list(S, "alice", "public", [PrivacyItem(7, "deny", "jid", "x.org")])
    assert await store.get_list(S, "alice", "public") == [
        PrivacyItem(7, "deny", "jid", "x.org")]
    assert await store.remove_list(S, "alice", "public") is True
    assert await store.remove_list(S, "alice", "public") is False
    assert await store.list_names(S, "alice") == (["private"], None)
    assert await store.get_list(S, "bob", "public") == [PrivacyItem(5, "allow")]


async def test_default_list(storage: SqlStorage) -> None:
    store = await open_store(storage)
    await store.set_list(S, "alice", "public", PUBLIC)
    await store.set_list(S, "alice", "private", [PrivacyItem(10, "deny")])
    assert await store.get_default(S, "alice") is None
    assert await store.set_default(S, "alice", "nosuch") is False
    assert await store.set_default(S, "alice", "public") is True
    assert await store.get_default(S, "alice") == ("public", PUBLIC)
    assert await store.set_default(S, "alice", "private") is True
    assert await store.list_names(S, "alice") == (["private", "public"], "private")
    # Editing the default list keeps it the default.
    await store.set_list(S, "alice", "private", [PrivacyItem(11, "allow")])
    assert await store.get_default(S, "alice") == ("private", [PrivacyItem(11, "allow")])
    assert await store.set_default(S, "alice", None) is True
    assert await store.get_default(S, "alice") is None
    # Removing the default list removes the default.
    await store.set_default(S, "alice", "public")
    await store.remove_list(S, "alice", "public")
    assert await store.list_names(S, "alice") == (["private"], None)


async def test_migrated_once_and_erased_with_the_account(storage: SqlStorage) -> None:
    store = await open_store(storage)
    await open_store(storage)  # a second start applies nothing twice
    assert await module_versions(storage, "mod_privacy") == [1]
    await store.set_list(S, "alice", "public", PUBLIC)
    await store.set_default(S, "alice", "public")
    await store.set_list(S, "bob", "public", PUBLIC)
    await storage.remove_user(S, "alice", PrivacyStore.user_tables)
    assert await store.list_names(S, "alice") == ([], None)
    assert await store.get_default(S, "alice") is None
    assert await store.get_list(S, "bob", "public") == PUBLIC
