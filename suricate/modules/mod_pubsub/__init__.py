"""mod_pubsub: XEP-0060 Publish-Subscribe as a service at ``pubsub.<domain>`` (the ``flat``
plugin) and XEP-0163 Personal Eventing Protocol on every account (the ``pep`` plugin).

One engine serves both; a node lives on a ``Host``: an account's bare JID (PEP) or the service
domain. PEP notifications go to the owner's and the contacts' sessions whose client asked for
``<node>+notify`` in its entity capabilities (XEP-0163 §4.3, learnt by mod_caps), plus explicit
subscribers; the last item goes to a client when its caps become known (§4.3.4).
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from suricate.config.modules_spec import backend, iqdisc
from suricate.config.spec import (
    OMIT,
    Bool,
    Context,
    Int,
    ListOf,
    OneOf,
    Option,
    Section,
    Spec,
    Str,
)
from suricate.core import hooks as H
from suricate.core.iq import IqRequest
from suricate.core.module import Module, PersonalData
from suricate.instrument.events import HISTOGRAM, SPIRAL, EventSpec, declare
from suricate.jid import JID, InvalidJID
from suricate.modules.mod_caps import session_features
from suricate.modules.mod_private.store import PrivateStore
from suricate.modules.mod_pubsub import avatars as A
from suricate.modules.mod_pubsub import bookmarks as B
from suricate.modules.mod_pubsub import config as C
from suricate.modules.mod_pubsub import subscription as S
from suricate.modules.mod_pubsub.store import Item, PubsubStore
from suricate.modules.mod_roster import ROSTER_CACHE, loaded_roster, roster_module
from suricate.modules.mod_roster.store import RosterItem
from suricate.modules.mod_vcard import ModVcard, photo_data
from suricate.protocol import subscription as roster_sub
from suricate.protocol.errors import StanzaError
from suricate.protocol.rsm import rsm_page
from suricate.protocol.stanza import result_reply
from suricate.xml import ns
from suricate.xml.element import Element
from suricate.xml.parser import XMLStreamError, parse_fragment

if TYPE_CHECKING:
    from suricate.core.c2s import C2S

log = logging.getLogger("suricate.mod_pubsub")

PUBSUB = C.PUBSUB
PUBSUB_OWNER = "http://jabber.org/protocol/pubsub#owner"
PUBSUB_EVENT = "http://jabber.org/protocol/pubsub#event"
COMMANDS = "http://jabber.org/protocol/commands"  # XEP-0050
#: XEP-0060 §8.7: the ad-hoc command that sends an owner its pending authorization requests.
GET_PENDING = f"{PUBSUB}#get-pending"

#: XEP-0060 §10 features this implementation supports (disco#info). config-node-max: the
#: value "max" of pubsub#max_items is understood (the node's limit, max_items_node); clients
#: look for it before they send "max" with their bookmarks (XEP-0402 §3) and otherwise ask for
#: a number (Converse.js: 9999), which a node limit under it refuses (max-items-exceeded).
FEATURES = tuple(f"{PUBSUB}#{f}" for f in (
    "access-authorize", "access-open", "access-presence", "access-roster", "access-whitelist",
    "auto-create", "config-node", "config-node-max", "create-and-configure", "create-nodes", "delete-items",
    "delete-nodes", "filtered-notifications", "get-pending", "instant-nodes", "item-ids",
    "last-published", "manage-subscriptions", "meta-data", "modify-affiliations",
    "multi-items", "outcast-affiliation", "persistent-items", "presence-notifications",
    "publish", "publish-options", "publisher-affiliation", "purge-nodes", "retract-items",
    "retrieve-affiliations", "retrieve-default", "retrieve-default-sub", "retrieve-items",
    "retrieve-subscriptions", "rsm", "subscribe", "subscription-options",
    "member-affiliation", "publish-only-affiliation"))

#: MongooseIM 6.4 event names: mod_pubsub_{get,set}_<action>.
ACTIONS = {
    "get": ("items", "options", "configure", "default", "subscriptions", "affiliations"),
    "set": ("create", "publish", "retract", "subscribe", "unsubscribe", "options", "configure",
            "delete", "purge", "subscriptions", "affiliations"),
}
#: mod_pubsub_{get,set}_<action> (6.4), by (type, action).
EVENTS: dict[tuple[str, str], EventSpec] = {
    (_type, _name): declare(f"mod_pubsub_{_type}_{_name}", ("host_type",),
                            {"count": SPIRAL, "errors": SPIRAL, "time": HISTOGRAM},
                            f"PubSub {_type} {_name} requests (XEP-0060); time in microseconds")
    for _type, _names in ACTIONS.items() for _name in _names
}

# XEP-0060 §4.1: publish-only may publish (and retract its own items), not subscribe or
# retrieve items (MongooseIM's publish_only).
AFFILIATIONS = ("owner", "publisher", "publish-only", "member", "none", "outcast")

#: Who a notification goes to: sessions, JIDs, and the JIDs that want a <body/> too.
# (sessions here, JIDs to route to, JIDs that want a body, accounts whose sessions on other
# nodes are told: the owner and the contacts allowed, ``_targets``)
Targets = tuple[list[Any], list[JID], set[JID], list[JID]]
# Casts (docs/cluster.md "Casts"): a PEP event for an account's sessions on another node, which
# picks those with +notify for the node; the last items of an owner for a new subscriber's.
PEP_EVENT_CAST = "mod_pubsub.pep_event"
PEP_LAST_CAST = "mod_pubsub.pep_last"


class NodeConfigSpec(Spec):
    """``default_node_config``: node configuration fields with TOML values."""

    def normalize(self, value: Any, path: str, ctx: Context) -> Any:
        if not isinstance(value, dict):
            return self._wrong_type(value, path, ctx)
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key not in C.FIELDS:
                ctx.error(f"{path}.{key}", "not a node configuration option of this version "
                          f"(known: {', '.join(C.FIELDS)})")
                continue
            try:
                out[key] = C.check_value(key, item)
            except ValueError:
                ctx.error(f"{path}.{key}", f"invalid value {item!r}")
        return out

    def describe(self) -> str:
        return "a table of node configuration options"


_NOT_AVAILABLE = "'{value}' is not available in this version of Suricate"

OPTIONS = Section({
    "iqdisc": iqdisc("one_queue"),
    "host": Option(Str(), "pubsub.@HOST@",
                   "Subdomain of the pubsub service; @HOST@ is replaced with each served domain."),
    "backend": backend(),
    "access_createnode": Option(Str(), "all", "Access rule deciding who may create nodes."),
    "max_items_node": Option(Int(min=0), 10, "Most items a node stores; what max_items = "
                             "\"max\" means."),
    "max_subscriptions_node": Option(Int(min=0), OMIT,
                                     "Most subscriptions of one node (default: no limit)."),
    "nodetree": Option(OneOf(["tree"], ["dag"], _NOT_AVAILABLE), "tree",
                       "Node organisation: flat node names (no collections)."),
    "ignore_pep_from_offline": Option(Bool(), True, "Send the last PEP items only of contacts "
                                      "that are online when a client comes online."),
    "last_item_cache": Option(OneOf(["false"], ["mnesia", "rdbms"], _NOT_AVAILABLE), "false",
                              "Cache of last items (none: items are read from the database)."),
    "plugins": Option(ListOf(OneOf(["flat", "pep"], ["hometree", "dag", "push", "dispatch",
                                                     "mb", "online", "public"], _NOT_AVAILABLE),
                             unique=True, nonempty=True), ["flat", "pep"],
                      "Node plugins: \"flat\" is the pubsub service, \"pep\" the accounts' "
                      "PEP (on by default here, unlike MongooseIM's [\"flat\"])."),
    "default_node_config": Option(NodeConfigSpec(), {},
                                  "Overrides of the default node configuration."),
    "item_publisher": Option(Bool(), False,
                             "Say who published an item (the 'publisher' attribute)."),
    "sync_broadcast": Option(Bool(), False, "Send notifications before answering the publisher "
                             "(otherwise right after, in a task)."),
    "pep_mapping": Option(
        ListOf(Section({
            "namespace": Option(Str(), doc="A PEP node name (the payload namespace)."),
            # MongooseIM names a node_<plugin> module here; Suricate has the two plugins
            # whose defaults it knows (config.DEFAULTS).
            "node": Option(OneOf(["flat", "pep"], ["hometree", "dag", "push", "dispatch",
                                                  "mb", "online", "public"],
                                 "node plugin '{value}' is not available in this version of "
                                 "Suricate (only \"flat\" and \"pep\")"),
                           doc="The plugin of those PEP nodes."),
        })),
        [],
        "PEP nodes whose plugin is not \"pep\": a node named by `namespace` is created with "
        "the default configuration of the `node` plugin (\"flat\": open access model, 10 "
        "items, presence not required, last item never sent).",
        example='[{namespace = "urn:xmpp:avatar:data", node = "flat"}]'),
}, doc="XEP-0060 Publish-Subscribe service and XEP-0163 PEP (OMEMO, avatars, bookmarks).")


@dataclass(frozen=True, slots=True)
class Host:
    """Where a node lives: an account's bare JID (PEP) or the service domain."""

    jid: JID
    pep: bool

    @property
    def key(self) -> tuple[str, str]:
        return (self.jid.domain, self.jid.local or "")


