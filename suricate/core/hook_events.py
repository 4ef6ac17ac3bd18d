"""MongooseIM 6.4's automatic ``hook_<name>`` events: how many times each hook ran.

In 6.4 every run of a hook that has handlers executes the event ``hook_<hook name>`` with one
``count`` spiral, labelled by the host type the hook ran for (no label for a global hook),
except for the hooks it leaves out as too hot or already measured by their own events.

Here the events are declared at import, one per instrumented hook, with 6.4's hook name where
Suricate's differs (``HOOK_NAMES_64``). Nothing is added to ``Hooks.fold``: when the server has
instrumentation handlers it builds ``CountingHooks`` instead of ``Hooks``, which puts one
counting handler first in the handler list of each instrumented hook, for as long as the hook
has a handler of its own (6.4 counts runs of hooks that have handlers). Without
instrumentation the server's ``Hooks`` is the plain class, so the handler lists and every fold
are what they would be without this module. The excluded hooks (``EXCLUDED``) never get a
counter, so the per-stanza folds cost the same with instrumentation on.

The ``host_type`` label comes from the hook's ``host_arg`` argument (``hooks.host_of``): the
domain of the session, account or domain the call is about, when it is a served domain (the
handler turns it into its host type); "" otherwise, as for 6.4's global hooks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from suricate.core import hooks as H
from suricate.core.hooks import Hook, Hooks, host_of
from suricate.instrument import Instrumentation
from suricate.instrument.events import SPIRAL, EventSpec, declare

log = logging.getLogger("suricate.hooks")

#: Suricate hook name -> 6.4's, where they differ (the event is ``hook_`` + 6.4's name).
#: Two Suricate hooks may be one 6.4 hook: 6.4 runs c2s_stream_features before and after
#: authentication.
HOOK_NAMES_64: Mapping[str, str] = {
    H.C2S_PREAUTH_FEATURES.name: "c2s_stream_features",
    H.C2S_PREAUTH_IQ.name: "c2s_unauthenticated_iq",
    H.SASL2_INLINE_FEATURES.name: "sasl2_stream_features",
    H.BIND2_INLINE_FEATURES.name: "bind2_stream_features",
    H.BIND2_BIND.name: "bind2_enable_features",
    H.USER_AVAILABLE.name: "user_available_hook",
    H.RESEND_OFFLINE_MESSAGES.name: "resend_offline_messages_hook",
    H.UNSET_PRESENCE.name: "unset_presence_hook",
    H.OFFLINE_MESSAGE.name: "offline_message_hook",
    H.VCARD_STORED.name: "vcard_set",
    # excluded below, named for the record
    H.SESSION_OPENED.name: "sm_register_connection",
    H.SESSION_CLOSED.name: "sm_remove_connection",
    H.PRIVACY_CHECK_INBOUND.name: "privacy_check_packet",
    H.ROSTER_ITEMS.name: "roster_get",
}

#: 6.4's hooks without an event (mongoose_instrument_hooks): the per-stanza ones and those
#: whose work has events of its own. Listed by 6.4 name; those Suricate has are left out.
EXCLUDED_64: frozenset[str] = frozenset({
    "sm_register_connection", "sm_remove_connection", "auth_failed",
    "user_send_packet", "user_send_message", "user_send_presence", "user_send_iq",
    "user_receive_packet", "user_receive_message", "user_receive_presence", "user_receive_iq",
    "xmpp_send_element", "roster_get", "roster_set", "roster_push",
    "register_user", "remove_user", "anonymous_purge",
    "privacy_iq_get", "privacy_iq_set", "privacy_check_packet",
    "mam_get_prefs", "mam_set_prefs", "mam_remove_archive", "mam_archive_message",
    "mam_muc_get_prefs", "mam_muc_set_prefs", "mam_muc_remove_archive",
    "mam_muc_lookup_messages", "mam_muc_archive_message",
})

#: Suricate's own hooks on the per-stanza path, left out as 6.4 leaves out user_send_*: a
#: counter there would cost a call per stanza.
EXCLUDED_PER_STANZA: frozenset[Hook[Any]] = frozenset({
    H.FILTER_LOCAL_PACKET,   # every message to a local account
    H.FILTER_LOCAL_ROUTE,    # every stanza to a local destination
    H.PRESENCE_TO_USER,      # every presence to a local bare JID
    H.MUC_LIGHT_TO_MEMBER,   # every MUC Light message, once per member
    H.C2S_STREAM_ELEMENT,    # every XEP-0198 <r/> and <a/>
})


def event_name(hook: Hook[Any]) -> str:
    return "hook_" + HOOK_NAMES_64.get(hook.name, hook.name)


def _all_hooks() -> list[Hook[Any]]:
    return [v for v in vars(H).values() if isinstance(v, Hook)]


def _excluded(hook: Hook[Any]) -> bool:
    return hook in EXCLUDED_PER_STANZA or \
        HOOK_NAMES_64.get(hook.name, hook.name) in EXCLUDED_64


#: Every hook of ``suricate.core.hooks`` that 6.4 would not exclude -> its event.
HOOK_EVENTS: dict[Hook[Any], EventSpec] = {}
for _hook in _all_hooks():
    if not _excluded(_hook):
        _name = HOOK_NAMES_64.get(_hook.name, _hook.name)
        HOOK_EVENTS[_hook] = declare(
            "hook_" + _name, ("host_type",), {"count": SPIRAL},
            f"Runs of the {_name} hook that had handlers (6.4's automatic hook event)")
#: The hooks that never get a counter.
EXCLUDED: frozenset[Hook[Any]] = frozenset(h for h in _all_hooks() if h not in HOOK_EVENTS)

#: Priority of the counting handler: before every module's, so a Stop cannot skip it.
COUNTER_PRIORITY = -(2 ** 62)
_ONE: Mapping[str, float] = {"count": 1}


def make_counter(hook: Hook[Any], spec: EventSpec, instrument: Instrumentation,
                 is_served: Callable[[str], bool]) -> Callable[..., Any]:
    """A handler that leaves the accumulator alone and emits ``spec`` once."""
    def count(acc: Any, *args: Any) -> Any:
        try:
            domain = host_of(hook, args)
            instrument.emit(spec, {"host_type": domain if domain and is_served(domain)
                                   else ""}, _ONE)
        except Exception:  # a counter never changes what the hook does
            log.exception("hook_event_failed hook=%s", hook.name)
        return acc
    count.__qualname__ = f"count[{spec.name}]"
    return count


class CountingHooks(Hooks):
    """``Hooks`` that count the runs of the instrumented hooks (``HOOK_EVENTS``): made by the
    server instead of ``Hooks`` when it has instrumentation handlers. Only ``add`` and
    ``remove`` differ (wiring time): the counter is one more entry in the handler list,
    present while the hook has another, so ``has``, ``fold`` and ``fold_async`` are
    ``Hooks``' own."""

    __slots__ = ("_counters",)

    def __init__(self, instrument: Instrumentation, is_served: Callable[[str], bool]) -> None:
        super().__init__()
        self._counters = {hook: make_counter(hook, spec, instrument, is_served)
                          for hook, spec in HOOK_EVENTS.items()}

    def add(self, hook: Hook[H.F], handler: H.F, priority: int = 50) -> None:
        counter = self._counters.get(hook)
        if counter is not None and not self._handlers.get(hook):
            untyped: Hook[Any] = hook
            super().add(untyped, counter, COUNTER_PRIORITY)
        super().add(hook, handler, priority)

    def remove(self, hook: Hook[H.F], handler: H.F) -> None:
        super().remove(hook, handler)
        counter = self._counters.get(hook)
        entries = self._handlers.get(hook)
        if counter is not None and entries and all(e[1] is counter for e in entries):
            untyped: Hook[Any] = hook
            super().remove(untyped, counter)
