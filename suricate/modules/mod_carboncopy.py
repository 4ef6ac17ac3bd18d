"""mod_carboncopy: XEP-0280 Message Carbons.

A session that enabled carbons gets a copy of the chat messages its account sends from other
resources (<sent/>) and receives on other resources (<received/>), each wrapped in an
XEP-0297 <forwarded/> from the account's bare JID. Enabling is per session, by IQ or inline
in Bind 2 (XEP-0386 §2.3).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from suricate.config.modules_spec import iqdisc
from suricate.config.spec import Section
from suricate.core import hooks as H
from suricate.core.iq import IqRequest
from suricate.core.module import Module
from suricate.jid import JID
from suricate.protocol.errors import StanzaError
from suricate.protocol.stanza import message_type
from suricate.xml import ns
from suricate.xml.element import Element

if TYPE_CHECKING:
    from suricate.core.c2s import C2S


# server.cluster topic: copies for the account's sessions on other nodes
CAST_TOPIC = "mod_carboncopy"
# XEP-0045 §7.5: a room marks the private messages it relays (and its invitations) with it.
MUC_USER = "http://jabber.org/protocol/muc#user"


class ModCarboncopy(Module):
    name = "mod_carboncopy"
    options = Section({"iqdisc": iqdisc("no_queue")}, doc="XEP-0280 Message Carbons.")
    xeps = ("0280",)
    iq_handlers = (("sm", ns.CARBONS, "iq_enable"),)
    features = (ns.CARBONS,)
    hooks = (
        (H.USER_SEND_PACKET, "sent", 80),
        (H.USER_RECEIVE_PACKET, "received", 60),
        (H.BIND2_INLINE_FEATURES, "bind2_inline", 60),
        (H.BIND2_BIND, "bind2_enable", 60),
    )

    def enabled(self, session: Any) -> bool:
        return bool(getattr(session, "module_state", {}).get(self.name))

    # -- enabling (§4) -------------------------------------------------------------------------
    def iq_enable(self, iq: IqRequest) -> None:
        if iq.type != "set" or iq.payload.name not in ("enable", "disable"):
            raise StanzaError("bad-request")
        if iq.to != iq.frm.bare:
            raise StanzaError("not-allowed", "carbons are enabled on one's own account")
        session: Any = self.server.sessions.lookup(iq.frm)
        if session is None:
            raise StanzaError("item-not-found")
        session.module_state[self.name] = iq.payload.name == "enable"
        return None

    def bind2_inline(self, acc: list[str], c2s: C2S) -> list[str]:
        return [*acc, ns.CARBONS]

    async def bind2_enable(self, acc: list[Element], c2s: C2S, bind: Element) -> list[Element]:
        if bind.find("enable", ns.CARBONS) is not None:
            c2s.module_state[self.name] = True
        return acc

    # -- copies (§6, §7) ------------------------------------------------------------------------
    def sent(self, stanza: Element | None, c2s: C2S) -> Element | None:
        if stanza is not None and eligible(stanza):
            self._copy(c2s.jid, stanza, "sent", exclude=c2s)
        return stanza

    def received(self, stanza: Element | None, c2s: C2S) -> Element | None:
        if stanza is None or not eligible(stanza):
            return stanza
        if stanza.find("x", MUC_USER) is not None:
            # XEP-0280 §6 (eligible messages): not one a room sent, private messages from
            # occupants included. A room delivers those to each session of the occupant
            # itself (XEP-0045 multi-session): a copy would be a duplicate.
            return stanza
        to = stanza.attrs.get("to", "")
        # Only a message to this full JID: one to the bare JID reaches every available
        # resource by itself (RFC 6121 §8.5.2.1.1), a copy would be a duplicate.
        if "/" in to:
            self._copy(c2s.jid, stanza, "received", exclude=c2s)
        return stanza

    # Carbons across nodes (sm_backend = "redis"): the account's resources on other nodes
    # get their copies from their own node, which knows which of them enabled carbons.
    async def start(self) -> None:
        self.server.cluster.on(CAST_TOPIC, self._copied_elsewhere)

    async def stop(self) -> None:
        self.server.cluster.off(CAST_TOPIC)

    def _copied_elsewhere(self, bare: JID, stanza: Element, args: tuple[str, ...]) -> None:
        self._copy_here(bare, stanza, args[0], exclude=None)

    def _copy(self, owner: JID, stanza: Element, direction: str, exclude: Any) -> None:
        self._copy_here(owner.bare, stanza, direction, exclude)
        self.server.cluster.cast(owner.bare, CAST_TOPIC, stanza, direction)

    def _copy_here(self, bare: JID, stanza: Element, direction: str, exclude: Any) -> None:
        # ``exclude``: the sending (or receiving) session, or the stand-in of a sessionless
        # sender (suricate.core.sessionless) whose full JID may name a session: as in 6.4,
        # that resource gets no copy of what was sent in its name.
        skip = getattr(exclude, "jid", None)
        for session in self.server.sessions.resources(bare):
            if session is exclude or session.jid == skip or not self.enabled(session):
                continue
            wrapper = Element("message", ns.CLIENT, {
                "from": str(bare), "to": str(session.jid),
                "type": stanza.attrs.get("type", "normal")})
            wrapper.add(direction, ns.CARBONS).add("forwarded", ns.FORWARD).append(stanza.copy())
            session.deliver(wrapper)


def eligible(stanza: Element) -> bool:
    """XEP-0280 §6: chat messages, and normal ones with a body; never one marked <private/>
    or <no-copy/> (XEP-0334), and never a carbon itself."""
    if stanza.name != "message":
        return False
    stype = message_type(stanza)  # RFC 6121 §5.2.2: a type not understood is "normal"
    if stype != "chat" and not (stype == "normal" and stanza.find("body") is not None):
        return False
    for child in stanza.elements():
        if child.xmlns == ns.CARBONS or (child.xmlns == ns.HINTS and child.name == "no-copy"):
            return False
    return True
