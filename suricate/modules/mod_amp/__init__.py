"""mod_amp: XEP-0079 Advanced Message Processing, the part MongooseIM 6.4 implements.

A message may carry ``<amp xmlns='http://jabber.org/protocol/amp'>`` rules: "if it would be
delivered like this, do that". Conditions: ``deliver`` (direct, stored, none; forward and
gateway never happen here) and ``match-resource`` (any, exact, other). Actions: ``notify``
(tell the sender, deliver anyway), ``error`` (do not deliver, bounce with ``<failed-rules/>``),
``drop`` (do not deliver, say nothing). ``expire-at`` and ``alert`` are refused as unsupported.
The rules themselves are data in ``rules.py``; this module finds where the server decides
what happens to a message and asks them there (docs/amp.md):

- ``user_send_packet``: a local client's ruleset is validated before anything else (§2.2.1);
  a refused one goes nowhere. A message leaving for another server (or a component) keeps its
  rules for the recipient's server, which knows how it delivers; with ``per-hop='true'`` this
  hop's outcome, "routed to the next hop", is ``direct`` (§3.3.1).
- ``filter_local_packet``: a local account's sessions are about to get the message:
  ``direct``, and ``match-resource`` is decided on the very resources.
- ``offline_message``: no session takes it: ``stored`` when mod_offline would keep it,
  ``none`` otherwise (quota full, no mod_offline). Before mod_mam (40) and mod_offline (50),
  so a message refused by an ``error`` or ``drop`` rule is neither archived nor stored.

Decisions are made at receipt, on what the server would do (§3.3.1), and the rules are
taken off the message where they were decided: the recipient never sees them and a message
routed again later (a session closing) is not decided twice. Nothing is registered unless
the module is enabled; when it is, a message without ``<amp/>`` costs one child lookup per
hook.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from suricate.config.spec import Section
from suricate.core import hooks as H
from suricate.core.hooks import Stop
from suricate.core.module import Module
from suricate.jid import JID, InvalidJID
from suricate.modules.mod_amp.rules import (
    NODE_FEATURES,
    NS,
    NS_FEATURE,
    Refused,
    Rule,
    failure,
    matched_direct,
    matched_stored,
    met,
    notification,
    parse,
    refusal,
    request_of,
)
from suricate.modules.mod_blocking import blocklist, is_blocked
from suricate.modules.mod_offline import offline_module
from suricate.xml import ns
from suricate.xml.element import Element

if TYPE_CHECKING:
    from suricate.core.c2s import C2S

log = logging.getLogger("suricate.mod_amp")

_NOTHING: frozenset[str] = frozenset()


class ModAmp(Module):
    name = "mod_amp"
    options = Section(
        {},
        doc="XEP-0079 Advanced Message Processing as far as MongooseIM 6.4 goes: conditions "
            "deliver and match-resource, actions notify, error and drop (docs/amp.md).",
    )
    xeps = ("0079",)
    hooks = (
        # After mod_blocking (40) and mod_privacy (41) refused what they refuse, before
        # mod_mam (75) archives what the client sent.
        (H.USER_SEND_PACKET, "sent", 45),
        # Before mod_mam (50) and mod_inbox (60): a message an error or drop rule stops is
        # not archived for the recipient.
        (H.FILTER_LOCAL_PACKET, "delivering", 40),
        (H.OFFLINE_MESSAGE, "offline", 30),
        (H.DISCO_NODE_INFO, "node_info", 50),
        (H.C2S_STREAM_FEATURES, "stream_features", 50),
    )
    # §2.1.1: the server's disco#info lists the protocol; the node lists the details.
    features = (NS,)

    # -- a local client sends ---------------------------------------------------------------
    def sent(self, stanza: Element | None, c2s: C2S) -> Element | None:
        if stanza is None or stanza.name != "message":
            return stanza
        amp = request_of(stanza)
        if amp is None:
            return stanza
        server = c2s.jid.domain
        try:
            request = parse(stanza, amp)
        except Refused as refused:
            self._refuse(stanza, amp, refused, server)
            return None
        to_attr = stanza.attrs.get("to")
        try:
            to = JID.parse(to_attr) if to_attr else None
        except (InvalidJID, ValueError):
            return stanza  # the c2s answers jid-malformed
        if to is None or self.server.is_local_domain(to.domain):
            return stanza  # decided where the router delivers it (filter/offline below)
        if not request.per_hop:
            # §2.1.2: by default rules apply at the edge servers; the recipient's server is
            # the one that knows whether it delivers, stores or drops the message.
            return stanza
        # §2.1.2, §3.3.1: per hop, this server's part is to route the message on: "direct".
        # match-resource never applies per hop (§3.3.3).
        rule = met(request, "direct", _NOTHING)
        if rule is None:
            return stanza
        return self._act(rule, stanza, server, to_attr or "")

    # -- a local account's sessions are about to get it ----------------------------------------
    def delivering(self, stanza: Element | None, frm: JID, to: JID,
                   sessions: list[Any]) -> Element | None:
        if stanza is None:
            return None
        amp = request_of(stanza)
        if amp is None:
            return stanza
        try:
            request = parse(stanza, amp)
        except Refused as refused:
            self._refuse(stanza, amp, refused, to.domain)
            return None
        stanza.children.remove(amp)
        if any(is_blocked(blocklist(s), frm) for s in sessions):
            # XEP-0191 §3.3: the recipient's sessions drop it unseen on delivery; no AMP reply
            # may tell the blocked sender anything (XEP-0079 §9).
            return stanza
        intended = _intended(stanza, to)
        resource = matched_direct(intended, [s.jid.resource for s in sessions])
        rule = met(request, "direct", resource)
        if rule is None:
            return stanza
        return self._act(rule, stanza, to.domain, str(intended))

    # -- no session takes it --------------------------------------------------------------------
    async def offline(self, stored: bool, frm: JID, to: JID, stanza: Element) -> Any:
        # The router only gets here for an existing account that does not block the sender
        # (privacy_check_inbound ran before).
        if stored:
            return stored
        amp = request_of(stanza)
        if amp is None:
            return stored
        try:
            request = parse(stanza, amp)
        except Refused as refused:
            self._refuse(stanza, amp, refused, to.domain)
            return Stop(True)  # answered: no service-unavailable on top
        stanza.children.remove(amp)
        intended = _intended(stanza, to)
        offline = offline_module(self.server, to.domain)
        # §3.3.1: "stored" when offline storage would keep it now, "none" otherwise (then the
        # router answers service-unavailable, or mod_offline_stub drops it: not delivered).
        if offline is not None and await offline.would_store(to, stanza):
            rule = met(request, "stored", matched_stored(intended))
        else:
            rule = met(request, "none", _NOTHING)
        if rule is None:
            return stored
        if self._act(rule, stanza, to.domain, str(intended)) is None:
            # error or drop: the message is neither stored nor archived, and the router adds
            # nothing (§3.4.2: a drop MUST NOT result in other responses).
            return Stop(True)
        return stored

    # -- actions --------------------------------------------------------------------------------
    def _act(self, rule: Rule, stanza: Element, server: str, recipient: str) -> Element | None:
        """Carry out ``rule``'s action; the stanza to go on with, or None when it stops here.
        Events go to the sender from the server that decided (§2.2.5)."""
        sender = stanza.attrs.get("from", "")
        if rule.action == "notify":
            # §3.4.4: the notification first, then the default behaviour.
            self._send(notification(rule, server, sender, recipient, stanza.attrs.get("id")))
            return stanza
        if rule.action == "error":
            self._send(failure(rule, server, sender, recipient, stanza.attrs.get("id")))
        log.debug("amp_stopped action=%s condition=%s value=%s from=%s to=%s", rule.action,
                  rule.condition, rule.value, sender, recipient)
        return None  # error and drop (§3.4.2): not delivered, not stored

    def _refuse(self, stanza: Element, amp: Element, refused: Refused, server: str) -> None:
        # §2.2.1: the server MUST reply with an error naming the rules at issue.
        sender = stanza.attrs.get("from")
        if sender:
            self._send(refusal(refused, amp, server, sender, stanza.attrs.get("id")))

    def _send(self, reply: Element) -> None:
        try:
            frm, to = JID.parse(reply.attrs["from"]), JID.parse(reply.attrs["to"])
        except (InvalidJID, ValueError):
            return
        self.server.router.route(frm, to, reply)

    # -- discovery ------------------------------------------------------------------------------
    def node_info(self, acc: list[Element] | None, frm: JID, to: JID,
                  node: str) -> list[Element] | None:
        """§2.1.1: the node ``http://jabber.org/protocol/amp`` of the server lists each
        supported action and condition."""
        if node != NS or to.local is not None or not self.server.is_local_domain(to.domain):
            return acc
        info = [Element("identity", ns.DISCO_INFO, {"category": "server", "type": "im",
                                                    "name": "Advanced Message Processing"})]
        info.extend(Element("feature", ns.DISCO_INFO, {"var": var}) for var in NODE_FEATURES)
        return info

    def stream_features(self, features: list[Element], c2s: C2S) -> list[Element]:
        # §8: support announced in the stream features too (MAY).
        return [*features, Element("amp", NS_FEATURE)]


def _intended(stanza: Element, to: JID) -> JID:
    """The recipient the sender wrote: the router may be delivering to the bare JID of a full
    JID without session (RFC 6121 §8.5.3.2.1), the message still says which resource."""
    written = stanza.attrs.get("to")
    if written:
        try:
            return JID.parse(written)
        except (InvalidJID, ValueError):
            pass
    return to

