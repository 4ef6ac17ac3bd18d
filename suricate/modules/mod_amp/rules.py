"""XEP-0079 rules as data, without a server: reading an ``<amp/>`` request and validating it
(§2.2.1, §4), finding the rule that what the server will do with the message meets (§2.2.2,
§2.2.3, §3.3), and the messages the sender gets back (§2.2.5, §3.4, §6).

The part implemented is MongooseIM 6.4's: the ``deliver`` and ``match-resource`` conditions,
the ``notify``, ``error`` and ``drop`` actions. ``expire-at`` and ``alert`` are refused as
unsupported (§6.2.2, §6.2.1), as 6.4 refuses them.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from suricate.jid import JID
from suricate.xml import ns
from suricate.xml.element import Element

NS = "http://jabber.org/protocol/amp"
NS_ERRORS = "http://jabber.org/protocol/amp#errors"
NS_FEATURE = "http://jabber.org/features/amp"  # §8 (MongooseIM writes "feature", singular)

#: The conditions understood and the values each accepts (§3.3.1, §3.3.3). ``forward`` and
#: ``gateway`` are valid values of ``deliver`` that are never met here: this server neither
#: forwards messages to other addresses nor hands them to gateways.
CONDITIONS: dict[str, frozenset[str]] = {
    "deliver": frozenset({"direct", "forward", "gateway", "none", "stored"}),
    "match-resource": frozenset({"any", "exact", "other"}),
}
#: §3.4.2-§3.4.4; ``alert`` (§3.4.1) is not supported, as in MongooseIM 6.4.
ACTIONS = frozenset({"drop", "error", "notify"})

#: What the ``http://jabber.org/protocol/amp`` disco node lists (§2.1.1, Example 4).
NODE_FEATURES = (NS, *(f"{NS}?action={a}" for a in sorted(ACTIONS)),
                 *(f"{NS}?condition={c}" for c in sorted(CONDITIONS)))

# §6.1: the general condition, its legacy code (the XEP's examples carry one, XEP-0086) and the
# element in the amp namespace that lists the rules at issue.
_REFUSALS = {
    "unsupported-conditions": ("bad-request", "400"),
    "unsupported-actions": ("bad-request", "400"),
    "invalid-rules": ("not-acceptable", "405"),
}


@dataclass(frozen=True, slots=True)
class Rule:
    """One ``<rule/>`` as the sender wrote it (an attribute it left out is '')."""

    condition: str
    value: str
    action: str

    def element(self, xmlns: str = NS) -> Element:
        attrs = {k: v for k, v in (("action", self.action), ("condition", self.condition),
                                   ("value", self.value)) if v}
        return Element("rule", xmlns, attrs)


@dataclass(frozen=True, slots=True)
class Request:
    """A valid ruleset: the rules in the sender's order (§2.2.3) and its per-hop flag (§2.1.2)."""

    rules: tuple[Rule, ...]
    per_hop: bool


class Refused(Exception):
    """The ruleset is not valid, supported or acceptable (§2.2.1): ``kind`` is the element of
    §6.1 naming the problem (``unsupported-conditions``, ``unsupported-actions``,
    ``invalid-rules``), or None for a request that is not well formed at all (bad-request
    without rules: no id, a per-hop that is not a boolean)."""

    def __init__(self, kind: str | None, rules: tuple[Rule, ...] = (), text: str = "") -> None:
        super().__init__(text or kind or "bad-request")
        self.kind = kind
        self.rules = rules
        self.text = text


def request_of(stanza: Element) -> Element | None:
    """The ``<amp/>`` of a message asking for processing, else None. One child lookup for a
    message without one. Not a request: an ``<amp/>`` with a ``status`` (§4.1: only the
    server's replies carry one), an error (never answered, RFC 6120 §8.3.1; our refusals
    carry the rules back), a groupchat message (the room's copies to its occupants are not
    the sender's message to a recipient)."""
    amp = stanza.find("amp", NS)
    if amp is None or "status" in amp.attrs:
        return None
    if stanza.attrs.get("type") in ("error", "groupchat"):
        return None
    return amp


def parse(stanza: Element, amp: Element) -> Request:
    """The valid ruleset of ``amp`` or ``Refused``. Every rule is checked before answering
    (§2.2.1 SHOULD); the first rule at fault chooses the error, which lists every rule at
    fault in the same way (MongooseIM answers about the first one only)."""
    if not stanza.attrs.get("id"):
        # §1.3: replies must carry the message's id, so a request without one is malformed.
        raise Refused(None, text="XEP-0079 processing needs a message id")
    per_hop = amp.attrs.get("per-hop", "false")
    if per_hop not in ("true", "false", "1", "0"):  # §4.1, an xs:boolean
        raise Refused(None, text="per-hop must be true or false")
    rules: list[Rule] = []
    faults: list[tuple[str, Rule]] = []
    for el in amp.find_all("rule", NS):
        rule = Rule(el.attrs.get("condition", ""), el.attrs.get("value", ""),
                    el.attrs.get("action", ""))
        fault = _fault(rule)
        if fault is None:
            rules.append(rule)
        else:
            faults.append((fault, rule))
    if faults:
        kind = faults[0][0]
        raise Refused(kind, tuple(r for k, r in faults if k == kind))
    return Request(tuple(rules), per_hop in ("true", "1"))


