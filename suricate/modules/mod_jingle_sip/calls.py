"""The calls the bridge keeps: one per Jingle sid, which is also the SIP Call-ID (as in
MongooseIM, a call keeps one identifier on both sides), with its SIP dialog state
(RFC 3261 §12: tags, remote target, route set, CSeq numbers).

MongooseIM 6.4 keeps them in Mnesia or CETS (``backend``); here they live in the memory of
the node whose SIP agent carries the call (docs/jingle_sip.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from suricate.jid import JID
    from suricate.modules.mod_jingle_sip.ua import ClientTransaction, ServerTransaction
    from suricate.xml.element import Element

Direction = Literal["out", "in"]  # out: an XMPP user calls SIP; in: SIP calls an XMPP user
State = Literal["calling", "early", "accepted", "ending"]


@dataclass(eq=False)
class Call:
    sid: str
    direction: Direction
    user: JID  # the XMPP party: the caller's full JID, or the callee's bare JID until accepted
    peer: JID  # the SIP party as the XMPP user sees it
    local_uri: str  # our side of From/To (without tag)
    remote_uri: str
    local_tag: str
    remote_tag: str | None = None
    remote_target: str = ""  # the peer's Contact (§12.1.2), or the first Request-URI
    route_set: list[str] = field(default_factory=list)
    local_cseq: int = 1
    state: State = "calling"
    invite_tx: ClientTransaction | None = None  # out: our INVITE
    invite_stx: ServerTransaction | None = None  # in: the peer's INVITE
    cancel_pending: bool = False  # out: terminated before any provisional response (§9.1)
    rang: bool = False
    initiate: Element | None = None  # in: the session-initiate given to the user's resources
    rung: list[JID] = field(default_factory=list)  # in: the resources it went to
    media_by_content: dict[str, str] = field(default_factory=dict)
    local_sdp: str = ""
    pending_info: list[str] = field(default_factory=list)  # transport-info before a dialog

    @property
    def has_dialog(self) -> bool:
        return self.remote_tag is not None

    def next_cseq(self) -> int:
        self.local_cseq += 1
        return self.local_cseq


class CallTable:
    __slots__ = ("_calls",)

    def __init__(self) -> None:
        self._calls: dict[str, Call] = {}

    def add(self, call: Call) -> None:
        self._calls[call.sid] = call

    def get(self, sid: str | None) -> Call | None:
        return None if sid is None else self._calls.get(sid)

    def remove(self, call: Call) -> None:
        if self._calls.get(call.sid) is call:
            del self._calls[call.sid]

    def of_user(self, jid: JID) -> list[Call]:
        return [c for c in self._calls.values() if c.user == jid or jid in c.rung]

    def __len__(self) -> int:
        return len(self._calls)

    def __contains__(self, sid: str) -> bool:
        return sid in self._calls
