"""mod_event_pusher's store on SQLite and PostgreSQL: registrations enabled, replaced,
disabled by node or by app server, and erased with the account; the device behind each."""

from __future__ import annotations

from suricate.core.module import open_module_store
from suricate.modules.mod_event_pusher.store import PushRegistration, PushStore
from suricate.storage.module_store import load_module_migrations, migrate_module
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
    # The device behind a registration (the resource that enabled it) is kept, and the last
    # device to enable it is the one behind it.
    await store.enable(S, "bob", PushRegistration("push.app.example", "n2", "", "phone"))
    await store.enable(S, "bob", PushRegistration("push.app.example", "n2", "", "tablet"))
    assert [r.device for r in await store.registrations(S, "bob")] == ["", "tablet"]
    assert await store.disable(S, "alice", "push.app.example", "n2") == 1
    assert await store.disable(S, "alice", "push.app.example", None) == 1
    assert await store.registrations(S, "alice") == [PushRegistration("other.example", "n9", "")]
    # A second open applies nothing twice.
    await open_module_store(storage, "mod_event_pusher", PushStore)
    await storage.remove_user(S, "alice", PushStore.user_tables)
    assert await store.registrations(S, "alice") == []
    assert len(await store.registrations(S, "bob")) == 2


async def test_registrations_of_version_1_have_no_device(storage: SqlStorage) -> None:
    # A database from before devices were stored: its rows read as any device's ('').
    migrations = load_module_migrations("suricate.modules.mod_event_pusher", storage.dialect)
    await migrate_module(storage, "mod_event_pusher", migrations[:1])
    await storage._execute(
        "INSERT INTO push_registrations (server, username, service, node, form, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)", S, "alice", "push.app.example", "n1", "", 0.0)
    store = await open_module_store(storage, "mod_event_pusher", PushStore)
    assert isinstance(store, PushStore)
    assert await store.registrations(S, "alice") == [
        PushRegistration("push.app.example", "n1", "", "")]
