"""mod_auth_token's store on every backend (conftest.py): the refresh-token sequence number,
revocation, and account removal erasing it."""

from __future__ import annotations

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
    assert await store.current_seq_no(S, "alice") == 1
    assert await store.current_seq_no(S, "alice") == 1  # issuing again changes nothing
    assert await store.revoke(S, "alice")
    assert await store.get_seq_no(S, "alice") == 2
    assert await store.current_seq_no(S, "alice") == 2
    assert await store.current_seq_no(S, "bob") == 1

    await storage.create_user(S, "alice", None, "x")
    assert await storage.remove_user(S, "alice", store.user_tables) is True
    assert await store.get_seq_no(S, "alice") is None
    assert await store.get_seq_no(S, "bob") == 1
