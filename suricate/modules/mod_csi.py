"""mod_csi: XEP-0352 Client State Indication.

While a client says it is <inactive/> (a phone in a pocket), stanzas that need no immediate
attention (presence, messages without a body: chat states, receipts, and carbons of those)
wait in a queue of at most ``buffer_max``; the queue is flushed, in order, when the client
becomes <active/>, when something urgent (a message with a body or subject, a call ringing,
an invitation, an OMEMO message, a carbon of one, an IQ) arrives, or when it is full. A
session that ends with a queue hands its stanzas back to the router: nothing is lost. A
resumed stream (XEP-0198) is active again, as every new stream is (XEP-0352 §4.2).

Presence is state: a newer availability presence from a full JID replaces the one held for it
(ejabberd's ``queue_presence`` does the same), so a contact changing status ten times while the
phone sleeps costs one stanza. MUC presence and subscription requests are kept as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from suricate.config.spec import IntOrInfinity, Option, Section
from suricate.core import hooks as H
from suricate.core.module import Module
from suricate.instrument.events import SPIRAL, EventSpec, declare
from suricate.modules.mod_stream_management.state import pack, unpack
from suricate.protocol.c2s import C2SState as S
from suricate.xml import ns
from suricate.xml.element import Element

if TYPE_CHECKING:
    from suricate.core.c2s import C2S

MUC_USER = "http://jabber.org/protocol/muc#user"

# 6.4's mod_csi events: a client said it is <active/> or <inactive/> (a nonza, not a stanza:
# counted off the message path).
MOD_CSI_ACTIVE = declare("mod_csi_active", ("host_type",), {"count": SPIRAL},
                         "XEP-0352: clients that became active")
MOD_CSI_INACTIVE = declare("mod_csi_inactive", ("host_type",), {"count": SPIRAL},
                           "XEP-0352: clients that became inactive")


@dataclass(slots=True)
class CsiState:
    inactive: bool = False
    queue: list[Element] = field(default_factory=list)


class ModCsi(Module):
    name = "mod_csi"
    options = Section(
        {
            # 6.4: int_or_infinity, non_negative. 0 holds nothing (CSI is then only
            # advertised and tracked); "infinity" flushes only on urgent traffic or <active/>.
            "buffer_max": Option(
                IntOrInfinity(min=0), 20,
                "Stanzas held while the client is inactive before a flush (0: none are "
                'held; "infinity": no limit).',
            )
        },
        doc="XEP-0352 Client State Indication.",
    )
    xeps = ("0352",)
    hooks = (
        (H.C2S_STREAM_FEATURES, "stream_features", 60),
        (H.C2S_STREAM_ELEMENT, "stream_element", 60),
        (H.BIND2_INLINE_FEATURES, "bind2_inline", 70),
        (H.BIND2_BIND, "bind2_state", 70),
        # late: after privacy and carbons decided what the session gets at all
        (H.USER_RECEIVE_PACKET, "filter", 90),
        (H.SESSION_CLOSED, "session_closed", 40),
        # after mod_stream_management (50) decided whether the session waits for resumption
        (H.SESSION_SUSPEND, "suspend", 60),
        # after mod_stream_management (50) sent again what was not acknowledged
        (H.SESSION_RESUMPTION_ANSWERED, "resumed", 60),
        (H.SESSION_HANDOVER, "handover", 50),
    )

    def __init__(self, server: Any, opts: Any) -> None:
        super().__init__(server, opts)
        #: None: "infinity".
        self.buffer_max: int | None = opts.get("buffer_max", 20)

    def _state(self, c2s: C2S) -> CsiState:
        state = c2s.module_state.get(self.name)
        if state is None:
            state = c2s.module_state[self.name] = CsiState()
        return state  # type: ignore[no-any-return]

    def stream_features(self, acc: list[Element], c2s: C2S) -> list[Element]:
        return [*acc, Element("csi", ns.CSI)]  # XEP-0352 §4

    def bind2_inline(self, acc: list[str], c2s: C2S) -> list[str]:
        return [*acc, ns.CSI]

    async def bind2_state(self, acc: list[Element], c2s: C2S, bind: Element) -> list[Element]:
        if bind.find("inactive", ns.CSI) is not None:
            self._state(c2s).inactive = True  # XEP-0386 §2.2: bound inactive
            self._count(MOD_CSI_INACTIVE, c2s)
        return acc

    def _count(self, event: EventSpec, c2s: C2S) -> None:
        self.server.instrument.emit(event, {"host_type": c2s.domain or ""}, {"count": 1})

    def stream_element(self, handled: bool, c2s: C2S, el: Element) -> bool:
        if handled or el.xmlns != ns.CSI or c2s.state != S.SESSION_ESTABLISHED:
            return handled
        if el.name == "inactive":
            self._state(c2s).inactive = True
            self._count(MOD_CSI_INACTIVE, c2s)
            return True
        if el.name == "active":
            state = self._state(c2s)
            state.inactive = False
            self._flush(c2s, state)
            self._count(MOD_CSI_ACTIVE, c2s)
            return True
        return False

    def filter(self, stanza: Element | None, c2s: C2S) -> Element | None:
        state = c2s.module_state.get(self.name)
        if stanza is None or state is None or not state.inactive \
                or c2s.state != S.SESSION_ESTABLISHED:
            return stanza
        if urgent(stanza):
            self._flush(c2s, state)  # in order: what waited goes first
            return stanza
        if collapsible(stanza):
            _drop_superseded(state.queue, stanza.attrs.get("from"))
        if self.buffer_max is not None and len(state.queue) >= self.buffer_max:
            self._flush(c2s, state)
            return stanza
        state.queue.append(stanza)
        return None

    def _flush(self, c2s: C2S, state: CsiState) -> None:
        queue, state.queue = state.queue, []
        for stanza in queue:
            c2s.send(stanza)

    def handover(self, state: dict[str, Any], c2s: C2S, moved_in: bool) -> dict[str, Any]:
        """The session moves to another node (XEP-0198 §5 resumed there): the client's
        <inactive/> and the stanzas held back for it go along (XEP-0352 §6: nothing held
        back is lost)."""
        if moved_in:
            mine = state.get(self.name)
            if mine:
                csi = self._state(c2s)
                csi.inactive = bool(mine["inactive"])
                csi.queue = [unpack(s) for s in mine["queue"]]
            return state
        held: CsiState | None = c2s.module_state.get(self.name)
        if held is not None:
            state[self.name] = {"inactive": held.inactive,
                                "queue": [pack(s) for s in held.queue]}
            held.queue = []
        return state

    def suspend(self, kept: bool, c2s: C2S) -> bool:
        """The connection is gone and the session waits for resumption (XEP-0198 §5).

        XEP-0352: a stream begins in the active state, and a resumed one is a new stream (the
        CSI state is not restored on resumption). What was held goes to the resumption buffer
        now, ahead of whatever arrives while the session waits: a contact's older presence
        must not be flushed after their newer one."""
        state = c2s.module_state.get(self.name)
        if kept and state is not None:
            state.inactive = False
            self._flush(c2s, state)
        return kept

    def resumed(self, acc: Any, c2s: C2S) -> Any:
        """The client was told its session resumed. When it came back before its old
        connection was noticed dead, that stream never suspended: it may still be inactive with
        stanzas held. The new stream is active (XEP-0352); what was held follows what is sent
        again: every stanza written after something was held flushed it first, so whatever is
        still held arrived after everything the old stream wrote."""
        state = c2s.module_state.get(self.name)
        if state is not None:
            state.inactive = False
            self._flush(c2s, state)
        return acc

    def session_closed(self, acc: Any, c2s: C2S, reason: str) -> Any:
        state = c2s.module_state.get(self.name)
        if state is not None and state.queue:
            queue, state.queue = state.queue, []
            for stanza in queue:
                self.server.undeliverable(stanza, c2s)
        return acc


def collapsible(stanza: Element) -> bool:
    """An availability presence (RFC 6121 §4.7.1: no type, or "unavailable") that a later
    one from the same full JID makes obsolete. Not MUC presence: its status codes (XEP-0045
    §7.2.3's self-presence ending a join, §7.6 nick changes, §8.2 kicks) are events, not
    just state. Subscription requests and errors are events too."""
    return stanza.name == "presence" and stanza.attrs.get("type") in (None, "unavailable") \
        and stanza.find("x", MUC_USER) is None


def _drop_superseded(queue: list[Element], frm: str | None) -> None:
    """Remove the held availability presence from ``frm`` (at most one is ever held)."""
    for i, held in enumerate(queue):
        if held.name == "presence" and held.attrs.get("from") == frm and collapsible(held):
            del queue[i]
            return


# Messages without a body that a person is waiting on (XEP-0352 §5 leaves the choice to the
# server): a call ringing (XEP-0353 Jingle Message Initiation: propose, retract, proceed...),
# an invitation to a room (XEP-0249 direct, XEP-0045 §7.8.2 mediated), an end-to-end
# encrypted message whose client sends no fallback body (OMEMO, XEP-0384, old and new).
JINGLE_MESSAGE_PREFIX = "urn:xmpp:jingle-message:"
CONFERENCE = "jabber:x:conference"
ENCRYPTED = frozenset({"eu.siacs.conversations.axolotl", "urn:xmpp:omemo:2"})


def urgent(stanza: Element) -> bool:
    if stanza.name == "iq":
        return True  # someone waits for an answer
    if stanza.name == "message":
        if stanza.find("body") is not None or stanza.find("subject") is not None:
            return True
        for child in stanza.elements():
            xmlns = child.xmlns or ""
            if xmlns.startswith(JINGLE_MESSAGE_PREFIX) or xmlns == CONFERENCE \
                    or (xmlns == MUC_USER and child.find("invite", MUC_USER) is not None) \
                    or (xmlns in ENCRYPTED and child.name == "encrypted"
                        and child.find("payload", xmlns) is not None):
                return True
        # XEP-0280 §6: a carbon of a message sent or received by another resource is that
        # conversation going on; it is as urgent as the message it forwards.
        for kind in ("received", "sent"):
            carbon = stanza.find(kind, ns.CARBONS)
            if carbon is not None:
                forwarded = carbon.find("forwarded", ns.FORWARD)
                inner = forwarded.find("message") if forwarded is not None else None
                return inner is not None and urgent(inner)
    return False
