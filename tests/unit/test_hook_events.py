"""CountingHooks (6.4's hook_<name> events): one count per run of a hook that has handlers,
whatever the handlers do, and the excluded hooks left exactly as Hooks leaves them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from suricate.core import hooks as H
from suricate.core.hook_events import (
    COUNTER_PRIORITY,
    EXCLUDED,
    HOOK_EVENTS,
    HOOK_NAMES_64,
    CountingHooks,
    event_name,
)
from suricate.core.hooks import Hook, Hooks, Stop
from suricate.instrument import Instrumentation
from suricate.instrument.events import EVENTS, SPIRAL, EventSpec
from suricate.jid import JID


class Recorder(Instrumentation):
    enabled = True

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, str], dict[str, float]]] = []

    def emit(self, event: EventSpec, labels: Mapping[str, str],
             measurements: Mapping[str, float]) -> None:
        self.events.append((event.name, dict(labels), dict(measurements)))


def counting() -> tuple[CountingHooks, Recorder]:
    rec = Recorder()
    return CountingHooks(rec, lambda d: d == "localhost"), rec


def test_every_hook_is_either_counted_or_excluded_and_named_as_in_64() -> None:
    declared = [v for v in vars(H).values() if isinstance(v, Hook)]
    assert set(declared) == set(HOOK_EVENTS) | EXCLUDED
    assert not set(HOOK_EVENTS) & EXCLUDED
    names = {h.name for h in declared}
    assert set(HOOK_NAMES_64) <= names  # no stale entry in the mapping
    for hook, spec in HOOK_EVENTS.items():
        assert spec.name == event_name(hook)
        assert EVENTS[spec.name] is spec
        assert spec.labels == ("host_type",) and dict(spec.metrics) == {"count": SPIRAL}
    assert HOOK_EVENTS[H.C2S_PREAUTH_FEATURES] is HOOK_EVENTS[H.C2S_STREAM_FEATURES]
    assert HOOK_EVENTS[H.OFFLINE_MESSAGE].name == "hook_offline_message_hook"
    # 6.4's exclusions, and Suricate's per-stanza hooks
    for hook in (H.USER_SEND_PACKET, H.USER_RECEIVE_PACKET, H.ROSTER_GET, H.REGISTER_USER,
                 H.REMOVE_USER, H.SESSION_OPENED, H.SESSION_CLOSED, H.PRIVACY_CHECK_INBOUND,
                 H.FILTER_LOCAL_PACKET, H.FILTER_LOCAL_ROUTE, H.PRESENCE_TO_USER,
                 H.MUC_LIGHT_TO_MEMBER, H.C2S_STREAM_ELEMENT):
        assert hook in EXCLUDED, hook


def test_one_count_per_run_with_the_domain_as_host_type() -> None:
    hooks, rec = counting()
    hooks.add(H.DISCO_LOCAL_FEATURES, lambda acc, d: acc | {"a"})
    hooks.add(H.DISCO_LOCAL_FEATURES, lambda acc, d: acc | {"b"}, 10)
    assert hooks.fold(H.DISCO_LOCAL_FEATURES, set(), "localhost") == {"a", "b"}
    assert hooks.fold(H.DISCO_LOCAL_FEATURES, set(), "remote.example") == {"a", "b"}
    assert rec.events == [
        ("hook_disco_local_features", {"host_type": "localhost"}, {"count": 1}),
        # a domain the server does not serve is no host type: empty, as a global hook
        ("hook_disco_local_features", {"host_type": ""}, {"count": 1}),
    ]
    # a JID argument (host_arg) gives its domain
    hooks.add(H.DISCO_SM_FEATURES, lambda acc, j: acc)
    hooks.fold(H.DISCO_SM_FEATURES, set(), JID.parse("alice@localhost"))
    assert rec.events[-1][1] == {"host_type": "localhost"}


def test_a_hook_without_handlers_is_not_counted_and_has_says_so() -> None:
    hooks, rec = counting()
    assert not hooks.has(H.DISCO_LOCAL_ITEMS)
    assert hooks.fold(H.DISCO_LOCAL_ITEMS, [], "localhost") == []
    handler = lambda acc, d: acc  # noqa: E731
    hooks.add(H.DISCO_LOCAL_ITEMS, handler)
    assert hooks.has(H.DISCO_LOCAL_ITEMS)
    hooks.remove(H.DISCO_LOCAL_ITEMS, handler)
    assert not hooks.has(H.DISCO_LOCAL_ITEMS)  # the counter went with the last handler
    assert hooks._handlers[H.DISCO_LOCAL_ITEMS] == []
    hooks.fold(H.DISCO_LOCAL_ITEMS, [], "localhost")
    assert rec.events == []


def test_the_counter_runs_first_and_changes_nothing() -> None:
    hooks, rec = counting()
    hooks.add(H.SESSION_SUSPEND, lambda acc, c2s: Stop(True), 1)
    hooks.add(H.SESSION_SUSPEND, lambda acc, c2s: False, 90)
    assert hooks._handlers[H.SESSION_SUSPEND][0][0] == COUNTER_PRIORITY
    assert len(hooks._handlers[H.SESSION_SUSPEND]) == 3
    assert hooks.fold(H.SESSION_SUSPEND, False, object()) is True
    assert [e[0] for e in rec.events] == ["hook_session_suspend"]


async def test_async_folds_are_counted_and_a_failing_counter_fails_nothing() -> None:
    class Broken(Instrumentation):
        def emit(self, *args: Any) -> None:
            raise RuntimeError("handler bug")

    hooks = CountingHooks(Broken(), lambda d: True)

    async def stored(acc: bool, *args: Any) -> bool:
        return True
    hooks.add(H.OFFLINE_MESSAGE, stored)
    jid = JID.parse("bob@localhost")
    assert await hooks.fold_async_checked(H.OFFLINE_MESSAGE, False, jid, jid, None) == \
        (True, False)

    counted, rec = counting()
    counted.add(H.OFFLINE_MESSAGE, stored)
    assert await counted.fold_async(H.OFFLINE_MESSAGE, False, jid, jid, None) is True
    assert rec.events == [("hook_offline_message_hook", {"host_type": "localhost"},
                           {"count": 1})]


@pytest.mark.parametrize("hook", [H.USER_SEND_PACKET, H.USER_RECEIVE_PACKET,
                                  H.FILTER_LOCAL_PACKET, H.ROSTER_GET])
def test_excluded_hooks_have_the_same_handler_lists_as_plain_hooks(hook: Hook[Any]) -> None:
    counted, rec = counting()
    plain = Hooks()
    first = lambda acc, *a: acc  # noqa: E731
    second = lambda acc, *a: acc  # noqa: E731
    for hooks in (counted, plain):
        hooks.add(hook, first, 20)
        hooks.add(hook, second, 10)
        hooks.fold(hook, None, None)
    assert counted._handlers[hook] == plain._handlers[hook] == [(10, second), (20, first)]
    assert rec.events == []
