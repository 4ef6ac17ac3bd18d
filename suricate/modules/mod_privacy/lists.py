"""Privacy lists as the server applies them (XEP-0016 §2.1, §2.2): reading a client's
``<list/>``, writing one back, and deciding whether a list denies a stanza.

No I/O here: the module gives the contact's roster item (for group and subscription items),
which it reads from the session's roster cache or from storage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from suricate.jid import JID, InvalidJID
from suricate.modules.mod_privacy.store import (
    IQ,
    MESSAGE,
    PRESENCE_IN,
    PRESENCE_OUT,
    PrivacyItem,
)
from suricate.protocol.errors import StanzaError
from suricate.xml import ns
from suricate.xml.element import Element

if TYPE_CHECKING:
    from suricate.modules.mod_roster.store import RosterItem

#: The child elements of an item (§2.1) and their bits.
KINDS = {"message": MESSAGE, "iq": IQ, "presence-in": PRESENCE_IN, "presence-out": PRESENCE_OUT}
TYPES = ("jid", "group", "subscription")
SUBSCRIPTIONS = ("both", "to", "from", "none")
#: §2.1: 'order' is an xs:unsignedInt.
MAX_ORDER = 2**32 - 1
#: A list name is a key column (376 characters on MySQL); longer is refused up front.
MAX_NAME = 255


@dataclass(frozen=True, slots=True)
class Rule:
    """One item, ready to match: ``jid`` is the parsed value of a "jid" item."""

    kinds: int  # 0: every stanza (§2.13)
    type: str | None
    value: str | None
    jid: JID | None
    deny: bool


@dataclass(frozen=True, slots=True)
class PrivacyList:
    name: str
    rules: tuple[Rule, ...]  # ascending 'order' (§2.2 rule 5)
    needs_roster: bool  # a group or subscription item: the contact's roster item counts

    @classmethod
    def build(cls, name: str, items: list[PrivacyItem]) -> PrivacyList:
        rules = []
        for item in sorted(items, key=lambda i: i.order):
            jid = None
            if item.type == "jid" and item.value is not None:
                try:
                    jid = JID.parse(item.value)
                except InvalidJID:
                    continue  # checked when stored; a stored oddity matches nothing
            rules.append(Rule(item.stanzas, item.type, item.value, jid, item.action == "deny"))
        return cls(name, tuple(rules),
                   any(r.type in ("group", "subscription") for r in rules))

    def denies(self, kind: int, contact: JID, item: RosterItem | None) -> bool:
        """§2.2 rules 5-7: the first item (by order) that applies to this kind of stanza and
        matches ``contact`` decides; no match allows. ``kind`` 0 (a stanza no child element
        names: subscriptions, probes, outbound messages and IQs) is matched only by items
        without child elements, which apply to every stanza (§2.13)."""
        for rule in self.rules:
            if rule.kinds and not rule.kinds & kind:
                continue
            if _matches(rule, contact, item):
                return rule.deny
        return False


def _matches(rule: Rule, contact: JID, item: RosterItem | None) -> bool:
    if rule.type is None:
        return True  # the fall-through item
    if rule.type == "jid":
        return rule.jid is not None and jid_matches(rule.jid, contact)
    if rule.type == "group":
        return item is not None and rule.value in item.groups
    # "none" includes entities that are not in the roster at all (§2.1).
    subscription = item.subscription if item is not None else "none"
    return subscription == rule.value


def jid_matches(value: JID, contact: JID) -> bool:
    """§2.1, the four forms of a "jid" item: user@domain/resource (that resource only),
    user@domain (any resource), domain/resource (that resource only), domain (the domain,
    every address at it, and its subdomains)."""
    if value.local is not None:
        if value.local != contact.local or value.domain != contact.domain:
            return False
        return value.resource is None or value.resource == contact.resource
    if value.resource is not None:
        return contact.local is None and value.domain == contact.domain \
            and value.resource == contact.resource
    return contact.domain == value.domain or contact.domain.endswith("." + value.domain)


def inbound_kind(stanza: Element) -> int:
    """The kind of an inbound stanza: presence-in covers notifications only (no 'type' or
    'unavailable', §2.10); subscriptions and probes are matched by whole-stanza items only."""
    name = stanza.name
    if name == "message":
        return MESSAGE
    if name == "iq":
        return IQ
    return PRESENCE_IN if stanza.attrs.get("type") in (None, "unavailable") else 0


def outbound_kind(stanza: Element) -> int:
    """The kind of an outbound stanza: only presence notifications have one (§2.11); an
    outbound message or IQ is stopped by whole-stanza items only (§2.13)."""
    if stanza.name == "presence" and stanza.attrs.get("type") in (None, "unavailable"):
        return PRESENCE_OUT
    return 0


def parse_items(lst: Element) -> list[PrivacyItem]:
    """The items of a client's ``<list/>`` (§2.1), or ``bad-request`` naming the fault:
    action and order required, orders unique, known types and child elements, a valid JID
    for "jid" items and one of both/to/from/none for "subscription" items."""
    items: list[PrivacyItem] = []
    orders: set[int] = set()
    for child in lst.elements():
        if child.name != "item" or child.xmlns != ns.PRIVACY:
            raise StanzaError("bad-request", f"unexpected <{child.name}/> in a list")
        action = child.attrs.get("action")
        if action not in ("allow", "deny"):
            raise StanzaError("bad-request", "an item's action is allow or deny")
        raw_order = child.attrs.get("order", "")
        if not raw_order.isdigit() or int(raw_order) > MAX_ORDER:
            raise StanzaError("bad-request", "an item's order is a non-negative integer")
        order = int(raw_order)
        if order in orders:
            raise StanzaError("bad-request", f"order {order} is used twice")
        orders.add(order)
        type_ = child.attrs.get("type")
        value = child.attrs.get("value")
        if type_ is not None:
            if type_ not in TYPES:
                raise StanzaError("bad-request", f"unknown item type {type_!r}")
            if value is None:
                raise StanzaError("bad-request", f"a {type_} item needs a value")
            if type_ == "jid":
                try:
                    value = str(JID.parse(value))
                except InvalidJID:
                    raise StanzaError("bad-request", f"not a JID: {value!r}") from None
            elif type_ == "subscription" and value not in SUBSCRIPTIONS:
                raise StanzaError("bad-request", f"unknown subscription {value!r}")
        else:
            value = None  # the fall-through item has no value
        stanzas = 0
        for kind in child.elements():
            bit = KINDS.get(kind.name)
            if bit is None or kind.xmlns != ns.PRIVACY:
                raise StanzaError("bad-request", f"unexpected <{kind.name}/> in an item")
            stanzas |= bit
        items.append(PrivacyItem(order, action, type_, value, stanzas))
    return items


def list_element(name: str, items: list[PrivacyItem]) -> Element:
    """``<list name=...>`` with its items as §2.3 shows them."""
    lst = Element("list", ns.PRIVACY, {"name": name})
    for item in items:
        attrs = {}
        if item.type is not None:
            attrs["type"] = item.type
            attrs["value"] = item.value or ""
        attrs["action"] = item.action
        attrs["order"] = str(item.order)
        el = lst.add("item", attrs=attrs)
        for kind, bit in KINDS.items():
            if item.stanzas & bit:
                el.add(kind)
    return lst
