"""The presence subscription state machine of RFC 6121 §3, written as the tables of Appendix A.

A roster item is in one of nine states: a subscription ('none', 'to', 'from', 'both') and a
pending request ('out' = the user asked the contact, 'in' = the contact asked the user, 'both').
Eight events move it: the four subscription presence types, sent by the user (outbound,
Appendix A.2) or received from the contact (inbound, Appendix A.3). Each table row says the new
state and whether the stanza goes on (routed to the contact, or delivered to the user).

Pre-approval (RFC 6121 §3.4) is a flag beside the state; its two rules are two more tables.
Everything here is pure data and functions, so the tables are tested against the RFC directly.
"""

from __future__ import annotations

from dataclasses import dataclass

EVENTS = ("subscribe", "subscribed", "unsubscribe", "unsubscribed")


@dataclass(frozen=True, slots=True)
class State:
    subscription: str
    ask: str

    @property
    def has_from(self) -> bool:
        """The contact receives the user's presence."""
        return self.subscription in ("from", "both")

    @property
    def has_to(self) -> bool:
        """The user receives the contact's presence."""
        return self.subscription in ("to", "both")

    @property
    def pending_out(self) -> bool:
        return self.ask in ("out", "both")

    @property
    def pending_in(self) -> bool:
        return self.ask in ("in", "both")

    def __str__(self) -> str:
        return _NAMES[self]


# RFC 6121 Appendix A.1: the nine defined states.
NONE = State("none", "none")
NONE_OUT = State("none", "out")
NONE_IN = State("none", "in")
NONE_OUT_IN = State("none", "both")
TO = State("to", "none")
TO_IN = State("to", "in")
FROM = State("from", "none")
FROM_OUT = State("from", "out")
BOTH = State("both", "none")

_NAMES = {
    NONE: "None", NONE_OUT: "None + Pending Out", NONE_IN: "None + Pending In",
    NONE_OUT_IN: "None + Pending Out/In", TO: "To", TO_IN: "To + Pending In", FROM: "From",
    FROM_OUT: "From + Pending Out", BOTH: "Both",
}
STATES = tuple(_NAMES)


def normalize(subscription: str, ask: str) -> State:
    """Map a stored pair onto a defined state: a pending request in the direction that is
    already subscribed means nothing (Appendix A.1 has no 'To + Pending Out')."""
    # Asked for every roster item a login reads, shows or probes: the 16 stored pairs are
    # mapped once (``_NORMALIZED``), not a new State per call.
    state = _NORMALIZED.get((subscription, ask))
    return state if state is not None else _normalize(subscription, ask)


def _normalize(subscription: str, ask: str) -> State:
    has_to = subscription in ("to", "both")
    has_from = subscription in ("from", "both")
    out = ask in ("out", "both") and not has_to
    in_ = ask in ("in", "both") and not has_from
    sub = "both" if has_to and has_from else "to" if has_to else "from" if has_from else "none"
    pending = "both" if out and in_ else "out" if out else "in" if in_ else "none"
    return State(sub, pending)


_NORMALIZED: dict[tuple[str, str], State] = {
    (subscription, ask): _normalize(subscription, ask)
    for subscription in ("none", "to", "from", "both")
    for ask in ("none", "out", "in", "both")}


@dataclass(frozen=True, slots=True)
class Row:
    """One table row: the new state (None = no state change) and whether the stanza goes on."""

    new: State | None
    forward: bool


SAME: State | None = None  # "no state change" in the RFC tables

# -- Appendix A.2: the user's server, stanzas the user sends to the contact --------------------
# 'forward' = route to the contact. RFC 6121 §3.1.2, §3.2.2, §3.3.2 route subscribe, unsubscribe
# and unsubscribed whatever the state; an approval that changes nothing is not routed (§3.1.5:
# there is no request to answer; pre-approval, §3.4, is handled before this table).
OUTBOUND: dict[str, dict[State, Row]] = {
    "subscribe": {  # A.2.1
        NONE: Row(NONE_OUT, True), NONE_OUT: Row(SAME, True), NONE_IN: Row(NONE_OUT_IN, True),
        NONE_OUT_IN: Row(SAME, True), TO: Row(SAME, True), TO_IN: Row(SAME, True),
        FROM: Row(FROM_OUT, True), FROM_OUT: Row(SAME, True), BOTH: Row(SAME, True),
    },
    "unsubscribe": {  # A.2.2
        NONE: Row(SAME, True), NONE_OUT: Row(NONE, True), NONE_IN: Row(SAME, True),
        NONE_OUT_IN: Row(NONE_IN, True), TO: Row(NONE, True), TO_IN: Row(NONE_IN, True),
        FROM: Row(SAME, True), FROM_OUT: Row(FROM, True), BOTH: Row(FROM, True),
    },
    "subscribed": {  # A.2.3
        NONE: Row(SAME, False), NONE_OUT: Row(SAME, False), NONE_IN: Row(FROM, True),
        NONE_OUT_IN: Row(FROM_OUT, True), TO: Row(SAME, False), TO_IN: Row(BOTH, True),
        FROM: Row(SAME, False), FROM_OUT: Row(SAME, False), BOTH: Row(SAME, False),
    },
    "unsubscribed": {  # A.2.4
        NONE: Row(SAME, True), NONE_OUT: Row(SAME, True), NONE_IN: Row(NONE, True),
        NONE_OUT_IN: Row(NONE_OUT, True), TO: Row(SAME, True), TO_IN: Row(TO, True),
        FROM: Row(NONE, True), FROM_OUT: Row(NONE_OUT, True), BOTH: Row(TO, True),
    },
}