class ModPubsub(Module):
    name = "mod_pubsub"
    options = OPTIONS
    store_class = PubsubStore
    store: PubsubStore
    xeps = ("0060", "0163", "0398", "0402")
    deps = ("mod_caps",)
    hooks = (
        (H.CAPS_RECOGNISED, "caps_recognised", 50),
        (H.USER_AVAILABLE, "service_last_items", 50),
        (H.REMOTE_CAPS_RECOGNISED, "remote_caps_recognised", 50),
        (H.REMOVE_USER, "remove_user", 50),
        # After mod_roster (50), which saved the change and says what it was.
        (H.ROSTER_OUT_SUBSCRIPTION, "new_presence_subscriber", 60),
        (H.ROSTER_IN_SUBSCRIPTION, "new_presence_subscriber", 60),
        (H.DISCO_SM_IDENTITY, "sm_identity", 50),
        (H.DISCO_LOCAL_IDENTITY, "local_identity", 50),
        (H.DISCO_SM_ITEMS, "sm_items", 50),
        (H.DISCO_SM_NODE_INFO, "sm_node_info", 50),
        (H.DISCO_SM_NODE_ITEMS, "sm_node_items", 50),
        (H.PRIVATE_STORED, "private_stored", 50),
        (H.VCARD_STORED, "vcard_stored", 50),
    )
    iq_handlers = (("sm", PUBSUB, "pep_iq"), ("sm", PUBSUB_OWNER, "pep_iq"))
    # XEP-0163 §5 (and the §6.1 example): a PEP service supports auto-subscribe, the
    # presence subscription standing for a node subscription (§4.1); the pubsub service
    # at pubsub.<domain> does not.
    sm_features = (PUBSUB, *FEATURES, f"{PUBSUB}#auto-subscribe")

    def __init__(self, server: Any, opts: Mapping[str, Any]) -> None:
        super().__init__(server, opts)
        self.pep = "pep" in opts["plugins"]
        self.pep_mapping: dict[str, str] = {
            m["namespace"]: m["node"] for m in opts.get("pep_mapping", ())}
        self.services: dict[str, str] = {}  # service domain -> served domain
        self._ids = itertools.count(1)
        self._ids_prefix = uuid.uuid4().hex[:8] + "-"  # unique across restarts

    async def personal_data(self, jid: JID) -> list[PersonalData]:
        """The account's PEP nodes and items, and its subscriptions to any node (GDPR
        retrieval, ``Module.personal_data``)."""
        server, user = jid.domain, jid.local or ""
        nodes = ("node", "config")
        items = ("node", "item_id", "publisher", "payload", "published_at")
        subscriptions = await self.store.fetch(
            "SELECT server, username, node FROM pubsub_subscriptions"
            " WHERE jid = ? ORDER BY server, username, node", str(jid.bare))
        owned, published = await self.store.owned_and_published(str(jid.bare))
        return [
            PersonalData("pep_nodes", nodes, await self.store.user_rows(
                "pubsub_nodes", nodes, server, user, "node")),
            PersonalData("pep_items", items, await self.store.user_rows(
                "pubsub_items", items, server, user, "node, published_at")),
            # MongooseIM 6.4's header: the node's name (the host is in pep_nodes for PEP).
            PersonalData("pubsub_subscriptions", ("node_name",),
                         [(str(r[2]),) for r in subscriptions]),
            # MongooseIM 6.4's two other files: the nodes it owns, the items it published.
            PersonalData("pubsub_nodes", ("node_name", "type"), owned),
            PersonalData("pubsub_payloads", ("node_name", "item_id", "payload"), published),
        ]

    async def start(self) -> None:
        if self.pep:
            self.server.cluster.on(PEP_EVENT_CAST, self._pep_event_from_elsewhere)
            self.server.cluster.on(PEP_LAST_CAST, self._pep_last_from_elsewhere)
        if "flat" in self.opts["plugins"]:
            # Routed like a component and listed in the domain's disco#items (unwire undoes it).
            self.services.update(self.serve_subdomains(self.opts["host"], self.route_service))

    async def stop(self) -> None:
        self.server.cluster.off(PEP_EVENT_CAST)
        self.server.cluster.off(PEP_LAST_CAST)

    def _add_sm_features(self, acc: set[str], jid: Any) -> set[str]:
        if not self.pep:
            return acc
        if "mod_private" in self.server.modules:
            # XEP-0402 §5.3: bookmarks are one list in private XML ("#compat"), in the legacy
            # PEP node storage:bookmarks ("#compat-pep", which Gajim 1.7 needs before it
            # uses XEP-0402 at all) and in XEP-0402's; XEP-0411 §2 for the legacy pair.
            acc = acc | {B.BOOKMARKS + "#compat", B.BOOKMARKS + "#compat-pep", B.CONVERSION}
        if self._vcard() is not None:
            acc = acc | {A.CONVERSION}  # XEP-0398 §2
        return acc | set(self.sm_features)

    # -- entry points ----------------------------------------------------------------------
    async def pep_iq(self, iq: IqRequest) -> Element | None:
        if not self.pep:
            raise StanzaError("service-unavailable")
        owner = iq.to.bare
        if not self.server.sessions.count_user(owner) \
                and not await self.server.user_exists(owner):
            raise StanzaError("service-unavailable")  # RFC 6121 §8.5.1: no such account
        return await self.handle(Host(owner, True), iq.frm, iq.type, iq.payload)

    def route_service(self, frm: JID, to: JID, stanza: Element) -> None:
        """Every stanza to pubsub.<domain> (served with Module.serve_subdomains)."""
        if stanza.name == "message":
            form = stanza.find("x", ns.DATA_FORMS)
            if form is not None and form.attrs.get("type") == "submit":
                # XEP-0060 §8.6: an owner answers a subscription authorization request.
                self.server.spawn(self._authorization(frm, to, stanza, form))
            elif stanza.attrs.get("type") not in ("error", "headline", "groupchat"):
                # Nobody reads other messages here: the sender learns it rather than losing it.
                self.server.router.bounce(stanza, StanzaError("service-unavailable"))
            return
        if stanza.name != "iq":
            return  # presence carries nothing the service acts on
        stype = stanza.attrs.get("type")
        if stype not in ("get", "set"):
            return  # RFC 6120 §8.2.3: results and errors are never answered
        payload = stanza.first_element()
        if payload is None or len(stanza.find_all()) != 1 or to.local or to.resource:
            self.server.router.bounce(stanza, StanzaError("bad-request" if payload is None
                                                          else "service-unavailable"))
            return
        self.server.spawn(self._serve(frm, to, stype, payload, stanza))

    async def _serve(self, frm: JID, to: JID, stype: str, payload: Element,
                     stanza: Element) -> None:
        host = Host(JID(None, to.domain, None), False)
        try:
            if payload.xmlns in (PUBSUB, PUBSUB_OWNER):
                result = await self.handle(host, frm, stype, payload)
            elif payload.xmlns == ns.DISCO_INFO and stype == "get":
                result = await self._service_info(host, frm, payload)
            elif payload.xmlns == ns.DISCO_ITEMS and stype == "get":
                result = await self._service_items(host, frm, payload)
            elif payload.xmlns == COMMANDS and payload.name == "command" and stype == "set":
                result = await self._get_pending(host, frm, payload)
            else:
                raise StanzaError("service-unavailable")
        except StanzaError as err:
            self.server.router.bounce(stanza, err)
            return
        except Exception:
            log.exception("pubsub_service_failed")
            self.server.router.bounce(stanza, StanzaError("internal-server-error"))
            return
        self.server.router.route(to, frm, result_reply(stanza, frm, to, result))

    async def _authorization(self, frm: JID, to: JID, stanza: Element, form: Element) -> None:
        values = {f.attrs.get("var", ""): f.find_text("value", ns.DATA_FORMS) or ""
                  for f in form.find_all("field", ns.DATA_FORMS)}
        host = Host(JID(None, to.domain, None), False)
        node = values.get("pubsub#node", "")
        try:
            if values.get("FORM_TYPE") != f"{PUBSUB}#subscribe_authorization":
                raise StanzaError("bad-request", "not a subscription authorization form")
            config = await self._node(host, node)
            await self._require_owner(host, node, frm)
            subscriber = JID.parse(values.get("pubsub#subscriber_jid", ""))
        except (InvalidJID, ValueError):
            self.server.router.bounce(stanza, StanzaError("jid-malformed"))
            return
        except StanzaError as err:
            self.server.router.bounce(stanza, err)
            return
        allow = values.get("pubsub#allow") in ("1", "true")
        pending = [subid for jid, subid, state in await self.store.subscriptions(host.key, node)
                   if jid == str(subscriber) and state == "pending"]
        if not pending:
            return  # already decided (by another owner or the subscriptions IQ)
        state = "subscribed" if allow else "none"
        for subid in pending:
            if allow:
                await self.store.set_subscription(host.key, node, str(subscriber), subid, state)
            else:
                await self.store.remove_subscription(host.key, node, str(subscriber), subid)
        # §8.6: the subscriber is told the outcome.
        event = Element("event", PUBSUB_EVENT)
        event.add("subscription", attrs={"node": node, "jid": str(subscriber),
                                         "subscription": state})
        self.server.router.route(host.jid, subscriber,
                                 self._message(host, subscriber, event, config))
        if allow and config["send_last_published_item"] != "never":
            last = await self.store.last_item(host.key, node)
            if last is not None:
                self._send_last(host, subscriber, node, last, config)

    async def _get_pending(self, host: Host, frm: JID, command: Element) -> Element:
        """XEP-0060 §8.7 (XEP-0050 command ``pubsub#get-pending``): executed, it offers the
        owner's nodes that have pending subscriptions; submitted with one of them, the
        authorization form of each pending subscriber is sent again (§8.6), and the owner
        answers them as any other."""
        if command.attrs.get("node") != GET_PENDING:
            raise StanzaError("item-not-found", "no such command")
        attrs = {"node": GET_PENDING,
                 "sessionid": command.attrs.get("sessionid") or uuid.uuid4().hex}
        if command.attrs.get("action") == "cancel":
            return Element("command", COMMANDS, {**attrs, "status": "canceled"})
        form = command.find("x", ns.DATA_FORMS)
        if form is None or form.attrs.get("type") != "submit":
            owned = [node for node, aff in await self.store.user_affiliations(
                host.key, str(frm.bare)) if aff == "owner"]
            pending = [node for node in owned if any(
                state == "pending" for _, _, state in await self.store.subscriptions(
                    host.key, node))]
            answer = Element("command", COMMANDS, {**attrs, "status": "executing"})
            answer.add("actions", attrs={"execute": "complete"}).add("complete")
            x = answer.add("x", ns.DATA_FORMS, {"type": "form"})
            x.add("field", attrs={"var": "FORM_TYPE", "type": "hidden"}).add(
                "value", text=f"{PUBSUB}#subscribe_authorization")
            field = x.add("field", attrs={"var": "pubsub#node", "type": "list-single",
                                          "label": "Node with pending subscriptions"})
            for node in pending:
                field.add("option").add("value", text=node)
            return answer
        chosen = next((f.find_text("value", ns.DATA_FORMS) for f in form.find_all(
            "field", ns.DATA_FORMS) if f.attrs.get("var") == "pubsub#node"), None)
        await self._node(host, chosen)
        assert chosen is not None  # _node refused a missing one
        await self._require_owner(host, chosen, frm)
        for jid, _, state in await self.store.subscriptions(host.key, chosen):
            if state == "pending":
                await self._ask_owners(host, chosen, JID.parse(jid), only=frm.bare)
        return Element("command", COMMANDS, {**attrs, "status": "completed"})

    # -- the engine ------------------------------------------------------------------------
    async def handle(self, host: Host, frm: JID, stype: str, payload: Element) -> Element | None:
        if payload.name != "pubsub":
            raise StanzaError("bad-request")
        children = payload.find_all()
        if not children:
            raise StanzaError("bad-request")
        action = children[0]
        owner_ns = payload.xmlns == PUBSUB_OWNER
        method = _DISPATCH.get((stype, owner_ns, action.name))
        if method in ("items", "publish") and host.pep \
                and action.attrs.get("node") == B.LEGACY and self._private_store() is not None:
            method = "legacy_" + method  # XEP-0048 over XEP-0223: a view of XEP-0402's
            await self._migrate_legacy_node(host)
        if method is None:
            raise StanzaError("feature-not-implemented" if action.name in _KNOWN
                              else "bad-request")
        event = EVENTS[(stype, action.name)]
        labels = {"host_type": self.server.domains.host_type(frm.domain)
                  if self.server.is_local_domain(frm.domain) else host.jid.domain}
        started = time.perf_counter()
        try:
            result: Element | None = await getattr(self, method)(host, frm, action, children)
        except StanzaError:
            self.server.instrument.emit(event, labels, {"errors": 1})
            raise
        self.server.instrument.emit(event, labels, {
            "count": 1, "time": int((time.perf_counter() - started) * 1e6)})
        return result

    # -- nodes -----------------------------------------------------------------------------
    def defaults(self, host: Host, node: str | None = None) -> dict[str, Any]:
        plugin = "flat"
        if host.pep:
            # pep_mapping: a PEP node may take another plugin's defaults (MongooseIM 6.4).
            plugin = self.pep_mapping.get(node, "pep") if node is not None else "pep"
        config = dict(C.DEFAULTS[plugin])
        config.update(self.opts["default_node_config"])
        return config

    def _check_config(self, config: Mapping[str, Any]) -> None:
        limit = self.opts["max_items_node"]
        max_items = config.get("max_items")
        if isinstance(max_items, int) and max_items > limit:
            raise C.pubsub_error("not-acceptable", "max-items-exceeded",
                                 f"max_items {max_items} exceeds max_items_node ({limit})")

    def keep(self, config: Mapping[str, Any]) -> int:
        return C.items_kept(config, self.opts["max_items_node"])

    async def _node(self, host: Host, node: str | None) -> dict[str, Any]:
        if not node:
            raise C.pubsub_error("bad-request", "nodeid-required")
        config = await self.store.get_node(host.key, node)
        if config is None:
            raise StanzaError("item-not-found", f"no node {node}")
        return {**self.defaults(host, node), **config}

    async def _action_node(self, host: Host, action: Element,
                           owner: JID | None = None) -> tuple[str, dict[str, Any]]:
        """The node an action names and its configuration; with ``owner``, refused unless
        that entity owns the node (XEP-0060 §8: the owner use cases)."""
        node = action.attrs.get("node")
        config = await self._node(host, node)
        assert node is not None  # _node refused a missing one
        if owner is not None:
            await self._require_owner(host, node, owner)
        return node, config

    async def affiliation(self, host: Host, node: str, who: JID) -> str:
        if host.pep and who.bare == host.jid:
            return "owner"  # XEP-0163 §4: the account owns its PEP nodes
        return await self.store.get_affiliation(host.key, node, str(who.bare))

    async def _require_owner(self, host: Host, node: str, who: JID) -> None:
        if await self.affiliation(host, node, who) != "owner":
            raise StanzaError("forbidden", "only an owner of the node may do this")

    async def _create_node(self, host: Host, frm: JID, node: str,
                           config: dict[str, Any]) -> bool:
        """Create ``node``; False when it exists already."""
        if host.pep and frm.bare != host.jid:
            raise StanzaError("forbidden", "only the account creates its PEP nodes")
        rule = self.opts["access_createnode"]
        # Checked for the domain the nodes belong to (6.4: the service's server host; a PEP
        # account's own domain), so "local" means that domain's users.
        domain = host.jid.domain if host.pep else self.services.get(host.jid.domain)
        if not self.server.access_allows(rule, frm, domain):
            raise StanzaError("forbidden", "node creation is not allowed")
        self._check_config(config)
        return await self.store.create_node(host.key, node, config, str(frm.bare))

    async def create(self, host: Host, frm: JID, action: Element,
                     children: list[Element]) -> Element | None:
        node = action.attrs.get("node")
        instant = not node
        if instant:
            node = uuid.uuid4().hex  # XEP-0060 §8.1.2: an instant node
        assert node is not None
        config = self.defaults(host, node)
        configure = next((c for c in children[1:] if c.name == "configure"), None)
        if configure is not None:
            config.update(C.parse_form(configure.find("x", ns.DATA_FORMS), C.NODE_CONFIG))
        if not await self._create_node(host, frm, node, config):
            raise StanzaError("conflict", f"node {node} exists")
        if instant:
            return Element("pubsub", PUBSUB, {}, [Element("create", PUBSUB, {"node": node})])
        return None

    async def publish(self, host: Host, frm: JID, action: Element,
                      children: list[Element]) -> Element | None:
        node = action.attrs.get("node")
        if not node:
            raise C.pubsub_error("bad-request", "nodeid-required")
        items = action.find_all("item", PUBSUB)
        if len(items) > 1:
            raise C.pubsub_error("bad-request", "invalid-payload", "publish at most one item")
        item = items[0] if items else None
        payloads = item.find_all() if item is not None else []
        if len(payloads) > 1:
            raise C.pubsub_error("bad-request", "invalid-payload")
        options_el = next((c for c in children[1:] if c.name == "publish-options"), None)
        options = C.parse_form(options_el.find("x", ns.DATA_FORMS)
                               if options_el is not None else None, C.PUBLISH_OPTIONS,
                               preconditions=True)
        stored = await self.store.get_node(host.key, node)
        config = self._publish_config(host, node, stored, options)
        self._check_publish(config, item, payloads)
        # XEP-0060 §7.1.4 auto-create (XEP-0163 §3: always for PEP); publish-options
        # become the new node's configuration (§7.1.5).
        if stored is None and not await self._create_node(host, frm, node, config):
            # Another publish of the account created it meanwhile (a client publishing two
            # bookmarks at once, each request reading "no node" from a database a few ms
            # away): publish to that node, as if it had been there before.
            stored = await self.store.get_node(host.key, node)
            if stored is None:
                raise StanzaError("conflict", f"node {node} was deleted meanwhile")
            config = self._publish_config(host, node, stored, options)
            self._check_publish(config, item, payloads)
        aff = await self.affiliation(host, node, frm)
        model = config["publish_model"]
        if aff == "outcast" or not (aff in ("owner", "publisher", "publish-only")
                                    or model == "open" or (
                model == "subscribers" and await self._subscribed(host, node, frm))):
            raise StanzaError("forbidden", "not a publisher of the node")
        payload = payloads[0].serialize() if payloads else ""
        if len(payload.encode()) > int(config.get("max_payload_size", 60000)):
            raise C.pubsub_error("not-acceptable", "payload-too-big")
        item_id = (item.attrs.get("id") if item is not None else None) or uuid.uuid4().hex
        stored_item = Item(item_id, str(frm.bare), payload, time.time_ns())
        if config["persist_items"] or config["deliver_payloads"]:  # not transient
            await self.store.publish(host.key, node, stored_item, self.keep(config))
        event = self._items_event(node, [stored_item], config)
        if self.opts["sync_broadcast"]:
            await self._broadcast(host, node, config, event)
        else:
            self.server.spawn(self._broadcast(host, node, config, event))
        await self._changed(host, node)
        if host.pep and node == A.METADATA and payloads:
            await self._avatar_to_vcard(host, payloads[0])
        result = Element("pubsub", PUBSUB)
        result.add("publish", attrs={"node": node}).add("item", attrs={"id": item_id})
        return result

    def _publish_config(self, host: Host, node: str, stored: dict[str, Any] | None,
                        options: dict[str, Any]) -> dict[str, Any]:
        """The configuration a publish works with: the stored node's, whose values the
        publish-options must match (§7.1.5 preconditions), or the new node's."""
        if stored is None:
            return {**self.defaults(host, node), **options}
        config = {**self.defaults(host, node), **stored}
        for key, value in options.items():
            if config.get(key) != value:
                raise C.precondition_error()
        return config

    @staticmethod
    def _check_publish(config: dict[str, Any], item: Element | None,
                       payloads: list[Element]) -> None:
        """§7.1.3.6: what the request carries must fit the node's event type. A transient
        notification-only node is published to without an item; a notification-only node
        takes an item without payload."""
        transient_notification = not config["persist_items"] and not config["deliver_payloads"]
        if transient_notification and item is not None:
            raise C.pubsub_error("bad-request", "item-forbidden",
                                 "the node is transient and notification-only: no item")
        if item is None and not transient_notification:
            raise C.pubsub_error("bad-request", "item-required")
        if item is not None and not payloads and config["deliver_payloads"]:
            raise C.pubsub_error("bad-request", "payload-required")

    async def retract(self, host: Host, frm: JID, action: Element,
                      children: list[Element]) -> Element | None:
        node, config = await self._action_node(host, action)
        items = action.find_all("item", PUBSUB)
        if not items or not items[0].attrs.get("id"):
            raise C.pubsub_error("bad-request", "item-required")
        aff = await self.affiliation(host, node, frm)
        ids = [i.attrs["id"] for i in items if i.attrs.get("id")]
        if aff not in ("owner", "publisher"):
            # §4.1: a publish-only entity deletes only the items it published; so does one
            # that publishes through the node's publish_model (open, subscribers).
            model = config["publish_model"]
            if aff == "outcast" or not (aff == "publish-only" or model == "open" or (
                    model == "subscribers" and await self._subscribed(host, node, frm))):
                raise StanzaError("forbidden", "not a publisher of the node")
            found = await self.store.get_items(host.key, node, ids)
            if any(item.publisher != str(frm.bare) for item in found):
                raise StanzaError("forbidden", "only the items you published")
        removed = [i for i in ids if await self.store.retract(host.key, node, i)]
        if not removed:
            raise StanzaError("item-not-found")
        notify = action.attrs.get("notify") in ("1", "true") or config["notify_retract"]
        if notify:
            event = Element("event", PUBSUB_EVENT)
            items_el = event.add("items", attrs={"node": node})
            for item_id in removed:
                items_el.add("retract", attrs={"id": item_id})
            await self._broadcast(host, node, config, event)
        await self._changed(host, node)
        return None

    async def items(self, host: Host, frm: JID, action: Element,
                    children: list[Element]) -> Element | None:
        node, config = await self._action_node(host, action)
        await self._check_access(host, node, config, frm)
        ids = [i.attrs["id"] for i in action.find_all("item", PUBSUB) if i.attrs.get("id")]
        max_items: int | None = None
        if action.attrs.get("max_items"):
            try:
                max_items = int(action.attrs["max_items"])
            except ValueError:
                max_items = -1
            if max_items < 0:
                # XEP-0060 §6.5.7: a count of items (0 answers no item). A negative one
                # reached the database's LIMIT: every item on SQLite, an error on PostgreSQL
                # and MariaDB (internal-server-error); RFC 6120 §8.3.3.1.
                raise StanzaError("bad-request", "max_items is not a number of items")
        rsm = next((c for c in children[1:] if c.name == "set" and c.xmlns == ns.RSM), None)
        page: Element | None = None
        if rsm is not None and not ids:
            # XEP-0060 §6.5.4 with XEP-0059: pages of the node's items, newest first (the
            # first page is the latest items; <after/> goes back in time). max_items, when
            # given too, bounds the set to the newest ones.
            keys = await self.store.item_ids(host.key, node)
            if max_items is not None:
                keys = keys[:max_items]
            start, end, page = rsm_page(keys, rsm)
            found = await self.store.get_items(host.key, node, keys[start:end])
        else:
            found = await self.store.get_items(host.key, node, ids or None, max_items)
        result = Element("pubsub", PUBSUB)
        items_el = result.add("items", attrs={"node": node})
        for item in found:
            items_el.append(self._item_element(item, PUBSUB, True))
        if page is not None:
            result.append(page)
        return result

    async def subscribe(self, host: Host, frm: JID, action: Element,
                        children: list[Element]) -> Element | None:
        node, config = await self._action_node(host, action)
        jid = _jid_attr(action)
        if jid.bare != frm.bare:
            raise C.pubsub_error("bad-request", "invalid-jid")
        if not config["subscribe"]:
            raise C.pubsub_error("feature-not-implemented", "unsupported",
                                 attrs={"feature": "subscribe"})
        aff = await self.affiliation(host, node, frm)
        if aff == "publish-only":
            raise StanzaError("forbidden", "a publish-only entity cannot subscribe (§4.1)")
        pending = config["access_model"] == "authorize" and aff not in ("owner", "publisher",
                                                                        "member")
        if not pending:
            await self._check_access(host, node, config, frm, subscribing=True)
        # §6.3.7 / §6.4: options given with the request, checked before anything is stored.
        options_el = next((c for c in children[1:] if c.name == "options"), None)
        options = S.parse_options(options_el.find("x", ns.DATA_FORMS)
                                  if options_el is not None else None)
        existing = [s for s in await self.store.subscriptions(host.key, node)
                    if s[0] == str(jid)]
        if existing:
            subid = existing[0][1]
            state = existing[0][2] if existing[0][2] == "subscribed" or pending else "subscribed"
        else:
            limit = self.opts.get("max_subscriptions_node")
            if limit is not None and len(await self.store.subscriptions(host.key, node)) >= limit:
                # MongooseIM 6.4's condition. XEP-0060 §6.1.3.9 has policy-violation (type
                # wait), which RFC 3920 clients do not know: slixmpp 1.17 fails to parse it
                # and its request never completes (docs/pubsub.md).
                raise C.pubsub_error("not-allowed", "too-many-subscriptions",
                                     f"the node has its maximum of {limit} subscriptions")
            subid = uuid.uuid4().hex
            state = "pending" if pending else "subscribed"
        await self.store.set_subscription(host.key, node, str(jid), subid, state)
        if options:
            await self.store.set_subscription_options(host.key, node, str(jid), subid, options)
        if state == "pending":
            await self._ask_owners(host, node, jid)
        elif config["send_last_published_item"] != "never":
            last = await self.store.last_item(host.key, node)
            if last is not None:
                self._send_last(host, jid, node, last, config)
        result = Element("pubsub", PUBSUB)
        result.add("subscription", attrs={"node": node, "jid": str(jid), "subid": subid,
                                          "subscription": state})
        return result

    async def unsubscribe(self, host: Host, frm: JID, action: Element,
                          children: list[Element]) -> Element | None:
        node, _ = await self._action_node(host, action)
        jid = _jid_attr(action)
        if jid.bare != frm.bare and await self.affiliation(host, node, frm) != "owner":
            raise C.pubsub_error("bad-request", "invalid-jid")
        removed = await self.store.remove_subscription(host.key, node, str(jid),
                                                       action.attrs.get("subid"))
        if not removed:
            # XEP-0060 §6.2.3.2: no such subscriber, type cancel.
            raise C.pubsub_error("unexpected-request", "not-subscribed", type_="cancel")
        return None

    async def user_subscriptions(self, host: Host, frm: JID, action: Element,
                                 children: list[Element]) -> Element | None:
        only = action.attrs.get("node")
        result = Element("pubsub", PUBSUB)
        subs = result.add("subscriptions", attrs={"node": only} if only else {})
        for node, jid, subid, state in await self.store.user_subscriptions(host.key,
                                                                           str(frm.bare)):
            if only is None or node == only:
                subs.add("subscription", attrs={"node": node, "jid": jid, "subid": subid,
                                                "subscription": state})
        return result

    async def user_affiliations(self, host: Host, frm: JID, action: Element,
                                children: list[Element]) -> Element | None:
        only = action.attrs.get("node")
        result = Element("pubsub", PUBSUB)
        affs = result.add("affiliations", attrs={"node": only} if only else {})
        found = await self.store.user_affiliations(host.key, str(frm.bare))
        if host.pep and frm.bare == host.jid:
            found = [(n, "owner") for n, _ in await self.store.list_nodes(host.key)]
        for node, aff in found:
            if only is None or node == only:
                affs.add("affiliation", attrs={"node": node, "affiliation": aff})
        return result

    # -- owner use cases (XEP-0060 §8) -----------------------------------------------------
    async def get_configure(self, host: Host, frm: JID, action: Element,
                            children: list[Element]) -> Element | None:
        node, config = await self._action_node(host, action, owner=frm)
        result = Element("pubsub", PUBSUB_OWNER)
        result.add("configure", attrs={"node": node}).append(C.config_form(config))
        return result

    async def set_configure(self, host: Host, frm: JID, action: Element,
                            children: list[Element]) -> Element | None:
        node, config = await self._action_node(host, action, owner=frm)
        form = action.find("x", ns.DATA_FORMS)
        if form is None:
            raise StanzaError("bad-request", "a data form is required")
        if form.attrs.get("type") == "cancel":
            return None
        config.update(C.parse_form(form, C.NODE_CONFIG))
        self._check_config(config)
        await self.store.set_config(host.key, node, config)
        if config["notify_config"]:
            event = Element("event", PUBSUB_EVENT)
            event.add("configuration", attrs={"node": node})
            await self._broadcast(host, node, config, event)
        return None

    async def get_default(self, host: Host, frm: JID, action: Element,
                          children: list[Element]) -> Element | None:
        result = Element("pubsub", PUBSUB_OWNER)
        result.add("default").append(C.config_form(self.defaults(host)))
        return result

    # -- subscription options (XEP-0060 §6.3) ----------------------------------------------
    async def get_default_options(self, host: Host, frm: JID, action: Element,
                                  children: list[Element]) -> Element | None:
        """§6.4 (retrieve-default-sub): the options a new subscription gets."""
        node = action.attrs.get("node")
        if node:
            await self._node(host, node)
        result = Element("pubsub", PUBSUB)
        result.add("default", attrs={"node": node} if node else {}).append(
            S.options_form(S.DEFAULTS))
        return result

    async def _subscription(self, host: Host, frm: JID,
                            action: Element) -> tuple[str, JID, str, dict[str, Any]]:
        """The subscription an options request names: (node, jid, subid, options)."""
        node, _ = await self._action_node(host, action)
        jid = _jid_attr(action)
        if jid.bare != frm.bare and await self.affiliation(host, node, frm) != "owner":
            # §6.3.4: only the subscriber (or an owner) sees and changes its options.
            raise StanzaError("forbidden", "not your subscription")
        subs = [(subid, state) for j, subid, state in
                await self.store.subscriptions(host.key, node) if j == str(jid)]
        if not subs:
            # XEP-0060 §6.3.4.2: no such subscriber, type modify.
            raise C.pubsub_error("unexpected-request", "not-subscribed", type_="modify")
        wanted = action.attrs.get("subid")
        if wanted is None:
            if len(subs) > 1:
                raise C.pubsub_error("bad-request", "subid-required")
            wanted = subs[0][0]
        elif wanted not in [subid for subid, _ in subs]:
            raise C.pubsub_error("not-acceptable", "invalid-subid")
        options = await self.store.subscription_options(host.key, node, str(jid), wanted)
        return node, jid, wanted, {**S.DEFAULTS, **(options or {})}

    async def get_options(self, host: Host, frm: JID, action: Element,
                          children: list[Element]) -> Element | None:
        node, jid, subid, options = await self._subscription(host, frm, action)
        result = Element("pubsub", PUBSUB)
        result.add("options", attrs={"node": node, "jid": str(jid), "subid": subid}).append(
            S.options_form(options))
        return result

    async def set_options(self, host: Host, frm: JID, action: Element,
                          children: list[Element]) -> Element | None:
        node, jid, subid, current = await self._subscription(host, frm, action)
        form = action.find("x", ns.DATA_FORMS)
        if form is None:
            raise C.pubsub_error("bad-request", "invalid-options", "a data form is expected")
        options = {**current, **S.parse_options(form)}
        changed = {k: v for k, v in options.items() if S.DEFAULTS.get(k) != v}
        await self.store.set_subscription_options(host.key, node, str(jid), subid, changed)
        return None

    async def delete(self, host: Host, frm: JID, action: Element,
                     children: list[Element]) -> Element | None:
        node, config = await self._action_node(host, action, owner=frm)
        event = Element("event", PUBSUB_EVENT)
        deleted = event.add("delete", attrs={"node": node})
        redirect = action.find("redirect", PUBSUB_OWNER)
        if redirect is not None and redirect.attrs.get("uri"):
            # §8.4.1: subscribers are told where the node's successor is.
            deleted.add("redirect", attrs={"uri": redirect.attrs["uri"]})
        # Subscribers are read before the node goes (§8.4.2: they are told it is gone).
        targets = await self._targets(host, node, config)
        await self.store.delete_node(host.key, node)
        if config["notify_delete"] or not host.pep:
            self._deliver(host, targets, event, config)
        await self._changed(host, node)
        return None

    async def purge(self, host: Host, frm: JID, action: Element,
                    children: list[Element]) -> Element | None:
        node, config = await self._action_node(host, action, owner=frm)
        await self.store.purge(host.key, node)
        event = Element("event", PUBSUB_EVENT)
        event.add("purge", attrs={"node": node})
        await self._broadcast(host, node, config, event)  # §8.5.2
        await self._changed(host, node)
        return None

    async def get_subscriptions(self, host: Host, frm: JID, action: Element,
                                children: list[Element]) -> Element | None:
        node, _ = await self._action_node(host, action, owner=frm)
        result = Element("pubsub", PUBSUB_OWNER)
        subs = result.add("subscriptions", attrs={"node": node})
        for jid, subid, state in await self.store.subscriptions(host.key, node):
            subs.add("subscription", attrs={"jid": jid, "subid": subid, "subscription": state})
        return result

    async def set_subscriptions(self, host: Host, frm: JID, action: Element,
                                children: list[Element]) -> Element | None:
        node, config = await self._action_node(host, action, owner=frm)
        current = {(j, s) for j, s, _ in await self.store.subscriptions(host.key, node)}
        for sub in action.find_all("subscription", PUBSUB_OWNER):
            jid = _jid_attr(sub)
            state = sub.attrs.get("subscription", "")
            if state not in ("none", "pending", "subscribed", "unconfigured"):
                raise StanzaError("bad-request", f"invalid subscription state {state!r}")
            subid = sub.attrs.get("subid") or next(
                (s for j, s in current if j == str(jid)), uuid.uuid4().hex)
            if state == "none":
                await self.store.remove_subscription(host.key, node, str(jid), None)
            else:
                await self.store.set_subscription(host.key, node, str(jid), subid, state)
                if state == "subscribed" and config["send_last_published_item"] != "never":
                    last = await self.store.last_item(host.key, node)
                    if last is not None:
                        self._send_last(host, jid, node, last, config)
        return None

    async def get_affiliations(self, host: Host, frm: JID, action: Element,
                               children: list[Element]) -> Element | None:
        node, _ = await self._action_node(host, action, owner=frm)
        result = Element("pubsub", PUBSUB_OWNER)
        affs = result.add("affiliations", attrs={"node": node})
        found = await self.store.affiliations(host.key, node)
        if host.pep and not any(j == str(host.jid) for j, _ in found):
            found.insert(0, (str(host.jid), "owner"))
        for jid, aff in found:
            affs.add("affiliation", attrs={"jid": jid, "affiliation": aff})
        return result

    async def set_affiliations(self, host: Host, frm: JID, action: Element,
                               children: list[Element]) -> Element | None:
        node, _ = await self._action_node(host, action, owner=frm)
        changes = []
        for el in action.find_all("affiliation", PUBSUB_OWNER):
            jid = _jid_attr(el).bare
            aff = el.attrs.get("affiliation", "")
            if aff not in AFFILIATIONS:
                raise StanzaError("bad-request", f"invalid affiliation {aff!r}")
            if host.pep and jid == host.jid:
                raise StanzaError("not-acceptable", "the account always owns its PEP nodes")
            changes.append((jid, aff))
        owners = {j for j, a in await self.store.affiliations(host.key, node) if a == "owner"}
        for jid, aff in changes:
            if aff == "owner":
                owners.add(str(jid))
            else:
                owners.discard(str(jid))
        if not host.pep and not owners:
            # XEP-0060 §8.9.2.4: a node keeps at least one owner.
            raise StanzaError("not-acceptable", "a node needs an owner")
        for jid, aff in changes:
            await self.store.set_affiliation(host.key, node, str(jid), aff)
            if aff in ("outcast", "publish-only"):
                # §4.1: an outcast (or a publish-only entity) cannot be subscribed.
                for sub_jid, _, _ in await self.store.subscriptions(host.key, node):
                    if JID.parse(sub_jid).bare == jid:
                        await self.store.remove_subscription(host.key, node, sub_jid, None)
        return None

    # -- access (XEP-0060 §4.5) ------------------------------------------------------------
    async def _check_access(self, host: Host, node: str, config: Mapping[str, Any], who: JID,
                            subscribing: bool = False, aff: str | None = None) -> None:
        """``aff``: ``who``'s affiliation when the caller read it already."""
        if aff is None:
            aff = await self.affiliation(host, node, who)
        if aff in ("owner", "publisher"):
            return
        if aff == "outcast":
            raise StanzaError("forbidden", "blocked from the node")
        if aff == "publish-only":
            raise StanzaError("forbidden", "a publish-only entity cannot read the node (§4.1)")
        model = config["access_model"]
        if model == "open":
            return
        if model == "presence":
            if not await self._any_owner(host, node, lambda item: item is not None
                                         and item.subscription in ("from", "both"), who):
                raise C.pubsub_error("not-authorized", "presence-subscription-required")
        elif model == "roster":
            allowed = set(config.get("roster_groups_allowed") or ())
            if not await self._any_owner(host, node, lambda item: item is not None
                                         and bool(allowed & set(item.groups)), who):
                raise C.pubsub_error("not-authorized", "not-in-roster-group")
        elif model == "whitelist":
            if aff != "member":
                raise C.pubsub_error("not-allowed", "closed-node")
        elif model == "authorize" and not subscribing and aff != "member" \
                and not await self._subscribed(host, node, who):
            raise C.pubsub_error("not-authorized", "not-subscribed")

    async def _any_owner(self, host: Host, node: str, test: Any, who: JID) -> bool:
        owners = [host.jid] if host.pep else [
            JID.parse(j) for j, a in await self.store.affiliations(host.key, node)
            if a == "owner"]
        for owner in owners:
            if owner.local is None or not self.server.is_local_domain(owner.domain):
                continue
            if test(await self._roster_item(owner, who.bare)):
                return True
        return False

    async def _subscribed(self, host: Host, node: str, who: JID) -> bool:
        return any(JID.parse(j).bare == who.bare and s == "subscribed"
                   for j, _, s in await self.store.subscriptions(host.key, node))

    async def _roster_item(self, owner: JID, contact: JID) -> RosterItem | None:
        cache = loaded_roster(self.server.sessions.resources(owner))
        if cache is not None:
            return cache.get(contact)
        roster = roster_module(self.server)
        # Without mod_roster nobody has a roster: the roster and presence models see no one.
        return None if roster is None else await roster.get_roster_item(owner, contact)

    async def _roster(self, owner: JID) -> Mapping[JID, RosterItem]:
        cache = loaded_roster(self.server.sessions.resources(owner))
        if cache is not None:
            return cache
        roster = roster_module(self.server)
        items = [] if roster is None else await roster.get_roster(owner)
        return {JID.parse(i.jid): i for i in items}

    async def _ask_owners(self, host: Host, node: str, jid: JID,
                          only: JID | None = None) -> None:
        """XEP-0060 §8.6: the owners (``only`` that one) get a subscription authorization
        form; they answer it by message, or through the subscriptions of the owner use cases
        (§8.8.2)."""
        form = Element("x", ns.DATA_FORMS, {"type": "form"})
        form.add("title", text="PubSub subscriber request")
        for var, value in (("FORM_TYPE", f"{PUBSUB}#subscribe_authorization"),
                           ("pubsub#node", node), ("pubsub#subscriber_jid", str(jid))):
            form.add("field", attrs={"var": var, "type": "hidden" if var == "FORM_TYPE"
                                     else "text-single"}).add("value", text=value)
        form.add("field", attrs={"var": "pubsub#allow", "type": "boolean"}).add(
            "value", text="false")
        for owner, aff in await self.store.affiliations(host.key, node):
            if aff == "owner" and (only is None or owner == str(only)):
                msg = Element("message", ns.CLIENT, {"from": str(host.jid), "to": owner,
                                                     "id": uuid.uuid4().hex}, [form])
                self.server.router.route(host.jid, JID.parse(owner), msg)

    # -- notifications ---------------------------------------------------------------------
    def _item_element(self, item: Item, xmlns: str, with_payload: bool) -> Element:
        el = Element("item", xmlns, {"id": item.id})
        if self.opts["item_publisher"]:
            el.attrs["publisher"] = item.publisher
        if with_payload and item.payload:
            try:
                for child in parse_fragment(item.payload):
                    el.append(child)
            except XMLStreamError:
                log.error("pubsub_item_unreadable id=%s", item.id)
        return el

    def _items_event(self, node: str, items: list[Item], config: Mapping[str, Any]) -> Element:
        event = Element("event", PUBSUB_EVENT)
        items_el = event.add("items", attrs={"node": node})
        for item in items:
            items_el.append(self._item_element(item, PUBSUB_EVENT, config["deliver_payloads"]))
        return event

    def _send_last(self, host: Host, to: JID, node: str, item: Item,
                   config: Mapping[str, Any], session: Any = None) -> None:
        """The last item, stamped with when it was published (XEP-0060 §12.2, XEP-0203)."""
        msg = self._message(host, to, self._items_event(node, [item], config), config)
        stamp = datetime.fromtimestamp(item.published_at / 1e9, UTC)
        msg.add("delay", ns.DELAY, {"stamp": stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                                    "from": str(host.jid)})
        if session is not None:
            session.deliver(msg)
        else:
            self.server.router.route(host.jid, to, msg)

    async def _targets(self, host: Host, node: str,
                       config: Mapping[str, Any]) -> Targets:
        """Who hears about ``node``: sessions (PEP, filtered by +notify caps), JIDs
        (explicit subscriptions, filtered by their options) and which of them want a body."""
        sessions: list[Any] = []
        remote: list[JID] = []
        seen: set[JID] = set()
        elsewhere: list[JID] = []
        caps: Any = self.server.modules.get("mod_caps")
        if host.pep:
            notify = node + "+notify"
            model = config["access_model"]
            # With several nodes, the owner's and its local contacts' sessions on the others
            # are told too (a cast: each node picks its sessions with +notify): an OMEMO
            # device list or an avatar that stays on its node breaks them for everyone else.
            spans = self.server.cluster.spans_nodes
            if spans:
                elsewhere.append(host.jid)
            for session in self.server.sessions.resources(host.jid):
                if session.available and notify in session_features(session):
                    sessions.append(session)
            if model in ("open", "presence", "roster"):
                allowed = set(config.get("roster_groups_allowed") or ())
                for contact, item in (await self._roster(host.jid)).items():
                    if item.subscription not in ("from", "both"):
                        continue  # XEP-0163 §4.3.1: contacts subscribed to the presence
                    if model == "roster" and not allowed & set(item.groups):
                        continue
                    if not self.server.is_local_domain(contact.domain):
                        # A contact on another server: its resources whose presence (with
                        # caps) reached us, learnt by mod_caps.
                        for full, features in caps.remote_features(contact) if caps else ():
                            if notify in features:
                                remote.append(full)
                                seen.add(contact)
                        continue
                    if spans:
                        elsewhere.append(contact)
                    for session in self.server.sessions.resources(contact):
                        if session.available and notify in session_features(session):
                            sessions.append(session)
                            seen.add(contact)
            seen.add(host.jid)
        jids: list[JID] = remote
        bodies: set[JID] = set()  # who asked for a <body/> too (pubsub#include_body)
        # Subscribers whose access depends on who they are are checked below: the node's
        # affiliations read once for all of them, not once per subscriber.
        affiliations: dict[str, str] | None = None
        if config["access_model"] in ("presence", "roster", "whitelist"):
            affiliations = dict(await self.store.affiliations(host.key, node))
        subscriptions = [(jid, jid_text, options) for jid_text, options
                         in await self.store.active_subscriptions(host.key, node)
                         if (jid := _parsed(jid_text)) is not None]
        online: set[JID] | None = None
        if config.get("presence_based_delivery"):
            # Online on any node (the session table with several): one question for all.
            online = await self._online(list({
                jid.bare for jid, _, _ in subscriptions
                if self.server.is_local_domain(jid.domain)}))
        for jid, jid_text, options in subscriptions:
            if jid.bare in seen and host.pep:
                continue
            if affiliations is not None and not await self._still_allowed(
                    host, node, config, jid, jid_text, affiliations):
                continue
            local = self.server.is_local_domain(jid.domain)
            if online is not None and local and jid.bare not in online:
                continue
            if not options:
                jids.append(jid)
            elif not options.get("deliver", True):
                continue  # §6.3: pubsub#deliver = false
            elif local and "show-values" in options:
                # Only to the sessions whose presence show is listed: their full JIDs.
                for session in self.server.sessions.resources(jid.bare):
                    if (jid.resource is None or session.jid == jid) and session.available \
                            and S.wants(options, _show(session)):
                        if options.get("include_body"):
                            bodies.add(session.jid)
                        jids.append(session.jid)
            else:
                if options.get("include_body"):
                    bodies.add(jid)
                jids.append(jid)
        return sessions, jids, bodies, elsewhere

    async def _still_allowed(self, host: Host, node: str, config: Mapping[str, Any],
                             jid: JID, jid_text: str, affiliations: Mapping[str, str]) -> bool:
        """Whether a subscriber may still see the node. XEP-0163 §7.1: access to presence
        and roster nodes changes with the owner's roster (a presence subscription cancelled,
        a contact moved out of a group), and a subscriber that lost it MUST lose its
        subscription; the node's access model may have changed too (XEP-0060 §4.5). Checked
        when a notification is about to go out, so no change of roster or configuration is
        missed: the subscription is cancelled then, and the notification not sent."""
        aff = "owner" if host.pep and jid.bare == host.jid else \
            affiliations.get(str(jid.bare), "none")  # as ``affiliation`` says
        try:
            await self._check_access(host, node, config, jid, aff=aff)
        except StanzaError:
            await self.store.remove_subscription(host.key, node, jid_text, None)
            log.info("pubsub_subscription_cancelled node=%s jid=%s", node, jid_text)
            return False
        return True

    async def _broadcast(self, host: Host, node: str, config: Mapping[str, Any],
                         event: Element) -> None:
        if not config["deliver_notifications"]:
            return
        targets = await self._targets(host, node, config)
        self._deliver(host, targets, event, config)

    def _message(self, host: Host, to: JID, event: Element,
                 config: Mapping[str, Any]) -> Element:
        # A counter, not a uuid per copy: the fan-out makes one message per recipient.
        attrs = {"from": str(host.jid), "to": str(to), "id": f"{self._ids_prefix}{next(self._ids)}"}
        if config["notification_type"] == "headline":
            attrs["type"] = "headline"
        return Element("message", ns.CLIENT, attrs, [event])

    def _deliver(self, host: Host, targets: Targets, event: Element,
                 config: Mapping[str, Any]) -> None:
        sessions, jids, bodies, elsewhere = targets
        # One event element shared by every copy: it is only read from here on.
        for session in sessions:
            session.deliver(self._message(host, session.jid, event, config))
        if elsewhere:
            node = next((child.attrs.get("node", "") for child in event.children
                         if isinstance(child, Element)), "")
            self.server.cluster.cast_many(elsewhere, PEP_EVENT_CAST,
                                          self._message(host, host.jid, event, config), node)
        for jid in jids:
            message = self._message(host, jid, event, config)
            if jid in bodies:
                # pubsub#include_body (§6.3): a line for clients that show only bodies.
                message.add("body", text=_describe(host, event))
            self.server.router.route(host.jid, jid, message)

    def _pep_event_from_elsewhere(self, bare: JID, message: Element,
                                  args: tuple[str, ...]) -> None:
        """A PEP event cast by the owner's node (``_deliver``): to this node's available
        sessions of ``bare`` whose caps ask for the node (XEP-0163 §4.3.1, §4.3.2), as the
        owner's node does for its own."""
        notify = args[0] + "+notify"
        for session in self.server.sessions.resources(bare):
            if session.available and notify in session_features(session):
                attrs = {**message.attrs, "to": str(session.jid),
                         "id": f"{self._ids_prefix}{next(self._ids)}"}
                # The event is only read from here on: the children are shared.
                session.deliver(Element(message.name, message.xmlns, attrs,
                                        list(message.children)))

    def _pep_last_from_elsewhere(self, bare: JID, stanza: Element,
                                 args: tuple[str, ...]) -> None:
        """``args[0]``'s last items for this node's sessions of ``bare``, which has just
        become its presence subscriber (``_last_items_to_new_subscriber``)."""
        self.server.spawn(self._last_items_to_sessions_here(JID.parse(args[0]), bare))

    # -- XEP-0411: bookmarks in PEP and in private XML are one list -----------------------
    def _private_store(self) -> PrivateStore | None:
        store = self.server.module_stores.get("mod_private")
        if "mod_private" not in self.server.modules or not isinstance(store, PrivateStore):
            return None
        return store

    async def _legacy_storage(self, host: Host) -> Element:
        """The account's XEP-0402 bookmarks as one XEP-0048 ``<storage/>``, with the
        ``<url/>`` entries of the private copy (XEP-0402 has no place for them)."""
        private = self._private_store()
        domain, user = host.key
        pairs: list[tuple[str, Element]] = []
        for item in await self.store.get_items(host.key, B.BOOKMARKS):
            element = _parse_one(item.payload)
            if element is not None and element.name == "conference":
                pairs.append((item.id, element))
        keep: list[Element] = []
        old = await private.get_private(domain, user, B.LEGACY) if private else None
        storage = _parse_one(old) if old else None
        if storage is not None:
            keep = [e for e in storage.find_all() if e.name != "conference"]  # <url/>
        return B.to_legacy(pairs, keep)

    async def _changed(self, host: Host, node: str) -> None:
        """PEP bookmarks changed: rewrite the XEP-0048 copy in private storage, and tell the
        account's legacy PEP clients."""
        private = self._private_store()
        if not host.pep or node != B.BOOKMARKS or private is None:
            return
        domain, user = host.key
        storage = await self._legacy_storage(host)
        await private.set_private(domain, user, B.LEGACY, storage.serialize())
        await self._legacy_notify(host, storage)

    async def _legacy_notify(self, host: Host, storage: Element) -> None:
        """XEP-0411 §4 / XEP-0223: the account's sessions that want storage:bookmarks
        (``+notify``) get the whole list as the node's single item ``current``."""
        config = {**self.defaults(host, B.LEGACY), **B.NODE_CONFIG}
        event = Element("event", PUBSUB_EVENT)
        event.add("items", attrs={"node": B.LEGACY}).add(
            "item", attrs={"id": B.LEGACY_ITEM}).append(storage)
        await self._broadcast(host, B.LEGACY, config, event)

    async def legacy_items(self, host: Host, frm: JID, action: Element,
                           children: list[Element]) -> Element | None:
        """XEP-0048 §3 over XEP-0223: the legacy node's one item, made from XEP-0402's
        items (XEP-0402 §5.3, "#compat-pep"). A private node: the owner reads it."""
        config = {**self.defaults(host, B.LEGACY), **B.NODE_CONFIG}
        await self._check_access(host, B.LEGACY, config, frm)
        if await self.store.get_node(host.key, B.BOOKMARKS) is None:
            raise StanzaError("item-not-found")  # no bookmarks ever: no node (XEP-0060 §6.5.9.11)
        result = Element("pubsub", PUBSUB)
        result.add("items", attrs={"node": B.LEGACY}).add(
            "item", attrs={"id": B.LEGACY_ITEM}).append(await self._legacy_storage(host))
        return result

    async def legacy_publish(self, host: Host, frm: JID, action: Element,
                             children: list[Element]) -> Element | None:
        """A legacy client publishes the whole list (XEP-0048 §3.1 with XEP-0223's
        publish-options, which describe the node we keep anyway): XEP-0402's items follow,
        then the private copy and the other legacy clients."""
        await self._require_owner(host, B.LEGACY, frm)
        items = action.find_all("item", PUBSUB)
        storage = items[0].find("storage", B.LEGACY) if len(items) == 1 else None
        if storage is None:
            raise C.pubsub_error("bad-request", "invalid-payload",
                                 "one item with a <storage xmlns='storage:bookmarks'/>")
        await self._legacy_to_pep(host, storage)
        private = self._private_store()
        if private is not None:
            domain, user = host.key
            await private.set_private(domain, user, B.LEGACY, storage.serialize())
        await self._legacy_notify(host, storage)
        result = Element("pubsub", PUBSUB)
        result.add("publish", attrs={"node": B.LEGACY}).add("item", attrs={"id": B.LEGACY_ITEM})
        return result

    async def private_stored(self, acc: None, user: JID, namespace: str,
                             elements: list[Element]) -> None:
        """XEP-0048 bookmarks stored by an old client: the PEP nodes follow (XEP-0411 §4)."""
        if not self.pep or namespace != B.LEGACY or not elements:
            return acc
        host = Host(user.bare, True)
        await self._legacy_to_pep(host, elements[0])
        await self._legacy_notify(host, elements[0])
        return acc

    async def _migrate_legacy_node(self, host: Host) -> None:
        """A storage:bookmarks node stored before it became a view (an old client published
        it as any PEP node): its rooms that XEP-0402's list lacks join it, once, and the node
        goes (Prosody's mod_bookmarks migrates the same way)."""
        if not host.pep or await self.store.get_node(host.key, B.LEGACY) is None:
            return
        for item in await self.store.get_items(host.key, B.LEGACY):
            storage = _parse_one(item.payload)
            if storage is not None and storage.name == "storage" and storage.xmlns == B.LEGACY:
                await self._legacy_to_pep(host, storage, merge=True)
        await self.store.delete_node(host.key, B.LEGACY)
        log.info("pubsub_legacy_bookmarks_migrated jid=%s", host.jid)
        await self._changed(host, B.BOOKMARKS)

    async def _legacy_to_pep(self, host: Host, storage: Element, merge: bool = False) -> None:
        """A XEP-0048 ``<storage/>`` becomes XEP-0402's items: new and changed rooms
        published, missing ones retracted, each notified (XEP-0402 §4). ``merge``: only the
        rooms XEP-0402's list lacks are added, nothing else changes."""
        wanted = dict(B.from_legacy(storage))
        stored = await self.store.get_node(host.key, B.BOOKMARKS)
        if stored is None:
            stored = {**self.defaults(host, B.BOOKMARKS), **B.NODE_CONFIG}
            await self.store.create_node(host.key, B.BOOKMARKS, stored, str(host.jid))
        config = {**self.defaults(host, B.BOOKMARKS), **stored}
        current = {i.id: i.payload for i in await self.store.get_items(host.key, B.BOOKMARKS)}
        for room, conference in wanted.items():
            payload = conference.serialize()
            if current.get(room) == payload or (merge and room in current):
                continue
            item = Item(room, str(host.jid), payload, time.time_ns())
            await self.store.publish(host.key, B.BOOKMARKS, item, self.keep(config))
            await self._broadcast(host, B.BOOKMARKS, config,
                                  self._items_event(B.BOOKMARKS, [item], config))
        gone = [] if merge else [room for room in current if room not in wanted]
        if gone:
            event = Element("event", PUBSUB_EVENT)
            items_el = event.add("items", attrs={"node": B.BOOKMARKS})
            for room in gone:
                await self.store.retract(host.key, B.BOOKMARKS, room)
                items_el.add("retract", attrs={"id": room})
            await self._broadcast(host, B.BOOKMARKS, config, event)

    # -- XEP-0398: the PEP avatar and the vCard avatar are one ----------------------------
    def _vcard(self) -> ModVcard | None:
        module = self.server.modules.get("mod_vcard")
        return module if self.pep and isinstance(module, ModVcard) else None

    async def _avatar_to_vcard(self, host: Host, metadata: Element) -> None:
        """§3 (PEP to vCard): the image the new metadata names becomes the vCard PHOTO. Only
        a client's publish calls this, never the publication below: no loop."""
        vcard = self._vcard()
        if vcard is None:
            return
        chosen = A.chosen_info(metadata)
        if chosen is None:
            await vcard.set_photo(host.jid, None, None)  # XEP-0084 §4.2: avatar disabled
            return
        item_id, mime = chosen
        found = await self.store.get_items(host.key, A.DATA, [item_id])
        data = _parse_one(found[0].payload) if found else None
        image = A.data_bytes(data) if data is not None else None
        # §3: the data must already be there, and its SHA-1 should be the id.
        if image is None or hashlib.sha1(image).hexdigest() != item_id:
            log.info("avatar_not_converted user=%s id=%s", host.jid, item_id)
            return
        await vcard.set_photo(host.jid, mime, image)

    async def vcard_stored(self, acc: None, user: JID, vcard: Element) -> None:
        """§4 (vCard to PEP): a PHOTO set by a vCard client is published as the PEP avatar,
        data first then metadata; nothing when PEP already has that image."""
        if self._vcard() is None:
            return acc
        found = photo_data(vcard)
        if found is None:
            return acc  # a vCard without a photo leaves the PEP avatar alone
        item_id, data, metadata = A.avatar_items(*found)
        host = Host(user.bare, True)
        current = await self.store.last_item(host.key, A.METADATA)
        if current is not None and current.id == item_id:
            return acc
        for node, payload in ((A.DATA, data), (A.METADATA, metadata)):
            stored = await self.store.get_node(host.key, node)
            if stored is None:
                stored = self.defaults(host, node)
                await self.store.create_node(host.key, node, stored, str(host.jid))
            config = {**self.defaults(host, node), **stored}
            item = Item(item_id, str(host.jid), payload.serialize(), time.time_ns())
            await self.store.publish(host.key, node, item, self.keep(config))
            await self._broadcast(host, node, config, self._items_event(node, [item], config))
        return acc

    # -- hooks -----------------------------------------------------------------------------
    async def caps_recognised(self, acc: None, c2s: C2S, features: frozenset[str]) -> None:
        """XEP-0163 §4.3.4 (and the account's own resources, §4.3.2): a client that asks
        for notifications gets the last item of each node it may see."""
        if not self.pep or c2s.jid is None:
            return acc
        wanted = _notify(features)
        if not wanted:
            return acc
        me = c2s.jid.bare
        contacts: list[JID] = []
        cache = ROSTER_CACHE.get(c2s) or {}
        for contact, item in cache.items():
            # The user is subscribed to the contact's presence: the contact's roster has
            # the user with 'from', which the presence access model asks for.
            if item.subscription not in ("to", "both") or contact.local is None \
                    or not self.server.is_local_domain(contact.domain):
                continue
            contacts.append(contact)
        if self.opts["ignore_pep_from_offline"]:
            online = await self._online(contacts)
            contacts = [contact for contact in contacts if contact in online]
        for owner in [me, *contacts]:
            await self._send_last_items(owner, c2s.jid, wanted, c2s)
        return acc

    async def service_last_items(self, acc: None, c2s: C2S) -> None:
        """``send_last_published_item = on_sub_and_presence`` on the service (XEP-0060
        §16.4.4: "whenever a subscriber comes online"): a session's first available presence
        gets the last item of each service node its account (or this full JID) is subscribed
        to. One query per service domain at login, more only for subscribers."""
        if not self.services or c2s.jid is None:
            return acc
        me = c2s.jid
        for domain in self.services:
            host = Host(JID(None, domain, None), False)
            nodes = sorted({node for node, jid, _, state in await self.store.user_subscriptions(
                host.key, str(me.bare)) if state == "subscribed" and jid in (str(me.bare),
                                                                             str(me))})
            for node in nodes:
                stored = await self.store.get_node(host.key, node)
                if stored is None:
                    continue
                config = {**self.defaults(host, node), **stored}
                if config["send_last_published_item"] != "on_sub_and_presence" \
                        or not config["deliver_notifications"]:
                    continue
                last = await self.store.last_item(host.key, node)
                if last is not None:
                    self._send_last(host, me, node, last, config, c2s)
        return acc

    async def remote_caps_recognised(self, acc: None, frm: JID, user: JID,
                                     features: frozenset[str]) -> None:
        """§4.3.4 across servers: a contact's client elsewhere asked for notifications in
        the presence it sent ``user``; it gets ``user``'s last items it may see."""
        wanted = _notify(features)
        if not self.pep or not wanted:
            return acc
        if self.opts["ignore_pep_from_offline"] and not await self._online([user]):
            return acc
        item = await self._roster_item(user, frm.bare)
        if item is None or item.subscription not in ("from", "both"):
            return acc  # as for local contacts: only the owner's presence subscribers
        await self._send_last_items(user, frm, wanted)
        return acc

    async def new_presence_subscriber(self, acc: roster_sub.Transition | None, user: JID,
                                      contact: JID, type_: str,
                                      stanza: Element) -> roster_sub.Transition | None:
        """XEP-0163 §4.3.4: "a PEP service MUST send the last published item to all new
        subscribers". ``contact`` has just become a subscriber to ``user``'s presence (the
        user approved, or a pre-approval accepted the request, RFC 6121 §3.1.5, §3.4): its
        available resources that asked for a node with +notify get ``user``'s last item of
        it, as they would at their next initial presence (§4.3.3.2). Run in a task, so the
        item follows the subscription stanza itself."""
        if self.pep and acc is not None and acc.gained_from:
            self.server.spawn(self._last_items_to_new_subscriber(user.bare, contact.bare))
        return acc

    async def _online(self, bares: list[JID]) -> set[JID]:
        """Those of ``bares`` (local accounts) with an available session here or, with
        several nodes, on another node (the session table)."""
        here = {bare for bare in bares
                if any(s.available for s in self.server.sessions.resources(bare))}
        rest = [bare for bare in bares if bare not in here]
        if rest and self.server.cluster.spans_nodes:
            here |= await self.server.cluster.available(rest)
        return here

    async def _last_items_to_new_subscriber(self, owner: JID, contact: JID) -> None:
        if self.opts["ignore_pep_from_offline"] and not await self._online([owner]):
            return  # as at a contact's initial presence: only the items of online owners
        if self.server.is_local_domain(contact.domain):
            await self._last_items_to_sessions_here(owner, contact)
            # The contact's sessions on other nodes: theirs send them (one cast).
            self.server.cluster.cast(contact, PEP_LAST_CAST, Element("last", PUBSUB_EVENT), str(owner))
            return
        caps: Any = self.server.modules.get("mod_caps")
        for full, features in caps.remote_features(contact) if caps else ():
            wanted = _notify(features)
            if wanted:
                await self._send_last_items(owner, full, wanted)

    async def _last_items_to_sessions_here(self, owner: JID, contact: JID) -> None:
        for session in self.server.sessions.resources(contact):
            wanted = _notify(session_features(session))
            if session.available and wanted:
                await self._send_last_items(owner, session.jid, wanted, session)

    async def _send_last_items(self, owner: JID, reader: JID, wanted: set[str],
                               session: Any = None) -> None:
        """The last item of each of ``owner``'s PEP nodes in ``wanted`` that ``reader`` may
        see and whose configuration says on_sub_and_presence."""
        host = Host(owner, True)
        for node, stored in await self.store.list_nodes(host.key):
            if node not in wanted:
                continue
            config = {**self.defaults(host, node), **stored}
            if config["send_last_published_item"] != "on_sub_and_presence" \
                    or not config["deliver_notifications"]:
                continue
            if owner != reader.bare:
                try:
                    await self._check_access(host, node, config, reader.bare)
                except StanzaError:
                    continue
            last = await self.store.last_item(host.key, node)
            if last is not None:
                self._send_last(host, reader, node, last, config, session)

    async def remove_user(self, acc: None, jid: JID) -> None:
        # The account's own nodes go with its rows (user_tables); its subscriptions to and
        # affiliations with other hosts' nodes go here, and the service nodes it was the
        # only owner of (no one could administer them, and its name would be their owner
        # again if registered anew), their subscribers told (XEP-0060 §8.4.2). Items it
        # published on nodes others own stay: they are those nodes' content.
        for service, node in await self.store.sole_owned(str(jid.bare)):
            host = Host(JID.parse(service), False)
            stored = await self.store.get_node(host.key, node)
            if stored is None:
                continue
            config = {**self.defaults(host, node), **stored}
            targets = await self._targets(host, node, config)
            await self.store.delete_node(host.key, node)
            event = Element("event", PUBSUB_EVENT)
            event.add("delete", attrs={"node": node})
            self._deliver(host, targets, event, config)
            await self._changed(host, node)
        await self.store.forget_jid(str(jid.bare))
        return acc

    def sm_identity(self, acc: list[Element], jid: JID) -> list[Element]:
        if self.pep:
            # XEP-0163 §6: the account is a virtual pubsub service.
            acc.append(Element("identity", ns.DISCO_INFO, {"category": "pubsub",
                                                           "type": "pep"}))
        return acc

    def local_identity(self, acc: list[Element], domain: str) -> list[Element]:
        if self.pep:
            # XEP-0163 §6.1 now puts pubsub/pep on the account's bare JID (above); its
            # earlier versions put it on the server, and clients still look there: iris
            # (Psi+ 1.4) asks only the domain, and without it turns off avatars, mood,
            # activity and location; libpurple 2.14 (Pidgin, finch) too, and never publishes
            # nor reads avatars, nicks, moods or tunes. ejabberd's mod_pubsub answers both.
            acc.append(Element("identity", ns.DISCO_INFO, {"category": "pubsub",
                                                           "type": "pep"}))
        return acc

    async def sm_items(self, acc: list[Element], frm: JID, jid: JID) -> list[Element]:
        if not self.pep:
            return acc
        host = Host(jid.bare, True)
        for node, stored in await self.store.list_nodes(host.key):
            config = {**self.defaults(host, node), **stored}
            try:
                await self._check_access(host, node, config, frm)
            except StanzaError:
                continue
            acc.append(Element("item", ns.DISCO_ITEMS, {"jid": str(jid.bare), "node": node}))
        return acc

    async def _readable_pep_node(self, frm: JID, jid: JID,
                                 node: str) -> tuple[Host, dict[str, Any]] | None:
        """The account's PEP node and its configuration, None when it does not exist or
        ``frm`` may not read it: such a node is not listed in the account's disco#items
        (sm_items), and its info and items do not tell it exists either (XEP-0030 §8)."""
        if not self.pep:
            return None
        host = Host(jid.bare, True)
        stored = await self.store.get_node(host.key, node)
        if stored is None:
            return None
        config = {**self.defaults(host, node), **stored}
        try:
            await self._check_access(host, node, config, frm)
        except StanzaError:
            return None
        return host, config

    async def sm_node_info(self, acc: list[Element] | None, frm: JID, jid: JID,
                           node: str) -> list[Element] | None:
        """disco#info of a PEP node at the account's bare JID (XEP-0163 §2: the account is
        a virtual pubsub service, so XEP-0060 §5.3 and §5.4 apply to its nodes)."""
        if acc is not None:
            return acc
        found = await self._readable_pep_node(frm, jid, node)
        return None if found is None else await self._node_info(found[0], node, found[1])

    async def sm_node_items(self, acc: list[Element] | None, frm: JID, jid: JID,
                            node: str) -> list[Element] | None:
        """disco#items of a PEP node: its items by id (XEP-0060 §5.5)."""
        if acc is not None:
            return acc
        found = await self._readable_pep_node(frm, jid, node)
        return None if found is None else await self._node_items(found[0], node)

    async def _node_items(self, host: Host, node: str) -> list[Element]:
        # §5.5: one item per published item, named by its ItemID, without a 'node'.
        return [Element("item", ns.DISCO_ITEMS, {"jid": str(host.jid), "name": item.id})
                for item in await self.store.get_items(host.key, node)]

    async def _node_info(self, host: Host, node: str,
                         config: Mapping[str, Any]) -> list[Element]:
        """§5.3: the identity pubsub/leaf; §5.4: the node's meta-data as a XEP-0128 form."""
        info = [Element("identity", ns.DISCO_INFO, {"category": "pubsub", "type": "leaf"}),
                Element("feature", ns.DISCO_INFO, {"var": PUBSUB}),
                Element("feature", ns.DISCO_INFO, {"var": ns.DISCO_INFO})]
        meta = C.config_form(config, C.META_DATA, "result")
        owners = [j for j, a in await self.store.affiliations(host.key, node) if a == "owner"]
        if host.pep and str(host.jid) not in owners:
            owners.insert(0, str(host.jid))  # XEP-0163 §4: the account owns its PEP nodes
        field = meta.add("field", attrs={"var": "pubsub#owner", "type": "jid-multi"})
        for owner in owners:
            field.add("value", text=owner)
        info.append(meta)
        return info

    # -- discovery of the service (XEP-0060 §5) --------------------------------------------
    async def _service_info(self, host: Host, frm: JID, query: Element) -> Element:
        node = query.attrs.get("node")
        result = Element("query", ns.DISCO_INFO, {"node": node} if node else {})
        if not node:
            result.add("identity", attrs={"category": "pubsub", "type": "service",
                                          "name": "Publish-Subscribe"})
            for var in (ns.DISCO_INFO, ns.DISCO_ITEMS, COMMANDS, PUBSUB, ns.RSM, *FEATURES):
                result.add("feature", attrs={"var": var})
            return result
        for element in await self._node_info(host, node, await self._node(host, node)):
            result.append(element)
        return result

    async def _service_items(self, host: Host, frm: JID, query: Element) -> Element:
        node = query.attrs.get("node")
        result = Element("query", ns.DISCO_ITEMS, {"node": node} if node else {})
        if node == COMMANDS:
            # XEP-0050 §2.2: the commands of the service.
            result.add("item", attrs={"jid": str(host.jid), "node": GET_PENDING,
                                      "name": "Get pending subscriptions"})
            return result
        if not node:
            for name, stored in await self.store.list_nodes(host.key):
                item = result.add("item", attrs={"jid": str(host.jid), "node": name})
                title = stored.get("title")
                if title:
                    item.attrs["name"] = title
            return result
        config = await self._node(host, node)
        await self._check_access(host, node, config, frm)
        for element in await self._node_items(host, node):
            result.append(element)
        return result


