"""Typed hooks: every hook is a declared object, so a misspelt hook is an AttributeError at import.

A handler is registered with a priority (lower runs first, as in MongooseIM). Two run styles:
- ``fold`` (sync): each handler gets the accumulator and returns the new one, or ``Stop(acc)``
  to end the run; used on the hot path (stanza filters, stream features, disco features).
- ``fold_async``: handlers may be coroutines; used where storage is involved.
A failing handler is our bug: it is logged with a trace and skipped, so one module cannot take a
connection down (the caller decides how to answer the peer).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("suricate.hooks")


@dataclass(frozen=True, slots=True)
class Hook:
    name: str
    doc: str

    def __repr__(self) -> str:
        return f"Hook({self.name})"


@dataclass(slots=True)
class Stop:
    """Returned by a handler to end the run with ``acc``."""

    acc: Any


Handler = Callable[..., Any]

# -- c2s stream --------------------------------------------------------------------------------
C2S_STREAM_FEATURES = Hook(
    "c2s_stream_features",
    "fold(features: list[Element], c2s) -> list[Element]; the features after authentication "
    "(before auth: c2s_preauth_features)")
C2S_PREAUTH_FEATURES = Hook(
    "c2s_preauth_features", "fold(features: list[Element], c2s) -> list[Element]")
C2S_PREAUTH_IQ = Hook(
    "c2s_preauth_iq",
    "fold_async(handled: bool, c2s, iq) -> bool; an IQ before authentication (XEP-0077)")

# -- sessions ----------------------------------------------------------------------------------
SESSION_OPENED = Hook("session_opened", "fold_async(None, c2s): a resource is bound")
SESSION_CLOSED = Hook("session_closed", "fold_async(None, c2s, reason: str): a session ended")
USER_AVAILABLE = Hook(
    "user_available", "fold_async(None, c2s): first available presence of a session")
UNSET_PRESENCE = Hook(
    "unset_presence",
    "fold_async(None, c2s, status: str): a session ended while available; status is '' "
    "(a client's own unavailable presence is seen by user_send_packet)")

# -- stanza flow -------------------------------------------------------------------------------
USER_SEND_PACKET = Hook(
    "user_send_packet",
    "fold(stanza|None, c2s) -> stanza|None: a stanza from a client, from already stamped; "
    "None means a handler consumed it")
USER_RECEIVE_PACKET = Hook(
    "user_receive_packet",
    "fold(stanza|None, c2s) -> stanza|None: about to be delivered to a session")
PRIVACY_CHECK_INBOUND = Hook(
    "privacy_check_inbound",
    "fold_async(allow: bool, server, user_jid, from_jid, stanza) -> bool; for an offline "
    "recipient (online ones are filtered by user_receive_packet)")
PRESENCE_TO_USER = Hook(
    "presence_to_user",
    "fold_async(handled: bool, from_jid, to_jid, stanza) -> bool; a presence addressed to a "
    "local user's bare JID (subscriptions, probes, directed presence)")
OFFLINE_MESSAGE = Hook(
    "offline_message",
    "fold_async(stored: bool, from_jid, to_jid, stanza) -> bool; a message no session took")

# -- accounts ----------------------------------------------------------------------------------
REGISTER_USER = Hook("register_user", "fold_async(None, jid): an account was created")
REMOVE_USER = Hook("remove_user", "fold_async(None, jid): an account was removed")

# -- discovery ---------------------------------------------------------------------------------
DISCO_LOCAL_FEATURES = Hook(
    "disco_local_features", "fold(features: set[str], domain) -> set[str]: the server's features")
DISCO_LOCAL_ITEMS = Hook(
    "disco_local_items", "fold(items: list[Element], domain) -> list[Element]")
DISCO_SM_FEATURES = Hook(
    "disco_sm_features", "fold(features: set[str], user_jid) -> set[str]: an account's features")
DISCO_INFO_EXTRA = Hook(
    "disco_info", "fold(extra: list[Element], domain) -> list[Element]: XEP-0128 forms")

# -- roster subscriptions (RFC 6121 §3) --------------------------------------------------------
ROSTER_OUT_SUBSCRIPTION = Hook(
    "roster_out_subscription",
    "fold_async(outcome: subscription.Transition|None, user: JID, contact: JID, type: str, "
    "stanza) -> Transition|None: the user sent subscribe/subscribed/unsubscribe/unsubscribed "
    "to the contact (both bare); the roster owner updates the item and says what to route")
ROSTER_IN_SUBSCRIPTION = Hook(
    "roster_in_subscription",
    "fold_async(outcome: subscription.Transition|None, user: JID, contact: JID, type: str, "
    "stanza) -> Transition|None: the contact's subscription stanza reached the local user "
    "(both bare); the roster owner updates the item and says what to deliver or answer")


class Hooks:
    __slots__ = ("_handlers",)

    def __init__(self) -> None:
        self._handlers: dict[Hook, list[tuple[int, Handler]]] = {}

    def add(self, hook: Hook, handler: Handler, priority: int = 50) -> None:
        if not isinstance(hook, Hook):
            raise TypeError(f"not a hook: {hook!r}")
        entries = self._handlers.setdefault(hook, [])
        entries.append((priority, handler))
        entries.sort(key=lambda e: e[0])

    def remove(self, hook: Hook, handler: Handler) -> None:
        entries = self._handlers.get(hook, [])
        self._handlers[hook] = [e for e in entries if e[1] != handler]

    def has(self, hook: Hook) -> bool:
        return bool(self._handlers.get(hook))

    def fold(self, hook: Hook, acc: Any, *args: Any) -> Any:
        for _, handler in self._handlers.get(hook, ()):
            try:
                result = handler(acc, *args)
            except Exception:
                log.exception("hook_handler_failed hook=%s handler=%r", hook.name, handler)
                continue
            if isinstance(result, Stop):
                return result.acc
            acc = result
        return acc

    async def fold_async(self, hook: Hook, acc: Any, *args: Any) -> Any:
        for _, handler in self._handlers.get(hook, ()):
            try:
                result = handler(acc, *args)
                if inspect.isawaitable(result):
                    result = await result
            except Exception:
                log.exception("hook_handler_failed hook=%s handler=%r", hook.name, handler)
                continue
            if isinstance(result, Stop):
                return result.acc
            acc = result
        return acc


AsyncHandler = Callable[..., Awaitable[Any]]