def _fault(rule: Rule) -> str | None:
    # §4.2: all three attributes are required, the value never empty.
    if not (rule.condition and rule.action and rule.value):
        return "invalid-rules"
    values = CONDITIONS.get(rule.condition)
    if values is None:
        return "unsupported-conditions"  # expire-at (§3.3.2) or one nobody registered
    if rule.action not in ACTIONS:
        return "unsupported-actions"  # alert (§3.4.1) or one nobody registered
    if rule.value not in values:
        return "invalid-rules"  # §2.2.1: "the condition contents are appropriate"
    return None


# -- which rule is met (§2.2.3) -------------------------------------------------------------------
def met(request: Request, deliver: str, resource: Collection[str]) -> Rule | None:
    """The first rule, in the sender's order, that the delivery meets: ``deliver`` is what
    the server does with the message (direct, stored or none, §3.3.1), ``resource`` the
    ``match-resource`` values it meets (``matched_direct``, ``matched_stored``). Processing
    stops at that rule (§1.2). With per-hop, match-resource rules are ignored (§3.3.3)."""
    for rule in request.rules:
        if rule.condition == "deliver":
            if rule.value == deliver:
                return rule
        elif not request.per_hop and rule.value in resource:
            return rule
    return None


def matched_direct(intended: JID, resources: Collection[str | None]) -> frozenset[str]:
    """§3.3.3 for a message delivered now to sessions with these resources: ``exact`` when
    the intended full JID is one of them, ``other`` when it goes to other resources (to a
    bare JID: to resources at all), ``any`` whenever it reaches a resource."""
    if intended.resource is not None and intended.resource in resources:
        return _EXACT_ANY
    return _OTHER_ANY


def matched_stored(intended: JID) -> frozenset[str]:
    """§3.3.3 for a message stored offline, a destination without resource: ``exact`` for a
    bare intended JID; nothing for a full one (no available resource matches anything, the
    registry's wording of the condition)."""
    return _EXACT if intended.resource is None else _NOTHING


_EXACT_ANY = frozenset({"exact", "any"})
_OTHER_ANY = frozenset({"other", "any"})
_EXACT = frozenset({"exact"})
_NOTHING: frozenset[str] = frozenset()


# -- what the sender gets back ----------------------------------------------------------------------
def _reply(server: str, sender: str, msg_id: str | None, error: bool) -> Element:
    attrs = {"from": server, "to": sender}
    if msg_id:
        attrs["id"] = msg_id  # §1.3: the sender relates the reply to its message by its id
    if error:
        attrs["type"] = "error"
    return Element("message", ns.CLIENT, attrs)


def _event_amp(status: str, rule: Rule, sender: str, recipient: str) -> Element:
    # §4.1: status is the action taken; from and to are the original sender and recipient.
    amp = Element("amp", NS, {"status": status, "from": sender, "to": recipient})
    amp.append(rule.element())
    return amp


def notification(rule: Rule, server: str, sender: str, recipient: str,
                 msg_id: str | None) -> Element:
    """§3.4.4: the sender is told which rule was met; the message goes on. Without the
    message's contents (§2.2.5 SHOULD NOT)."""
    reply = _reply(server, sender, msg_id, error=False)
    reply.append(_event_amp("notify", rule, sender, recipient))
    return reply


def failure(rule: Rule, server: str, sender: str, recipient: str,
            msg_id: str | None) -> Element:
    """§3.4.3 (and §6.2.5): the message is not delivered; a modify/undefined-condition error
    with ``<failed-rules/>`` holding the rule that was met."""
    reply = _reply(server, sender, msg_id, error=True)
    reply.append(_event_amp("error", rule, sender, recipient))
    error = reply.add("error", ns.CLIENT, {"type": "modify", "code": "500"})
    error.add("undefined-condition", ns.STANZAS_ERRORS)
    error.add("failed-rules", NS_ERRORS).append(rule.element(NS_ERRORS))
    return reply


def refusal(refused: Refused, amp: Element, server: str, sender: str,
            msg_id: str | None) -> Element:
    """§6.2.1-§6.2.3: the ruleset is refused, the message goes nowhere. The reply carries the
    rules as sent and, in the error, those at issue."""
    reply = _reply(server, sender, msg_id, error=True)
    echo = reply.add("amp", NS)
    for el in amp.find_all("rule", NS):
        echo.append(Element("rule", NS, dict(el.attrs)))
    if refused.kind is None:
        error = reply.add("error", ns.CLIENT, {"type": "modify", "code": "400"})
        error.add("bad-request", ns.STANZAS_ERRORS)
        error.add("text", ns.STANZAS_ERRORS, {"xml:lang": "en"}, refused.text)
        return reply
    condition, code = _REFUSALS[refused.kind]
    error = reply.add("error", ns.CLIENT, {"type": "modify", "code": code})
    error.add(condition, ns.STANZAS_ERRORS)
    listed = error.add(refused.kind, NS)
    for rule in refused.rules:
        listed.append(rule.element())
    return reply
