"""mod_event_pusher's store on SQLite and PostgreSQL: registrations enabled, replaced,
disabled by node or by app server, and erased with the account."""

from __future__ import annotations

from suricate.core.module import open_module_store
from suricate.modules.mod_event_pusher.store import PushRegistration, PushStore
from suricate.storage.sql import SqlStorage

S = "example.com"


async def test_push_registrations(storage: SqlStorage) -> None:
    store = await open_module_store(storage, "mod_event_pusher", PushStore)
    assert isinstance(store, PushStore)
    await store.enable(S, "alice", PushRegistration("push.app.example", "n1", ""))
    await store.enable(S, "alice", PushRegistration("push.app.example", "n2", "<x/>"))
    await store.enable(S, "alice", PushRegistration("push.app.example", "n1", "<y/>"))
    await store.enable(S, "alice", PushRegistration("other.example", "n9", ""))
    await store.enable(S, "bob", PushRegistration("push.app.example", "n1", ""))
    regs = await store.registrations(S, "alice")
    assert regs == [PushRegistration("other.example", "n9", ""),
                    PushRegistration("push.app.example", "n1", "<y/>"),
                    PushRegistration("push.app.example", "n2", "<x/>")]
    assert await store.disable(S, "alice", "push.app.example", "n2") == 1
    assert await store.disable(S, "alice", "push.app.example", None) == 1
    assert await store.registrations(S, "alice") == [PushRegistration("other.example", "n9", "")]
    # A second open applies nothing twice.
    await open_module_store(storage, "mod_event_pusher", PushStore)
    await storage.remove_user(S, "alice", PushStore.user_tables)
    assert await store.registrations(S, "alice") == []
    assert len(await store.registrations(S, "bob")) == 1