# -- Appendix A.3: the user's server, stanzas the contact sends to the user --------------------
# 'forward' = deliver to the user.
INBOUND: dict[str, dict[State, Row]] = {
    "subscribe": {  # A.3.1 (From/From+Out/Both: auto-answered, see AUTO_REPLY)
        NONE: Row(NONE_IN, True), NONE_OUT: Row(NONE_OUT_IN, True), NONE_IN: Row(SAME, False),
        NONE_OUT_IN: Row(SAME, False), TO: Row(TO_IN, True), TO_IN: Row(SAME, False),
        FROM: Row(SAME, False), FROM_OUT: Row(SAME, False), BOTH: Row(SAME, False),
    },
    "unsubscribe": {  # A.3.2
        NONE: Row(SAME, False), NONE_OUT: Row(SAME, False), NONE_IN: Row(NONE, True),
        NONE_OUT_IN: Row(NONE_OUT, True), TO: Row(SAME, False), TO_IN: Row(TO, True),
        FROM: Row(NONE, True), FROM_OUT: Row(NONE_OUT, True), BOTH: Row(TO, True),
    },
    "subscribed": {  # A.3.3
        NONE: Row(SAME, False), NONE_OUT: Row(TO, True), NONE_IN: Row(SAME, False),
        NONE_OUT_IN: Row(TO_IN, True), TO: Row(SAME, False), TO_IN: Row(SAME, False),
        FROM: Row(SAME, False), FROM_OUT: Row(BOTH, True), BOTH: Row(SAME, False),
    },
    "unsubscribed": {  # A.3.4
        NONE: Row(SAME, False), NONE_OUT: Row(NONE, True), NONE_IN: Row(SAME, False),
        NONE_OUT_IN: Row(NONE_IN, True), TO: Row(NONE, True), TO_IN: Row(NONE_IN, True),
        FROM: Row(SAME, False), FROM_OUT: Row(FROM, True), BOTH: Row(FROM, True),
    },
}

# RFC 6121 §3.1.3: a request from a contact that is already subscribed is answered by the
# server on the user's behalf ("subscribed"), not shown to the user.
AUTO_REPLY: dict[tuple[str, State], str] = {
    ("subscribe", FROM): "subscribed",
    ("subscribe", FROM_OUT): "subscribed",
    ("subscribe", BOTH): "subscribed",
}

# RFC 6121 §3.4.1: an approval sent while no request is pending records a pre-approval (the
# stanza is not routed). Only where the contact is not yet subscribed to the user.
PRE_APPROVABLE = frozenset({NONE, NONE_OUT, TO})

# RFC 6121 §3.4.2 (and §3.1.3 step 3): a request from a pre-approved contact is accepted by the
# server: the new state, not delivered, answered with "subscribed".
PRE_APPROVED_SUBSCRIBE: dict[State, State] = {NONE: FROM, NONE_OUT: FROM_OUT, TO: BOTH}


@dataclass(frozen=True, slots=True)
class Transition:
    """What one subscription stanza does to a roster item."""

    before: State
    after: State
    approved_before: bool
    approved: bool
    forward: bool  # outbound: route to the contact; inbound: deliver to the user
    reply: str | None = None  # inbound: a presence type the server answers on the user's behalf

    @property
    def changed(self) -> bool:
        return self.before != self.after or self.approved_before != self.approved

    @property
    def gained_from(self) -> bool:
        """The contact has just become a subscriber to the user's presence."""
        return self.after.has_from and not self.before.has_from

    @property
    def lost_from(self) -> bool:
        return self.before.has_from and not self.after.has_from


def outbound(state: State, approved: bool, event: str) -> Transition:
    """The user sends ``event`` to the contact (Appendix A.2, §3.4.1)."""
    if event == "subscribed" and state in PRE_APPROVABLE:
        return Transition(state, state, approved, True, forward=False)
    row = OUTBOUND[event][state]
    after = row.new or state
    # §3.4: an unsubscribed also withdraws a pre-approval; a subscription that now exists
    # makes one pointless.
    new_approved = False if event == "unsubscribed" else approved and not after.has_from
    return Transition(state, after, approved, new_approved, forward=row.forward)


def inbound(state: State, approved: bool, event: str) -> Transition:
    """The contact sends ``event`` to the user (Appendix A.3, §3.1.3, §3.4.2)."""
    if event == "subscribe" and approved and state in PRE_APPROVED_SUBSCRIBE:
        return Transition(state, PRE_APPROVED_SUBSCRIBE[state], approved, False, forward=False,
                          reply="subscribed")
    row = INBOUND[event][state]
    after = row.new or state
    return Transition(state, after, approved, approved and not after.has_from,
                      forward=row.forward, reply=AUTO_REPLY.get((event, state)))