def _parse_one(xml: str) -> Element | None:
    try:
        elements = parse_fragment(xml)
    except XMLStreamError:
        return None
    return elements[0] if elements else None


def _parsed(text: str) -> JID | None:
    try:
        return JID.parse(text)
    except (InvalidJID, ValueError):
        return None


def _notify(features: frozenset[str]) -> set[str]:
    """The nodes a client asked notifications of: ``<node>+notify`` (XEP-0163 §4.3.1)."""
    return {f[:-7] for f in features if f.endswith("+notify")}


def _show(session: Any) -> str:
    presence = getattr(session, "presence", None)
    return (presence.find_text("show", ns.CLIENT) or "online") if presence is not None \
        else "online"


def _describe(host: Host, event: Element) -> str:
    items = event.find("items", PUBSUB_EVENT)
    node = items.attrs.get("node", "") if items is not None else ""
    if items is not None and items.find("retract", PUBSUB_EVENT) is not None:
        return f"Items were retracted from {node} at {host.jid}"
    return f"New item published to {node} at {host.jid}"


def _jid_attr(el: Element) -> JID:
    text = el.attrs.get("jid")
    if not text:
        raise C.pubsub_error("bad-request", "jid-required")
    try:
        return JID.parse(text)
    except (InvalidJID, ValueError):
        raise StanzaError("jid-malformed") from None


_DISPATCH: dict[tuple[str, bool, str], str] = {
    ("set", False, "create"): "create",
    ("set", False, "publish"): "publish",
    ("set", False, "retract"): "retract",
    ("set", False, "subscribe"): "subscribe",
    ("set", False, "unsubscribe"): "unsubscribe",
    ("get", False, "items"): "items",
    ("get", False, "subscriptions"): "user_subscriptions",
    ("get", False, "affiliations"): "user_affiliations",
    ("get", True, "configure"): "get_configure",
    ("set", True, "configure"): "set_configure",
    ("get", True, "default"): "get_default",
    ("get", False, "default"): "get_default_options",
    ("get", False, "options"): "get_options",
    ("set", False, "options"): "set_options",
    ("set", True, "delete"): "delete",
    ("set", True, "purge"): "purge",
    ("get", True, "subscriptions"): "get_subscriptions",
    ("set", True, "subscriptions"): "set_subscriptions",
    ("get", True, "affiliations"): "get_affiliations",
    ("set", True, "affiliations"): "set_affiliations",
}
_KNOWN = frozenset(name for _, _, name in _DISPATCH)
