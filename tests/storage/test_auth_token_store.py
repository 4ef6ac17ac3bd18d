"""mod_auth_token's store on every backend (conftest.py): the refresh-token sequence number,
revocation, and account removal erasing it."""

from __future__ import annotations

import time

from suricate.core.module import open_module_store
from suricate.modules.mod_auth_token.store import AuthTokenStore
from suricate.storage.module_store import module_versions
from suricate.storage.sql import SqlStorage

S = "example.com"


async def test_sequence_number_revocation_and_account_removal(storage: SqlStorage) -> None:
    store = await open_module_store(storage, "mod_auth_token", AuthTokenStore)
    assert isinstance(store, AuthTokenStore)
    assert await module_versions(storage, "mod_auth_token") == [1]
    assert await store.get_seq_no(S, "alice") is None
    assert not await store.revoke(S, "alice")  # nothing issued: nothing to revoke
    # The first number is the time in milliseconds: above any a removed account of the same
    # name left in its refresh tokens.
    before = int(time.time() * 1000)
    first = await store.current_seq_no(S, "alice")
    assert before <= first <= int(time.time() * 1000)
    assert await store.current_seq_no(S, "alice") == first  # issuing again changes nothing
    assert await store.revoke(S, "alice")
    assert await store.get_seq_no(S, "alice") == first + 1
    assert await store.current_seq_no(S, "alice") == first + 1
    bob = await store.current_seq_no(S, "bob")

    await storage.create_user(S, "alice", None, "x")
    assert await storage.remove_user(S, "alice", store.user_tables) is True
    assert await store.get_seq_no(S, "alice") is None
    assert await store.get_seq_no(S, "bob") == bob
