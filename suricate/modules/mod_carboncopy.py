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
from suricate.jid import JID, InvalidJID
from suricate.protocol.errors import StanzaError
from suricate.protocol.stanza import message_type
from suricate.xml import ns
from suricate.xml.element import Element

if TYPE_CHECKING:
    from suricate.core.c2s import C2S


# server.cluster topic: copies for the account's sessions on other nodes
CAST_TOPIC = "mod_carboncopy"
# Its second argument when only the available sessions get a copy (``received_by_none``).
AVAILABLE_ONLY = "available"
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
        # After mod_offline (50) has said whether it stored the message.
        (H.OFFLINE_MESSAGE, "received_by_none", 70),
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
        owner = c2s.jid.bare
        frm = _jid(stanza.attrs.get("from"))
        if frm is not None and frm.bare == owner:
            # Between two resources of the account: its other resources had the <sent/>
            # copy already, and the sender needs no copy of its own message.
            return stanza
        to = _jid(stanza.attrs.get("to"))
        if to is not None and to.resource is not None and to == c2s.jid:
            # XEP-0280 §7 (inbound): to this resource; the others get a copy.
            self._copy(c2s.jid, stanza, "received", exclude=c2s)
            return stanza
        # To the bare JID, or to a full JID without a session, which the router delivered
        # as to the bare JID (RFC 6121 §8.5.3.2.1): every available resource with a
        # non-negative priority got the message itself (§8.5.2.1.1), so only the others
        # ("that did not receive it", XEP-0280 §7) get a copy, sent once: when the first of
        # those resources receives it. (Resources on other nodes get theirs from their own
        # node's first receiver: nothing is cast.)
        receivers = [s for s in self.server.sessions.available(owner) if s.priority >= 0]
        if receivers and receivers[0] is c2s:
            self._copy_here(owner, stanza, "received", exclude=c2s, originals=receivers)
        return stanza

    async def received_by_none(self, stored: bool, frm: JID, to: JID, stanza: Element) -> bool:
        """A message to the account that no session received: to its bare JID while no
        resource is available with a non-negative priority (RFC 6121 §8.5.2.1.1), or to a
        full JID without a session. XEP-0280 §7 still gives a copy to each carbons-enabled
        resource "that did not receive it", and XEP-0353 §2 counts on it: a device with a
        negative priority rings for a call to the bare JID. Only available resources get
        one: a session that has not sent its initial presence yet gets the message from
        offline storage when it does, and a copy now would be a duplicate then."""
        if not eligible(stanza) or stanza.find("x", MUC_USER) is not None \
                or frm.bare == to.bare:
            return stored
        bare = to.bare
        copied = self._copy_here(bare, stanza, "received", exclude=None, originals=[],
                                 available_only=True)
        self.server.cluster.cast(bare, CAST_TOPIC, stanza, "received", AVAILABLE_ONLY)
        # A copy delivered is the message delivered: the sender hears no error when nothing
        # stored it (RFC 6121 §8.5.2.2.1 is for an account with no resource to take it).
        return stored or copied

    # Carbons across nodes (sm_backend = "redis"): the account's resources on other nodes
    # get their copies from their own node, which knows which of them enabled carbons.
    async def start(self) -> None:
        self.server.cluster.on(CAST_TOPIC, self._copied_elsewhere)

    async def stop(self) -> None:
        self.server.cluster.off(CAST_TOPIC)

    def _copied_elsewhere(self, bare: JID, stanza: Element, args: tuple[str, ...]) -> None:
        available_only = args[1:2] == (AVAILABLE_ONLY,)
        self._copy_here(bare, stanza, args[0], exclude=None,
                        originals=[] if available_only else None, available_only=available_only)

    def _copy(self, owner: JID, stanza: Element, direction: str, exclude: Any) -> None:
        self._copy_here(owner.bare, stanza, direction, exclude)
        self.server.cluster.cast(owner.bare, CAST_TOPIC, stanza, direction)

    def _originals(self, bare: JID, stanza: Element) -> list[Any]:
        """The account's sessions here that get ``stanza`` itself, when it is addressed to
        the account (RFC 6121 §8.5): the session of its full JID, or for the bare JID every
        available resource with a non-negative priority (§8.5.2.1.1). Empty for a message
        to someone else."""
        to = _jid(stanza.attrs.get("to"))
        if to is None or to.bare != bare:
            return []
        if to.resource is not None:
            session = self.server.sessions.lookup(to)
            return [] if session is None else [session]
        return [s for s in self.server.sessions.available(bare) if s.priority >= 0]

    def _copy_here(self, bare: JID, stanza: Element, direction: str, exclude: Any,
                   originals: list[Any] | None = None, available_only: bool = False) -> bool:
        """Copy ``stanza`` to the account's carbons-enabled sessions here; whether any got one."""
        # ``exclude``: the sending (or receiving) session, or the stand-in of a sessionless
        # sender (suricate.core.sessionless) whose full JID may name a session: as in 6.4,
        # that resource gets no copy of what was sent in its name.
        skip = getattr(exclude, "jid", None)
        copied = False
        for session in self.server.sessions.resources(bare):
            if session is exclude or session.jid == skip or not self.enabled(session) \
                    or (available_only and not session.available):
                continue
            if originals is None:  # asked once, and only when someone wants copies
                originals = self._originals(bare, stanza)
            if session in originals:
                # It gets the message itself, so no copy (XEP-0280 §7): a message to the
                # bare JID, or one the account sends itself ("note to self").
                continue
            wrapper = Element("message", ns.CLIENT, {
                "from": str(bare), "to": str(session.jid),
                "type": stanza.attrs.get("type", "normal")})
            wrapper.add(direction, ns.CARBONS).add("forwarded", ns.FORWARD).append(stanza.copy())
            session.deliver(wrapper)
            copied = True
        return copied


def _jid(value: str | None) -> JID | None:
    if not value:
        return None
    try:
        return JID.parse(value)
    except (InvalidJID, ValueError):
        return None


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
