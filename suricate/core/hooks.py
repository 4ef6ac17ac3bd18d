"""Typed hooks: every hook is a declared object, so a misspelt hook is an AttributeError at import.

A handler is registered with a priority (lower runs first, as in MongooseIM). Two run styles:
- ``fold`` (sync): each handler gets the accumulator and returns the new one, or ``Stop(acc)``
  to end the run; used on the hot path (stanza filters, stream features, disco features).
- ``fold_async``: handlers may be coroutines; used where storage is involved.
- ``run_together``: the async handlers of a hook whose handlers are independent of each other
  (``session_opened``) wait for storage at the same time rather than one after the other.
A failing handler is our bug: it is logged with a trace and skipped, so one module cannot take a
connection down (the caller decides how to answer the peer).

Each hook declares the type of its handlers: ``Hook[F]`` where ``F`` is a ``Callable`` taking
the accumulator and the hook's arguments and returning ``Folded[acc]`` (fold) or
``AsyncFolded[acc]`` (fold_async, where a handler may also be a coroutine function).
``Hooks.add(hook, handler)`` is then checked by mypy against it; the docstring says what the
arguments mean. The types are for the checker only: a ``Hook`` is a name and a doc at run time.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeAlias, TypeVar

from suricate.core.eager import resume

if TYPE_CHECKING:
    from suricate.core.c2s import C2S
    from suricate.core.server import Server
    from suricate.jid import JID
    from suricate.modules.mod_roster.store import RosterItem
    from suricate.protocol.subscription import Transition
    from suricate.sasl.base import Mechanism
    from suricate.xml.element import Element

log = logging.getLogger("suricate.hooks")

Handler = Callable[..., Any]
#: The handler type a hook declares. Contravariant: a hook takes handlers (it never gives one
#: out), so ``Hooks.add(hook, handler)`` holds exactly when the handler's type is a subtype of
#: the declared one (mypy reports a mismatch as "Cannot infer value of type parameter").
#: A hook declared without a type (``X = Hook(name, doc)``) takes any handler (the default).
if TYPE_CHECKING:
    from typing_extensions import TypeVar as TypeVarWithDefault  # PEP 696, Python 3.13

    F = TypeVarWithDefault("F", bound=Handler, contravariant=True, default=Handler)
else:
    F = TypeVar("F", bound=Handler, contravariant=True)
R = TypeVar("R")


# eq=False: a hook is its own identity (hashed by id, the cheapest dict key on the hot path).
@dataclass(frozen=True, slots=True, eq=False)
class Hook(Generic[F]):
    name: str
    doc: str
    #: Which argument (after the accumulator) says whose domain a call is about: a module
    #: enabled for some domains only ([[host_config]]) sees the calls of those domains.
    host_arg: int = 0

    def __repr__(self) -> str:
        return f"Hook({self.name})"


def host_of(hook: Hook[Any], args: tuple[Any, ...]) -> str | None:
    """The domain a hook call is about: its ``host_arg`` argument, a domain string or
    something with a ``domain`` (a JID, a session) or a ``jid``; None when it says none."""
    if hook.host_arg >= len(args):
        return None
    subject = args[hook.host_arg]
    if isinstance(subject, str):
        return subject
    domain = getattr(subject, "domain", None)
    if isinstance(domain, str) and domain:
        return domain
    jid = getattr(subject, "jid", None)
    domain = getattr(jid, "domain", None)
    return domain if isinstance(domain, str) else None


@dataclass(slots=True)
class Stop:
    """Returned by a handler to end the run with ``acc``."""

    acc: Any


#: What a ``fold`` handler returns: the new accumulator, or ``Stop(acc)``.
Folded: TypeAlias = R | Stop
#: What a ``fold_async`` handler returns: the same, or an awaitable of it.
AsyncFolded: TypeAlias = R | Stop | Awaitable[R | Stop]

# -- c2s stream --------------------------------------------------------------------------------
C2S_STREAM_FEATURES: Hook[Callable[[list[Element], C2S], Folded[list[Element]]]] = Hook(
    "c2s_stream_features",
    "fold(features: list[Element], c2s) -> list[Element]; the features after authentication "
    "(before auth: c2s_preauth_features)")
C2S_PREAUTH_FEATURES: Hook[Callable[[list[Element], C2S], Folded[list[Element]]]] = Hook(
    "c2s_preauth_features", "fold(features: list[Element], c2s) -> list[Element]")
C2S_PREAUTH_IQ: Hook[Callable[[bool, C2S, Element], AsyncFolded[bool]]] = Hook(
    "c2s_preauth_iq",
    "fold_async(handled: bool, c2s, iq) -> bool; an IQ before authentication (XEP-0077)")

C2S_SASL_MECHANISMS: Hook[Callable[[list[str], C2S], Folded[list[str]]]] = Hook(
    "c2s_sasl_mechanisms",
    "fold(names: list[str], c2s) -> list[str]; the SASL mechanisms offered to this stream "
    "(legacy and SASL2); a module adds the ones it implements (mod_auth_token's X-OAUTH)")
SASL_MODULE_MECHANISM: Hook[
    Callable[[Mechanism | None, C2S, str], Folded[Mechanism | None]]
] = Hook(
    "sasl_module_mechanism",
    "fold(mech|None, c2s, name: str) -> Mechanism|None; an offered mechanism that a module "
    "implements (X-OAUTH); its owner also supplies the credentials (c2s.credential_source)")

# -- mobile sessions: SASL2, Bind 2, FAST, stream management, CSI ----------------------------
SASL2_INLINE_FEATURES: Hook[Callable[[list[Element], C2S], Folded[list[Element]]]] = Hook(
    "sasl2_inline_features",
    "fold(inline: list[Element], c2s) -> list[Element]; children of the SASL2 <inline/> "
    "feature (XEP-0388 §2.1): Bind 2, FAST, stream management")
SASL2_MECHANISM: Hook[
    Callable[[Mechanism | None, C2S, str, Element], Folded[Mechanism | None]]
] = Hook(
    "sasl2_mechanism",
    "fold(mech|None, c2s, name: str, authenticate: Element) -> Mechanism|None; a mechanism "
    "only offered inline (FAST's HT-*); its owner also supplies the credentials")
SASL2_SUCCESS: Hook[Callable[[list[Element], C2S, Element], AsyncFolded[list[Element]]]] = Hook(
    "sasl2_success",
    "fold_async(extra: list[Element], c2s, authenticate: Element) -> list[Element]; the "
    "user is authenticated, before the session exists: children for <success/> (FAST "
    "<token/>, XEP-0198 <resumed/>, after which c2s is already established)")
BIND2_BIND: Hook[Callable[[list[Element], C2S, Element], AsyncFolded[list[Element]]]] = Hook(
    "bind2_bind",
    "fold_async(bound: list[Element], c2s, bind: Element) -> list[Element]; a resource was "
    "bound inline (XEP-0386 §3): enable what <bind/> asks for (SM, carbons, CSI), return the "
    "children of <bound/>")
BIND2_INLINE_FEATURES: Hook[Callable[[list[str], C2S], Folded[list[str]]]] = Hook(
    "bind2_inline_features",
    "fold(vars: list[str], c2s) -> list[str]; the features Bind 2 can enable inline")
C2S_STREAM_ELEMENT: Hook[Callable[[bool, C2S, Element], Folded[bool]]] = Hook(
    "c2s_stream_element",
    "fold(handled: bool, c2s, el) -> bool; a top-level non-stanza element after auth "
    "(XEP-0198 <enable/> <r/> <a/> <resume/>, XEP-0352 <active/> <inactive/>)")
SESSION_SUSPEND: Hook[Callable[[bool, C2S], Folded[bool]]] = Hook(
    "session_suspend",
    "fold(kept: bool, c2s) -> bool; the connection of a bound session is gone: True when a "
    "module keeps the session waiting for resumption (XEP-0198)")
SESSION_RESUMED: Hook[Callable[[None, C2S, C2S], Folded[None]]] = Hook(
    "session_resumed",
    "fold(None, new_c2s, old_c2s): a stream took over a waiting session (XEP-0198 §5)")
C2S_RESUME: Hook[Callable[[Element | None, C2S, Element], AsyncFolded[Element | None]]] = Hook(
    "c2s_resume",
    "fold_async(answer: Element|None, c2s, resume: Element) -> Element|None; a XEP-0198 "
    "<resume/> after authentication (§5): <resumed/> (c2s is then established) or <failed/>; "
    "async because the session may live on another node (sm_backend = \"redis\")")
SESSION_HANDOVER: Hook[Callable[[dict[str, Any], C2S, bool], Folded[dict[str, Any]]]] = Hook(
    "session_handover",
    "fold(state: dict, c2s, moved_in: bool) -> dict; a resumable session moves to another "
    "node (XEP-0198 §5 across nodes). moved_in False, on the old node: a module adds its "
    "per-session state as plain data under its name and lets go of the session; True, on the "
    "new node: it takes its state back from the dict")
SESSION_SNAPSHOT: Hook[Callable[[dict[str, Any], C2S], Folded[dict[str, Any]]]] = Hook(
    "session_snapshot",
    "fold(state: dict, c2s) -> dict; the Redis copy of a resumable session (copy_to_redis) "
    "is written: a module adds the same plain data it gives SESSION_HANDOVER, keeping its "
    "state (a node that dies leaves it for the node the client resumes on). Run only when "
    "the module called ``session_state_changed`` since the last copy")
SESSION_RESUMPTION_ANSWERED = Hook(
    "session_resumption_answered",
    "fold(None, c2s): the client was told its session resumed, by <resumed/> or by the SASL2 "
    "<success/> carrying it (XEP-0198 §5, XEP-0388 §2.6.3): what the old stream had not had "
    "acknowledged is sent again now")

# -- sessions ----------------------------------------------------------------------------------
SESSION_OPENED: Hook[Callable[[None, C2S], AsyncFolded[None]]] = Hook(
    "session_opened",
    "run_together(None, c2s): a resource is bound; the handlers (each loading its module's "
    "state of the session) wait for storage together, none sees another's effects")
SESSION_CLOSED: Hook[Callable[[None, C2S, str], AsyncFolded[None]]] = Hook(
    "session_closed", "fold_async(None, c2s, reason: str): a session ended")
USER_AVAILABLE: Hook[Callable[[None, C2S], AsyncFolded[None]]] = Hook(
    "user_available", "fold_async(None, c2s): first available presence of a session")
USER_PRIORITY_RAISED: Hook[Callable[[None, C2S], AsyncFolded[None]]] = Hook(
    "user_priority_raised",
    "fold_async(None, c2s): an available session raised its priority from negative to "
    "non-negative: it takes stanzas to the bare JID from now on (RFC 6121 §8.5.2.1.1), and "
    "what was stored for the account goes to it (XEP-0160 §2)")
RESEND_OFFLINE_MESSAGES: Hook[Callable[[None, C2S], Folded[None]]] = Hook(
    "resend_offline_messages",
    "fold(None, c2s): a session now takes stanzas to the bare JID (its initial available "
    "presence, or a priority raised to non-negative, with a priority of 0 or more), run "
    "in that presence's own processing, before user_available / user_priority_raised are "
    "spawned: mod_offline reserves the account's offline turn here (nothing routed after "
    "the presence overtakes the stored messages) and delivers them in a task (6.4's name)")
UNSET_PRESENCE: Hook[Callable[[None, C2S, str], AsyncFolded[None]]] = Hook(
    "unset_presence",
    "fold_async(None, c2s, status: str): a session ended while available; status is '' "
    "(a client's own unavailable presence is seen by user_send_packet)")

# -- stanza flow -------------------------------------------------------------------------------
USER_SEND_PACKET: Hook[Callable[[Element | None, C2S], Folded[Element | None]]] = Hook(
    "user_send_packet",
    "fold(stanza|None, c2s) -> stanza|None: a stanza from a client, from already stamped; "
    "None means a handler consumed it")
USER_RECEIVE_PACKET: Hook[Callable[[Element | None, C2S], Folded[Element | None]]] = Hook(
    "user_receive_packet",
    "fold(stanza|None, c2s) -> stanza|None: about to be delivered to a session")
FILTER_LOCAL_PACKET: Hook[
    Callable[[Element | None, JID, JID, list[Any]], Folded[Element | None]]
] = Hook(
    "filter_local_packet",
    "fold(stanza|None, from_jid, to_jid, sessions: list) -> stanza|None: a message the router "
    "is about to deliver to these sessions of a local account (once, before the copies for "
    "several resources are made); None means a handler consumed it (XEP-0313 archiving adds "
    "its <stanza-id/> here)", host_arg=1)
FILTER_LOCAL_ROUTE: Hook[Callable[[Element | None, JID, JID], Folded[Element | None]]] = Hook(
    "filter_local_route",
    "fold(stanza|None, from_jid, to_jid) -> stanza|None: any stanza the router is about to "
    "hand to a local destination (a served domain, an account, a module's service domain "
    "such as conference.<domain>, a connected component), before anything else is done with "
    "it; None drops it. Stanzas leaving over s2s are not shown. Only run when a handler is "
    "registered (mod_domain_isolation)", host_arg=1)
PRIVACY_CHECK_INBOUND: Hook[
    Callable[[bool, Server, JID, JID, Element], AsyncFolded[bool]]
] = Hook(
    "privacy_check_inbound",
    "fold_async(allow: bool, server, user_jid, from_jid, stanza) -> bool; for an offline "
    "recipient (online ones are filtered by user_receive_packet)", host_arg=1)
PRIVACY_CHECK_OUTBOUND: Hook[
    Callable[[bool, Server, JID, JID, Element], AsyncFolded[bool]]
] = Hook(
    "privacy_check_outbound",
    "fold_async(allow: bool, server, user_jid, to_jid, stanza) -> bool; presence the server "
    "sends for an account without a session (a probe's answer, RFC 6121 §4.3.2), against what "
    "the account keeps (XEP-0016's default list)", host_arg=1)
PRIVACY_CHECK_PACKET: Hook[Callable[[bool, C2S, JID, bool], Folded[bool]]] = Hook(
    "privacy_check_packet",
    "fold(allow: bool, c2s, to_jid, notification: bool) -> bool; presence the server sends "
    "for the user of c2s to to_jid (broadcasts, probes, answers to probes, after a change of "
    "subscription or blocklist): False (or Stop(False)) stops it. notification: available or "
    "unavailable presence (XEP-0016 presence-out); False for a probe. 6.4's name for the "
    "check its mod_presence makes per recipient (XEP-0191 blocklist, XEP-0016 lists); "
    "stanzas the client sends or receives are filtered by user_send_packet and "
    "user_receive_packet. Once per recipient: keep it cheap")
PRESENCE_TO_USER: Hook[Callable[[bool, JID, JID, Element], AsyncFolded[bool]]] = Hook(
    "presence_to_user",
    "fold_async(handled: bool, from_jid, to_jid, stanza) -> bool; a presence addressed to a "
    "local user's bare JID (subscriptions, probes, directed presence); not run for an "
    "available or unavailable presence from a local entity to an account with no available "
    "resource here (the router drops it: it reaches no one)", host_arg=1)
OFFLINE_MESSAGE: Hook[Callable[[bool, JID, JID, Element], AsyncFolded[bool]]] = Hook(
    "offline_message",
    "fold_async(stored: bool, from_jid, to_jid, stanza) -> bool; a message no session took",
    host_arg=1)
MUC_LIGHT_TO_MEMBER: Hook[Callable[[None, JID, JID, Element], Folded[None]]] = Hook(
    "muc_light_to_member",
    "fold(None, room_jid, member_jid, stanza): a MUC Light room sends a local member (an "
    "existing account's bare JID) a message or a notification, once per member whatever its "
    "sessions (online or offline); from_jid is the room's bare JID (a notification) or "
    "room@service/sender-bare-jid (a member's message); handlers must not change the stanza "
    "(mod_inbox's groupchat = [\"muclight\"])", host_arg=1)

MUC_MESSAGE_BROADCAST: Hook[
    Callable[[None, JID, JID | None, list[JID], Element], Folded[None]]] = Hook(
    "muc_message_broadcast",
    "fold(None, from_jid, sender, occupants, stanza): a mod_muc room broadcast a groupchat "
    "message (its stanza-id added) from ``sender`` (the sending session's full JID, None for "
    "the room's own) as ``from_jid`` (room@service/nick) to ``occupants`` (their bare JIDs, "
    "each once whatever its sessions, local accounts or not). Once per message, on the "
    "room's node whichever nodes the sessions are on: what is counted per account (an inbox's "
    "unread messages, MongooseIM's update_inbox_for_muc; a kept marker) is counted once, not "
    "once per session or per node. Handlers must not change the stanza and must check the "
    "occupants' domains themselves (mod_inbox's groupchat = [\"muc\"], mod_smart_markers)",
    host_arg=3)

ROOM_NEW_AFFILIATIONS: Hook[Callable[[None, str, JID, dict[str, str]], AsyncFolded[None]]] = Hook(
    "room_new_affiliations",
    "fold_async(None, host, room_jid, changed): the affiliations of a MUC Light room of "
    "``host`` (a served domain) changed; ``changed`` maps each member's bare JID (str) to its "
    "new affiliation, 'none' for a member who is out (6.4's room_new_affiliations; "
    "mod_smart_markers drops that member's markers to the room)")
FORGET_ROOM: Hook[Callable[[None, str, JID], AsyncFolded[None]]] = Hook(
    "forget_room",
    "fold_async(None, host, room_jid): a room of ``host`` ended (6.4's forget_room): a MUC "
    "Light room destroyed, or a mod_muc room destroyed (§10.9, by its owner or the admin "
    "API) or temporary and left by its last occupant. What modules keep about it goes, so "
    "a new room of the same name starts without it (mod_smart_markers: markers to it)")

# -- push notifications ---------------------------------------------------------------------
PUSH_NOTIFICATIONS: Hook[
    Callable[[bool, JID, str, str, dict[str, str], dict[str, str]], AsyncFolded[bool]]
] = Hook(
    "push_notifications",
    "fold_async(accepted: bool, user_jid, service: str, node: str, summary: dict, "
    "options: dict) -> bool: an XEP-0357 notification for a virtual PubSub host "
    "(mod_event_pusher push.virtual_pubsub_hosts); summary holds the urn:xmpp:push:summary "
    "fields, options the client's publish-options; return True when sent on")

# -- accounts ----------------------------------------------------------------------------------
REGISTER_USER: Hook[Callable[[None, JID], AsyncFolded[None]]] = Hook(
    "register_user", "fold_async(None, jid): an account was created")
REMOVE_USER: Hook[Callable[[None, JID], AsyncFolded[None]]] = Hook(
    "remove_user", "fold_async(None, jid): an account was removed")
REMOVE_DOMAIN: Hook[Callable[[None, str, str], AsyncFolded[None]]] = Hook(
    "remove_domain",
    "fold_async(None, host_type, domain): a dynamic domain is being removed, already out of "
    "service, before its accounts' rows go: a module erases what it keeps for the domain "
    "beyond them (the rooms of its conference.<domain> service...). MongooseIM 6.4's "
    "remove_domain. No domain argument gates it (the domain is no longer served): a module "
    "serving some host types only checks host_type itself (Module.serves_host_type).",
    host_arg=2)
#: What to do once an account is gone, decided while its data is still there.
AfterRemoval: TypeAlias = Callable[[], None]
REMOVING_USER: Hook[
    Callable[[list[AfterRemoval], JID], AsyncFolded[list[AfterRemoval]]]
] = Hook(
    "removing_user",
    "fold_async(after: list, jid) -> list: an account is about to be removed, its data (which "
    "goes in the same transaction as the account) still there: a handler reads what it needs "
    "and appends a callable to run once the account is gone, never if the removal fails "
    "(mod_roster: the unsubscriptions of RFC 6121 §3 to the contacts)")

# -- private XML storage (XEP-0049) -------------------------------------------------------------
PRIVATE_STORED: Hook[Callable[[None, JID, str, list[Element]], AsyncFolded[None]]] = Hook(
    "private_stored",
    "fold_async(None, user_jid, namespace: str, elements: list[Element]): an account stored "
    "private XML under namespace (XEP-0411: storage:bookmarks mirrored into PEP)")

# -- discovery ---------------------------------------------------------------------------------
DISCO_LOCAL_FEATURES: Hook[Callable[[set[str], str], Folded[set[str]]]] = Hook(
    "disco_local_features", "fold(features: set[str], domain) -> set[str]: the server's features")
DISCO_LOCAL_ITEMS: Hook[Callable[[list[Element], str], Folded[list[Element]]]] = Hook(
    "disco_local_items", "fold(items: list[Element], domain) -> list[Element]")
DISCO_LOCAL_IDENTITY: Hook[Callable[[list[Element], str], Folded[list[Element]]]] = Hook(
    "disco_local_identity",
    "fold(identities: list[Element], domain) -> list[Element]: the server's identities besides "
    "server/im (MongooseIM's hook of the name: mod_pubsub's pubsub/pep, where libpurple and "
    "iris look for PEP)")
DISCO_SM_FEATURES: Hook[Callable[[set[str], JID], Folded[set[str]]]] = Hook(
    "disco_sm_features", "fold(features: set[str], user_jid) -> set[str]: an account's features")
DISCO_LOCAL_NODE: Hook[Callable[[bool, str, str], Folded[bool]]] = Hook(
    "disco_local_node",
    "fold(known: bool, domain, node: str) -> bool: a node whose disco#info is the server's own "
    "(XEP-0115 §6.2: the node#ver the server announces in its caps)")
DISCO_SM_IDENTITY: Hook[Callable[[list[Element], JID], Folded[list[Element]]]] = Hook(
    "disco_sm_identity",
    "fold(identities: list[Element], user_jid) -> list[Element]: identities of an account "
    "besides account/registered (XEP-0163 §6: pubsub/pep)")
DISCO_SM_ITEMS: Hook[Callable[[list[Element], JID, JID], AsyncFolded[list[Element]]]] = Hook(
    "disco_sm_items",
    "fold_async(items: list[Element], from_jid, user_jid) -> list[Element]: an account's items "
    "as the requester may see them (XEP-0163 PEP nodes)", host_arg=1)
DISCO_NODE_INFO: Hook[Callable[[list[Element] | None, JID, JID, str],
                                Folded[list[Element] | None]]] = Hook(
    "disco_node_info",
    "fold(info: list[Element] | None, from_jid, to_jid, node: str) -> list[Element] | None: "
    "identities and features of a node of the server or of an account (XEP-0050 §2.2: a "
    "command node); None: no module knows the node", host_arg=1)
DISCO_NODE_ITEMS: Hook[Callable[[list[Element] | None, JID, JID, str],
                                 Folded[list[Element] | None]]] = Hook(
    "disco_node_items",
    "fold(items: list[Element] | None, from_jid, to_jid, node: str) -> list[Element] | None: "
    "the items of a node of the server or of an account as the requester may see them "
    "(XEP-0050 §2.1: the commands node); None: no module knows the node", host_arg=1)
DISCO_SM_NODE_INFO: Hook[Callable[[list[Element] | None, JID, JID, str],
                                   AsyncFolded[list[Element] | None]]] = Hook(
    "disco_sm_node_info",
    "fold_async(info: list[Element] | None, from_jid, user_jid, node: str) -> list[Element] | "
    "None: identities, features and forms of a node of an account kept in storage, as the "
    "requester may see it (XEP-0060 §5.3, §5.4: a PEP node); run when no disco_node_info "
    "handler knows the node; None: no module knows it", host_arg=1)
DISCO_SM_NODE_ITEMS: Hook[Callable[[list[Element] | None, JID, JID, str],
                                    AsyncFolded[list[Element] | None]]] = Hook(
    "disco_sm_node_items",
    "fold_async(items: list[Element] | None, from_jid, user_jid, node: str) -> list[Element] "
    "| None: the items of a node of an account kept in storage, as the requester may see them "
    "(XEP-0060 §5.5: a PEP node's item ids); run when no disco_node_items handler knows the "
    "node; None: no module knows it", host_arg=1)
VCARD_STORED: Hook[Callable[[None, JID, Element], AsyncFolded[None]]] = Hook(
    "vcard_stored",
    "fold_async(None, user_jid, vcard: Element): an account stored its vCard (XEP-0398: its "
    "PHOTO is published as the PEP avatar)")
DISCO_INFO_EXTRA: Hook[Callable[[list[Element], str], Folded[list[Element]]]] = Hook(
    "disco_info", "fold(extra: list[Element], domain) -> list[Element]: XEP-0128 forms")

# -- entity capabilities (XEP-0115) -------------------------------------------------------------
CAPS_RECOGNISED: Hook[Callable[[None, C2S, frozenset[str]], AsyncFolded[None]]] = Hook(
    "caps_recognised",
    "fold_async(None, c2s, features: frozenset[str]): the features of a session's client are "
    "known (first available presence or a changed caps hash); PEP sends the last items of the "
    "nodes the client asked for with '+notify' (XEP-0163 §4.3.4)")
REMOTE_CAPS_RECOGNISED: Hook[Callable[[None, JID, JID, frozenset[str]], AsyncFolded[None]]] = Hook(
    "remote_caps_recognised",
    "fold_async(None, remote_full_jid, local_user: JID, features: frozenset[str]): the "
    "features of a contact's client on another server are known from the available presence "
    "it sent local_user (first one, or a changed caps hash); PEP sends local_user's last items "
    "of the nodes it asked for (XEP-0163 §4.3.4)", host_arg=1)

# -- roster subscriptions (RFC 6121 §3) --------------------------------------------------------
ROSTER_OUT_SUBSCRIPTION: Hook[
    Callable[[Transition | None, JID, JID, str, Element], AsyncFolded[Transition | None]]
] = Hook(
    "roster_out_subscription",
    "fold_async(outcome: subscription.Transition|None, user: JID, contact: JID, type: str, "
    "stanza) -> Transition|None: the user sent subscribe/subscribed/unsubscribe/unsubscribed "
    "to the contact (both bare); the roster owner updates the item and says what to route")
ROSTER_IN_SUBSCRIPTION: Hook[
    Callable[[Transition | None, JID, JID, str, Element], AsyncFolded[Transition | None]]
] = Hook(
    "roster_in_subscription",
    "fold_async(outcome: subscription.Transition|None, user: JID, contact: JID, type: str, "
    "stanza) -> Transition|None: the contact's subscription stanza reached the local user "
    "(both bare); the roster owner updates the item and says what to deliver or answer")
ROSTER_GET: Hook[Callable[[list[Element], JID], AsyncFolded[list[Element]]]] = Hook(
    "roster_get",
    "fold_async(items: list[Element], user: JID) -> list[Element]: the user fetched its roster "
    "(RFC 6121 §2.1.3); roster <item/>s added here are sent after the stored ones "
    "(mod_muc_light's rooms_in_rosters)")

ROSTER_ITEMS: Hook[Callable[[list[RosterItem], JID], AsyncFolded[list[RosterItem]]]] = Hook(
    "roster_items",
    "fold_async(items: list[RosterItem], user: JID) -> list[RosterItem]: the account's roster "
    "as it is shown, made from the stored items (sorted by JID): a module adds contacts that "
    "are not stored or changes how stored ones look (mod_shared_roster_ldap: a shared contact "
    "has subscription both). mod_roster runs it for a roster get, a new session's presence "
    "cache and ModRoster.get_roster, and only when a handler is registered (MongooseIM's "
    "roster_get and roster_get_subscription_lists)")
ROSTER_GET_JID_INFO: Hook[
    Callable[[RosterItem | None, JID, JID], AsyncFolded[RosterItem | None]]
] = Hook(
    "roster_get_jid_info",
    "fold_async(item: RosterItem|None, user: JID, contact: JID) -> RosterItem|None: one "
    "contact (bare) as the user's roster shows it, from the stored item (None: not stored; "
    "returned None: not in the roster). mod_roster runs it for ModRoster.get_roster_item and "
    "after a roster change (the item its sessions cache and are pushed), only when a handler "
    "is registered; must agree with roster_items")


class Hooks:
    __slots__ = ("_handlers", "version")

    def __init__(self) -> None:
        self._handlers: dict[Hook[Any], list[tuple[int, Handler]]] = {}
        # Changes whenever a handler is added or removed: a hot path may keep what ``has``
        # answered for as long as it does not change (the cluster's crossing path).
        self.version = 0

    def add(self, hook: Hook[F], handler: F, priority: int = 50) -> None:
        if not isinstance(hook, Hook):
            raise TypeError(f"not a hook: {hook!r}")
        entries = self._handlers.setdefault(hook, [])
        entries.append((priority, handler))
        entries.sort(key=lambda e: e[0])
        self.version += 1

    def remove(self, hook: Hook[F], handler: F) -> None:
        entries = self._handlers.get(hook, [])
        self._handlers[hook] = [e for e in entries if e[1] != handler]
        self.version += 1

    def has(self, hook: Hook[Any]) -> bool:
        return bool(self._handlers.get(hook))

    def fold(self, hook: Hook[Any], acc: Any, *args: Any) -> Any:
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

    async def fold_async(self, hook: Hook[Any], acc: Any, *args: Any) -> Any:
        acc, _ = await self.fold_async_checked(hook, acc, *args)
        return acc

    async def run_together(self, hook: Hook[Any], acc: Any, *args: Any) -> None:
        """Run every handler of ``hook``, those that wait for something at the same time: for
        hooks whose handlers return ``acc`` unchanged and do not need each other's effects
        (``session_opened``: each module loads its own state of the new session). Each
        handler is called in priority order and runs at once up to its first real suspension
        (suricate/core/eager.py); only those that suspend then run on, together. With a
        database a few milliseconds away a login's reads (the roster, the blocklist, the
        vCard's photo hash) cost one round trip instead of one each, one after the other
        (docs/delivery.md, "A database a few milliseconds away"); with SQLite, which answers
        inline, nothing suspends and nothing becomes a task. A failing handler is logged and
        the others go on, as with ``fold_async``; a ``Stop`` ends nothing (the others have
        started)."""
        waiting: list[Awaitable[Any]] = []
        for _, handler in self._handlers.get(hook, ()):
            try:
                result = handler(acc, *args)
                if inspect.iscoroutine(result):
                    yielded = result.send(None)
                    waiting.append(self._rest(hook, handler, resume(result, yielded)))
                elif inspect.isawaitable(result):
                    waiting.append(self._rest(hook, handler, result))
            except StopIteration:
                continue  # over without suspending (SQLite, or nothing to read)
            except Exception:
                log.exception("hook_handler_failed hook=%s handler=%r", hook.name, handler)
        if len(waiting) == 1:
            await waiting[0]
        elif waiting:
            await asyncio.gather(*waiting)

    @staticmethod
    async def _rest(hook: Hook[Any], handler: Handler, rest: Awaitable[Any]) -> None:
        """What is left of a handler ``run_together`` started."""
        try:
            await rest
        except Exception:
            log.exception("hook_handler_failed hook=%s handler=%r", hook.name, handler)

    async def fold_async_checked(self, hook: Hook[Any], acc: Any, *args: Any) -> tuple[Any, bool]:
        """``fold_async``, also saying whether a handler failed: a caller whose answer depends
        on the result (was the message stored?) then tells the peer internal-server-error
        (RFC 6120 §8.3.3.8) instead of answering as if the handler had said no."""
        failed = False
        for _, handler in self._handlers.get(hook, ()):
            try:
                result = handler(acc, *args)
                if inspect.isawaitable(result):
                    result = await result
            except Exception:
                log.exception("hook_handler_failed hook=%s handler=%r", hook.name, handler)
                failed = True
                continue
            if isinstance(result, Stop):
                return result.acc, failed
            acc = result
        return acc, failed


AsyncHandler = Callable[..., Awaitable[Any]]
