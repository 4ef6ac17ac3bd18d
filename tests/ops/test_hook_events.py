"""6.4's automatic hook_<name> events seen from outside: raw clients log in, fetch their
roster, ask disco and send messages on a server with Prometheus on; /metrics is scraped around
each step and the hook_*_count deltas asserted. Without instrumentation the server's hooks
are the plain ``Hooks`` with the handler lists a server with it would have minus the counters."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from suricate.core import hooks as H
from suricate.core.hook_events import COUNTER_PRIORITY, EXCLUDED, HOOK_EVENTS
from suricate.core.hooks import Hooks
from tests.e2e.harness import RawClient, eventually
from tests.ops.harness import admin, ops_server
from tests.ops.test_metrics import Samples, raw_login, scrape

LOCAL = frozenset({("host_type", "localhost")})


def hook_counts(samples: Samples) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {key: v for key, v in samples.items()
            if key[0].startswith("hook_") and key[0].endswith("_count")}


async def hook_deltas(server: object, action: Callable[[], Awaitable[object]]
                      ) -> dict[str, float]:
    """The hook_<name>_count series that moved during ``action``, by name (host_type
    "localhost"; another label value fails the test)."""
    before = hook_counts(await scrape(server))
    await action()
    after = hook_counts(await scrape(server))
    moved: dict[str, float] = {}
    for key, v in after.items():
        d = v - before.get(key, 0.0)
        if d:
            name, labels = key
            assert labels == LOCAL, (name, labels)
            moved[name] = d
    return moved


async def test_hook_events_follow_what_clients_do(tmp_path: Path) -> None:
    async with ops_server(tmp_path) as server:
        for user in ("alice", "bob", "carol"):
            await admin(server, 'mutation($u: String) { account { registerUser(domain: '
                        '"localhost", username: $u, password: "pw") { jid } } }', u=user)
        port = server.tls_port  # type: ignore[attr-defined]
        clients: dict[str, RawClient] = {}

        async def login(user: str) -> None:
            clients[user] = await raw_login(port, user, "pw")

        # login: the features before and after authentication are both 6.4's
        # c2s_stream_features; binding (6.4's sm_register_connection) has no event
        moved = await hook_deltas(server, lambda: login("alice"))
        assert moved.get("hook_c2s_stream_features_count") == 2, moved
        assert "hook_sm_register_connection_count" not in moved
        alice = clients["alice"]

        async def send(raw: RawClient, xml: str, answer: str | None) -> None:
            await raw.send(xml)
            if answer is not None:
                await raw.expect(answer)

        # first available presence: mod_offline's resend_offline_messages_hook, run in the
        # presence's processing (user_available_hook has no handler in this configuration:
        # 6.4 counts only hooks with handlers)
        moved = await hook_deltas(server, lambda: send(alice, "<presence/>", "<presence"))
        assert moved.get("hook_resend_offline_messages_hook_count") == 1, moved
        assert "hook_user_available_hook_count" not in moved

        # roster get: 6.4 leaves the roster hooks out, so no hook event moves
        moved = await hook_deltas(server, lambda: send(
            alice, "<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>",
            "id=.r1."))
        assert moved == {}

        # disco#info and disco#items of the server
        moved = await hook_deltas(server, lambda: send(
            alice, "<iq type='get' id='d1' to='localhost'>"
            "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>", "id=.d1."))
        assert moved.get("hook_disco_local_features_count") == 1, moved
        moved = await hook_deltas(server, lambda: send(
            alice, "<iq type='get' id='d2' to='localhost'>"
            "<query xmlns='http://jabber.org/protocol/disco#items'/></iq>", "id=.d2."))
        assert moved.get("hook_disco_local_items_count") == 1, moved

        # a message to an online user: every hook it runs is per stanza, none counted
        await login("bob")
        bob = clients["bob"]
        await send(bob, "<presence/>", "<presence")

        async def chat() -> None:
            await alice.send("<message to='bob@localhost/raw' type='chat' id='m1'>"
                             "<body>hi</body></message>")
            await bob.expect("<body>hi</body>")
        moved = await hook_deltas(server, chat)
        assert moved == {}

        # a message to an account with no session: offline_message_hook
        async def offline() -> None:
            await alice.send("<message to='carol@localhost' type='chat' id='m2'>"
                             "<body>later</body></message>")
            await alice.send("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
            await alice.expect("id=.p1.")
        moved = await hook_deltas(server, offline)
        assert moved.get("hook_offline_message_hook_count") == 1, moved

        # excluded hooks are not even declared: no sample, no HELP line
        samples = await scrape(server)
        for name in ("hook_user_send_packet_count", "hook_user_receive_packet_count",
                     "hook_filter_local_packet_count", "hook_roster_get_count"):
            assert not any(key[0] == name for key in samples), name
        # an available session ends: unset_presence_hook, once the server has seen it go
        before = await scrape(server)
        await bob.close()
        key = ("hook_unset_presence_hook_count", LOCAL)

        async def unset() -> bool:
            return (await scrape(server)).get(key, 0.0) - before.get(key, 0.0) == 1
        await eventually(unset)
        await alice.close()


def handler_lists(hooks: Hooks) -> dict[str, list[tuple[int, str]]]:
    """Each hook's handlers as (priority, what it is): comparable across two servers."""
    out: dict[str, list[tuple[int, str]]] = {}
    for hook, entries in hooks._handlers.items():
        out[hook.name] = [(prio, f"{type(getattr(h, '__self__', None)).__name__}."
                                 f"{getattr(h, '__qualname__', type(h).__name__)}")
                          for prio, h in entries]
    return out


async def test_without_instrumentation_hooks_are_untouched(tmp_path: Path) -> None:
    async with ops_server(tmp_path / "off", instrumentation="") as server:
        assert type(server.hooks) is Hooks
        off = handler_lists(server.hooks)
    async with ops_server(tmp_path / "on") as server:
        assert type(server.hooks) is not Hooks
        on = handler_lists(server.hooks)
    # no counter anywhere without instrumentation
    assert not any(name.startswith("count[") for entries in off.values()
                   for _, name in entries)
    # with it: the same lists, plus one counter first on each instrumented hook that has a
    # handler, and nothing on the excluded hooks
    by_name: dict[str, Any] = {h.name: h for h in (*HOOK_EVENTS, *EXCLUDED)}
    stripped: dict[str, list[tuple[int, str]]] = {}
    for name, entries in on.items():
        counters = [e for e in entries if e[1].startswith("NoneType.count[")]
        if by_name[name] in HOOK_EVENTS and entries:
            assert counters == [entries[0]] and entries[0][0] == COUNTER_PRIORITY, name
            assert entries[0][1] == f"NoneType.count[{HOOK_EVENTS[by_name[name]].name}]"
        else:
            assert counters == [], name
        stripped[name] = [e for e in entries if e not in counters]
    assert {k: v for k, v in stripped.items() if v} == {k: v for k, v in off.items() if v}
    assert off[H.USER_SEND_PACKET.name] == on[H.USER_SEND_PACKET.name]
